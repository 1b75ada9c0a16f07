"""The chunked output-projection + cross-entropy (tui_ft/model/loss.py) against the
plain path it replaces: F.linear, then F.cross_entropy over the fp32 logits."""

import pytest
import torch
import torch.nn.functional as F

from tui_ft.model.loss import lm_loss_sum

V, D = 1000, 24


def _inputs(n=70, seed=0, ignore_every=3):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, D, generator=g)
    weight = torch.randn(V, D, generator=g) * 0.3
    labels = torch.randint(0, V, (n,), generator=g)
    if ignore_every:
        labels[::ignore_every] = -100
    return hidden, weight, labels


def _reference(hidden, weight, labels, scale, bf16=False):
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = F.linear(h, w)
    loss = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


def _chunked(hidden, weight, labels, scale, chunk, bf16=False):
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = lm_loss_sum(h, w, labels, chunk=chunk)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk", [1, 7, 64, 70, 4096])
def test_loss_and_gradients_equal_the_plain_path_in_fp32(chunk):
    hidden, weight, labels = _inputs()
    ref = _reference(hidden, weight, labels, scale=0.37)
    got = _chunked(hidden, weight, labels, scale=0.37, chunk=chunk)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-7)


def test_bf16_autocast_matches_the_autocast_plain_path():
    hidden, weight, labels = _inputs(n=200)
    ref = _reference(hidden, weight, labels, scale=1 / 130, bf16=True)
    got = _chunked(hidden, weight, labels, scale=1 / 130, chunk=64, bf16=True)
    # Same bf16 logits, fp32 softmax: the loss agrees closely; the weight gradient
    # is summed in fp32 over chunks here (one bf16 matmul in the plain path).
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(got[1], ref[1], rtol=2e-2, atol=1e-5)
    torch.testing.assert_close(got[2], ref[2], rtol=2e-2, atol=1e-4)
    assert got[1].dtype == torch.float32 and got[2].dtype == torch.float32


def test_ignored_positions_count_for_nothing():
    hidden, weight, labels = _inputs(ignore_every=0)
    all_ignored = torch.full_like(labels, -100)
    loss, gh, gw = _chunked(hidden, weight, all_ignored, scale=1.0, chunk=16)
    assert loss.item() == 0.0
    assert gh.abs().max().item() == 0.0 and gw.abs().max().item() == 0.0
    # The same through `positions`, which is then empty.
    h = hidden.clone().requires_grad_()
    none = torch.zeros(0, dtype=torch.long)
    empty = lm_loss_sum(h, weight, all_ignored, positions=none)
    empty.backward()
    assert empty.item() == 0.0 and h.grad.abs().max().item() == 0.0
    # Changing the hidden state at an ignored position changes nothing.
    labels[5] = -100
    moved = hidden.clone()
    moved[5] += 10.0
    a = lm_loss_sum(hidden, weight, labels, chunk=16)
    b = lm_loss_sum(moved, weight, labels, chunk=16)
    assert a.item() == b.item()


def test_batched_shapes_and_no_grad_mode():
    hidden, weight, labels = _inputs(n=60)
    flat = lm_loss_sum(hidden, weight, labels)
    batched = lm_loss_sum(hidden.view(3, 20, D), weight, labels.view(3, 20), chunk=9)
    torch.testing.assert_close(batched, flat, rtol=1e-6, atol=1e-4)
    with torch.no_grad():
        h = hidden.clone().requires_grad_()
        out = lm_loss_sum(h, weight, labels, chunk=9)
    assert not out.requires_grad
    torch.testing.assert_close(out, flat, rtol=1e-6, atol=1e-4)


def test_tied_weight_gets_both_gradients():
    """GPT-2 ties the output projection to the token embedding: the weight's gradient
    is the embedding's plus the projection's, as with the plain path."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(V, D)
    ids = torch.randint(0, V, (2, 9))
    labels = ids.roll(-1, dims=1)
    labels[:, -1] = -100
    grads = []
    for use_chunked in (False, True):
        emb.zero_grad()
        h = torch.tanh(emb(ids))
        if use_chunked:
            loss = lm_loss_sum(h, emb.weight, labels, chunk=5)
        else:
            loss = F.cross_entropy(F.linear(h, emb.weight).view(-1, V), labels.view(-1),
                                   reduction="sum")
        loss.backward()
        grads.append(emb.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=2e-6)


def test_bad_arguments_say_what_is_wrong():
    hidden, weight, labels = _inputs()
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        lm_loss_sum(hidden, weight, labels, chunk=0)
    with pytest.raises(ValueError, match="69 labels for 70 positions"):
        lm_loss_sum(hidden, weight, labels[:-1])


def test_positions_project_only_the_labelled_rows_with_the_same_result():
    """With `positions` (the labelled rows, as collate finds them) the loss and both
    gradients are those of the whole batch; rows without a label get zero gradient."""
    from tui_ft.data.batches import Example, collate

    hidden, weight, labels = _inputs(n=60, ignore_every=0)
    examples = [Example(tuple(range(5, 5 + n)), tuple([-100] * (n // 2) + list(range(n - n // 2))), n)
                for n in (20, 14, 9)]
    batch = collate(examples, pad_id=0)
    y = batch["labels"]
    assert y.shape == (3, 20)
    positions = batch["target_positions"]
    assert positions.tolist() == torch.nonzero(y.view(-1) != -100).squeeze(1).tolist()
    h0 = hidden.view(3, 20, D)
    results = []
    for pos in (None, positions):
        h = h0.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        loss = lm_loss_sum(h, w, y, chunk=7, positions=pos)
        (loss * 0.1).backward()
        results.append((loss.detach(), h.grad, w.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(results[1][2], results[0][2], rtol=1e-5, atol=1e-7)
    unlabelled = (y == -100).unsqueeze(-1).expand_as(results[1][1])
    assert results[1][1][unlabelled].abs().max().item() == 0.0


def test_positions_rounded_up_with_ignored_rows_change_nothing():
    """collate can round the projected rows up to a multiple (few matmul shapes: bf16
    on the CPU) with rows whose label is -100: same loss, same gradients."""
    from tui_ft.data.batches import Example, collate

    hidden, weight, _ = _inputs(n=60, ignore_every=0)
    examples = [Example(tuple(range(5, 5 + n)), tuple([-100] * (n // 2) + list(range(n - n // 2))), n)
                for n in (20, 14, 9)]
    plain = collate(examples, pad_id=0)
    rounded = collate(examples, pad_id=0, targets_multiple=16)
    assert len(plain["target_positions"]) == 22 and len(rounded["target_positions"]) == 32
    y = rounded["labels"]
    results = []
    for pos in (plain["target_positions"], rounded["target_positions"]):
        h = hidden.view(3, 20, D).clone().requires_grad_()
        w = weight.clone().requires_grad_()
        loss = lm_loss_sum(h, w, y, chunk=7, positions=pos)
        (loss * 0.1).backward()
        results.append((loss.detach(), h.grad, w.grad))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
