"""The generation engine on small random GPTs (real torch, CPU): the KV-cached, left-
padded batch path gives the tokens of the plain recompute-everything path and of
Hugging Face's GPT-2; stops, finish reasons, sampling and its seeds behave."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from tui_ft.data.tokenizer import EOT_ID, decode
from tui_ft.model import generate as gen
from tui_ft.model.generate import (GenerationConfig, GenerationError, generate,
                                   generate_uncached)
from tui_ft.model.gpt import GPT, GPTConfig, KVCache

CONFIG = GPTConfig(vocab_size=50257, context_length=128, n_embd=64, n_layer=2, n_head=4)
LENGTHS = (3, 9, 1, 17, 5, 4)
# A token that the model below emits in several rows; giving <|endoftext|> a slightly
# larger copy of its embedding makes the model end those rows (see eot_model).
EOT_TWIN = 49885


def make_model(seed: int = 0) -> GPT:
    """A random GPT with GPT-2-like weight scales: varied continuations instead of the
    one-token loops of a fresh init (where the token embedding dominates)."""
    torch.manual_seed(seed)
    model = GPT(CONFIG).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # in order: wte first
            if name == "wte.weight":
                p.normal_(0, 0.1)
            elif name.startswith("h.") and p.dim() == 2:
                p.normal_(0, 0.15)
    return model


def make_prompts(lengths=LENGTHS, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 50000, (n,), generator=g).tolist() for n in lengths]


@pytest.fixture(scope="module")
def model() -> GPT:
    return make_model()


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return make_prompts()


@pytest.fixture(scope="module")
def eot_reference(eot_model, prompts) -> list[list[int]]:
    """12 greedy tokens per prompt, stopping at <|endoftext|>, by full recomputation."""
    return generate_uncached(eot_model, prompts, 12)


@pytest.fixture(scope="module")
def eot_model() -> GPT:
    """The same model, except that <|endoftext|>'s (tied) embedding is 1.2 x that of
    EOT_TWIN: wherever the twin would win with a positive logit, EOT wins instead.
    A real GPT with other weights, not a wrapper."""
    m = make_model()
    with torch.no_grad():
        m.wte.weight[EOT_ID] = 1.2 * m.wte.weight[EOT_TWIN]
    return m


def greedy(n: int, **kw) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, **kw)


# ------------------------------------------------------------------ the model's cache


def test_cached_forward_without_mask_matches_full_forward(model):
    """gpt.py: continuing a KV cache without an attn_mask (one token, or a chunk) gives
    the logits of the whole sequence run at once. SDPA's is_causal alone aligns the
    mask top-left and got this wrong."""
    ids = torch.tensor([make_prompts((12,), seed=5)[0]])
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(CONFIG, 1, 16, "cpu", torch.float32)
        first = model(ids[:, :8], cache=cache)
        chunk = model(ids[:, 8:11], cache=cache)
        last = model(ids[:, 11:], cache=cache)
    torch.testing.assert_close(first, full[:, :8], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunk, full[:, 8:11], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, full[:, 11:], rtol=1e-5, atol=1e-5)
    assert cache.length == 12


# ---------------------------------------------------------- cached == uncached greedy


def test_cached_greedy_equals_uncached_for_single_prompts(model, prompts):
    for p in prompts[:3]:
        ours = generate(model, [p], greedy(24, stop_token_id=None))[0]
        assert ours.output_ids == generate_uncached(model, [p], 24, stop_token_id=None)[0]
        assert ours.finish_reason == "length"
        assert len(ours.output_ids) == 24


def test_left_padded_batch_equals_each_prompt_alone(model, prompts):
    reference = generate_uncached(model, prompts, 20, stop_token_id=None)
    assert len(set(map(len, prompts))) == len(prompts)  # every row padded differently
    # batch_size 1 is each prompt alone; 4 groups them differently; results come back
    # in the prompts' order whatever the grouping.
    for size in (16, 4, 1):
        seen = {}
        batch = generate(model, prompts, greedy(20, stop_token_id=None), batch_size=size,
                         on_result=lambda i, r: seen.setdefault(i, r))
        assert [r.output_ids for r in batch] == reference, size
        assert sorted(seen) == list(range(len(prompts)))
        assert all(seen[i] is batch[i] for i in seen)


def test_padded_row_prefill_logits_equal_prompt_alone(model):
    """At the logits level: a row left-padded in a batch, with the mask and positions
    the engine builds, gives the next-token logits of the prompt alone."""
    short, long_ = make_prompts((4, 11), seed=9)
    ids = torch.tensor([[EOT_ID] * 7 + short, long_])
    pad = torch.tensor([7, 0])
    positions = (torch.arange(11) - pad[:, None]).clamp(min=0)
    real = torch.arange(11)[None] >= pad[:, None]
    causal = torch.ones(11, 11, dtype=torch.bool).tril()
    mask = (causal & real[:, None, :]) | torch.eye(11, dtype=torch.bool)
    with torch.no_grad():
        batch = model(ids, positions, mask.unsqueeze(1))
        alone = model(torch.tensor([short]))
    torch.testing.assert_close(batch[0, 7:], alone[0], rtol=1e-5, atol=1e-5)
    assert not torch.isnan(batch).any()  # the padding rows too (they see themselves)


def test_huggingface_greedy_generate_gives_the_same_tokens(model, prompts):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.GPT2Config(
        vocab_size=CONFIG.vocab_size, n_positions=CONFIG.context_length,
        n_embd=CONFIG.n_embd, n_layer=CONFIG.n_layer, n_head=CONFIG.n_head,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=CONFIG.layer_norm_eps, bos_token_id=EOT_ID,
        eos_token_id=EOT_ID, pad_token_id=EOT_ID)
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            value = value.t()  # HF's Conv1D stores (in, out)
        state[key if key == "lm_head.weight" else "transformer." + key] = value.clone()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected
    assert all(k.endswith((".attn.bias", ".attn.masked_bias")) for k in missing), missing

    width = max(map(len, prompts))
    ids = torch.tensor([[EOT_ID] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=attention, do_sample=False,
                          max_new_tokens=16, pad_token_id=EOT_ID, eos_token_id=EOT_ID)
    ours = generate(model, prompts, greedy(16))
    for row, result in zip(out[:, width:].tolist(), ours):
        # HF pads a finished row after its <|endoftext|>; ours ends with that token.
        expected = row[:row.index(EOT_ID) + 1] if EOT_ID in row else row
        assert result.output_ids == expected


# ------------------------------------------------------------------ stops and lengths


def _first_eot(ids):
    return ids.index(EOT_ID) if EOT_ID in ids else None


def test_each_row_stops_at_endoftext_on_its_own(eot_model, prompts, eot_reference):
    n, reference = 12, eot_reference
    stops = [_first_eot(r) for r in reference]
    # The setup must really exercise per-row stops: several rows end, at different
    # steps after the first, and others run to the limit.
    ended = [s for s in stops if s is not None]
    assert len(set(ended)) >= 2 and min(ended) >= 1, stops
    assert any(s is None for s in stops), stops

    results = generate(eot_model, prompts, greedy(n), batch_size=16)
    for result, ref, stop in zip(results, reference, stops):
        assert result.output_ids == ref
        if stop is None:
            assert result.finish_reason == "length"
            assert len(result.output_ids) == n
        else:
            assert result.finish_reason == "eos"
            assert result.output_ids[-1] == EOT_ID and len(result.output_ids) == stop + 1
            assert result.text == decode(result.output_ids[:-1])
            assert "<|endoftext|>" not in result.text


def test_endoftext_on_the_last_allowed_token_is_eos(eot_model, prompts, eot_reference):
    reference = eot_reference
    row, stop = next((i, _first_eot(r)) for i, r in enumerate(reference) if _first_eot(r))
    result = generate(eot_model, [prompts[row]], greedy(stop + 1))[0]
    assert result.finish_reason == "eos" and result.output_ids[-1] == EOT_ID
    shorter = generate(eot_model, [prompts[row]], greedy(stop))[0]
    assert shorter.finish_reason == "length" and EOT_ID not in shorter.output_ids


def test_without_a_stop_token_endoftext_is_just_a_token(eot_model, prompts):
    results = generate(eot_model, prompts, greedy(12, stop_token_id=None))
    assert all(r.finish_reason == "length" and len(r.output_ids) == 12 for r in results)
    assert any(EOT_ID in r.output_ids for r in results)


def test_max_new_tokens_is_respected(model, prompts):
    for n in (0, 1, 7):
        results = generate(model, prompts, greedy(n, stop_token_id=None))
        assert [len(r.output_ids) for r in results] == [n] * len(prompts)
        assert all(r.finish_reason == "length" for r in results)
    assert generate(model, prompts[:1], greedy(0))[0].text == ""


def test_stop_strings_end_the_row_and_cut_the_text(model, prompts):
    plain = generate(model, prompts[:2], greedy(16, stop_token_id=None))
    ids = plain[0].output_ids
    stop = decode(ids[4:6])  # two tokens from the middle of row 0's continuation
    full = decode(ids)
    # The shortest prefix of the tokens whose text holds the stop string.
    k = next(k for k in range(1, len(ids) + 1) if stop in decode(ids[:k]))
    results = generate(model, prompts[:2], greedy(16, stop_token_id=None,
                                                  stop_strings=(stop, "\x00never")))
    first = results[0]
    assert first.finish_reason == "stop_string"
    assert first.output_ids == ids[:k]
    assert first.text == full[:full.find(stop)]
    assert stop not in first.text
    if stop not in plain[1].text:  # the other row is untouched
        assert results[1].output_ids == plain[1].output_ids


def test_long_prompt_is_cut_from_the_left_with_a_note(model):
    long_prompt = make_prompts((150,), seed=3)[0]
    result = generate(model, [long_prompt], greedy(8, stop_token_id=None))[0]
    assert result.prompt_truncated == 150 - (128 - 8)
    assert result.prompt_ids == long_prompt[-120:]
    assert "cut" in result.note and "120" in result.note
    kept = generate(model, [long_prompt[-120:]], greedy(8, stop_token_id=None))[0]
    assert kept.output_ids == result.output_ids and kept.note is None


def test_bad_settings_and_prompts_raise_clear_errors(model):
    bad = [dict(max_new_tokens=-1), dict(temperature=-0.5), dict(temperature=float("nan")),
           dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5), dict(stop_strings=("",))]
    for kw in bad:
        with pytest.raises(GenerationError) as info:
            generate(model, [[1, 2]], GenerationConfig(**kw))
        assert next(iter(kw)) in str(info.value)
    with pytest.raises(GenerationError, match="prompt 1 is empty"):
        generate(model, [[1], []], greedy(2))
    with pytest.raises(GenerationError, match="vocabulary"):
        generate(model, [[50257]], greedy(2))
    with pytest.raises(GenerationError, match="context"):
        generate(model, [[1]], greedy(128))


def test_training_mode_is_restored_and_weights_untouched(model, prompts):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        generate(model, prompts[:2], GenerationConfig(max_new_tokens=3, temperature=1.0))
        assert model.training
    finally:
        model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -------------------------------------------------------------------------- sampling


def sample(model, prompts, **kw):
    batch_size = kw.pop("batch_size", 16)
    config = GenerationConfig(max_new_tokens=kw.pop("n", 10), stop_token_id=None, **kw)
    return [r.output_ids for r in generate(model, prompts, config, batch_size=batch_size)]


def test_top_k_1_and_tiny_top_p_are_greedy(model, prompts):
    expected = [r.output_ids for r in generate(model, prompts, greedy(10, stop_token_id=None))]
    for seed in (0, 1):
        assert sample(model, prompts, temperature=1.3, top_k=1, seed=seed) == expected
        assert sample(model, prompts, temperature=1.3, top_p=1e-9, seed=seed) == expected


def test_same_seed_same_tokens_other_seed_other_tokens(model, prompts):
    a = sample(model, prompts, temperature=1.0, seed=123)
    assert sample(model, prompts, temperature=1.0, seed=123) == a
    b = sample(model, prompts, temperature=1.0, seed=124)
    assert all(x != y for x, y in zip(a, b))
    assert len({tuple(x) for x in a}) == len(a)  # rows do not share one stream


def test_samples_do_not_depend_on_batch_composition(model, prompts):
    """Each prompt draws from its own generator, seeded by (seed, its index)."""
    full = sample(model, prompts, temperature=1.0, top_k=50, seed=7, batch_size=16)
    for size in (1, 4):
        config = GenerationConfig(max_new_tokens=10, temperature=1.0, top_k=50, seed=7,
                                  stop_token_id=None)
        assert [r.output_ids for r in generate(model, prompts, config,
                                               batch_size=size)] == full


def _last_logits(model, prompt):
    with torch.no_grad():
        return model(torch.tensor([prompt]))[0, -1].double()


def _draw_first_tokens(model, prompt, draws, **kw):
    config = GenerationConfig(max_new_tokens=1, stop_token_id=None, seed=2024, **kw)
    results = generate(model, [prompt] * draws, config, batch_size=500)
    return Counter(r.output_ids[0] for r in results)


def _within(freq, p, draws, sigmas=4.5):
    return abs(freq - p) <= sigmas * math.sqrt(p * (1 - p) / draws) + 1e-9


def test_sampled_frequencies_follow_the_softmax():
    """2,000 draws of the first token: each of the top tokens comes up as often as
    softmax(logits / T) says (4.5 sigma); with top_k=2 or a top_p that keeps two
    tokens, as the renormalised pair says, and nothing else is ever drawn. A
    1,000-token vocabulary keeps the 6,000 draws cheap."""
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=1000, context_length=32, n_embd=64, n_layer=2,
                          n_head=4)).eval()
    prompt, draws = [464, 318, 257, 286], 2000
    logits = _last_logits(model, prompt)
    # A temperature where the favourite has probability ~0.5, so the test has power.
    lo, hi = 1e-3, 10.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if torch.softmax(logits / mid, -1).max() > 0.5 else (lo, mid)
    t = lo
    probs = torch.softmax(logits / t, -1)
    top = probs.topk(3)
    counts = _draw_first_tokens(model, prompt, draws, temperature=t)
    for p, token in zip(top.values.tolist(), top.indices.tolist()):
        assert _within(counts[token] / draws, p, draws), (token, counts[token], p)

    p1, p2 = top.values[:2].tolist()
    pair = p1 / (p1 + p2)
    for kw in (dict(top_k=2), dict(top_p=p1 + p2 / 2)):
        counts = _draw_first_tokens(model, prompt, draws, temperature=t, **kw)
        assert set(counts) <= set(top.indices[:2].tolist()), (kw, counts)
        assert _within(counts[top.indices[0].item()] / draws, pair, draws), (kw, counts)


def test_drop_and_keep_of_finished_rows_agree(eot_model, prompts, monkeypatch):
    """Finished rows leave the batch (cache reorder); keeping them instead must not
    change any row, greedy or sampled."""
    configs = [GenerationConfig(max_new_tokens=12),
               GenerationConfig(max_new_tokens=12, temperature=0.3, top_k=5, seed=5)]
    dropped = [generate(eot_model, prompts, c) for c in configs]
    monkeypatch.setattr(gen, "_DROP_FINISHED", False)
    kept = [generate(eot_model, prompts, c) for c in configs]
    for a, b in zip(dropped, kept):
        assert [r.output_ids for r in a] == [r.output_ids for r in b]
        assert [r.finish_reason for r in a] == [r.finish_reason for r in b]
    assert {"eos", "length"} <= {r.finish_reason for r in dropped[0]}


def test_static_decoding_gives_the_same_rows(eot_model, prompts, eot_reference):
    """Fixed-shape decoding (the path CUDA graphs replay: finished rows stay, attention
    over the whole cache under a mask) gives the tokens of the dynamic path, greedy
    and sampled, with left padding and rows ending early."""
    configs = [GenerationConfig(max_new_tokens=12),
               GenerationConfig(max_new_tokens=12, temperature=0.3, top_k=5, seed=5),
               GenerationConfig(max_new_tokens=12, stop_token_id=None)]
    for c in configs:
        dynamic = generate(eot_model, prompts, c, batch_size=4)
        static = generate(eot_model, prompts, c, batch_size=4, static=True)
        assert [r.output_ids for r in static] == [r.output_ids for r in dynamic]
        assert [r.finish_reason for r in static] == [r.finish_reason for r in dynamic]
    greedy_static = generate(eot_model, prompts, configs[0], static=True)
    assert [r.output_ids for r in greedy_static] == eot_reference
    assert {"eos", "length"} <= {r.finish_reason for r in greedy_static}


def test_cuda_graphs_need_a_cuda_model(model, prompts):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GenerationError, match="cuda_graphs needs the model on a CUDA"):
        generate(model, prompts, greedy(4), cuda_graphs=True)


def test_a_static_cache_refuses_calls_without_positions_and_mask(model):
    cache = KVCache(model.config, 1, 8, "cpu", torch.float32)
    cache.write_at = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="explicit position_ids and attn_mask"):
        model.hidden_states(torch.tensor([[1]]), cache=cache)
