"""`tui-ft grades import`: answers made elsewhere become a run folder that `grades
summary`, `grades export` and the Grading screen (tests/test_ui_imported.py) accept;
bad records are located and refuse the import; an existing run is never touched."""

from __future__ import annotations

import json
import os

import pytest

from tui_ft.grade.imported import IMPORTED
from tui_ft.text import exact_match
from tui_ft.grade.store import GradeStore
from tui_ft.runfolder import Run
from tui_ft.runs.registry import list_runs

ANSWERS = [
    {"instruction": "Write the plural of \"bus\".", "input": "", "output": "buses",
     "model_response": "Buses"},
    {"instruction": "Translate to French.", "input": "cat", "output": "chat",
     "model_response": "le chien"},
    {"id": 7, "instruction": "Name a colour.", "output": "blue", "model_response": "blue",
     "score": 3},
]


def assert_clean_failure(proc, *words):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tui-ft: error: ")
    for word in words:
        assert word in proc.stderr, proc.stderr


def write_jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in rows), encoding="utf-8")
    return str(path)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_import_then_grade_and_export(run_cli, tmp_path, isolated_dirs):
    source = write_jsonl(tmp_path / "answers.jsonl", ANSWERS)
    proc = run_cli("grades", "import", source, "--run", "elsewhere", "--response-key",
                   "model_response", "--label", "gpt2-medium (book)")
    assert proc.returncode == 0, proc.stderr
    folder = isolated_dirs["runs"] / "elsewhere"
    assert proc.stdout.strip() == str(folder)
    assert "3 answers" in proc.stderr and "exact match 2/3" in proc.stderr
    assert "'score'" in proc.stderr  # the key nothing read is named

    run = Run.open(folder)
    status = run.read_status()
    assert status["state"] == IMPORTED == run.state()
    assert status["label"] == "gpt2-medium (book)" and status["responses"]["count"] == 3
    assert run.checkpoints() == []
    assert [r.name for r in list_runs(isolated_dirs["runs"])] == ["elsewhere"]
    lines = read_jsonl(run.responses_path)
    assert [line["expected"] for line in lines] == ["buses", "chat", "blue"]
    assert [line["response"] for line in lines] == ["Buses", "le chien", "blue"]
    assert [line["exact_match"] for line in lines] == [
        exact_match(a["model_response"], a["output"]) for a in ANSWERS] == [True, False, True]
    assert {line["checkpoint"] for line in lines} == {"gpt2-medium (book)"}
    assert {line["run"] for line in lines} == {"elsewhere"}
    assert [line["source_line"] for line in lines] == [1, 2, 3]
    assert lines[2]["id"] == "7" and lines[0]["id"].startswith("h-")

    # Graded as the Grading screen grades (the journal), then exported by the CLI.
    store = GradeStore(run)
    store.mark(lines[0]["id"], lines[0]["checkpoint"], "correct")
    store.mark(lines[1]["id"], lines[1]["checkpoint"], "wrong")
    summary = run_cli("grades", "summary", "elsewhere", "--json")
    assert json.loads(summary.stdout) == {"total": 3, "correct": 1, "wrong": 1,
                                          "ungraded": 1, "accuracy": 0.5}
    out = tmp_path / "graded.jsonl"
    export = run_cli("grades", "export", "elsewhere", str(out))
    assert export.returncode == 0, export.stderr
    rows = read_jsonl(out)
    assert [(r["instruction"], r["input"], r["expected"], r["response"], r["grade"])
            for r in rows] == [
        (a["instruction"], a.get("input", ""), a["output"], a["model_response"], g)
        for a, g in zip(ANSWERS, ("correct", "wrong", "ungraded"))]
    assert {(r["run"], r["checkpoint"]) for r in rows} == {("elsewhere", "gpt2-medium (book)")}
    assert rows[0]["graded_at"] and rows[2]["graded_at"] is None
    assert [r["exact_match"] for r in rows] == [True, False, True]  # beside the grade
    # Imported answers have no model: asking for new ones says so.
    proc = run_cli("responses", "elsewhere")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "imported answers and no model" in proc.stderr, proc.stderr


def test_import_the_books_answers(run_cli, tmp_path, shared_data_dir, isolated_dirs):
    """The book's gpt2-medium answers (a JSON list, key model_response), graded and
    exported like a run's; the label defaults to the file's name."""
    source = shared_data_dir / "instruction-data-with-response.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    proc = run_cli("grades", "import", str(source), "--run", "book", "--response-key",
                   "model_response", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["count"] == len(data) == 110 and summary["ignored_keys"] == {}
    assert summary["label"] == source.name
    assert summary["correct"] == sum(exact_match(d["model_response"], d["output"])
                                     for d in data)
    out = tmp_path / "book.jsonl"
    assert run_cli("grades", "export", "book", str(out)).returncode == 0
    rows = read_jsonl(out)
    assert [(r["instruction"], r["expected"], r["response"]) for r in rows] == \
        [(d["instruction"], d["output"], d["model_response"]) for d in data]
    assert {r["grade"] for r in rows} == {"ungraded"}
    lines = read_jsonl(isolated_dirs["runs"] / "book" / "responses.jsonl")
    assert [line["source_index"] for line in lines] == list(range(110))


def test_an_existing_run_is_never_replaced(run_cli, tmp_path, isolated_dirs):
    source = write_jsonl(tmp_path / "a.jsonl", ANSWERS)
    first = run_cli("grades", "import", source, "--run", "once", "--response-key",
                    "model_response")
    assert first.returncode == 0, first.stderr
    folder = isolated_dirs["runs"] / "once"
    GradeStore(Run(folder)).mark(read_jsonl(folder / "responses.jsonl")[0]["id"],
                                 "a.jsonl", "correct")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = write_jsonl(tmp_path / "b.jsonl", ANSWERS[:1])
    again = run_cli("grades", "import", other, "--run", "once", "--response-key",
                    "model_response")
    assert_clean_failure(again, str(folder), "already exists", "nothing was changed")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # Nor is any other folder of that name (a trained run, say).
    (isolated_dirs["runs"] / "trained").mkdir()
    assert_clean_failure(run_cli("grades", "import", other, "--run", "trained",
                                 "--response-key", "model_response"), "already exists")
    assert list((isolated_dirs["runs"] / "trained").iterdir()) == []


def test_bad_records_are_located_and_nothing_is_made(run_cli, tmp_path, isolated_dirs):
    source = write_jsonl(tmp_path / "bad.jsonl", [
        ANSWERS[0],
        {"instruction": "No answer.", "output": "x"},
        {"instruction": "Null answer.", "output": "x", "model_response": None},
        "{not json",
        {"instruction": "", "output": "x", "model_response": "y"},
        {"id": 7, "instruction": "a", "output": "b", "model_response": "c"},
        {"id": 7, "instruction": "again", "output": "b", "model_response": "c"},
    ])
    proc = run_cli("grades", "import", source, "--run", "bad", "--response-key",
                   "model_response")
    assert_clean_failure(proc, "5 of 7 records cannot be imported", "nothing was imported")
    for located in (f"{source}:2: missing field 'model_response'",
                    f"{source}:3: field 'model_response' must be a string, not null",
                    f"{source}:4: invalid JSON", f"{source}:5: field 'instruction' is empty",
                    f"{source}:7: duplicate id '7'"):
        assert located in proc.stderr
    assert list(isolated_dirs["runs"].iterdir()) == []


def test_wrong_response_key_is_one_message(run_cli, shared_data_dir, isolated_dirs):
    proc = run_cli("grades", "import",
                   str(shared_data_dir / "instruction-data-with-response.json"), "--run", "x")
    assert_clean_failure(proc, "no record has the key 'response'", "'model_response'",
                         "--response-key")
    assert proc.stderr.count("\n") == 1
    assert list(isolated_dirs["runs"].iterdir()) == []


@pytest.mark.parametrize("args, words", [
    (["--run", "../escape"], ["a run name is"]),
    (["--run", ".hidden"], ["a run name is"]),
    (["--run", "ok", "--response-key", "output"], ["--response-key 'output'"]),
    (["--run", "ok", "--label", " "], ["--label must not be empty"]),
    (["--run", "ok", "--output-key", "instruction"], ["the same key as instruction_key"]),
])
def test_bad_options(run_cli, tmp_path, isolated_dirs, args, words):
    source = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o",
                                                 "response": "o"}])
    assert_clean_failure(run_cli("grades", "import", source, *args), *words)
    assert list(isolated_dirs["runs"].iterdir()) == []
    assert not os.path.exists(tmp_path / "escape")


def test_mapped_keys(run_cli, tmp_path, isolated_dirs):
    source = write_jsonl(tmp_path / "other-tool.jsonl", [
        {"question": "2+2?", "answer": "4", "generated": " 4 "},
        {"question": "Capital of France?", "answer": "Paris", "generated": "Lyon"}])
    proc = run_cli("grades", "import", source, "--run", "tool", "--instruction-key", "question",
                   "--output-key", "answer", "--response-key", "generated", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["correct"] == 1
    lines = read_jsonl(isolated_dirs["runs"] / "tool" / "responses.jsonl")
    assert [(x["instruction"], x["expected"], x["response"]) for x in lines] == [
        ("2+2?", "4", " 4 "), ("Capital of France?", "Paris", "Lyon")]
    # The run's config reads its file back with the same keys.
    from tui_ft.config import TrainConfig
    from tui_ft.train.splits import config_splits

    config = TrainConfig.load(isolated_dirs["runs"] / "tool" / "config.yaml")
    assert (config.instruction_key, config.output_key) == ("question", "answer")
    splits, errors = config_splits(config)
    assert errors == [] and sum(splits.sizes().values()) == 2
