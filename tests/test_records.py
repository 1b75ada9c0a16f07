"""Reading instruction data: JSON lists and JSONL, Alpaca and chat records, located
errors for every bad record, whole-file errors as DatasetError, lazy access."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_ft.data.dataset import Dataset, load_records
from tui_ft.data.records import (
    Message,
    Record,
    RecordError,
    RecordFields,
    parse_record,
)
from tui_ft.errors import DatasetError, TuiFtError

GOOD = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
    {"id": "r3", "instruction": "Name a colour.", "output": "blue"},
]


def jsonl(path: Path, lines: list, *, newline: str = "\n", bom: bool = False) -> Path:
    """Write lines (dicts are dumped as JSON, str/bytes written as they are)."""
    out = b"\xef\xbb\xbf" if bom else b""
    for line in lines:
        if isinstance(line, (dict, list, int)):
            line = json.dumps(line)
        if isinstance(line, str):
            line = line.encode("utf-8")
        out += line + newline.encode()
    path.write_bytes(out)
    return path


def scan(path) -> tuple[list[Record], list[RecordError]]:
    result = load_records(path)
    return result.records, result.errors


# -- good records ------------------------------------------------------------------


def test_jsonl_alpaca_records(tmp_path):
    records, errors = scan(jsonl(tmp_path / "d.jsonl", GOOD))
    assert errors == []
    assert [(r.instruction, r.input, r.output) for r in records] == [
        ("Add 2 and 3.", "", "5"), ("Translate to French.", "cat", "chat"),
        ("Name a colour.", "", "blue")]
    assert all(r.kind == "alpaca" and r.messages is None for r in records)
    assert records[2].id == "r3" and not records[2].derived_id
    assert records[0].derived_id and records[0].id.startswith("h-")


def test_json_list_alpaca_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(GOOD, indent=2), encoding="utf-8")
    with Dataset(path) as ds:
        assert ds.format == "json"
        assert len(ds) == 3
        result = ds.scan()
    assert result.errors == []
    assert [r.output for r in result.records] == ["5", "chat", "blue"]
    assert result.locations == [0, 1, 2]


def test_chat_records(tmp_path):
    chat = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer"},
    ]}
    records, errors = scan(jsonl(tmp_path / "c.jsonl", [chat]))
    assert errors == []
    (r,) = records
    assert r.kind == "chat"
    assert r.messages == (Message("system", "Be brief."), Message("user", "first question"),
                          Message("assistant", "first answer"),
                          Message("user", "second question"),
                          Message("assistant", "second answer"))
    # The last exchange is exposed through the Alpaca fields.
    assert (r.instruction, r.input, r.output) == ("second question", "", "second answer")
    assert r.to_dict()["messages"] == chat["messages"]


def test_shipped_sample_data_loads(sample_data_dir):
    records, errors = scan(sample_data_dir / "instructions.jsonl")
    assert len(records) == 1500 and errors == []
    assert len({r.id for r in records}) == 1500
    chats, errors = scan(sample_data_dir / "chat.jsonl")
    assert len(chats) == 60 and errors == []
    assert all(r.kind == "chat" for r in chats)


def test_shared_instruction_data_loads(shared_instructions):
    with Dataset(shared_instructions) as ds:
        assert ds.format == "json"
        assert len(ds) == 1100
        result = ds.scan()
    assert len(result.records) == 1100 and result.errors == []
    raw = json.loads(shared_instructions.read_text(encoding="utf-8"))
    assert [(r.instruction, r.input, r.output) for r in result.records] == [
        (d["instruction"], d["input"], d["output"]) for d in raw]


# -- ids ---------------------------------------------------------------------------


def test_derived_ids_are_stable_across_files_and_formats(tmp_path):
    a, _ = scan(jsonl(tmp_path / "a.jsonl", GOOD[:2]))
    # The same records in another file, another format, another order, with others.
    other = [{"instruction": "Something else", "output": "x"}, GOOD[1], GOOD[0]]
    (tmp_path / "b.json").write_text(json.dumps(other), encoding="utf-8")
    b, _ = scan(tmp_path / "b.json")
    assert [r.id for r in a] == [b[2].id, b[1].id]
    assert len({r.id for r in b}) == 3
    # A run later gives the same ids.
    again, _ = scan(tmp_path / "a.jsonl")
    assert [r.id for r in again] == [r.id for r in a]


def test_derived_id_depends_on_content_only():
    base = parse_record({"instruction": "I", "input": "", "output": "O"})
    assert parse_record({"instruction": "I", "output": "O"}).id == base.id
    assert parse_record({"output": "O", "instruction": "I", "input": ""}).id == base.id
    assert parse_record({"instruction": "I", "input": "", "output": "O2"}).id != base.id
    assert parse_record({"instruction": "I", "input": "x", "output": "O"}).id != base.id
    assert parse_record({"instruction": "I2", "input": "", "output": "O"}).id != base.id


def test_explicit_ids_are_kept():
    assert parse_record({"id": "abc", "instruction": "I", "output": "O"}).id == "abc"
    assert parse_record({"id": 7, "instruction": "I", "output": "O"}).id == "7"


def test_exact_duplicates_without_ids_are_kept_apart(tmp_path):
    records, errors = scan(jsonl(tmp_path / "d.jsonl", [GOOD[0], GOOD[1], GOOD[0], GOOD[0]]))
    assert errors == []
    assert len(records) == 4
    assert len({r.id for r in records}) == 4
    dupes = [records[0], records[2], records[3]]
    assert len({r.split_key for r in dupes}) == 1


# -- located errors ----------------------------------------------------------------


BAD_CASES = [
    # (raw line, words the message must contain)
    (b'{"instruction": "x", "output": ', ["invalid json"]),
    (b'{"instruction": "caf\xe9", "output": "y"}', ["utf-8"]),
    (b'[1, 2, 3]', ["object", "list"]),
    (b'"just a string"', ["object", "string"]),
    (b'{"instruction": "x"}', ["output", "missing"]),
    (b'{"output": "x"}', ["instruction", "missing"]),
    (b'{"instruction": 5, "output": "y"}', ["instruction", "string"]),
    (b'{"instruction": "x", "input": ["a"], "output": "y"}', ["input", "string"]),
    (b'{"instruction": "x", "output": null}', ["output", "string"]),
    (b'{"instruction": "   ", "output": "y"}', ["instruction", "empty"]),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', ["assistant"]),
    (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}',
     ["role", "bot"]),
    (b'{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}',
     ["content"]),
    (b'{"messages": "hello"}', ["messages", "list"]),
    (b'{"text": "no known fields"}', ["instruction", "messages"]),
    (b'{"id": true, "instruction": "x", "output": "y"}', ["id"]),
    (b'{"id": "  ", "instruction": "x", "output": "y"}', ["id", "empty"]),
    (b'{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, '
     b'{"role": "assistant", "content": "b"}]}', ["system"]),
]


@pytest.mark.parametrize("raw, words", BAD_CASES, ids=[c[0][:30].decode("latin-1")
                                                         for c in BAD_CASES])
def test_each_bad_jsonl_record_is_located(tmp_path, raw, words):
    # Good record, blank line, bad record, CRLF-blank line, good record.
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD[0]).encode() + b"\n\n" + raw + b"\n\r\n"
                     + json.dumps(GOOD[1]).encode() + b"\n")
    records, errors = scan(path)
    assert [r.output for r in records] == ["5", "chat"]
    assert len(errors) == 1
    (error,) = errors
    assert error.path == str(path)
    assert error.line == 3 and error.index is None
    for word in words:
        assert word.lower() in error.message.lower(), error.message
    assert str(error).startswith(f"{path}:3: ")
    assert error.to_dict() == {"line": 3, "message": error.message}


# Invalid JSON or UTF-8 inside a JSON list makes the whole file unusable (tested below).
JSON_LIST_CASES = [c for c in BAD_CASES if c[1][0] not in ("invalid json", "utf-8")]


@pytest.mark.parametrize("raw, words", JSON_LIST_CASES,
                         ids=[c[0][:30].decode("latin-1") for c in JSON_LIST_CASES])
def test_each_bad_json_list_item_is_located(tmp_path, raw, words):
    path = tmp_path / "d.json"
    path.write_bytes(b"[\n" + json.dumps(GOOD[0]).encode() + b",\n" + raw + b",\n"
                     + json.dumps(GOOD[1]).encode() + b"\n]\n")
    records, errors = scan(path)
    assert [r.output for r in records] == ["5", "chat"]
    (error,) = errors
    assert error.index == 1 and error.line is None
    assert error.path == str(path)
    for word in words:
        assert word.lower() in error.message.lower(), error.message
    assert error.to_dict() == {"index": 1, "message": error.message}


def test_duplicate_explicit_id(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "instruction": "1", "output": "1"},
        "",
        {"id": "b", "instruction": "2", "output": "2"},
        {"id": "a", "instruction": "3", "output": "3"},
    ])
    records, errors = scan(path)
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].output == "1"
    (error,) = errors
    assert error.line == 4
    assert "duplicate" in error.message and "'a'" in error.message
    assert "line 1" in error.message


def test_duplicate_explicit_id_in_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"id": 1, "instruction": "1", "output": "1"},
                                {"id": "1", "instruction": "2", "output": "2"}]))
    records, errors = scan(path)
    assert len(records) == 1
    (error,) = errors
    assert error.index == 1 and "duplicate" in error.message


def test_many_errors_all_reported_with_true_line_numbers(tmp_path):
    lines = [GOOD[0], "", "nope", GOOD[1], "", "", "{", {"instruction": ""}, GOOD[2], "[]"]
    records, errors = scan(jsonl(tmp_path / "d.jsonl", lines))
    assert len(records) == 3
    assert [e.line for e in errors] == [3, 7, 8, 10]


# -- lazy access -------------------------------------------------------------------


def test_lazy_access_jsonl(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", ["", GOOD[0], "", "bad", GOOD[1], "", GOOD[2]])
    with Dataset(path) as ds:
        assert ds.format == "jsonl"
        assert len(ds) == 4
        assert [ds.location(i) for i in range(4)] == [2, 4, 5, 7]
        first = ds.get(0)
        assert isinstance(first, Record) and first.output == "5"
        bad = ds.get(1)
        assert isinstance(bad, RecordError) and bad.line == 4
        assert ds.get(3).id == "r3"
        result = ds.scan()
        assert result.locations == [2, 5, 7]
        assert [e.line for e in result.errors] == [4]
        assert result.total == 4


def test_lazy_access_without_blank_lines(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", GOOD)
    ds = Dataset(path)
    try:
        assert len(ds) == 3
        assert [ds.location(i) for i in range(3)] == [1, 2, 3]
        assert ds.get(1).input == "cat"
    finally:
        ds.close()


def test_lazy_access_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([GOOD[0], 5, GOOD[1]]))
    with Dataset(path) as ds:
        assert len(ds) == 3
        assert [ds.location(i) for i in range(3)] == [0, 1, 2]
        assert ds.get(2).output == "chat"
        err = ds.get(1)
        assert isinstance(err, RecordError) and err.index == 1


def test_jsonl_without_trailing_newline(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in GOOD))
    records, errors = scan(path)
    assert len(records) == 3 and errors == []


def test_jsonl_content_under_other_suffix(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("\n".join(json.dumps(r) for r in GOOD) + "\n")
    records, errors = scan(path)
    assert len(records) == 3 and errors == []


# -- CRLF and BOM ------------------------------------------------------------------


def test_crlf_and_bom_jsonl(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD[0], "", GOOD[1], "bad", GOOD[2]],
                 newline="\r\n", bom=True)
    records, errors = scan(path)
    assert [r.output for r in records] == ["5", "chat", "blue"]
    assert [e.line for e in errors] == [4]
    # The BOM does not leak into the first record's fields or id.
    plain, _ = scan(jsonl(tmp_path / "plain.jsonl", [GOOD[0]]))
    assert records[0] == plain[0]


def test_crlf_and_bom_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD, indent=2).replace("\n", "\r\n").encode())
    records, errors = scan(path)
    assert [r.output for r in records] == ["5", "chat", "blue"] and errors == []


def test_crlf_inside_values_survives(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"instruction": "a\r\nb", "output": "c"}],
                 newline="\r\n")
    (record,), _ = scan(path)
    assert record.instruction == "a\r\nb"


# -- whole-file errors -------------------------------------------------------------


def _dataset_error(path) -> str:
    with pytest.raises(DatasetError) as info:
        Dataset(path)
    message = str(info.value)
    assert str(path) in message, message
    assert isinstance(info.value, TuiFtError)
    return message


@pytest.mark.parametrize("name, content, words", [
    ("empty.jsonl", b"", ["empty"]),
    ("empty.json", b"", ["empty"]),
    ("spaces.jsonl", b"  \n\r\n\t\n", ["whitespace"]),
    ("spaces.json", b"\n\n   ", ["whitespace"]),
    ("bom-only.jsonl", b"\xef\xbb\xbf", []),
    ("list.json", b"[]", ["no records"]),
    ("list-spaces.json", b" [ \n ] \n", ["no records"]),
    ("object.json", b'{\n  "data": [{"instruction": "a", "output": "b"}]\n}\n', ["object", "data"]),
    ("invalid.json", b'[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]\n',
     ["3:", "invalid json"]),
    ("truncated.json", b'[{"instruction": "a", "output": "b"}', ["invalid json"]),
    ("latin1.json", b'[{"instruction": "caf\xe9", "output": "b"}]', ["utf-8"]),
])
def test_unusable_files_raise_dataset_error(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    message = _dataset_error(path).lower()
    for word in words:
        assert word.lower() in message


def test_invalid_json_list_names_line_and_column(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b'[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]\n')
    assert f"{path}:3:19:" in _dataset_error(path)


def test_missing_file(tmp_path):
    assert "no such file" in _dataset_error(tmp_path / "missing.jsonl")


def test_folder(tmp_path):
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    assert "folder" in _dataset_error(folder)


def test_load_records_raises_dataset_error(tmp_path):
    with pytest.raises(DatasetError):
        load_records(tmp_path / "missing.json")


@pytest.mark.parametrize("content", [b"42", b"42\n", b"3.5\n", b"null\n", b'"text"\n'])
def test_top_level_scalar_json_is_dataset_error(tmp_path, content):
    path = tmp_path / "d.json"
    path.write_bytes(content)
    _dataset_error(path)


def test_huge_integer_in_jsonl_is_a_record_error(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD[0], b'{"instruction": "a", "output": "b", "n": '
                                        + b"1" * 5000 + b"}"])
    records, errors = scan(path)
    assert len(records) == 1
    assert [e.line for e in errors] == [2]


def test_huge_integer_in_json_list_is_a_dataset_error(tmp_path):
    # A JSON list is parsed whole, so the number fails the file (in JSONL, only its line).
    path = tmp_path / "d.json"
    path.write_bytes(b'[{"instruction": "a", "output": "b", "n": ' + b"1" * 5000 + b"}]")
    message = _dataset_error(path)
    assert message.startswith(f"{path}: invalid JSON (")
    assert "4300 digits" in message
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_records(path)


def test_deeply_nested_json_list_file_is_dataset_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    assert _dataset_error(path) == f"{path}: invalid JSON: nested too deeply"


def test_deeply_nested_json_object_file_is_a_record_error_on_line_1(tmp_path):
    # Not a list: a .json file that is no single JSON document is read as JSONL, so the
    # object is its line 1, reported there.
    path = tmp_path / "d.json"
    path.write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    records, errors = scan(path)
    assert records == []
    assert [(e.line, e.message) for e in errors] == [(1, "invalid JSON: nested too deeply")]
    assert str(errors[0]) == f"{path}:1: invalid JSON: nested too deeply"


def test_deeply_nested_jsonl_line_is_a_record_error(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD[0], b"[" * 100_000 + b"]" * 100_000])
    records, errors = scan(path)
    assert len(records) == 1 and [e.line for e in errors] == [2]


@pytest.mark.parametrize("raw", [
    b'{"instruction": "a\\ud800", "output": "b"}',
    b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\\udfff"}]}',
], ids=["alpaca", "chat"])
def test_lone_surrogate_is_a_record_error(tmp_path, raw):
    path = jsonl(tmp_path / "d.jsonl", [GOOD[0], raw])
    records, errors = scan(path)
    assert len(records) == 1 and [e.line for e in errors] == [2]


def test_whitespace_only_lines_are_blank(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GOOD[0], "   ", "\t", GOOD[1]])
    records, errors = scan(path)
    assert errors == [] and len(records) == 2
    with Dataset(path) as ds:
        assert [ds.location(i) for i in range(len(ds))] == [1, 4]


def test_bom_then_blank_line(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", ["", GOOD[0]], bom=True)
    records, errors = scan(path)
    assert errors == [] and len(records) == 1


# -- properties --------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "instruction", "input", "output", "messages",
                                       "role", "content", "x"]), children, max_size=4),
    max_leaves=10)
_record_like = st.fixed_dictionaries(
    {"instruction": st.text(max_size=8), "output": st.text(max_size=8)},
    optional={"input": st.text(max_size=5) | st.none(), "id": st.integers(0, 3) | st.text(max_size=2)})
_lines = st.lists(
    st.one_of(st.binary(max_size=30),
              _json_values.map(lambda v: json.dumps(v).encode()),
              _record_like.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
              st.sampled_from([b"", b"\r", b" ", b"\xef\xbb\xbf", b"[", b"{"])),
    max_size=8)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=_lines, crlf=st.booleans(),
       suffix=st.sampled_from([".jsonl", ".json", ".txt"]))
def test_any_bytes_give_dataset_error_or_located_results(tmp_path, lines, crlf, suffix):
    data = (b"\r\n" if crlf else b"\n").join(lines)
    path = tmp_path / f"any{suffix}"
    path.write_bytes(data)
    try:
        ds = Dataset(path)
    except DatasetError as exc:
        assert str(path) in str(exc)
        return
    with ds:
        result = ds.scan()
        assert result.total == len(ds) > 0
        file_lines = data.split(b"\n")
        for error in result.errors:
            assert error.path == str(path)
            assert error.message
            if ds.format == "jsonl":
                assert error.index is None
                assert 1 <= error.line <= len(file_lines)
                assert file_lines[error.line - 1] not in (b"", b"\r")
            else:
                assert error.line is None
                assert 0 <= error.index < len(ds)
        for record, where in zip(result.records, result.locations):
            assert isinstance(record, Record)
            if ds.format == "jsonl":
                assert 1 <= where <= len(file_lines)
        assert len({r.id for r in result.records}) == len(result.records)


# -- field keys and ignored keys ------------------------------------------------------

RENAMED = RecordFields(instruction="prompt", input="context", output="completion")


def test_mapped_keys_read_a_file_with_other_names(tmp_path):
    path = jsonl(tmp_path / "renamed.jsonl", [
        {"prompt": r["instruction"], "context": r.get("input", ""), "completion": r["output"],
         **({"id": r["id"]} if "id" in r else {})} for r in GOOD])
    records, errors = scan(path)
    assert records == [] and len(errors) == 3  # not readable under the default keys
    result = load_records(path, RENAMED)
    assert result.errors == [] and result.ignored_keys == {}
    canonical, _ = scan(jsonl(tmp_path / "plain.jsonl", GOOD))
    # The same records, ids included: an id derived from content ignores key names.
    assert result.records == canonical
    with Dataset(path, RENAMED) as ds:
        assert ds.get(1).input == "cat"


def test_errors_name_the_mapped_keys(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [
        {"prompt": "Say hi.", "completion": "hi"},
        {"prompt": "Say hi.", "output": "hi"},
        {"prompt": "", "completion": "x"},
        {"prompt": "Count.", "completion": 3},
    ])
    result = load_records(path, RENAMED)
    assert [str(e) for e in result.errors] == [
        f"{path}:2: missing field 'completion'",
        f"{path}:3: field 'prompt' is empty",
        f"{path}:4: field 'completion' must be a string, not a number"]


def test_a_record_of_neither_kind_lists_its_keys_and_the_fix():
    from tui_ft.data.records import InvalidRecord

    with pytest.raises(InvalidRecord) as info:
        parse_record({"question": "Why?", "answer": "Because."})
    message = str(info.value)
    assert "'instruction', 'input', 'output'" in message and "'messages'" in message
    assert "its keys are 'question', 'answer'" in message
    assert "instruction_key" in message and "output_key" in message
    with pytest.raises(InvalidRecord, match="'q', 'i', 'a'"):
        parse_record({"question": "Why?"}, RecordFields("q", "i", "a"))
    many = {f"k{i}": "v" for i in range(9)}
    with pytest.raises(InvalidRecord, match="'k5' and 3 more"):
        parse_record(many)


def test_ignored_keys_are_counted(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [
        {**GOOD[0], "chosen": "a", "rejected": "b"},
        {**GOOD[1], "rejected": "c"},
        {"instruction": "", "output": "x", "bad_only": 1},  # a bad record: not counted
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                         "content": "yo"}], "meta": {}},
        GOOD[2],
    ])
    result = load_records(path)
    assert len(result.records) == 4
    assert result.ignored_keys == {"rejected": 2, "chosen": 1, "meta": 1}
    assert list(result.ignored_keys) == ["rejected", "chosen", "meta"]  # most common first
    # A key read under a mapping is not ignored; the one it replaces is.
    mapped = load_records(path, RecordFields(output="chosen"))
    assert "chosen" not in mapped.ignored_keys and mapped.ignored_keys["output"] == 1


def test_shared_files_report_their_extra_keys(shared_data_dir):
    preference = load_records(shared_data_dir / "instruction-data-with-preference.json")
    assert len(preference.records) == 1100
    assert preference.ignored_keys == {"chosen": 1100, "rejected": 1100}
    answers = load_records(shared_data_dir / "instruction-data-with-response.json")
    assert answers.ignored_keys == {"model_response": 110}


def test_entry_at_inverts_location(tmp_path):
    lines = [GOOD[0], "", GOOD[1], "   ", "", GOOD[2]]
    with Dataset(jsonl(tmp_path / "blanks.jsonl", lines)) as ds:
        assert [ds.location(i) for i in range(len(ds))] == [1, 3, 6]
        assert [ds.entry_at(ds.location(i)) for i in range(len(ds))] == [0, 1, 2]
        assert ds.value(ds.entry_at(6)) == GOOD[2]
        with pytest.raises(IndexError):
            ds.entry_at(2)  # a blank line is no entry
    with Dataset(jsonl(tmp_path / "plain.jsonl", GOOD)) as ds:
        assert [ds.entry_at(ds.location(i)) for i in range(3)] == [0, 1, 2]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8")
    with Dataset(path) as ds:
        assert [ds.entry_at(ds.location(i)) for i in range(3)] == [0, 1, 2]
        assert ds.value(2) == GOOD[2]
