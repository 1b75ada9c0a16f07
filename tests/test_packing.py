"""Packing: several examples laid end to end in one row, each attending only to
itself with positions restarting. A packed row must compute exactly what its
examples compute alone (hidden states, loss, gradients), every example must be
packed exactly once, and a run with packing must train, log and resume like any
other. Also: padding to a multiple of N changes shapes, never losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tui_ft.runs.progress import describe_event
from tui_ft.config import TrainConfig
from tui_ft.data.batches import (Example, Pack, collate, collate_packed, encode_records,
                                 pack_examples, padded_width)
from tui_ft.data.dataset import load_records
from tui_ft.data.styles import load_styles
from tui_ft.model.gpt import GPT, GPTConfig, document_mask
from tui_ft.model.loss import lm_loss_sum
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import code_word_records, one_token_words, word_task_config, write_jsonl


def ex(n: int, start: int = 0, masked: int = 0) -> Example:
    """An example of n tokens (ids start, start+1, ...), its first `masked` targets -100."""
    ids = tuple(range(start, start + n))
    labels = tuple([-100] * masked + list(ids[masked + 1:]) + [-100])[:n]
    return Example(ids, labels, n)


# -- pack_examples ---------------------------------------------------------------------------


def test_every_example_is_packed_once_and_rows_respect_the_capacity():
    lengths = [1, 3, 7, 16, 2, 9, 9, 4, 16, 5, 12, 1, 6, 8, 3, 10]
    examples = [ex(n, start=100 * i) for i, n in enumerate(lengths)]
    packs = pack_examples(examples, 16, seed=3)
    seen = [e for p in packs for e in p.examples]
    assert sorted(seen, key=lambda e: e.input_ids) == sorted(examples, key=lambda e: e.input_ids)
    assert all(p.length <= 16 for p in packs)
    # Best-fit decreasing on these 112 tokens needs the minimum number of rows, 7.
    assert len(packs) == math.ceil(sum(lengths) / 16) == 7
    assert sum(p.n_targets for p in packs) == sum(e.n_targets for e in examples)


def test_packing_is_fixed_by_the_seed():
    examples = [ex(n, start=100 * i) for i, n in enumerate([5, 5, 5, 5, 3, 3, 3, 8, 8, 2])]

    def layout(seed):
        return [[e.input_ids[0] for e in p.examples] for p in pack_examples(examples, 16,
                                                                            seed=seed)]

    assert layout(1) == layout(1)
    assert any(layout(s) != layout(1) for s in range(2, 6))


def test_an_example_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match="longer than the row capacity 8"):
        pack_examples([ex(4), ex(9)], 8, seed=0)


def test_real_instruction_data_packs_densely(shared_instructions):
    records = load_records(shared_instructions).records
    examples = encode_records(records, load_styles().get("alpaca"), max_length=1024)
    packs = pack_examples(examples, 1024, seed=123)
    tokens = sum(len(e.input_ids) for e in examples)
    fill = tokens / (len(packs) * 1024)
    # Short examples (57 tokens on average): rows of 1024 fill almost completely,
    # within one row of the least possible.
    assert len(packs) <= math.ceil(tokens / 1024) + 1 and fill > 0.97, (len(packs), fill)
    # Padded batches of 8 (no length grouping) pay about a fifth in padding.
    padded = sum(8 * max(len(e.input_ids) for e in examples[i:i + 8])
                 for i in range(0, len(examples), 8))
    assert tokens / padded < 0.85


# -- collate_packed ----------------------------------------------------------------------------


def test_collate_packed_restarts_positions_and_marks_documents():
    a, b, c = ex(3, start=10), ex(2, start=20, masked=1), ex(4, start=30)
    batch = collate_packed([Pack((a, b)), Pack((c,))], width=6)
    assert batch["input_ids"].tolist() == [[10, 11, 12, 20, 21, 50256],
                                           [30, 31, 32, 33, 50256, 50256]]
    assert batch["labels"].tolist() == [[11, 12, -100, -100, -100, -100],
                                        [31, 32, 33, -100, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]
    assert batch["document_ids"].tolist() == [[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, -1, -1]]
    assert batch["lengths"].tolist() == [5, 4]
    with pytest.raises(ValueError, match="does not fit width 4"):
        collate_packed([Pack((a, b))], width=4)


def test_document_mask_is_causal_within_each_document():
    mask = document_mask(torch.tensor([[0, 0, 1, 1, 1, -1]]))[0, 0].int().tolist()
    assert mask == [[1, 0, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0, 0],
                    [0, 0, 1, 0, 0, 0],
                    [0, 0, 1, 1, 0, 0],
                    [0, 0, 1, 1, 1, 0],
                    [0, 0, 0, 0, 0, 1]]


# -- a packed row computes what its examples compute alone -------------------------------------


@pytest.fixture(scope="module")
def small_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, context_length=64, n_embd=32, n_layer=2, n_head=4))


def _random_examples(seed: int, lengths) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(0, 300, (n,), generator=g).tolist()
        labels = ids[1:] + [-100]
        labels[: n // 3] = [-100] * (n // 3)  # a masked prompt
        out.append(Example(tuple(ids), tuple(labels), n))
    return out


def test_packed_hidden_states_equal_each_example_alone(small_gpt):
    examples = _random_examples(1, [7, 12, 5, 20])
    packs = [Pack(tuple(examples[:3])), Pack((examples[3],))]
    batch = collate_packed(packs, width=30, pad_id=0)
    with torch.no_grad():
        packed = small_gpt.hidden_states(batch["input_ids"], batch["position_ids"],
                                         document_ids=batch["document_ids"])
        offset = 0
        for e in packs[0].examples:
            alone = small_gpt.hidden_states(torch.tensor([e.input_ids]))
            n = len(e.input_ids)
            torch.testing.assert_close(packed[0, offset:offset + n], alone[0],
                                       rtol=1e-5, atol=1e-5)
            offset += n
        alone = small_gpt.hidden_states(torch.tensor([examples[3].input_ids]))
        torch.testing.assert_close(packed[1, :20], alone[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pass neither attn_mask"):
        small_gpt.hidden_states(batch["input_ids"], document_ids=batch["document_ids"],
                                attn_mask=torch.ones(1, dtype=torch.bool))


def test_packed_loss_and_gradients_equal_the_padded_batch(small_gpt):
    """The same examples, packed into 2 rows or padded into one batch of 4: the same
    summed loss and the same gradient of the token-weighted mean."""
    examples = _random_examples(2, [9, 14, 6, 21])
    targets = sum(e.n_targets for e in examples)

    def grads(batch, packed):
        small_gpt.zero_grad()
        kwargs = ({"document_ids": batch["document_ids"]} if packed else {})
        hidden = small_gpt.hidden_states(batch["input_ids"], batch.get("position_ids"),
                                         **kwargs)
        loss = lm_loss_sum(hidden, small_gpt.lm_head.weight, batch["labels"], chunk=16)
        (loss / targets).backward()
        return loss.detach(), {n: p.grad.clone() for n, p in small_gpt.named_parameters()}

    padded_loss, padded_grads = grads(collate(examples, pad_id=0), packed=False)
    packs = pack_examples(examples, 32, seed=0)
    assert len(packs) == 2
    packed_loss, packed_grads = grads(collate_packed(packs, width=32, pad_id=0), packed=True)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-4)
    for name, g in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], g, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")


# -- padding to a multiple --------------------------------------------------------------------


def test_padded_width_rounds_up_but_not_past_the_limit():
    assert padded_width(37, None) == 37
    assert padded_width(37, 1) == 37
    assert padded_width(37, 64) == 64
    assert padded_width(64, 64) == 64
    assert padded_width(1000, 64, limit=1024) == 1024
    assert padded_width(1000, 64, limit=1010) == 1010
    assert padded_width(1000, 64, limit=900) == 1000  # never shorter than the longest


def test_padding_to_a_multiple_changes_the_shape_not_the_loss(small_gpt):
    examples = _random_examples(3, [9, 14, 6])
    plain, wide = collate(examples, pad_id=0), collate(examples, pad_id=0, pad_to_multiple_of=16)
    assert plain["input_ids"].shape == (3, 14) and wide["input_ids"].shape == (3, 16)
    assert (wide["labels"][:, 14:] == -100).all()
    with torch.no_grad():
        losses = [lm_loss_sum(small_gpt.hidden_states(b["input_ids"]),
                              small_gpt.lm_head.weight, b["labels"]) for b in (plain, wide)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-5)
    reference = F.cross_entropy(small_gpt(plain["input_ids"]).view(-1, 300),
                                plain["labels"].view(-1), reduction="sum")
    torch.testing.assert_close(losses[0], reference.detach(), rtol=1e-5, atol=1e-4)


# -- runs with packing -------------------------------------------------------------------------


def _config(tmp_path, name, **overrides) -> TrainConfig:
    # Epochs, not steps: max_steps back to its default (-1).
    packed = {"max_length": 64, "per_device_train_batch_size": 2, "learning_rate": 3e-3,
              "max_steps": -1, "num_train_epochs": 4, "eval_strategy": "epoch",
              "packing": True}
    return TrainConfig.from_dict(word_task_config(tmp_path, name, n_train=12,
                                                  **{**packed, **overrides}))


def test_a_packed_run_trains_and_says_how_full_its_rows_are(tmp_path):
    run, _ = prepare_run(_config(tmp_path, "packed"))
    assert run_in_process(run) == "finished"
    metrics = run.read_metrics()
    packing = next(m for m in metrics if m.get("event") == "packing")
    # 12 examples of 19 tokens, rows of 64: 3 a row, 4 rows, 57/64 full.
    assert packing["rows"] == 4 and packing["examples"] == 12
    assert packing["fill"] == pytest.approx(57 / 64, abs=1e-4)
    assert describe_event(packing) == "packing: 12 records in 4 rows of 64 tokens, 89.1% full"
    start = next(m for m in metrics if m.get("event") == "start")
    assert start["steps_per_epoch"] == 2 and start["total_steps"] == 8
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert len(vals) == 4 and vals[-1] < vals[0] - 0.5
    trains = [m for m in metrics if "train_loss" in m and "event" not in m]
    assert all(math.isfinite(m["train_loss"]) for m in trains)


def test_packing_and_padding_give_the_same_validation_loss_before_training(tmp_path):
    """Evaluation is exact either way: at step 0 both runs hold the same weights."""
    losses = []
    for name, extra in (("packed", {"packing": True}),
                        ("padded", {"packing": False, "pad_to_multiple_of": 64})):
        run, _ = prepare_run(_config(tmp_path, name, eval_strategy="steps", eval_steps=1,
                                     max_steps=1, learning_rate=1e-9, **extra))
        assert run_in_process(run) == "finished"
        losses.append(next(m["val_loss"] for m in run.read_metrics() if "val_loss" in m))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.slow
def test_a_compiled_packed_run_gives_the_eager_losses(tmp_path):
    """torch.compile for real (inductor on the CPU; ~20 s) over packed rows, with the
    document mask and restarting positions inside the compiled graph: no fallback,
    and the losses of the eager run."""
    losses = []
    for name, extra in (("eager", {}), ("compiled", {"torch_compile": True})):
        run, _ = prepare_run(_config(tmp_path, name, num_train_epochs=2, **extra))
        assert run_in_process(run) == "finished"
        metrics = run.read_metrics()
        assert not [m for m in metrics if m.get("event") == "compile_fallback"]
        losses.append([m.get("train_loss", m.get("val_loss")) for m in metrics
                       if ("train_loss" in m or "val_loss" in m) and "event" not in m])
    assert len(losses[0]) == len(losses[1]) == 6
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_flex_attention_block_mask_equals_the_dense_document_mask(small_gpt):
    """The block-sparse mask packed rows use in compiled code on CUDA: the same hidden
    states as the dense causal-within-document mask (flex attention, compiled for
    the CPU here)."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    assert flex is not None
    from tui_ft.model.gpt import flex_attention_available, flex_document_mask

    assert not flex_attention_available("cpu")  # the trainer uses it on CUDA only
    examples = _random_examples(5, [10, 20, 15, 25, 12, 18, 8, 30])
    packs = pack_examples(examples, 64, seed=1)
    assert len(packs) == 3
    batch = collate_packed(packs, width=64, pad_id=0)
    with torch.no_grad():
        dense = small_gpt.hidden_states(batch["input_ids"], batch["position_ids"],
                                        document_ids=batch["document_ids"])
        compiled = torch.compile(small_gpt.hidden_states)
        sparse = compiled(batch["input_ids"], batch["position_ids"],
                          attn_mask=flex_document_mask(batch["document_ids"]))
    real = batch["document_ids"] >= 0
    torch.testing.assert_close(sparse[real], dense[real], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_compiled_run_over_varied_widths_gives_the_eager_losses(tmp_path):
    """torch.compile for real with symbolic shapes (unpacked batches of several widths
    and a short last batch): one compiled graph for training, no fallback, and the
    losses of the eager run."""
    words = one_token_words()
    records = [dict(r, output=" ".join([r["output"]] * (1 + 8 * (i % 4))))
               for i, r in enumerate(code_word_records(words[:12], 1, "t"))]
    losses = []
    for name, extra in (("eager", {}), ("compiled", {"torch_compile": True})):
        run, _ = prepare_run(_config(
            tmp_path, name, packing=False, pad_to_multiple_of=16, num_train_epochs=2,
            per_device_train_batch_size=5,
            dataset=write_jsonl(tmp_path / f"{name}-varied.jsonl", records), **extra))
        assert run_in_process(run) == "finished"
        metrics = run.read_metrics()
        assert not [m for m in metrics if m.get("event") == "compile_fallback"]
        losses.append([m.get("train_loss", m.get("val_loss")) for m in metrics
                       if ("train_loss" in m or "val_loss" in m) and "event" not in m])
    assert len(losses[0]) == len(losses[1]) == 8  # 3 steps an epoch, 2 evaluations
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)

