"""The training-memory estimate for the parameters on screen: weights, gradients,
optimizer state, activations and the peak, for the chosen model, precision, batch
size and sequence length. Worked out in a thread after the typing pauses; the model's
shape comes from model.sources: its preset or a config file beside its weights (never
torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from ...model.shape import GPTConfig
from ...text import visible

DEBOUNCE_S = 0.25


@dataclass(frozen=True)
class EstimateRequest:
    """The parameters the estimate depends on; `invalid` names those with problems."""

    model: str
    precision: str
    batch_size: int
    max_length: int | None
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    dropout: float = 0.0
    device: str = "auto"
    nproc_per_node: int = 1
    distributed: str = "ddp"
    lora_r: int | None = None
    lora_targets: tuple[str, ...] = ()
    load_in_8bit: bool = False
    optim: str = "adamw_torch"
    invalid: tuple[str, ...] = ()

    @classmethod
    def from_values(cls, values: dict, invalid=()) -> "EstimateRequest":
        precision = "bf16" if values["bf16"] else "fp16" if values["fp16"] else "fp32"
        names = ("model", "bf16", "fp16", "per_device_train_batch_size", "max_length",
                 "gradient_accumulation_steps", "gradient_checkpointing", "dropout")
        return cls(model=values["model"], precision=precision,
                   batch_size=values["per_device_train_batch_size"],
                   max_length=values["max_length"],
                   gradient_accumulation_steps=values["gradient_accumulation_steps"],
                   gradient_checkpointing=values["gradient_checkpointing"],
                   dropout=values["dropout"], device=values["device"],
                   nproc_per_node=values.get("nproc_per_node") or 1,
                   distributed=values.get("distributed") or "ddp",
                   lora_r=values.get("lora_r"),
                   lora_targets=tuple(values.get("lora_target_modules") or ()),
                   load_in_8bit=bool(values.get("load_in_8bit")),
                   optim=values.get("optim") or "adamw_torch",
                   invalid=tuple(n for n in names if n in invalid))


@dataclass(frozen=True)
class EstimateResult:
    request: EstimateRequest
    label: str = ""  # the model, as shown
    estimate: object = None  # a MemoryEstimate, or None with `reason`
    reason: str = ""
    is_error: bool = False
    # With several processes, the other strategy's peak per device (ddp or fsdp).
    other: tuple[str, int] | None = None
    # LoRA: the adapters' parameters (what trains).
    trainable: int | None = None


def model_shape(model: str, dropout: float = 0.0) -> tuple[GPTConfig | None, str]:
    """The shape of `model` (a preset, or a folder, file or run with a config beside
    its weights), and how to name it; (None, why) when it cannot be known without
    loading it."""
    from ...errors import TuiFtError
    from ...model.sources import UnknownModelError, resolve_source, source_shape
    from ...runs.run_source import run_checkpoint

    text = model.strip()
    if not text:
        return None, "no model given"
    label = visible(Path(text).expanduser().name or text, keep_newlines=False)
    try:
        source = resolve_source(text, runs=run_checkpoint)
    except UnknownModelError:
        return None, f"'{visible(text, keep_newlines=False)}' is not a preset and not a file"
    except TuiFtError:  # a folder without a model, a run without a checkpoint yet
        source = None
    shape = source_shape(source, dropout) if source is not None else None
    if shape is None:
        return None, f"{label}: unknown until loaded"
    return shape, text if source.preset is not None else label


def compute(request: EstimateRequest) -> EstimateResult:
    """The estimate for `request` (plain arithmetic plus a config file read)."""
    from ...model.memory import estimate_memory

    if request.invalid:
        return EstimateResult(request, reason="waiting for a valid "
                              + ", ".join(request.invalid))
    shape, label = model_shape(request.model, request.dropout)
    if shape is None:
        return EstimateResult(request, reason=label)
    seq_len = request.max_length or shape.context_length
    if seq_len > shape.context_length:
        return EstimateResult(request, label=label, is_error=True,
                              reason=f"max_length {seq_len} exceeds {label}'s context "
                                     f"({shape.context_length}): training would refuse it")
    trainable = None
    if request.lora_r:
        from ...model.lora import LoraError, adapter_tensor_sizes

        try:
            trainable = adapter_tensor_sizes(shape, request.lora_r, request.lora_targets)
        except LoraError:
            trainable = None  # the form says what is wrong with the targets

    def per_device(strategy: str):
        return estimate_memory(
            shape, precision=request.precision, batch_size=request.batch_size,
            seq_len=seq_len, training=True,
            activation_checkpointing=request.gradient_checkpointing,
            gradient_accumulation_steps=request.gradient_accumulation_steps,
            device_type="cpu" if request.device.strip().lower() == "cpu" else "cuda",
            shards=request.nproc_per_node if strategy == "fsdp" else 1,
            trainable=trainable, int8_base=request.load_in_8bit and trainable is not None,
            optimizer="adamw_8bit" if request.optim == "adamw_bnb_8bit" else "adamw")

    try:
        estimate = per_device(request.distributed)
        other = None
        if request.nproc_per_node > 1:
            # Which strategy the model and batch need: the other one's figure beside.
            name = "ddp" if request.distributed == "fsdp" else "fsdp"
            other = (name, per_device(name).total)
    except (ValueError, TypeError) as exc:
        return EstimateResult(request, label=label, is_error=True, reason=str(exc))
    return EstimateResult(request, label=label, estimate=estimate, other=other,
                          trainable=None if trainable is None else sum(trainable))


def _bytes(n: int) -> str:
    """At most 8 characters (12.3 GiB, 852 MiB, 27.7 MiB), so the parts fit 80 columns."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 100 and unit != "GiB" else \
                f"{value:.1f} {unit}"
    return f"{n} B"


# Short names of the moments of a step (MemoryEstimate.peak_at), for an 80-column line.
_MOMENTS = {"loss forward": "loss", "start of backward": "backward",
            "end of backward": "backward", "optimizer step": "step"}


class MemoryEstimatePanel(Static):
    """Two lines: the peak per device, then its parts. `request()` it as often as the
    form changes: it waits for a pause, then works in a thread."""

    COMPONENT_CLASSES = {"memory-estimate--total", "memory-estimate--error",
                         "memory-estimate--muted"}
    DEFAULT_CSS = """
    MemoryEstimatePanel {
        height: auto;
        min-height: 2;
        max-height: 3;
        padding: 0 1;
        background: $boost;
    }
    MemoryEstimatePanel > .memory-estimate--total {
        text-style: bold;
        color: $text-accent;
    }
    MemoryEstimatePanel > .memory-estimate--error {
        color: $text-error;
    }
    MemoryEstimatePanel > .memory-estimate--muted {
        color: $text-muted;
    }
    """

    class Computed(Message):
        def __init__(self, result: EstimateResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self, **kwargs) -> None:
        super().__init__(Text("memory estimate ..."), markup=False, **kwargs)
        self.wanted: EstimateRequest | None = None
        self.result: EstimateResult | None = None
        self._timer = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        # The text carries the colours of the theme it was drawn in.
        def redraw() -> None:
            if self.result is not None:
                self.update(self.render_result(self.result))

        self.call_after_refresh(redraw)

    def request(self, request: EstimateRequest) -> None:
        if request == self.wanted:
            return
        self.wanted = request
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self._start)

    def _start(self) -> None:
        self._timer = None
        if self.wanted is not None:
            self._compute(self.wanted)

    @work(thread=True, exclusive=True, group="memory-estimate", exit_on_error=False)
    def _compute(self, request: EstimateRequest) -> None:
        result = compute(request)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Computed(result))

    def on_memory_estimate_panel_computed(self, message: Computed) -> None:
        message.stop()
        if message.result.request != self.wanted:
            return  # stale: the parameters changed again meanwhile
        self.result = message.result
        text = self.render_result(message.result)
        if text.plain != self.plain() or text.spans != getattr(self.content, "spans", None):
            self.update(text)

    @property
    def ready(self) -> bool:
        """Whether what is shown is for the latest request."""
        return self.result is not None and self.result.request == self.wanted

    def render_result(self, result: EstimateResult) -> Text:
        total = self.get_component_rich_style("memory-estimate--total", partial=True)
        error = self.get_component_rich_style("memory-estimate--error", partial=True)
        muted = self.get_component_rich_style("memory-estimate--muted", partial=True)
        request = result.request
        text = Text()
        text.append("Memory ")
        if result.estimate is None:
            text.append(result.reason, error if result.is_error else muted)
            return text
        e = result.estimate
        label = result.label if len(result.label) <= 24 else "\u2026" + result.label[-23:]
        extras = ""
        if request.gradient_accumulation_steps > 1:
            extras += f" \u00b7 accum {request.gradient_accumulation_steps}"
        if request.gradient_checkpointing:
            extras += " \u00b7 ckpt"
        if request.lora_r:
            extras += f" \u00b7 LoRA r{request.lora_r}" + (" int8" if request.load_in_8bit
                                                            else "")
        if request.optim == "adamw_bnb_8bit":
            extras += " \u00b7 adam8"
        if request.nproc_per_node > 1:
            # Per device: DDP holds a whole model on each, FSDP a share of it.
            extras += f" \u00b7 {request.distributed} \u00d7{request.nproc_per_node}"
        text.append(f"{label} \u00b7 {e.precision} \u00b7 batch {e.batch_size}\u00d7{e.seq_len}"
                    f"{extras}: ")
        text.append(f"total \u2248 {_bytes(e.total)}", total)
        trains = (f", {result.trainable / 1e6:.2f}M trainable"
                  if result.trainable is not None else "")
        text.append(f" ({e.n_params / 1e6:.0f}M params{trains})", muted)
        # The parts, then the transient on top of what is alive at the peak (a chunk of
        # the loss's logits, say), named by the moment it comes at.
        moment = _MOMENTS.get(e.peak_at, e.peak_at)
        peak = f", {moment} +{_bytes(e.workspace)}" if e.workspace else f", peak at {moment}"
        text.append(f"\nweights+Adam {_bytes(e.weights + e.optimizer)}, grads "
                    f"{_bytes(e.gradients)}, activations "
                    f"{_bytes(e.activations + e.weight_copies)}{peak}")
        if result.other is not None:
            text.append(f"; {result.other[0]} \u2248 {_bytes(result.other[1])}", muted)
        return text

    def plain(self) -> str:
        return str(self.content)
