"""Model sizes and where their pretrained weights come from. Plain data: importing
this module does not import torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    context_length: int = 1024
    vocab_size: int = 50257
    # Hugging Face repository of the pretrained weights (None: random init).
    hub_repo: str | None = None
    # The exact file we accept: revision, size in bytes and sha256 of model.safetensors.
    # None where not pinned: the download is then checked against the hash the hub
    # announces for the file (X-Linked-ETag, the LFS sha256).
    revision: str = "main"
    size: int | None = None
    sha256: str | None = None
    description: str = ""

    def config_dict(self) -> dict:
        return {"vocab_size": self.vocab_size, "context_length": self.context_length,
                "n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head}

    @property
    def pretrained(self) -> bool:
        return self.hub_repo is not None


PRESETS: dict[str, Preset] = {
    p.name: p for p in (
        Preset("tiny", n_layer=4, n_head=4, n_embd=128, context_length=256,
               description="random init, for CPU demos and tests (7M parameters, most "
                           "of them the GPT-2 vocabulary's embeddings)"),
        Preset("gpt2", n_layer=12, n_head=12, n_embd=768,
               hub_repo="openai-community/gpt2",
               revision="607a30d783dfa663caf39e06633721c8d4cfcd7e", size=548_105_171,
               sha256="248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
               description="GPT-2 small, 124M"),
        Preset("gpt2-medium", n_layer=24, n_head=16, n_embd=1024,
               hub_repo="openai-community/gpt2-medium", description="GPT-2 medium, 355M"),
        Preset("gpt2-large", n_layer=36, n_head=20, n_embd=1280,
               hub_repo="openai-community/gpt2-large", description="GPT-2 large, 774M"),
        Preset("gpt2-xl", n_layer=48, n_head=25, n_embd=1600,
               hub_repo="openai-community/gpt2-xl", description="GPT-2 XL, 1558M"),
    )
}
# The seed of the `tiny` preset's random init, so that every process builds the
# same untrained model.
TINY_INIT_SEED = 0


def get_preset(name: str) -> Preset | None:
    return PRESETS.get(name)
