"""Exact GPT-2 byte-level BPE through tiktoken, offline: the rank file ships in the
package and is checked against OpenAI's published hash before use."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
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


# Unicode White_Space: what `\s` means to the tokenizer's pattern (Python's own `\s`
# also takes \x1c-\x1f, which the tokenizer reads as punctuation).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The start of a whitespace run: no pre-token piece spans it (every piece that holds
# the non-space before it ends there, and every piece after starts with whitespace).
_CLEAN_CUT = re.compile(f"[^{_WHITESPACE}][{_WHITESPACE}]")
# How far past a cut a whitespace run is looked for; text without one that long is
# cut where it is (the token at the cut may then differ from the whole text's).
_CUT_SEARCH = 65_536


def _cut(text: str, at: int) -> int:
    """A place at or after `at` where `text` can be cut so that its tokens are the
    first tokens of the whole text."""
    match = _CLEAN_CUT.search(text, at - 1, at + _CUT_SEARCH)
    if match:
        return match.start() + 1
    return len(text) if at + _CUT_SEARCH >= len(text) else at


def encode_prefix(text: str, limit: int) -> tuple[list[int], int]:
    """The first tokens of `text`, more than `limit` of them when it has that many,
    and how many of its characters they cover (`len(text)`: all of it). The work is
    bounded by `limit`, not by the text: a record of 100 MB on one line took 1.15 GB
    and seconds to tokenize whole, and a word of millions of letters never finished.
    The tokens are those `encode(text)` starts with: the text is cut where a
    whitespace run begins, which no token crosses (only text with no whitespace for
    64k characters is cut inside a word, where the token at the cut may differ)."""
    chars = max(4 * (limit + 1), 1024)  # English runs about 4 characters a token
    while True:
        cut = len(text) if len(text) <= chars else _cut(text, chars)
        if cut >= len(text):
            return encode(text), len(text)
        ids = encode(text[:cut])
        if len(ids) > limit:
            return ids, cut
        chars = 2 * cut


def decode(ids: list[int]) -> str:
    return gpt2_encoding().decode(ids)


def token_bytes(ids: list[int]) -> list[bytes]:
    """The bytes each token stands for (a token may hold part of a UTF-8 character)."""
    enc = gpt2_encoding()
    return [enc.decode_single_token_bytes(i) for i in ids]
