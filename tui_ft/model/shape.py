"""The shape of a GPT-2 model (sizes, context, dropout) as plain data: no torch, so
the UI can reason about models (memory estimates, contexts) before torch loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    # Recompute each block's activations in the backward pass (saves memory on the
    # large sizes at about a third more compute).
    activation_checkpointing: bool = False

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def n_params(self, include_embeddings: bool = True) -> int:
        d, L, V, T = self.n_embd, self.n_layer, self.vocab_size, self.context_length
        per_block = 12 * d * d + 13 * d  # attn 4d^2+4d, mlp 8d^2+5d, two LayerNorms 4d
        total = L * per_block + 2 * d + V * d + T * d
        return total if include_embeddings else total - V * d - T * d
