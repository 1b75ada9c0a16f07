"""One instruction record: an Alpaca record (instruction, input, output, read from
other keys when the dataset maps them, see RecordFields) or a chat record (messages),
checked and normalised by `parse_record`, with the located error a bad one becomes.
Reading whole files is `dataset.py`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class RecordFields:
    """The keys an Alpaca record's three fields are read from: the configuration's
    instruction_key, input_key and output_key, so a file that names them otherwise
    loads without editing."""

    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"

    @property
    def read(self) -> frozenset[str]:
        """Every key a record is read from; the others are ignored."""
        return frozenset(("id", "messages", self.instruction, self.input, self.output))

    def describe(self) -> str:
        return f"'{self.instruction}', '{self.input}', '{self.output}'"


DEFAULT_FIELDS = RecordFields()
# How many of a record's own keys an error message lists.
_KEYS_SHOWN = 6


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Record:
    """One instruction example. Alpaca records keep their three fields; chat records
    keep their messages and expose the last exchange through the same fields, so that
    lists, previews and grading treat both kinds alike."""

    id: str
    instruction: str
    input: str
    output: str
    messages: tuple[Message, ...] | None = None
    # The key the split is derived from: the explicit id, or a hash of the content
    # (so that exact duplicates always land in the same split).
    split_key: str = ""
    # True when the record had no `id` and `id` was derived from its content.
    derived_id: bool = False

    @property
    def kind(self) -> str:
        return "alpaca" if self.messages is None else "chat"

    @property
    def content_key(self) -> str:
        """A hash of the content alone (ids aside): equal for exact duplicates."""
        data = self.to_dict()
        data.pop("id")
        return content_key(data)

    def to_dict(self) -> dict:
        if self.messages is None:
            return {"id": self.id, "instruction": self.instruction, "input": self.input,
                    "output": self.output}
        return {"id": self.id,
                "messages": [{"role": m.role, "content": m.content} for m in self.messages]}


@dataclass(frozen=True)
class RecordError:
    """A record that could not be used, with where it is and why."""

    path: str
    message: str
    line: int | None = None  # 1-based line in a JSONL file
    index: int | None = None  # 0-based position in a JSON list

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"{self.path}:{self.line}"
        return f"{self.path}[{self.index}]"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict:
        key = "line" if self.line is not None else "index"
        return {key: self.line if self.line is not None else self.index, "message": self.message}


class InvalidRecord(ValueError):
    """Raised by `parse_record` with the reason a record cannot be used."""


def describe_value(value: object) -> str:
    """How a JSON value is named in a message: "a string", "a list", "null"."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _check_text(value: str, what: str) -> str:
    # json.loads accepts lone surrogate escapes ("\ud800"), which no UTF-8 encoder,
    # tokenizer or file writer can take later: refuse them here, where it is located.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRecord(f"{what} holds an invalid character "
                                f"(lone surrogate U+{ord(value[exc.start]):04X})") from None
    return value


def string_field(obj: dict, key: str, *, required: bool) -> str:
    """The text under `key` (InvalidRecord with the reason when it is not usable
    text; a missing or null optional field is "")."""
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise InvalidRecord(f"missing field '{key}'")
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidRecord(f"field '{key}' must be a string, not {describe_value(value)}")
    return _check_text(value, f"field '{key}'")


def content_key(obj: dict) -> str:
    """A stable id derived from a record's content, for records without an `id`."""
    if "messages" in obj:
        payload = [[m["role"], m["content"]] for m in obj["messages"]]
    else:
        payload = [obj.get("instruction"), obj.get("input") or "", obj.get("output")]
    flat = payload if "messages" not in obj else [v for pair in payload for v in pair]
    if all(not isinstance(v, str) or len(v) <= _HASH_PIECE for v in flat):
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return "h-" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]
    digest = hashlib.sha1()
    _hash_json(digest, payload)
    return "h-" + digest.hexdigest()[:12]


# Strings longer than this are hashed a piece at a time: one json.dumps of a 100 MB
# field held every other thread (the app's screen too) for half a second.
_HASH_PIECE = 1 << 20


def _hash_json(digest, value) -> None:
    """Feed `digest` the bytes of json.dumps(value, ensure_ascii=False, separators=
    (",", ":")) (the same key), long strings a piece at a time (JSON escapes each
    character on its own, so the pieces' escapes join into the whole's)."""
    if isinstance(value, list):
        digest.update(b"[")
        for i, item in enumerate(value):
            if i:
                digest.update(b",")
            _hash_json(digest, item)
        digest.update(b"]")
    elif isinstance(value, str) and len(value) > _HASH_PIECE:
        digest.update(b'"')
        for start in range(0, len(value), _HASH_PIECE):
            piece = json.dumps(value[start:start + _HASH_PIECE], ensure_ascii=False)
            digest.update(piece[1:-1].encode("utf-8"))
        digest.update(b'"')
    else:
        digest.update(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _parse_messages(raw: object) -> tuple[Message, ...]:
    if not isinstance(raw, list):
        raise InvalidRecord(f"field 'messages' must be a list, not {describe_value(raw)}")
    if not raw:
        raise InvalidRecord("field 'messages' is empty")
    messages = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRecord(f"messages[{i}] must be an object, not {describe_value(item)}")
        role = item.get("role")
        if not isinstance(role, str):
            raise InvalidRecord(f"messages[{i}] has no string 'role'")
        if role not in ROLES:
            raise InvalidRecord(
                f"messages[{i}] has unknown role '{role}' (expected system, user or assistant)")
        content = item.get("content")
        if not isinstance(content, str):
            raise InvalidRecord(
                f"messages[{i}] 'content' must be a string, not {describe_value(content)}")
        _check_text(content, f"messages[{i}] 'content'")
        if role == "system" and i != 0:
            raise InvalidRecord(f"messages[{i}] is a system message; only the first may be")
        messages.append(Message(role, content))
    if not any(m.role == "assistant" for m in messages):
        raise InvalidRecord("chat has no assistant turn")
    if not any(m.role == "user" for m in messages):
        raise InvalidRecord("chat has no user turn")
    return tuple(messages)


def parse_record(obj: object, fields: RecordFields = DEFAULT_FIELDS) -> Record:
    """Validate one decoded JSON value and turn it into a Record; an Alpaca record's
    fields are read from the keys `fields` names."""
    if not isinstance(obj, dict):
        raise InvalidRecord(f"record must be an object, not {describe_value(obj)}")
    raw_id = obj.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise InvalidRecord(f"field 'id' must be a string or an integer, not {describe_value(raw_id)}")
    if raw_id is not None and str(raw_id).strip() == "":
        raise InvalidRecord("field 'id' is empty")
    if isinstance(raw_id, str):
        _check_text(raw_id, "field 'id'")
    if "messages" in obj:
        messages = _parse_messages(obj["messages"])
        last_assistant = max(i for i, m in enumerate(messages) if m.role == "assistant")
        before = [m for m in messages[:last_assistant] if m.role == "user"]
        instruction = before[-1].content if before else ""
        output = messages[last_assistant].content
        if not instruction.strip():
            raise InvalidRecord("the user turn before the last assistant turn is empty")
        if raw_id is None:
            rid = content_key({"messages": [{"role": m.role, "content": m.content}
                                            for m in messages]})
        else:
            rid = str(raw_id)
        return Record(rid, instruction, "", output, messages, split_key=rid,
                      derived_id=raw_id is None)
    f = fields
    if f.instruction not in obj and f.output not in obj:
        raise InvalidRecord(_not_a_record(obj, f))
    instruction = string_field(obj, f.instruction, required=True)
    if not instruction.strip():
        raise InvalidRecord(f"field '{f.instruction}' is empty")
    input_text = string_field(obj, f.input, required=False)
    output = string_field(obj, f.output, required=True)
    if raw_id is None:
        rid = content_key({"instruction": instruction, "input": input_text, "output": output})
    else:
        rid = str(raw_id)
    return Record(rid, instruction, input_text, output, None, split_key=rid,
                  derived_id=raw_id is None)


def _not_a_record(obj: dict, fields: RecordFields) -> str:
    """Why a record is neither kind, with its own keys, so that the mapping to set
    is plain (a file with `prompt` and `completion` needs instruction_key and
    output_key)."""
    message = (f"neither an Alpaca record ({fields.describe()}) "
               "nor a chat record ('messages')")
    keys = [str(k) for k in obj]
    if not keys:
        return message + "; the record is empty"
    shown = ", ".join(f"'{k}'" for k in keys[:_KEYS_SHOWN])
    more = f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else ""
    return (f"{message}; its keys are {shown}{more}: name yours with instruction_key, "
            "input_key and output_key")
