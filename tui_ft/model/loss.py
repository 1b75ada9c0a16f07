"""The language-model loss without the full logits tensor.

The plain path, `F.cross_entropy(lm_head(h).float(), labels)`, holds B x T x 50257
logits in the compute dtype, their fp32 copy, the fp32 log-softmax the loss saves for
the backward pass, and then two fp32 gradients of that size: about 3.3 GB each at 16k
tokens a step, and several full passes over them in memory-bound kernels.

`lm_loss_sum` computes the output projection and the cross-entropy a chunk of tokens
at a time, and, since the loss is the last operation of the forward pass, works out
the gradients of the hidden states and of the output weight in the same pass (the
gradient of a scalar loss with respect to its inputs is known once the softmax is):
only one chunk of logits ever exists. The backward pass then only scales the two
stored gradients by the incoming gradient (1 / targets, times the loss scale in fp16).

It matches the plain path: the logits are computed in the compute dtype (autocast's,
if autocast is on, as `nn.Linear` would) and the softmax in fp32; the weight's gradient
is accumulated in fp32 over chunks."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
# Tokens per chunk: the transient of a chunk is about 10 bytes a logit in bf16 (the
# logits, their fp32 copy and the fp32 log-probabilities), ~1 GB at 2048 x 50257, and
# 2048 rows keep the matmuls efficient on a GPU.
DEFAULT_CHUNK = 2048


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    device_type = t.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return t.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk, dtype, want_grad):
        n = hidden.size(0)
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = grad_w = None
        if want_grad:
            grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, n, chunk):
            h = hidden[start:start + chunk].to(dtype)
            y = labels[start:start + chunk]
            valid = (y != IGNORE_INDEX).unsqueeze(1)
            target = y.masked_fill(y == IGNORE_INDEX, 0).unsqueeze(1)
            # fp32 log-probabilities of the compute-dtype logits (one kernel for fp16 on
            # CUDA; elsewhere torch casts to fp32 first, which memory.py counts).
            logp = torch.log_softmax(h @ w.t(), dim=-1, dtype=torch.float32)
            total -= (logp.gather(1, target) * valid).sum()
            if want_grad:
                # d(loss)/d(logits) = softmax - one_hot(target) on learned rows, 0 on
                # ignored ones. The ignored rows are zeroed through the small operands
                # (h and the c x d result), not by another pass over c x V.
                probs = logp.exp_()
                probs.scatter_add_(1, target, torch.full(target.shape, -1.0,
                                                         device=probs.device))
                # (In fp16, probabilities under 6e-8 flush to zero here; a fixed scale
                # would overflow g @ w, and the measured effect on the gradients is
                # under 0.1%.)
                g = probs.to(dtype)
                del logp, probs
                grad_h[start:start + chunk] = ((g @ w) * valid).to(hidden.dtype)
                grad_w.add_(g.t() @ (h * valid))
                del g
            else:
                del logp
        if want_grad:
            ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if ctx.needs_input_grad[0] else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None, None


def lm_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                chunk: int = DEFAULT_CHUNK,
                positions: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the cross-entropy of `hidden @ weight.T` against `labels` over the
    positions whose label is not -100 (fp32 scalar). `hidden` is (..., d), `labels`
    the matching (...); `weight` is (vocab, d), the output projection.

    `positions` (optional) are the flat indices of the positions with a label, as
    `target_positions` from `collate` (worked out on the host, so no device sync):
    only those rows are projected onto the vocabulary, so padding and masked prompt
    tokens cost nothing in the largest matmuls of a small model."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    h = hidden.reshape(-1, hidden.size(-1))
    y = labels.reshape(-1)
    if y.numel() != h.size(0):
        raise ValueError(f"{y.numel()} labels for {h.size(0)} positions")
    if positions is not None:
        h = h.index_select(0, positions)
        y = y.index_select(0, positions)
    want_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    dtype = _compute_dtype(hidden)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(h, weight, y, chunk, dtype, want_grad)


@torch.no_grad()
def lm_eval_sums(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                 chunk: int = DEFAULT_CHUNK,
                 positions: torch.Tensor | None = None) -> torch.Tensor:
    """For evaluation, in one pass over the labelled positions a chunk at a time (as
    lm_loss_sum, no gradients): a float64 tensor of [summed cross-entropy, number of
    positions whose most likely token is the label]. The second over the count of
    labelled tokens is next-token accuracy (Hugging Face's eval_accuracy for causal
    language models, computed on the learned tokens only)."""
    h = hidden.reshape(-1, hidden.size(-1))
    y = labels.reshape(-1)
    if positions is not None:
        h = h.index_select(0, positions)
        y = y.index_select(0, positions)
    dtype = _compute_dtype(hidden)
    out = torch.zeros(2, dtype=torch.float64, device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        w = weight.to(dtype)
        for start in range(0, h.size(0), chunk):
            logits = h[start:start + chunk].to(dtype) @ w.t()
            target = y[start:start + chunk]
            valid = target != IGNORE_INDEX
            safe = target.masked_fill(~valid, 0)
            logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
            out[0] -= (logp.gather(1, safe.unsqueeze(1)).squeeze(1) * valid).sum().double()
            out[1] += ((logits.argmax(dim=-1) == target) & valid).sum().double()
    return out
