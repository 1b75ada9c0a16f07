"""Memory a model needs to train or to generate, from its shape alone (weights, gradients,
optimizer state, activations, KV cache); plain arithmetic, no torch, cheap to call."""

from __future__ import annotations

from dataclasses import dataclass

from .precision import PrecisionError, parse_precision

OPTIMIZER_BYTES_PER_PARAM = {"adamw": 8, "adam": 8, "sgd": 4}  # exp_avg + exp_avg_sq; momentum
_FP32 = 4
_INT64 = 8


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, per part, and `total`: the estimated peak of one training step (or of
    generation). The parts do not all live at once (gradients appear as activations
    are freed), so `total` is the largest of the moments a step goes through, named by
    `peak_at`; `workspace` is the transient that comes on top of the parts at that
    moment (gradients of the loss over the vocabulary, the two halves of the tied
    embedding's gradient, or AdamW's temporaries)."""

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


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


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


def estimate_memory(config, *, precision: str, batch_size: int, seq_len: int,
                    training: bool = True, activation_checkpointing: bool = False,
                    optimizer: str = "adamw", gradient_accumulation_steps: int = 1,
                    device_type: str = "cuda") -> MemoryEstimate:
    """Memory of one training step (forward, backward, optimizer step) or of generation,
    for a GPTConfig-like `config` (vocab_size, context_length, n_embd, n_layer, n_head,
    dropout, n_params()).

    Training in bf16/fp16 is autocast with fp32 master weights (Hugging Face's
    `bf16=True`): weights, gradients and AdamW's two moments are fp32 (4 + 4 + 8 B per
    parameter); activations are in the autocast dtype except the fp32 residual stream
    and LayerNorm inputs; autocast's low-precision copy of every matmul weight is kept
    for the backward pass too (`weight_copies`, 2 B per such parameter).
    The logits cost B x T x V in the compute dtype (held by the training loop) plus the
    fp32 log-softmax that the loss saves. With gradient accumulation the gradients of
    earlier micro-batches are alive during the next forward and backward. AdamW's
    temporaries depend on `device_type`: on CUDA torch updates every tensor at once
    (foreach: a temporary of 4 B per parameter), on the CPU one tensor at a time.

    Inference (`training=False`) is generation: the weights in `precision`, the KV cache
    (2 x layers x B x T x d), and the transient of one layer plus the last position's
    logits. int8 (inference only) keeps the blocks' Linear weights in 1 byte with one
    scale per output channel, everything else in bf16 (the GPU case; on the CPU it runs
    in fp32)."""
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
    for label, value in (("batch_size", batch_size), ("seq_len", seq_len),
                         ("gradient_accumulation_steps", gradient_accumulation_steps)):
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
    tokens = B * T

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
    optimizer_bytes = OPTIMIZER_BYTES_PER_PARAM[opt] * n_params
    if opt in ("adam", "adamw"):
        optimizer_bytes += _FP32 * _param_tensors(L)  # the per-tensor `step` counters
    per_layer = _layer_saved_bytes_per_token(d, H, act)
    if activation_checkpointing:
        # Each block keeps only its fp32 input; the backward pass recomputes one block
        # at a time, whose saved tensors then exist once.
        layers = tokens * (L * _FP32 * d + per_layer)
    else:
        layers = tokens * L * per_layer
    logits = act * tokens * V  # held by the training loop until the next step
    head = tokens * (
        _FP32 * d + 2 * _FP32  # ln_f: fp32 input, mean, rstd
        + act * d  # lm_head's input
        + _FP32 * V  # the log-softmax output saved by cross_entropy
        + _INT64 * 2  # token ids (embedding) and targets (loss)
    ) + _INT64 * T + logits  # position ids, shared by the batch
    # Dropout masks (1 B each): after the embeddings, and twice per block.
    dropout = tokens * (1 + 2 * L) * d if getattr(config, "dropout", 0.0) > 0 else 0
    activations = layers + head + dropout
    # The blocks' Linear weights and the (tied) output head, cast by autocast.
    weight_copies = act * (linear + V * d) if act < _FP32 else 0

    # The moments a step goes through, each with what is alive then (weights and the
    # optimizer state always are, from the second step on). Checked against the
    # profiler's memory timeline on the CPU (benchmarks/memory_estimate.py).
    grads_before = gradients if gradient_accumulation_steps > 1 else 0
    if opt not in ("adam", "adamw"):
        adam_temp = 0
    elif device_type == "cpu":
        adam_temp = 2 * _FP32 * max(V, config.context_length) * d
    else:
        adam_temp = _FP32 * n_params
    moments = {
        # The loss's backward: gradients of the log-probabilities and of the logits,
        # both fp32 B x T x V, next to every saved activation.
        "start of backward": (activations + weight_copies + grads_before,
                              2 * _FP32 * tokens * V),
        # The tied embedding: the output head's gradient (kept since the start of the
        # backward pass) and the embedding's are summed into a third tensor.
        "end of backward": (gradients + logits, 2 * _FP32 * V * d),
        # AdamW's denominator sqrt(exp_avg_sq): for every parameter at once (foreach,
        # CUDA's default), or per tensor (the CPU), where the sqrt and its quotient
        # coexist for the largest tensor, the embedding.
        "optimizer step": (gradients + logits, adam_temp),
    }
    peak_at, (alive, workspace) = max(moments.items(), key=lambda kv: sum(kv[1]))
    total = weights + optimizer_bytes + alive + workspace
    return MemoryEstimate(name, B, T, True, n_params, weights, gradients, optimizer_bytes,
                          activations, weight_copies, 0, workspace, total, peak_at)
