"""The memory estimator: its arithmetic (sizes, monotonicity, precisions, checkpointing,
the chunked loss, the labelled tokens), and a real training step on the CPU, the
Trainer's (hidden states, then the chunked loss of tui_ft.model.loss over the labelled
positions, clipping, fused AdamW) or the plain one (logits, cross-entropy), whose
saved-for-backward tensors, weights, gradients, optimizer state and (through the
profiler) peak, at each of the moments that can be it, are measured against the
estimate."""

from __future__ import annotations

import pytest
import torch

from tui_ft.data.batches import _target_positions
from tui_ft.errors import TuiFtError
from tui_ft.model.gpt import GPT, GPTConfig, KVCache, lm_loss
from tui_ft.model.loss import DEFAULT_CHUNK, IGNORE_INDEX, lm_loss_sum
from tui_ft.model.memory import LOSS_CHUNK, MemoryEstimate, estimate_memory
from tui_ft.model.presets import PRESETS

CONFIGS = {name: GPTConfig(**p.config_dict()) for name, p in PRESETS.items()}
GPT2 = CONFIGS["gpt2"]
TINY = CONFIGS["tiny"]
# ~30M parameters: 6 blocks of 384, most of the rest the vocabulary's embeddings.
MID = GPTConfig(vocab_size=50257, context_length=256, n_embd=384, n_layer=6, n_head=6)


def est(config=GPT2, **kw) -> MemoryEstimate:
    kw.setdefault("precision", "fp32")
    kw.setdefault("batch_size", 4)
    kw.setdefault("seq_len", 256)
    return estimate_memory(config, **kw)


# ---------------------------------------------------------------------- arithmetic


def test_gpt2_fp32_weights_are_124m_times_4_bytes():
    assert GPT2.n_params() == 124_439_808
    assert est(training=False).weights == 124_439_808 * 4
    train = est()
    assert train.weights == train.gradients == 124_439_808 * 4
    # AdamW: two fp32 moments, plus one fp32 step counter per parameter tensor.
    assert train.optimizer == 8 * 124_439_808 + 4 * (4 + 12 * 12)
    assert est(precision="bf16", training=False).weights == 124_439_808 * 2


def test_mixed_precision_training_keeps_fp32_master_weights():
    fp32, bf16, fp16 = (est(precision=p) for p in ("fp32", "bf16", "fp16"))
    assert bf16.weights == fp32.weights and bf16.gradients == fp32.gradients
    assert bf16.optimizer == fp32.optimizer
    assert bf16.activations == fp16.activations
    assert fp32.weight_copies == 0
    linear = 12 * GPT2.n_embd ** 2 * GPT2.n_layer
    # The chunked loss casts the output head outside autocast and keeps no copy of it;
    # the plain path's lm_head is an autocast Linear, whose copy is kept.
    assert bf16.weight_copies == 2 * linear
    assert est(precision="bf16", loss="plain").weight_copies == \
        2 * (linear + GPT2.vocab_size * GPT2.n_embd)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_grows_with_batch_and_length(name, precision):
    config = CONFIGS[name]
    for training in (True, False):
        by_batch = [est(config, precision=precision, batch_size=b, seq_len=128,
                        training=training) for b in (1, 2, 8)]
        by_len = [est(config, precision=precision, batch_size=2, seq_len=t,
                      training=training) for t in (16, 64, 256)]
        for series in (by_batch, by_len):
            assert [e.activations for e in series] == sorted({e.activations for e in series})
            totals = [e.total for e in series]
            assert totals == sorted(totals)
            # A peak in the forward or backward pass grows with the tokens; one at the
            # end of the backward pass (small batches of a large model, now that no
            # logits are held; fused AdamW's step is never above it) holds no
            # activations.
            growing = [e.total for e in series if e.peak_at in
                       ("loss forward", "start of backward", "generation")]
            assert growing == sorted(set(growing))
            if not training:
                assert len(growing) == 3
            assert len({e.weights for e in series}) == 1
    # From 16 x 256 tokens on, every preset's training peak is in the loss's forward
    # pass, and grows with the batch.
    big = [est(config, precision=precision, batch_size=b, seq_len=256) for b in (16, 32)]
    assert [e.peak_at for e in big] == ["loss forward"] * 2
    assert big[0].total < big[1].total


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bf16_activations_are_smaller_than_fp32(name):
    for b, t in ((1, 16), (8, 256)):
        fp32 = est(CONFIGS[name], batch_size=b, seq_len=t)
        bf16 = est(CONFIGS[name], batch_size=b, seq_len=t, precision="bf16")
        assert bf16.activations < fp32.activations


@pytest.mark.parametrize("name", list(CONFIGS))
def test_activation_checkpointing_reduces_activations(name):
    config = CONFIGS[name]
    full = est(config, batch_size=8, seq_len=256)
    ckpt = est(config, batch_size=8, seq_len=256, activation_checkpointing=True)
    assert ckpt.activations < full.activations
    assert ckpt.total <= full.total
    if config.n_layer >= 12:
        assert ckpt.activations < 0.5 * full.activations


def test_inference_is_weights_plus_kv_cache_plus_one_layer():
    for precision, size in (("fp32", 4), ("bf16", 2)):
        e = est(precision=precision, training=False, batch_size=3, seq_len=100)
        assert e.gradients == e.optimizer == e.weight_copies == 0
        assert e.kv_cache == 2 * GPT2.n_layer * 3 * 100 * GPT2.n_embd * size
        assert e.total == e.weights + e.kv_cache + e.activations
        assert e.activations < e.kv_cache  # a layer's worth, not all of them
    int8 = est(precision="int8", training=False)
    assert int8.weights < est(precision="bf16", training=False).weights
    # The KV cache's formula is the size of the cache generation really allocates.
    cache = KVCache(TINY, 3, 100, "cpu", torch.bfloat16)
    assert sum(t.numel() * t.element_size() for t in cache.k + cache.v) == \
        est(TINY, precision="bf16", training=False, batch_size=3, seq_len=100).kv_cache


def test_gradient_accumulation_keeps_gradients_alive():
    for loss, peak_at in (("chunked", "loss forward"), ("plain", "start of backward")):
        one = est(batch_size=16, seq_len=512, loss=loss)
        acc = est(batch_size=16, seq_len=512, gradient_accumulation_steps=4, loss=loss)
        assert one.peak_at == peak_at
        assert acc.total == one.total + one.gradients


def test_the_chunk_matches_the_loss_and_the_default_is_the_trainers():
    assert LOSS_CHUNK == DEFAULT_CHUNK
    assert est() == est(loss="chunked", chunk=DEFAULT_CHUNK)


def test_chunked_loss_holds_no_batch_by_vocabulary_tensor():
    """The chunked loss keeps (tokens x d + V x d) fp32 gradients where the plain path
    keeps B x T x V logits and log-probabilities; its transient is one chunk's."""
    V, d, T = TINY.vocab_size, TINY.n_embd, 256
    for precision in ("fp32", "bf16"):
        one, two = (est(TINY, precision=precision, batch_size=b, seq_len=T) for b in (1, 2))
        # Per token: the blocks' activations, no vocabulary-sized logits.
        assert 0 < two.activations - one.activations < T * V
        plain = [est(TINY, precision=precision, batch_size=b, seq_len=T, loss="plain")
                 for b in (1, 2)]
        assert plain[1].activations - plain[0].activations > T * V * 4
        # Saved gradient of the output weight: V x d fp32, whatever the batch.
        assert one.activations > 4 * V * d
    # At 16k tokens a step GPT-2's chunked peak is far under the plain one's.
    chunked = est(precision="bf16", batch_size=16, seq_len=1024)
    plain = est(precision="bf16", batch_size=16, seq_len=1024, loss="plain")
    assert chunked.total < plain.total - 8 * 16 * 1024 * GPT2.vocab_size
    # The loss's transient follows the chunk, not the batch, once the batch exceeds it.
    assert est(precision="bf16", batch_size=16, seq_len=1024, chunk=1024).total \
        < chunked.total < est(precision="bf16", batch_size=16, seq_len=1024,
                              chunk=16 * 1024).total
    # Chunks do not overlap: past one chunk, more tokens add to the loss's moment only
    # the fp32 hidden states, their selected copy (fp32) and its labels (int64).
    a, b = (est(precision="bf16", batch_size=n, seq_len=512, chunk=512) for n in (8, 16))
    assert a.peak_at == b.peak_at == "loss forward"
    assert b.workspace - a.workspace == (4 * GPT2.n_embd + 4 * GPT2.n_embd + 8) * 8 * 512
    # One chunk, then two: the second adds no chunk of logits.
    one, two = (est(precision="bf16", batch_size=n, seq_len=256, chunk=512) for n in (2, 4))
    assert one.peak_at == two.peak_at == "loss forward"
    assert two.workspace - one.workspace == (4 * GPT2.n_embd + 4 * GPT2.n_embd + 8) * 512


def test_only_the_labelled_tokens_cost_the_loss():
    """lm_loss_sum projects only the positions with a label: the estimate's default, every
    token labelled, is an upper bound of what fewer targets cost."""
    d, V = GPT2.n_embd, GPT2.vocab_size
    full = est(batch_size=8, seq_len=512)
    assert est(batch_size=8, seq_len=512, targets=8 * 512) == full
    half = est(batch_size=8, seq_len=512, targets=4 * 512)
    # Saved per labelled token: the gradient of its hidden state (fp32) and its position.
    assert full.activations - half.activations == (4 * d + 8) * 4 * 512
    assert half.total < full.total and half.peak_at == full.peak_at == "loss forward"
    # With fewer targets than a chunk, the chunk's logits and log-probabilities (8 B a
    # logit in fp32) shrink too; what then dominates is the weight's V x d product.
    small = est(batch_size=8, seq_len=512, targets=100)
    assert full.workspace - small.workspace > 8 * (LOSS_CHUNK - 100) * V - 4 * V * d
    # The blocks do not care: every token goes through them.
    assert est(batch_size=8, seq_len=512, targets=0).activations == \
        full.activations - (4 * d + 8) * 8 * 512
    # The plain path projects every position whatever the labels.
    assert est(loss="plain", targets=10) == est(loss="plain")
    for bad in (-1, 4 * 256 + 1, 1.5, True):
        with pytest.raises(ValueError, match="targets"):
            est(targets=bad)


def test_bad_values_are_refused():
    with pytest.raises(TuiFtError, match="int8"):
        est(precision="int8")
    with pytest.raises(TuiFtError, match="auto"):
        est(precision="auto")
    with pytest.raises(TuiFtError, match="unknown precision"):
        est(precision="fp8")
    with pytest.raises(ValueError, match="optimizer"):
        est(optimizer="lion")
    with pytest.raises(ValueError, match="batch_size"):
        est(batch_size=0)
    with pytest.raises(ValueError, match="context"):
        est(seq_len=2048)
    with pytest.raises(ValueError, match="loss"):
        est(loss="fused")
    with pytest.raises(ValueError, match="chunk"):
        est(chunk=0)


def test_report_forms():
    e = est(precision="bf16")
    d = e.to_dict()
    for key in ("weights", "gradients", "optimizer", "activations", "total"):
        assert isinstance(d[key], int) and d[key] >= 0
    assert d["total"] == e.total and e.peak_at in d["peak_at"]
    text = e.pretty()
    assert "peak" in text and ("MiB" in text or "GiB" in text)
    sgd = est(optimizer="sgd")
    assert sgd.optimizer == 4 * GPT2.n_params()


# ------------------------------------------------------- measured on a real step


_VIEWS = {"TBackward0", "ViewBackward0", "TransposeBackward0", "PermuteBackward0",
          "UnsafeViewBackward0", "ExpandBackward0"}


def _is_weight_copy(t) -> bool:
    """(A view of) autocast's cast of a parameter: views, a cast, then the parameter."""
    fn = t.grad_fn
    while fn is not None and type(fn).__name__ in _VIEWS:
        fn = fn.next_functions[0][0]
    return (fn is not None and type(fn).__name__ == "ToCopyBackward0"
            and any(f is not None and type(f).__name__ == "AccumulateGrad"
                    for f, _ in fn.next_functions))


def _autocast(precision):
    return (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
            else torch.autocast("cpu", enabled=False))


def _model_and_optimizer(config):
    """The model in training mode and the Trainer's optimizer (train/optim.py `adamw`): AdamW
    with fused=True, on the CPU as on CUDA."""
    torch.manual_seed(0)
    model = GPT(config).train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)


def _batch(config, batch, seq_len):
    """Token ids, their aligned labels with the first quarter of every row masked (-100,
    as a prompt with mask_prompt), and the flat positions of the labelled tokens,
    worked out by collate's own function."""
    ids = torch.randint(0, config.vocab_size, (batch, seq_len),
                        generator=torch.Generator().manual_seed(1))
    labels = ids.roll(-1, dims=1)
    labels[:, :seq_len // 4] = IGNORE_INDEX
    return ids, labels, _target_positions(labels)


def _loss_sum(model, ids, labels, positions, precision, chunk):
    """The Trainer's loss (Trainer._loss_sum): the final hidden states under autocast,
    then the chunked loss over the labelled positions only; `hidden` goes when this
    returns, as it does there."""
    with _autocast(precision):
        hidden = model.hidden_states(ids)
        return lm_loss_sum(hidden, model.lm_head.weight, labels, chunk=chunk,
                           positions=positions)


def _trainer_step(model, optimizer, ids, labels, positions, precision, chunk):
    """One step as Trainer._loop runs it (no accumulation): the summed loss over the
    number of targets, backward, clip_grad_norm_ at 1.0, the optimizer step, the
    gradients dropped."""
    (_loss_sum(model, ids, labels, positions, precision, chunk)
     / positions.numel()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_step_measured(config, precision, batch, seq_len, loss="chunked",
                        chunk=DEFAULT_CHUNK):
    """One real training step; bytes of what it holds, measured from the tensors:
    the Trainer's (hidden states, lm_loss_sum over the labelled positions) or the plain
    path (logits held by the loop, cross-entropy). The chunked loss's saved tensors
    (with index_select's) are also counted apart."""
    model, optimizer = _model_and_optimizer(config)
    ids, labels, positions = _batch(config, batch, seq_len)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    copies: dict[int, int] = {}
    loss_saved: dict[int, int] = {}

    def pack_into(into):
        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:  # each storage once: q, k, v share one
                (copies if _is_weight_copy(t) else into)[s.data_ptr()] = s.nbytes()
            return t
        return pack

    if loss == "chunked":
        with _autocast(precision):
            with torch.autograd.graph.saved_tensors_hooks(pack_into(saved), lambda t: t):
                hidden = model.hidden_states(ids)
            with torch.autograd.graph.saved_tensors_hooks(pack_into(loss_saved),
                                                          lambda t: t):
                loss_sum = lm_loss_sum(hidden, model.lm_head.weight, labels, chunk=chunk,
                                       positions=positions)
        del hidden  # the Trainer's goes with its _loss_sum
        total = loss_sum / positions.numel()
    else:
        with torch.autograd.graph.saved_tensors_hooks(pack_into(saved), lambda t: t):
            with _autocast(precision):
                logits = model(ids)
            total = lm_loss(logits, labels)
        s = logits.untyped_storage()  # held by the loop, as the plain loop did
        saved.setdefault(s.data_ptr(), s.nbytes())
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(t.numel() * t.element_size() for st in optimizer.state.values()
                for t in st.values())
    return {"activations": sum(saved.values()) + sum(loss_saved.values()),
            "loss_saved": sum(loss_saved.values()), "targets": positions.numel(),
            "weight_copies": sum(copies.values()),
            "weights": weights, "gradients": grads, "optimizer": state}


@pytest.mark.parametrize("config,precision,loss,chunk", [
    (TINY, "fp32", "chunked", DEFAULT_CHUNK), (TINY, "bf16", "chunked", 48),
    (MID, "fp32", "chunked", DEFAULT_CHUNK), (TINY, "fp32", "plain", None),
    (TINY, "bf16", "plain", None)],
    ids=["tiny-fp32", "tiny-bf16-chunk48", "30M-fp32", "tiny-fp32-plain", "tiny-bf16-plain"])
def test_estimate_matches_a_measured_training_step(config, precision, loss, chunk):
    batch, seq_len = 2, 64
    kw = {"loss": loss} if chunk is None else {"loss": loss, "chunk": chunk}
    measured = train_step_measured(config, precision, batch, seq_len, **kw)
    n = measured["targets"]
    assert n == batch * (seq_len - seq_len // 4)
    e = estimate_memory(config, precision=precision, batch_size=batch, seq_len=seq_len,
                        targets=n, **kw)
    assert measured["weights"] == e.weights
    assert measured["gradients"] == e.gradients
    assert measured["optimizer"] == e.optimizer
    if loss == "chunked":
        # lm_loss_sum saves exactly its two fp32 gradients: of the selected hidden
        # states (targets x d) and of the output weight (V x d); index_select saves
        # the positions (int64); nothing of the logits.
        d, V = config.n_embd, config.vocab_size
        loss_saved = 4 * n * d + 4 * V * d + 8 * n
        assert measured["loss_saved"] == loss_saved
        # The rest (the blocks, ln_f, the ids) on its own, so that the loss's large
        # V x d does not hide an error in it.
        assert measured["activations"] - measured["loss_saved"] == pytest.approx(
            e.activations - loss_saved, rel=0.10)
    # The formula follows what gpt.py and loss.py save: today it is exact to a few
    # bytes; the tolerance leaves room for kernels that save a little more or less.
    assert measured["activations"] == pytest.approx(e.activations, rel=0.10)
    assert measured["weight_copies"] == pytest.approx(e.weight_copies, rel=0.10, abs=0)


# No blocks: what is left is the embeddings, ln_f and the loss, whose saved tensors the
# formula counts to the byte (the 10% above would hide the loss's targets x d gradient
# next to its V x d one).
HEAD_ONLY = GPTConfig(vocab_size=50257, context_length=256, n_embd=64, n_layer=0, n_head=4)


@pytest.mark.parametrize("loss", ["chunked", "plain"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_heads_saved_tensors_are_counted_to_the_byte(precision, loss):
    batch, seq_len = 4, 256
    measured = train_step_measured(HEAD_ONLY, precision, batch, seq_len, loss=loss, chunk=300)
    e = estimate_memory(HEAD_ONLY, precision=precision, batch_size=batch, seq_len=seq_len,
                        loss=loss, chunk=300, targets=measured["targets"])
    # A few bytes of scalars (cross-entropy's total weight) are not counted.
    assert measured["activations"] == pytest.approx(e.activations, abs=16)
    assert measured["weight_copies"] == e.weight_copies
    if loss == "chunked":
        # Taking every token as labelled (the default) counts the masked quarter too.
        upper = estimate_memory(HEAD_ONLY, precision=precision, batch_size=batch,
                                seq_len=seq_len, loss=loss, chunk=300)
        assert upper.activations - e.activations == (4 * 64 + 8) * batch * (seq_len // 4)


def _timeline_peak(prof, timeline):
    try:
        _, sizes = timeline.MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    except Exception as exc:  # a private API; its absence is no failure of ours
        pytest.skip(f"profiler memory timeline unavailable: {exc}")
    return max(sum(row) for row in sizes)


def _profiled_peak(step, profiler, timeline):
    """The peak of the profiler's memory timeline over one call of `step` (the second
    training step: the first creates the optimizer state)."""
    step()
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU], profile_memory=True,
                          record_shapes=True, with_stack=True) as prof:
        out = step()
    del out
    return _timeline_peak(prof, timeline)


# A narrow model over many tokens: the loss's chunks are most of the peak.
NARROW = GPTConfig(vocab_size=50257, context_length=256, n_embd=64, n_layer=2, n_head=4)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_estimated_total_matches_the_profiled_cpu_peak(precision):
    """The Trainer's step (hidden states, lm_loss_sum over the labelled positions in
    three chunks, backward, clipping, fused AdamW) peaks, in the profiler's memory
    timeline, at about the estimate's total, which is then in the loss's forward pass
    (log_softmax: the chunk's logits in the compute dtype, the fp32 log-probabilities,
    and in bf16 the fp32 copy of the logits it makes first)."""
    profiler = pytest.importorskip("torch.profiler")
    timeline = pytest.importorskip("torch.profiler._memory_profiler")
    config, batch, seq_len, chunk = NARROW, 4, 256, 256
    model, optimizer = _model_and_optimizer(config)
    ids, labels, positions = _batch(config, batch, seq_len)
    n = positions.numel()
    assert n == 3 * chunk  # the masked quarter: three chunks of the four rows' tokens

    peak = _profiled_peak(
        lambda: _trainer_step(model, optimizer, ids, labels, positions, precision, chunk),
        profiler, timeline)
    kw = {"precision": precision, "batch_size": batch, "seq_len": seq_len,
          "device_type": "cpu"}
    e = estimate_memory(config, chunk=chunk, targets=n, **kw)
    assert e.peak_at == "loss forward"
    assert peak == pytest.approx(e.total, rel=0.15), (peak, e.to_dict())
    # Every token taken as labelled (the default) is an upper bound, here a close one.
    upper = estimate_memory(config, chunk=chunk, **kw)
    assert e.total < upper.total and peak == pytest.approx(upper.total, rel=0.15)
    # The case exercises the chunking: the same estimate with the loss as one chunk of
    # all the targets misses the measured peak by more than the tolerance; and so does
    # one where a chunk's softmax (fp32) and g (its bf16 copy) live on while the next
    # chunk's logits are made, as loss.py's loop once kept them.
    whole = estimate_memory(config, chunk=n, targets=n, **kw)
    assert whole.total > 1.15 * peak
    overlapping = e.total + (4 + (2 if precision == "bf16" else 0)) * chunk * config.vocab_size
    assert overlapping > 1.15 * peak


# Blocks that weigh next to the vocabulary's embeddings, and few tokens: the peak is at
# the end of the backward pass, where the tied embedding's gradient is made.
BLOCKY = GPTConfig(vocab_size=50257, context_length=128, n_embd=256, n_layer=2, n_head=4)


def test_small_batches_peak_at_the_end_of_the_backward_pass():
    """With few tokens the peak is every gradient plus the embedding's half of the tied
    weight's gradient (V x d fp32), which autograd adds in place into the output head's
    half; fused AdamW's step stays under it."""
    profiler = pytest.importorskip("torch.profiler")
    timeline = pytest.importorskip("torch.profiler._memory_profiler")
    config, batch, seq_len = BLOCKY, 1, 32
    model, optimizer = _model_and_optimizer(config)
    ids, labels, positions = _batch(config, batch, seq_len)
    peak = _profiled_peak(
        lambda: _trainer_step(model, optimizer, ids, labels, positions, "fp32",
                              DEFAULT_CHUNK), profiler, timeline)
    e = estimate_memory(config, precision="fp32", batch_size=batch, seq_len=seq_len,
                        device_type="cpu", targets=positions.numel())
    assert e.peak_at == "end of backward"
    assert peak == pytest.approx(e.total, rel=0.15), (peak, e.to_dict())
    # The two halves summed into a third V x d tensor would miss.
    assert e.total + 4 * config.vocab_size * config.n_embd > 1.15 * peak


def test_the_fused_optimizer_step_makes_no_temporary():
    """Gradient clipping and fused AdamW (the Trainer's, on the CPU too) hold the
    weights, gradients and optimizer state, and nothing more than a few scalars: the
    estimate's "optimizer step" moment, with no workspace."""
    profiler = pytest.importorskip("torch.profiler")
    timeline = pytest.importorskip("torch.profiler._memory_profiler")
    config, batch, seq_len = NARROW, 2, 64
    model, optimizer = _model_and_optimizer(config)
    ids, labels, positions = _batch(config, batch, seq_len)
    _trainer_step(model, optimizer, ids, labels, positions, "fp32", DEFAULT_CHUNK)
    (_loss_sum(model, ids, labels, positions, "fp32", DEFAULT_CHUNK)
     / positions.numel()).backward()
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU], profile_memory=True,
                          record_shapes=True, with_stack=True) as prof:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    peak = _timeline_peak(prof, timeline)
    e = estimate_memory(config, precision="fp32", batch_size=batch, seq_len=seq_len,
                        device_type="cpu", targets=positions.numel())
    assert peak == pytest.approx(e.weights + e.gradients + e.optimizer, rel=0.15)
    # A per-tensor AdamW's temporaries (the embedding's sqrt and quotient, V x d fp32
    # each) would miss.
    per_tensor = e.weights + e.gradients + e.optimizer + 8 * config.vocab_size * config.n_embd
    assert per_tensor > 1.15 * peak


def test_estimated_plain_total_matches_the_profiled_cpu_peak():
    """The plain path (logits held by the loop, cross-entropy over them) peaks at the
    start of its backward pass at about the estimate's total."""
    profiler = pytest.importorskip("torch.profiler")
    timeline = pytest.importorskip("torch.profiler._memory_profiler")
    config = GPTConfig(vocab_size=50257, context_length=128, n_embd=128, n_layer=2, n_head=4)
    model, optimizer = _model_and_optimizer(config)
    ids, labels, _ = _batch(config, 2, 64)

    def step():
        logits = model(ids)
        lm_loss(logits, labels).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return logits

    peak = _profiled_peak(step, profiler, timeline)
    e = estimate_memory(config, precision="fp32", batch_size=2, seq_len=64,
                        device_type="cpu", loss="plain")
    assert e.peak_at == "start of backward"
    assert peak == pytest.approx(e.total, rel=0.15), (peak, e.to_dict())


def test_fsdp_divides_the_model_state_and_adds_the_gathered_units():
    """Per rank under FSDP over N: weights, gradients and AdamW state divided by N,
    plus the units gathered whole (the root and two blocks; the root's and one block's
    gradients before their reduce-scatter). Worked by hand for gpt2-xl over 8 ranks."""
    config = CONFIGS["gpt2-xl"]
    one = estimate_memory(config, precision="bf16", batch_size=1, seq_len=1024)
    eight = estimate_memory(config, precision="bf16", batch_size=1, seq_len=1024, shards=8)
    d, V, L = config.n_embd, config.vocab_size, config.n_layer
    root = V * d + config.context_length * d + 2 * d
    block = (config.n_params() - root) // L
    assert eight.weights == -(-one.weights // 8) + 4 * (root + 2 * block)
    assert eight.gradients == -(-one.gradients // 8) + 4 * (root + block)
    assert eight.optimizer == -(-one.optimizer // 8)
    assert eight.activations == one.activations  # the batch per rank is the same
    assert eight.total < one.total / 2
    with pytest.raises(ValueError, match="shards"):
        estimate_memory(config, precision="bf16", batch_size=1, seq_len=8, shards=0)


def test_lora_counts_the_adapters_alone_as_trained():
    """LoRA (issue 18): gradients and AdamW state for the adapters only, their weights
    on top of the frozen model's; an int8 base keeps one byte per block weight and a
    2-byte scale per output row. Worked by hand for gpt2-medium, r 16 on c_attn."""
    from tui_ft.model.lora import adapter_parameters

    config = CONFIGS["gpt2-medium"]
    d, L = config.n_embd, config.n_layer
    trainable = adapter_parameters(config, 16, ["c_attn"])
    assert trainable == L * 16 * (d + 3 * d)
    full = estimate_memory(config, precision="bf16", batch_size=4, seq_len=512)
    lora = estimate_memory(config, precision="bf16", batch_size=4, seq_len=512,
                           trainable=trainable)
    assert lora.weights == full.weights + 4 * trainable
    assert lora.gradients == 4 * trainable and lora.optimizer == 8 * trainable
    assert lora.activations == full.activations
    int8 = estimate_memory(config, precision="bf16", batch_size=4, seq_len=512,
                           trainable=trainable, int8_base=True)
    linear = L * 12 * d * d
    assert int8.weights == 4 * (config.n_params() - linear) + linear + \
        2 * L * (3 * d + d + 4 * d + d) + 4 * trainable
    assert int8.total < lora.total < full.total
