"""The one reader of a growing file (metrics.jsonl while training writes it, a
partial responses file, the grade journal another session appends to, worker.log):
each read returns the complete lines written since the last, so a poller costs
little when nothing changed and never sees half a line. Stdlib only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


class LineTail:
    """Reads a growing file incrementally: each `read_lines()` returns the complete
    lines written since the last call. A half-written last line waits for its
    newline. When the file is rewritten (replaced, or shorter than what was read)
    reading starts over and `restarted` is set: the reader should forget what it had."""

    def __init__(self, path: Path, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        # At most this much is read per call (a reader that polls a huge log).
        self.max_bytes = max_bytes
        self.offset = 0
        self._inode = None
        self.restarted = False

    def read_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if self._inode is not None and (st.st_ino != self._inode
                                                or st.st_size < self.offset):
                    self.offset, self.restarted = 0, True
                self._inode = st.st_ino
                f.seek(self.offset)
                data = f.read() if self.max_bytes is None else f.read(self.max_bytes)
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return [line for line in data[:end].split(b"\n") if line.strip()]


class JsonlTail(LineTail):
    """The one reader of a growing JSONL file (metrics, responses, the grade journal):
    `read()` returns the JSON objects of the complete lines written since the last
    call; a line that is not a JSON object (or that `accept` refuses) is counted in
    `skipped`, never fatal."""

    def __init__(self, path: Path, *, max_bytes: int | None = None,
                 accept: Callable[[dict], bool] | None = None) -> None:
        super().__init__(path, max_bytes=max_bytes)
        self.accept = accept
        self.skipped = 0

    def read(self) -> list[dict]:
        out = []
        for line in self.read_lines():
            try:
                value = json.loads(line)
            except ValueError:
                self.skipped += 1
                continue
            if isinstance(value, dict) and (self.accept is None or self.accept(value)):
                out.append(value)
            else:
                self.skipped += 1
        return out
