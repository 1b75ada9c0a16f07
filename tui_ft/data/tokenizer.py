"""Exact GPT-2 byte-level BPE through tiktoken, offline: the rank file ships in the
package and is checked against OpenAI's published hash before use."""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

from ..errors import TokenizerError
from ..paths import assets_dir

GPT2_RANKS_FILE = "gpt2.tiktoken"
# Equal to tiktoken's expected hash for r50k_base.tiktoken.
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# r50k_base's pre-tokenizer pattern (the GPT-2 split), as tiktoken defines it.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
ENDOFTEXT = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257


def read_ranks(path: Path, expected_sha256: str = GPT2_RANKS_SHA256) -> dict[bytes, int]:
    """Parse a .tiktoken rank file (base64 token, space, rank per line) after checking its hash."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(
            f"cannot read the GPT-2 rank file {path}: {exc.strerror or exc}. "
            "Reinstall tui-ft to restore it."
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise TokenizerError(
            f"the GPT-2 rank file {path} is corrupted (sha256 {digest}, expected "
            f"{expected_sha256}). Reinstall tui-ft to restore it."
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def gpt2_ranks() -> dict[bytes, int]:
    """GPT-2's BPE ranks from the shipped file: token bytes -> token id."""
    return read_ranks(assets_dir() / GPT2_RANKS_FILE)


@functools.lru_cache(maxsize=1)
def gpt2_encoding():
    """The GPT-2 encoding (r50k_base) as a `tiktoken.Encoding`, built from the shipped file."""
    import tiktoken

    ranks = gpt2_ranks()
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: EOT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )


def encode(text: str) -> list[int]:
    """Encode text exactly as GPT-2 does. Special-token strings inside the text are
    ordinary text: a dataset that contains "<|endoftext|>" cannot inject the token."""
    return gpt2_encoding().encode_ordinary(text)


def encode_batch(texts: list[str], num_threads: int = 4) -> list[list[int]]:
    """`encode` over many texts at once (tiktoken spreads the work over threads)."""
    return gpt2_encoding().encode_ordinary_batch(texts, num_threads=num_threads)


def decode(ids: list[int]) -> str:
    return gpt2_encoding().decode(ids)


def token_bytes(ids: list[int]) -> list[bytes]:
    """The bytes each token stands for (a token may hold part of a UTF-8 character)."""
    enc = gpt2_encoding()
    return [enc.decode_single_token_bytes(i) for i in ids]
