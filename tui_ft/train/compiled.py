"""torch.compile for training: the mode a run can safely use, the compiled forward
pass (flex attention for packed rows, CUDA graph steps), and the fall back to eager
mode, once and said as an event, when compilation fails."""

from __future__ import annotations

from typing import Callable

import torch

from ..config import TrainConfig
from ..model.gpt import flex_attention_available, flex_document_mask

# torch.compile modes that capture CUDA graphs (on a CUDA device).
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


class HiddenStates:
    """The model's final hidden states of a batch, compiled when the config asks.
    `emit` receives the compile events; `step` says the step they happen at."""

    def __init__(self, model, config: TrainConfig, device: torch.device,
                 emit: Callable[[dict], None], step: Callable[[], int]) -> None:
        c = config
        self.model, self.emit, self.step = model, emit, step
        self.compiled = None
        self.cudagraphs = False
        # Packed rows in compiled code on CUDA: block-sparse flex attention.
        self.flex = (c.packing and c.torch_compile and c.dropout == 0
                     and flex_attention_available(device))
        if not c.torch_compile:
            return
        mode = c.torch_compile_mode
        if mode in CUDAGRAPH_MODES and c.gradient_accumulation_steps > 1:
            # CUDA graph trees hand the first micro-batch's gradients out of their
            # memory pool and overwrite them on the next replay: accumulated
            # gradients come out wrong, silently (pytorch/pytorch#169545 and
            # #96693). The same compilation without CUDA graphs is safe.
            mode = ("max-autotune-no-cudagraphs" if mode == "max-autotune"
                    else "default")
            emit({"step": 0, "epoch": 0.0, "event": "compile_mode_changed",
                  "from": c.torch_compile_mode, "to": mode,
                  "reason": "CUDA graphs corrupt accumulated gradients; "
                            "gradient_accumulation_steps is "
                            f"{c.gradient_accumulation_steps}"})
        try:
            # Batches of examples vary in width (and the last in size): compiled
            # with symbolic shapes from the start, one graph serves them all
            # (automatic dynamic shapes would compile a static graph first, then
            # again: W1 on the CPU compiled 3 graphs instead of 4, 41 s instead of
            # 56 s). Packed rows always have the same width: static is best.
            self.compiled = torch.compile(model.hidden_states,
                                          mode=None if mode == "default" else mode,
                                          dynamic=None if c.packing else True)
            self.cudagraphs = device.type == "cuda" and mode in CUDAGRAPH_MODES
        except Exception as exc:  # an unsupported platform: train eagerly
            self._fell_back(exc)

    def __call__(self, batch: dict) -> torch.Tensor:
        """A compilation that fails (it happens lazily, at the first call) falls back
        to eager mode instead of ending the run."""
        args = (batch["input_ids"], batch.get("position_ids"))
        kwargs = {"document_ids": batch["document_ids"]} if "document_ids" in batch else {}
        if self.compiled is None:
            return self.model.hidden_states(*args, **kwargs)
        compiled_kwargs = kwargs
        if kwargs and self.flex:
            compiled_kwargs = {"attn_mask": flex_document_mask(batch["document_ids"])}
        if self.cudagraphs:
            # The previous step's outputs are dead: CUDA graphs may reuse their memory.
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return self.compiled(*args, **compiled_kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            self._fell_back(exc)
            return self.model.hidden_states(*args, **kwargs)

    def _fell_back(self, exc: Exception) -> None:
        self.compiled = None
        self.cudagraphs = False
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        self.emit({"step": self.step(), "event": "compile_fallback", "reason": reason})
