"""Choosing the next token of each row: greedy, or sampled (temperature, top-k,
top-p) from each row's own random stream, so a row's tokens never depend on the other
rows of its batch."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .generate import GenerationConfig


def row_seed(seed: int, index: int) -> int:
    """The seed of prompt `index`'s own random stream. Hashing (seed, index) keeps
    streams of nearby seeds and indices unrelated."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def next_tokens(logits, config: GenerationConfig, gens):
    """The next token of each row from float32 logits (rows, vocab)."""
    import torch

    if config.greedy:
        return logits.argmax(dim=-1)
    scores = logits / config.temperature
    vocab = scores.size(-1)
    # Work on a candidate set where one exists: the top k, or the head of the sorted
    # distribution that top-p needs. Sorting the whole vocabulary costs ~10 ms a row.
    candidates = None
    if config.top_k is not None and config.top_k < vocab:
        scores, candidates = scores.topk(config.top_k, dim=-1)  # sorted, descending
    probs = torch.softmax(scores, dim=-1)
    if config.top_p is not None and config.top_p < 1:
        if candidates is None:
            # The smallest head of the sorted distribution that holds top_p of the mass
            # in every row, found by growing k (exact: a prefix of the full sort).
            k = min(vocab, 64)
            while True:
                head, index = probs.topk(k, dim=-1)
                if k == vocab or bool((head.sum(dim=-1) >= config.top_p).all()):
                    break
                k = min(vocab, k * 8)
            probs, candidates = head, index
        mass_before = probs.double().cumsum(dim=-1) - probs.double()
        # Keep the most likely tokens until their mass reaches top_p; always the first.
        drop = mass_before >= config.top_p
        drop[:, 0] = False
        probs = probs.masked_fill(drop, 0.0)
    # Inverse-CDF draw with one uniform per row from the row's own generator, so a
    # row's tokens never depend on the other rows of its batch. float64 sums keep the
    # tail of a 50k-token distribution drawable.
    cdf = probs.double().cumsum(dim=-1)
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in gens])
    target = (u.to(cdf.device) * cdf[:, -1]).unsqueeze(1)
    choice = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.size(-1) - 1)
    if candidates is not None:
        return candidates.gather(1, choice).squeeze(1)
    return choice.squeeze(1)
