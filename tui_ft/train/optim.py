"""The optimizer and the learning-rate schedule a run trains with: AdamW (fused where
the device has the kernel) with Hugging Face's weight-decay groups and schedules."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import TrainConfig


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a step, as Hugging Face's schedules."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if kind in ("constant", "constant_with_warmup"):
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))
        return max(0.0, 1.0 - progress)  # linear

    return factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and embeddings, not on biases and LayerNorm (as HF)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups: list[dict], c: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one pass over each parameter, no temporaries) where this torch
    has the fused kernel for the device (CUDA; the CPU from torch 2.4 on), else the
    per-tensor implementation; the results are the same to rounding."""
    kwargs = {"lr": c.learning_rate, "betas": (c.adam_beta1, c.adam_beta2),
              "eps": c.adam_epsilon}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def adamw_8bit(groups: list[dict], c: TrainConfig, device: torch.device):
    """bitsandbytes' 8-bit AdamW (Hugging Face's optim="adamw_bnb_8bit"): its two
    moments in 8 bits with block-wise scales, a quarter of AdamW's state."""
    from ..model.bnb import require

    bnb = require("adamw8bit", device)
    return bnb.optim.AdamW8bit(groups, lr=c.learning_rate, betas=(c.adam_beta1, c.adam_beta2),
                               eps=c.adam_epsilon)


def build_optimization(model: torch.nn.Module, c: TrainConfig, total_steps: int):
    """The optimizer, its schedule over `total_steps` (warmup from warmup_steps, else
    warmup_ratio) and, for fp16, the gradient scaler (None otherwise)."""
    warmup = c.warmup_steps or math.ceil(c.warmup_ratio * total_steps)
    groups = param_groups(model, c.weight_decay)
    if c.optim == "adamw_bnb_8bit":
        optimizer = adamw_8bit(groups, c, next(model.parameters()).device)
    else:
        optimizer = adamw(groups, c)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(c.lr_scheduler_type, warmup, total_steps))
    scaler = torch.amp.GradScaler("cuda") if c.fp16 else None
    return optimizer, scheduler, scaler
