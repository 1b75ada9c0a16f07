"""Untrusted text (dataset fields, model answers, notes) made safe to show: control
characters become visible symbols, so escape codes never reach the terminal."""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, the C1 range (0x80-0x9f: 0x9b is CSI), and
# the bidirectional controls that reorder what is drawn (embeddings, overrides,
# isolates, marks): shown as code points, so text cannot disguise itself.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u061c\u202a-\u202e"
                      r"\u2066-\u2069]")


def _picture(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # Unicode control pictures: ESC -> U+241B
    if code == 0x7F:
        return "\u2421"
    return f"<U+{code:04X}>"


def visible(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with every control character replaced by a visible symbol. With
    `keep_newlines` false, newlines and tabs become symbols too (for one-line views)."""
    out = _CONTROL.sub(_picture, text)
    if not keep_newlines:
        out = out.replace("\n", "\u21b5").replace("\t", "\u2192")
    return out


def has_control(text: str) -> bool:
    """Whether `text` holds a character `visible` would replace (newlines and tabs
    included: they have no place in a one-line value)."""
    return bool(_CONTROL.search(text)) or "\n" in text or "\t" in text


def format_bytes(n: int) -> str:
    """A size as people read it: 12.3 GiB, 852.0 MiB, 512 B."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def normalise(text: str) -> str:
    """What exact match compares: surrounding white space and case do not count."""
    return " ".join(text.split()).casefold()


def exact_match(response: str, expected: str) -> bool:
    """An answer equal to the expected one, normalised (the suggestion beside a mark,
    and eval_exact_match during training)."""
    return normalise(response) == normalise(expected)
