"""Memory a model needs to train or to generate, from its shape alone (weights, gradients,
optimizer state, activations, KV cache); plain arithmetic, no torch, cheap to call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..text import format_bytes
from .precision import PrecisionError, parse_precision

# exp_avg + exp_avg_sq; momentum; "adamw_8bit" is bitsandbytes' 8-bit AdamW
# (optim: adamw_bnb_8bit): both moments one byte each, plus an fp32 scale per block of
# ADAMW_8BIT_BLOCK values of each; tensors under ADAMW_8BIT_MIN_SIZE elements keep
# 32-bit moments (its defaults), which LoRA's small adapters often are.
OPTIMIZER_BYTES_PER_PARAM = {"adamw": 8, "adam": 8, "sgd": 4, "adamw_8bit": 2}
ADAMW_8BIT_BLOCK = 2048
ADAMW_8BIT_MIN_SIZE = 4096
# How the training step computes its loss: "chunked" is the Trainer's (hidden states,
# then tui_ft.model.loss.lm_loss_sum over the labelled positions); "plain" is
# logits = model(ids), then F.cross_entropy(logits.float(), ...), with the loop holding
# the logits.
LOSSES = ("chunked", "plain")
# Tokens per chunk of lm_loss_sum: the value of tui_ft.model.loss.DEFAULT_CHUNK, copied
# because this module imports no torch (tests/test_memory.py checks they agree).
LOSS_CHUNK = 2048
_FP32 = 4
_INT64 = 8


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, per part, and `total`: the estimated peak of one training step (or of
    generation). The parts do not all live at once (gradients appear as activations
    are freed), so `total` is the largest of the moments a step goes through, named by
    `peak_at`; `workspace` is the transient that comes on top of the parts at that
    moment (the final hidden states, the labelled rows' copy and one chunk of the
    loss's logits and log-probabilities; the loss's gradients as its backward pass
    makes them; or the embedding's half of the tied weight's gradient at the end of
    the backward pass; fused AdamW's step makes none)."""

    precision: str
    batch_size: int
    seq_len: int
    training: bool
    n_params: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    # Autocast's low-precision copies of the matmul weights, made in the forward pass
    # and kept for the backward pass (0 in fp32 and for inference).
    weight_copies: int
    kv_cache: int
    workspace: int
    total: int
    peak_at: str

    def to_dict(self) -> dict:
        return {"precision": self.precision, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "training": self.training,
                "n_params": self.n_params, "weights": self.weights,
                "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "weight_copies": self.weight_copies,
                "kv_cache": self.kv_cache,
                "workspace": self.workspace, "total": self.total, "peak_at": self.peak_at}

    def pretty(self) -> str:
        parts = [("weights", self.weights)]
        if self.training:
            parts += [("gradients", self.gradients), ("optimizer", self.optimizer)]
        parts.append(("activations", self.activations))
        if self.weight_copies:
            parts.append(("autocast weight copies", self.weight_copies))
        if self.kv_cache:
            parts.append(("KV cache", self.kv_cache))
        body = ", ".join(f"{name} {format_bytes(n)}" for name, n in parts)
        return f"peak ~{format_bytes(self.total)} ({self.peak_at}); {body}"


def _block_linear_params(d: int) -> int:
    return 12 * d * d  # c_attn 3d^2, attn c_proj d^2, c_fc 4d^2, mlp c_proj 4d^2


def _param_tensors(n_layer: int) -> int:
    # wte, wpe, ln_f (2); per block: two LayerNorms and four Linears, weight and bias each.
    return 4 + 12 * n_layer


def _layer_saved_bytes_per_token(d: int, n_head: int, act: int) -> int:
    """What one block of gpt.py keeps for the backward pass, per token. Counted from the
    tensors autograd saves (tests/test_memory.py checks this by hooking
    saved_tensors_hooks):
      ln_1: its input, the fp32 residual stream (d x 4 B), plus mean and rstd (2 x 4 B)
      c_attn: its input, ln_1's output cast to the compute dtype (d)
      SDPA (flash / memory-efficient kernel, no T x T matrix): q, k, v, which are views
        of c_attn's output (3d), its output (d) and the fp32 logsumexp (n_head x 4 B);
        the output comes laid out as (B, T, H, hd), so the .contiguous() feeding c_proj
        is a no-op and c_proj saves that same tensor
      ln_2: the fp32 residual (d x 4 B) plus its statistics (2 x 4 B)
      c_fc: ln_2's output (d); GELU: its input (4d); mlp c_proj: GELU's output (4d)
    Dropout at p = 0 saves nothing; the residual additions save nothing."""
    return 2 * _FP32 * d + 2 * 2 * _FP32 + act * (1 + 3 + 1 + 1 + 4 + 4) * d + _FP32 * n_head


def _loss_chunk_workspace(c: int, V: int, d: int, act: int, *, softmax_copy: bool,
                          add_copy: bool) -> int:
    """The largest transient of one chunk of lm_loss_sum's forward pass (c tokens; `act`:
    bytes of the compute dtype), on top of what that whole pass holds. In the order
    loss.py runs:
      the logits, h @ w.T: c x V in the compute dtype; log_softmax(..., dtype=float32)
        writes the fp32 log-probabilities (c x V) next to them, and in bf16/fp16 first
        copies the logits to fp32 (`softmax_copy`: ATen's fused half-to-float kernel is
        for fp16 on CUDA only), so 8 B per logit in fp32, 10 in bf16 (6 in fp16 on
        CUDA) at that moment, the matmul's output then freed;
      the softmax, exp_ in place in the log-probabilities, and its cast to the compute
        dtype, `g`, the gradient of the logits (the same tensor in fp32), made next to
        the fp32 one, which is then deleted: 4 + act B per logit, never above the
        log_softmax moment, so not listed;
      the weight's part, g.T @ (h * valid): V x d in the compute dtype next to g and
        the masked chunk (c x d), plus, when it is lower, the fp32 copy that
        grad_w.add_ makes of it on the CPU (`add_copy`; TensorIterator casts inside
        the kernel on CUDA); the hidden states' part, g @ w, is c x d, smaller.
    Every chunk tensor is deleted before the next chunk starts, so chunks never overlap
    and the first (largest) chunk is the one that counts. Tensors of c elements (the
    chunk's labels, targets and mask) are not counted."""
    if c == 0:  # no labelled token: the loop never runs
        return 0
    low = act < _FP32
    logits = act * c * V
    logp = _FP32 * c * V
    moments = [
        logits + (logp if softmax_copy else 0) + logp,  # log_softmax
        (logits if low else logp) + act * c * d + act * V * d  # g.T @ (h * valid)
        + (_FP32 * V * d if add_copy else 0),
    ]
    return max(moments)


def _model_tensor_sizes(config) -> list[int]:
    """The element count of each of the model's parameter tensors (the output layer is
    the token embedding's)."""
    d, V, C = config.n_embd, config.vocab_size, config.context_length
    block = [d, d, 3 * d * d, 3 * d, d * d, d, d, d, 4 * d * d, 4 * d, 4 * d * d, d]
    return [V * d, C * d, d, d] + config.n_layer * block


def _optimizer_bytes(optimizer: str, sizes: list[int]) -> int:
    """The optimizer's state for parameter tensors of `sizes` elements."""
    if optimizer != "adamw_8bit":
        return OPTIMIZER_BYTES_PER_PARAM[optimizer] * sum(sizes)
    total = 0
    for n in sizes:
        if n < ADAMW_8BIT_MIN_SIZE:
            total += 8 * n
        else:
            total += 2 * n + 2 * _FP32 * -(-n // ADAMW_8BIT_BLOCK)
    return total


def estimate_memory(config, *, precision: str, batch_size: int, seq_len: int,
                    training: bool = True, activation_checkpointing: bool = False,
                    optimizer: str = "adamw", gradient_accumulation_steps: int = 1,
                    device_type: str = "cuda", loss: str = "chunked",
                    chunk: int = LOSS_CHUNK, targets: int | None = None,
                    shards: int = 1, trainable: int | Sequence[int] | None = None,
                    int8_base: bool = False) -> MemoryEstimate:
    """Memory of one training step (forward, backward, gradient clipping, optimizer
    step) or of generation, for a GPTConfig-like `config` (vocab_size, context_length,
    n_embd, n_layer, n_head, dropout, n_params()).

    Training in bf16/fp16 is autocast with fp32 master weights (Hugging Face's
    `bf16=True`): weights, gradients and AdamW's two moments are fp32 (4 + 4 + 8 B per
    parameter); activations are in the autocast dtype except the fp32 residual stream
    and LayerNorm inputs; autocast's low-precision copy of every block's matmul weight
    is kept for the backward pass too (`weight_copies`, 2 B per such parameter).

    `loss` is how the step gets its loss. "chunked" (the default) is the Trainer's
    (Trainer._loss_sum): `hidden = model.hidden_states(ids)` (fp32, ln_f's output),
    then `lm_loss_sum(hidden, lm_head.weight, labels, chunk=chunk,
    positions=target_positions)` (tui_ft/model/loss.py). Only the `targets` positions
    that have a label are projected: `index_select` copies their hidden states (fp32,
    targets x d) and saves the positions (int64) for its backward pass. The loss makes
    the logits `chunk` of those rows at a time and works out the gradients of the
    selected hidden states (targets x d, fp32) and of the output weight (V x d, fp32)
    during the forward pass; it saves those two for the backward pass (counted in
    `activations`) and nothing else, so no B x T x V tensor exists and the loop holds
    no logits. `targets` defaults to every token (batch_size x seq_len), an upper
    bound: padding and masked prompt tokens have no label, and the loss's part of the
    estimate shrinks with them. Its forward pass is a moment of its own: the final
    hidden states, their selected copy, the weight cast to the compute dtype (outside
    autocast, so not kept) and one chunk's logits and softmax (see
    _loss_chunk_workspace) on top of every saved activation.
    "plain" is `logits = model(ids)` then `F.cross_entropy(logits.float(), labels)`:
    the logits cost B x T x V in the compute dtype (held by the training loop until the
    next step) plus the fp32 log-softmax that the loss saves, and the loss's backward
    pass makes two fp32 B x T x V gradients; autocast's copy of the output head is
    kept; `targets` does not change it (every position is projected).

    The optimizer is the Trainer's fused AdamW (tui_ft/train/optim.py `adamw`, on CUDA
    and on the CPU): it updates each parameter in one pass and makes no temporary, and
    clip_grad_norm_ only a few scalars, so the optimizer step holds the weights,
    gradients and state and nothing more. (The per-tensor AdamW that older torch falls
    back to on the CPU would add about two of the largest tensor, V x d fp32 each;
    not counted.) With gradient accumulation the gradients of earlier micro-batches
    are alive during the next forward and backward. `device_type` matters for two
    transients of the chunked loss in bf16/fp16 (see _loss_chunk_workspace). Packed
    rows (document masks) are not counted: the estimate is of causal attention over
    plain rows.

    Inference (`training=False`) is generation: the weights in `precision`, the KV cache
    (2 x layers x B x T x d), and the transient of one layer plus the last position's
    logits. int8 (inference only) keeps the blocks' Linear weights in 1 byte with one
    scale per output channel, everything else in bf16 (the GPU case; on the CPU it runs
    in fp32).

    `shards` above 1 is FSDP2 over that many ranks (train/distributed.py), per rank:
    weights, gradients and optimizer state are divided among the ranks; on top, the
    units gathered whole while they compute: the root (embeddings, final norm) for
    the whole step and two blocks (the one computing and the one prefetched), with the
    unsharded gradients of the root and of one block before they are reduce-scattered
    (fp32, no mixed-precision policy). Arithmetic from FSDP2's design, not yet
    checked against a GPU's memory timeline. DDP (shards 1) holds what one process
    holds (its gradient buckets are views of the gradients).

    `trainable` is LoRA's, the adapters' tensor sizes (lora.adapter_tensor_sizes; their
    sum, lora.adapter_parameters, will do but for 8-bit AdamW): their weights on top of
    the frozen model's, and gradients and AdamW state for them alone; `int8_base`
    holds the blocks' Linear weights in int8 (bitsandbytes, one byte each and a scale
    per row). The activations stay: the backward pass still goes through every layer
    to reach the first adapters."""
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be an integer >= 1, got {shards!r}")
    name = parse_precision(precision)
    if name == "auto":
        raise PrecisionError("precision 'auto' depends on the device: resolve it "
                             "(tui_ft.model.precision.resolve_precision) before estimating")
    if name == "int8" and training:
        raise PrecisionError("int8 is for generation only: train in fp32, bf16 or fp16")
    opt = optimizer.lower()
    if training and opt not in OPTIMIZER_BYTES_PER_PARAM:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of "
                         f"{', '.join(OPTIMIZER_BYTES_PER_PARAM)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")
    for label, value in (("batch_size", batch_size), ("seq_len", seq_len),
                         ("gradient_accumulation_steps", gradient_accumulation_steps),
                         ("chunk", chunk)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
    if seq_len > config.context_length:
        raise ValueError(f"seq_len {seq_len} exceeds the model's context "
                         f"({config.context_length})")

    d, L, H, V = config.n_embd, config.n_layer, config.n_head, config.vocab_size
    B, T = batch_size, seq_len
    n_params = config.n_params()
    linear = L * _block_linear_params(d)
    act = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 2}[name]
    low = act < _FP32
    tokens = B * T
    if targets is None:
        targets = tokens
    elif (not isinstance(targets, int) or isinstance(targets, bool)
          or not 0 <= targets <= tokens):
        raise ValueError(f"targets must be an integer from 0 to batch_size x seq_len "
                         f"({tokens}), got {targets!r}")

    if not training:
        if name == "int8":
            n_out = L * (3 * d + d + 4 * d + d)  # output channels of the block Linears
            weights = linear + act * n_out + act * (n_params - linear)
        else:
            weights = act * n_params
        kv_cache = 2 * L * B * T * d * act
        # Inside one block with no gradients: the residual, ln_2's output, the MLP's 4d
        # hidden state before and after GELU; and the last position's fp32 logits.
        activations = tokens * 10 * d * act + B * V * _FP32
        return MemoryEstimate(name, B, T, False, n_params, weights, 0, 0, activations, 0,
                              kv_cache, 0, weights + kv_cache + activations, "generation")

    weights = _FP32 * n_params
    gradients = _FP32 * n_params
    optimizer_bytes = _optimizer_bytes(opt, _model_tensor_sizes(config)) \
        if opt == "adamw_8bit" else _optimizer_bytes(opt, [n_params])
    if opt in ("adam", "adamw"):
        optimizer_bytes += _FP32 * _param_tensors(L)  # the per-tensor `step` counters
    if trainable is not None:
        sizes = [trainable] if isinstance(trainable, int) else list(trainable)
        trainable = sum(sizes)
        if int8_base:
            rows = L * (3 * d + d + 4 * d + d)  # output channels of the block Linears
            weights = _FP32 * (n_params - linear) + linear + 2 * rows
        weights += _FP32 * trainable
        gradients = _FP32 * trainable
        optimizer_bytes = _optimizer_bytes(opt, sizes)
    if shards > 1:
        root = V * d + config.context_length * d + 2 * d
        block = (n_params - root) // max(1, L)
        weights = -(-weights // shards) + _FP32 * (root + 2 * block)
        gradients = -(-gradients // shards) + _FP32 * (root + block)
        optimizer_bytes = -(-optimizer_bytes // shards)
    per_layer = _layer_saved_bytes_per_token(d, H, act)
    if activation_checkpointing:
        # Each block keeps only its fp32 input; the backward pass recomputes one block
        # at a time, whose saved tensors then exist once.
        layers = tokens * (L * _FP32 * d + per_layer)
    else:
        layers = tokens * L * per_layer
    # ln_f: its fp32 input, mean, rstd; the token ids (embedding); the position ids,
    # shared by the batch.
    head = tokens * (_FP32 * d + 2 * _FP32 + _INT64) + _INT64 * T
    if loss == "plain":
        logits = act * tokens * V  # held by the training loop until the next step
        head += tokens * (
            act * d  # lm_head's input
            + _FP32 * V  # the log-softmax output saved by cross_entropy
            + _INT64  # the targets (loss)
        ) + logits
    else:
        logits = 0
        # lm_loss_sum's saved gradients, of the selected hidden states (fp32 like them)
        # and of the output weight (fp32); index_select's saved positions (int64).
        head += _FP32 * targets * d + _FP32 * V * d + _INT64 * targets
    # Dropout masks (1 B each): after the embeddings, and twice per block.
    dropout = tokens * (1 + 2 * L) * d if getattr(config, "dropout", 0.0) > 0 else 0
    activations = layers + head + dropout
    # The blocks' Linear weights, cast by autocast; and the (tied) output head's in the
    # plain path (lm_loss_sum casts it outside autocast and keeps nothing of it).
    weight_copies = act * (linear + (V * d if loss == "plain" else 0)) if low else 0

    # The moments a step goes through, each with what is alive then (weights and the
    # optimizer state always are, from the second step on). Checked against the
    # profiler's memory timeline on the CPU (tests/test_memory.py,
    # benchmarks/memory_estimate.py).
    grads_before = gradients if gradient_accumulation_steps > 1 else 0
    forward_alive = activations + weight_copies + grads_before
    moments = {}
    if loss == "plain":
        # The loss's backward: gradients of the log-probabilities and of the logits,
        # both fp32 B x T x V, next to every saved activation.
        moments["start of backward"] = (forward_alive, 2 * _FP32 * tokens * V)
    else:
        # lm_loss_sum's forward pass, every activation (its own saved gradients too)
        # alive: the final hidden states (fp32, held by the Trainer's _loss_sum), the
        # selected rows' copy (fp32) and their labels (int64), the output weight cast
        # to the compute dtype and a chunk of rows cast likewise (fp32: the weight
        # itself and a view, no copy), and the largest moment of one chunk.
        c = min(targets, chunk)
        moments["loss forward"] = (
            forward_alive,
            _FP32 * tokens * d + (_FP32 * d + _INT64) * targets
            + (act * V * d + act * c * d if low else 0)
            + _loss_chunk_workspace(
                c, V, d, act,
                softmax_copy=low and not (device_type == "cuda" and name == "fp16"),
                add_copy=low and device_type == "cpu"))
        # Its backward pass scales the two saved gradients into new tensors (the
        # weight's then waits, as the tied embedding's gradient, for the rest), then
        # frees them; index_select's backward scatters the rows' gradient into zeros of
        # tokens x d, by then under the loss forward's hidden states. Never above the
        # moment before (given a labelled token), listed for completeness.
        moments["start of backward"] = (forward_alive, _FP32 * targets * d + _FP32 * V * d)
    # The tied embedding: its gradient (V x d fp32), made at the end of the backward
    # pass, is added in place into the output head's, which has waited since the start
    # of the backward pass and becomes the parameter's gradient (part of `gradients`);
    # with accumulation, into the parameter's existing gradient, next to both.
    moments["end of backward"] = (gradients + logits,
                                  _FP32 * V * d * (2 if grads_before else 1))
    # Fused AdamW and clip_grad_norm_ make no tensor worth counting (see above); never
    # above the moment before, listed for completeness.
    moments["optimizer step"] = (gradients + logits, 0)
    peak_at, (alive, workspace) = max(moments.items(), key=lambda kv: sum(kv[1]))
    total = weights + optimizer_bytes + alive + workspace
    return MemoryEstimate(name, B, T, True, n_params, weights, gradients, optimizer_bytes,
                          activations, weight_copies, 0, workspace, total, peak_at)
