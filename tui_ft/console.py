"""What the streams the CLI prints to can show. Under `PYTHONIOENCODING=ascii`, a C
locale or a latin-1 terminal, stdout cannot encode our markers (⟦ ⟧) nor the user's
data (café, 日本): printing them raised UnicodeEncodeError and the command died with a
traceback. Every such decision is made here: `prepare_streams` once at start-up so no
character ever raises, `pick` for a marker with an ASCII stand-in, `json_text` for
JSON that stays valid whatever the encoding."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO


def prepare_streams() -> None:
    """A character stdout or stderr cannot encode is written as a backslash escape
    (\\xe9, \\u65e5) instead of raising: data text is shown exactly, in ASCII."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            # Not a text file we own (a test's capture, a closed stream): leave it.
            pass


def can_encode(text: str, stream: TextIO | None = None) -> bool:
    """Whether `stream` (stdout when None) can write `text` as it is."""
    stream = sys.stdout if stream is None else stream
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def pick(fancy: str, plain: str, stream: TextIO | None = None) -> str:
    """`fancy` where `stream` can show it, else its ASCII stand-in `plain`."""
    return fancy if can_encode(fancy, stream) else plain


def json_text(value: Any, stream: TextIO | None = None) -> str:
    """`value` as one line of JSON for `stream`: text as it is where the stream takes
    all of Unicode, else \\u escapes (a backslash escape from prepare_streams would
    not be valid JSON: \\xe9)."""
    return json.dumps(value, ensure_ascii=not can_encode("\u00e9\u27e6\U0001f600", stream))


def terminal_problem() -> str | None:
    """Which of the app's streams is not a terminal ('stdin', 'stderr'), or None. The
    app reads keys from stdin and Textual draws on stderr (stdout stays free, so
    `tui-ft > file` works). With stdin /dev/null (`ssh host tui-ft < /dev/null`, a
    script) Textual read end-of-file forever and spun a core."""
    for name, stream in (("stdin", sys.__stdin__), ("stderr", sys.__stderr__)):
        try:
            if stream is not None and os.isatty(stream.fileno()):
                continue
        except (AttributeError, ValueError, OSError):  # closed, or not a real file
            pass
        return name
    return None
