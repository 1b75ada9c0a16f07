"""Read a dataset file: a JSON list or JSONL of records (see records.py for what one
record may hold). JSONL is indexed lazily by byte offset, so a million-record file
opens at once; every bad record becomes a located error while the good ones still
load."""

from __future__ import annotations

import array
import bisect
import contextlib
import dataclasses
import gc
import json
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DatasetError
from ..fsio import special_kind
from .records import (DEFAULT_FIELDS, InvalidRecord, Record, RecordError, RecordFields,
                      describe_value, parse_record)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_BLANK_BYTES = b" \t\r\x0b\x0c"


@dataclass
class ScanResult:
    """Every entry of a dataset, checked: the good records and the located errors."""

    records: list[Record]
    errors: list[RecordError]
    # Location (line or index) of each good record, parallel to `records`.
    locations: list[int] = field(default_factory=list)
    # Keys of the good records that nothing reads (`chosen`, `model_response`, a
    # misnamed field), each with how many records hold it, most common first.
    ignored_keys: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.records) + len(self.errors)


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


class Dataset:
    """An opened dataset file. `len()` counts its entries (non-blank JSONL lines or
    JSON list items); `get(i)` reads and checks one entry on demand; `scan()` checks
    them all. Use as a context manager, or call `close()`."""

    def __init__(self, path: str | os.PathLike, fields: RecordFields | None = None):
        self.path = Path(path)
        self.name = str(path)
        self.fields = fields or DEFAULT_FIELDS
        self._mm: mmap.mmap | None = None
        self._file = None
        self._offsets = array.array("q")
        self._items: list | None = None
        self._line_numbers: array.array | None = None
        self.format = ""
        self._open()

    # -- opening -----------------------------------------------------------------

    def _open(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise DatasetError(f"{self.name}: no such file") from None
        except OSError as exc:
            raise DatasetError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        # Before opening it: a FIFO would wait for a writer for ever, and a device
        # (size 0) read as "the file is empty".
        kind = special_kind(info.st_mode)
        if kind is not None:
            raise DatasetError(f"{self.name}: is {kind}, not a dataset file")
        size = info.st_size
        if size == 0:
            raise DatasetError(f"{self.name}: the file is empty")
        try:
            self._file = open(self.path, "rb")
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            self.close()
            raise DatasetError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        head = self._mm[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head and not self._mm[:].strip(b"\xef\xbb\xbf \t\r\n"):
            self.close()
            raise DatasetError(f"{self.name}: the file holds only whitespace")
        first = head[:1]
        suffix = self.path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            self._open_jsonl()
        elif first == b"[":
            self._open_json_list()
        elif not self._open_single_document():
            # Not one JSON document of the wrong shape: JSONL under another name.
            self._open_jsonl()
        if len(self) == 0:
            self.close()
            raise DatasetError(f"{self.name}: holds no records")

    def _open_jsonl(self) -> None:
        self.format = "jsonl"
        mm = self._mm
        offsets = self._offsets
        append = offsets.append
        find = mm.find
        n = len(mm)
        pos = 3 if mm[:3] == b"\xef\xbb\xbf" else 0
        line = 0
        numbers = None  # line numbers, kept only once a blank line shifts them
        while pos < n:
            end = find(b"\n", pos)
            if end < 0:
                end = n
            line += 1
            length = end - pos
            # Blank lines (whitespace only) are not entries. Only a line that starts
            # with whitespace needs the closer look, so the common case stays cheap.
            if length and (mm[pos] not in _BLANK_BYTES or mm[pos:end].strip()):
                append(pos)
                if numbers is not None:
                    numbers.append(line)
            elif numbers is None:
                numbers = array.array("q", range(1, len(offsets) + 1))
            pos = end + 1
        self._line_numbers = numbers

    def _open_single_document(self) -> bool:
        """Raise DatasetError when the file is one JSON document that is not a list
        (an object spread over lines, a number, a string); False otherwise."""
        data = _strip_bom(self._mm[:])
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
        if isinstance(value, dict) and data.strip().count(b"\n") == 0:
            return False  # a one-line JSONL file
        self.close()
        if isinstance(value, dict):
            lists = [k for k, v in value.items() if isinstance(v, list)]
            hint = f" (it has a list under '{lists[0]}'; save that list alone)" if lists else ""
            raise DatasetError(
                f"{self.name}: the top level is an object; expected a list of records "
                f"or one record per line (JSONL){hint}")
        raise DatasetError(f"{self.name}: the top level is {describe_value(value)}; expected a "
                           "list of records or one record per line (JSONL)")

    def _open_json_list(self) -> None:
        self.format = "json"
        data = _strip_bom(self._mm[:])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = _line_of(data, exc.start)
            self.close()
            raise DatasetError(
                f"{self.name}:{line}: invalid UTF-8 (byte 0x{data[exc.start]:02x}); "
                "save the file as UTF-8") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            self.close()
            raise DatasetError(
                f"{self.name}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
        except ValueError as exc:  # e.g. an integer past Python's digit limit
            self.close()
            raise DatasetError(f"{self.name}: invalid JSON ({exc})") from None
        except RecursionError:
            self.close()
            raise DatasetError(f"{self.name}: invalid JSON: nested too deeply") from None
        if not isinstance(value, list):
            self.close()
            raise DatasetError(
                f"{self.name}: the top level is {describe_value(value)}; expected a list of records")
        self._items = value
        self.close()  # everything is in memory now

    # -- access ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else len(self._offsets)

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def location(self, i: int) -> int:
        """The 1-based line (JSONL) or 0-based index (JSON list) of entry i."""
        if self._items is not None:
            return i
        return self._line_numbers[i] if self._line_numbers is not None else i + 1

    def entry_at(self, location: int) -> int:
        """The entry at a location `location()` gave (a JSONL line, a list index)."""
        if self._items is not None or self._line_numbers is None:
            return location if self._items is not None else location - 1
        i = bisect.bisect_left(self._line_numbers, location)
        if i == len(self._line_numbers) or self._line_numbers[i] != location:
            raise IndexError(f"{self.name}: no entry at line {location}")
        return i

    def error_at(self, i: int, message: str) -> RecordError:
        """`message` about entry i, located by its line or index."""
        if self._items is not None:
            return RecordError(self.name, message, index=i)
        return RecordError(self.name, message, line=self.location(i))

    def entry_size(self, i: int) -> int:
        """At most how many bytes entry i takes in the file (blank lines after it
        included), without reading it; 0 in a JSON list, read whole when opened."""
        if self._items is not None or self._mm is None:
            return 0
        end = self._offsets[i + 1] if i + 1 < len(self._offsets) else len(self._mm)
        return end - self._offsets[i]

    def raw_text(self, i: int, limit: int | None = None) -> str:
        """The entry as it is in the file (for showing a bad record to the user), its
        first `limit` bytes only when given (a line can be a gigabyte)."""
        if self._items is not None:
            text = json.dumps(self._items[i], ensure_ascii=False, indent=2)
            return text if limit is None else text[:limit]
        start = self._offsets[i]
        end = self._mm.find(b"\n", start)
        end = end if end >= 0 else len(self._mm)
        if limit is not None:
            end = min(end, start + limit)
        return self._mm[start:end].decode("utf-8", "replace")

    def value(self, i: int) -> object:
        """Entry i as decoded JSON, unchecked (InvalidRecord when it is not JSON): for
        a caller that reads keys of its own besides the record's."""
        return self._decode(i)

    def _decode(self, i: int) -> object:
        if self._items is not None:
            return self._items[i]
        if self._mm is None:
            raise DatasetError(f"{self.name}: the dataset is closed")
        start = self._offsets[i]
        end = self._mm.find(b"\n", start)
        raw = self._mm[start:end if end >= 0 else len(self._mm)]
        if start == 0:
            raw = _strip_bom(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(
                f"invalid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRecord(f"invalid JSON at column {exc.colno}: {exc.msg}") from None
        except ValueError as exc:  # e.g. an integer past Python's digit limit
            raise InvalidRecord(f"invalid JSON: {exc}") from None
        except RecursionError:
            raise InvalidRecord("invalid JSON: nested too deeply") from None

    def get(self, i: int) -> Record | RecordError:
        """Entry i, read and checked now."""
        try:
            return parse_record(self._decode(i), self.fields)
        except InvalidRecord as exc:
            return self.error_at(i, str(exc))

    def scan(self, progress: Callable[[int, int], None] | None = None,
             every: int = 10_000) -> ScanResult:
        """Check every entry. Duplicate explicit ids are errors (grades are kept by id);
        exact duplicate records without ids are kept, numbered apart, in one split.
        `progress(done, total)` is called every `every` entries; raising from it
        abandons the scan."""
        records: list[Record] = []
        errors: list[RecordError] = []
        locations: list[int] = []
        first_seen: dict[str, int] = {}
        repeats: dict[str, int] = {}
        # Records counted by their keys (as a tuple: cheaper than a set per record);
        # the ignored ones are worked out once at the end.
        shapes: dict[tuple, int] = {}
        fields = self.fields
        jsonl = self._items is None
        total = len(self)
        with _collector_paused():
            for i in range(total):
                if progress is not None and i % every == 0:
                    progress(i, total)
                where = self.location(i)
                try:
                    value = self._decode(i)
                    item = parse_record(value, fields)
                except InvalidRecord as exc:
                    errors.append(self.error_at(i, str(exc)))
                    continue
                shape = tuple(value)
                shapes[shape] = shapes.get(shape, 0) + 1
                if item.id in first_seen:
                    if not item.derived_id:
                        unit = "line" if jsonl else "index"
                        errors.append(self.error_at(
                            i, f"duplicate id '{item.id}' (first at {unit} "
                               f"{first_seen[item.id]})"))
                        continue
                    repeats[item.id] = repeats.get(item.id, 1) + 1
                    item = dataclasses.replace(item, id=f"{item.id}-{repeats[item.id]}")
                else:
                    first_seen[item.id] = where
                records.append(item)
                locations.append(where)
        return ScanResult(records, errors, locations, _ignored(shapes, fields))


def _ignored(shapes: dict[tuple, int], fields: RecordFields) -> dict[str, int]:
    read = fields.read
    counts: dict[str, int] = {}
    for shape, n in shapes.items():
        for key in shape:
            if key not in read:
                counts[key] = counts.get(key, 0) + n
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@contextlib.contextmanager
def _collector_paused():
    """Pause the cycle collector, which would otherwise walk every record kept so
    far again and again (a million-record scan runs about a third faster)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_records(path: str | os.PathLike, fields: RecordFields | None = None) -> ScanResult:
    """Open, check and close a dataset file in one call."""
    with Dataset(path, fields) as ds:
        return ds.scan()
