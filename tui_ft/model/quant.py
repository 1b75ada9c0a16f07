"""Weight-only int8 for generation: the blocks' Linear weights become int8 with a float
scale per output channel; embeddings, the tied output head and LayerNorms stay float."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Int8Linear(nn.Module):
    """y = x @ (q * scale)^T + bias, with q int8 in [-127, 127] per output row.
    Symmetric (no zero point): GPT-2's weights are centred on zero, and -128 is left
    out so that q and -q are both representable."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, scale_dtype=torch.float32) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features,
                                                   dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.ones(out_features, dtype=scale_dtype,
                                                 device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=scale_dtype,
                                                     device=device))
        else:
            self.bias = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        w = linear.weight.detach().float()
        absmax = w.abs().amax(dim=1)
        # An all-zero row would divide by zero; any scale represents it exactly.
        scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
        q = torch.round(w / scale.unsqueeze(1)).clamp_(-127, 127).to(torch.int8)
        dtype = linear.weight.dtype
        module = cls(linear.in_features, linear.out_features, linear.bias is not None,
                     device=w.device, scale_dtype=dtype)
        module.weight.copy_(q)
        # Scales are stored in the layer's float dtype and follow model.to(dtype).
        module.scale.copy_(scale.to(dtype))
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach())
        return module

    def dequantized(self, dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.scale.to(dtype).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Dequantize before the matmul rather than scaling its output: in fp16,
        # x @ q^T with |q| up to 127 can overflow before the scale brings it back.
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, int8")


@dataclass(frozen=True)
class QuantReport:
    layers: int
    bytes_before: int  # the replaced Linear weights (and biases), in their float dtype
    bytes_after: int  # int8 weights, scales and biases

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict:
        return {"layers": self.layers, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "bytes_saved": self.bytes_saved}

    def pretty(self) -> str:
        mib = 1024 * 1024
        return (f"int8: {self.layers} Linear layers, {self.bytes_before / mib:.1f} MiB -> "
                f"{self.bytes_after / mib:.1f} MiB ({self.bytes_saved / mib:.1f} MiB saved)")


def _nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear inside the transformer blocks (`model.h`) with an
    Int8Linear, in place; returns the model, with the memory saved in
    `model.quant_report` (a QuantReport). For inference only: int8 weights get no
    gradients. The output head is tied to the token embeddings and stays float. LoRA
    adapters are merged into their layers first (their small Linears would otherwise
    be quantized as layers of their own)."""
    from .lora import has_lora, merge_lora

    if has_lora(model):
        merge_lora(model)
    blocks = model.h
    before = after = layers = 0
    with torch.no_grad():
        for parent in blocks.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    q = Int8Linear.from_linear(child)
                    before += _nbytes(child.weight, child.bias)
                    after += _nbytes(q.weight, q.scale, q.bias)
                    setattr(parent, name, q)
                    layers += 1
    if layers or not hasattr(model, "quant_report"):  # quantizing twice keeps the report
        model.quant_report = QuantReport(layers, before, after)
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


def bnb_int8_base(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """The blocks' Linear layers as bitsandbytes' Linear8bitLt (LLM.int8(): int8
    weights, outliers in 16 bits), frozen, in place: the base of a LoRA run in about
    a quarter of its fp32 memory (Hugging Face's load_in_8bit). On CUDA, and on the
    CPU with a recent bitsandbytes (model/bnb.py checks which); adapters are added on
    top afterwards (lora.add_lora), in full precision.

    `device`: where the model trains, when it was loaded on the CPU. Each layer is then
    quantized on its way there and the rest follows, so the device never holds the
    fp32 base (for gpt2-xl, 6 GB that an 8 GB card could not take even for a moment)."""
    from . import bnb as bnb_support
    from .lora import move_adapter

    device = torch.device(device) if device is not None else next(model.parameters()).device
    bnb = bnb_support.require("int8", device)
    with torch.no_grad():
        for parent in model.h.modules():
            for name, child in list(parent.named_children()):
                if child.__class__ is not nn.Linear or name.startswith("lora_"):
                    continue  # the adapters' own layers stay in full precision
                q = bnb_support.int8_linear(bnb, child, device)
                move_adapter(child, q)  # a resumed LoRA run's adapter comes along
                setattr(parent, name, q)  # the fp32 layer goes as the int8 one comes
        # The rest: embeddings, norms, a resumed adapter. The int8 layers are there.
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear8bitLt):
                continue
            for p in module.parameters(recurse=False):
                p.data = p.data.to(device)
            for key, buffer in module.named_buffers(recurse=False):
                module._buffers[key] = buffer.to(device)
    return model
