"""`tui-ft data inspect`, `tui-ft data preview` and `tui-ft styles`, run for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tui_ft.data.tokenizer import decode, encode

EOT = 50256

GOOD = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
    {"id": "k", "instruction": "Name a colour.", "output": "blue"},
]


def assert_clean_failure(proc, *words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.strip(), "expected a message on stderr"
    for word in words:
        assert word.lower() in proc.stderr.lower(), proc.stderr


def check_tokens(tokens: dict) -> None:
    assert set(tokens) >= {"min", "median", "p95", "max"}
    assert all(isinstance(tokens[k], int) for k in ("min", "p95", "max"))
    assert isinstance(tokens["median"], (int, float))
    assert 2 <= tokens["min"] <= tokens["median"] <= tokens["p95"] <= tokens["max"]


@pytest.fixture
def mixed_jsonl(tmp_path):
    """3 good and 4 bad lines, with blank lines in between."""
    lines = [
        json.dumps(GOOD[0]),                                            # 1 good
        "{not json",                                                    # 2 bad
        "",                                                             # 3 blank
        json.dumps(GOOD[1]),                                            # 4 good
        json.dumps({"instruction": "", "output": "x"}),                 # 5 empty instruction
        "",                                                             # 6 blank
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),  # 7 no assistant
        json.dumps(GOOD[2]),                                            # 8 good
        json.dumps({"id": "k", "instruction": "again", "output": "y"}),  # 9 duplicate id
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- inspect -----------------------------------------------------------------------


def test_inspect_mixed_file(run_cli_json, mixed_jsonl):
    report = run_cli_json("data", "inspect", mixed_jsonl)
    assert report["records"] == 3
    errors = report["errors"]
    assert [e["line"] for e in errors] == [2, 5, 7, 9]
    assert all(isinstance(e["message"], str) for e in errors)
    assert "json" in errors[0]["message"].lower()
    assert "instruction" in errors[1]["message"] and "empty" in errors[1]["message"]
    assert "assistant" in errors[2]["message"]
    assert "duplicate" in errors[3]["message"] and "k" in errors[3]["message"]
    assert set(report["splits"]) == {"train", "val", "test"}
    assert sum(report["splits"].values()) == 3
    check_tokens(report["tokens"])
    assert report["truncated"] == 0


def test_inspect_mixed_file_human(run_cli, mixed_jsonl):
    proc = run_cli("data", "inspect", mixed_jsonl)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "3 records" in out
    for line in (2, 5, 7, 9):
        assert f"{mixed_jsonl}:{line}:" in out


def test_inspect_json_list_uses_index(run_cli_json, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([GOOD[0], 3, GOOD[1], {"instruction": "x"}]), encoding="utf-8")
    report = run_cli_json("data", "inspect", path)
    assert report["records"] == 2
    assert [e["index"] for e in report["errors"]] == [1, 3]
    assert all("line" not in e for e in report["errors"])
    assert "output" in report["errors"][1]["message"]


def test_inspect_sample_data(run_cli_json, sample_data_dir):
    report = run_cli_json("data", "inspect", sample_data_dir / "instructions.jsonl")
    assert report["records"] == 1500
    assert report["errors"] == []
    assert sum(report["splits"].values()) == 1500
    check_tokens(report["tokens"])
    chat = run_cli_json("data", "inspect", sample_data_dir / "chat.jsonl", "--style", "phi3")
    assert chat["records"] == 60 and chat["errors"] == []
    check_tokens(chat["tokens"])


def test_inspect_shared_data(run_cli_json, shared_instructions):
    from tui_ft.data.dataset import load_records
    from tui_ft.data.styles import get_style

    report = run_cli_json("data", "inspect", shared_instructions)
    assert report["records"] == 1100
    assert report["errors"] == []
    splits = report["splits"]
    assert sum(splits.values()) == 1100
    assert abs(splits["train"] / 1100 - 0.85) < 0.03
    tokens = report["tokens"]
    check_tokens(tokens)
    assert all(isinstance(tokens[k], int) for k in ("min", "median", "p95", "max"))
    # The same numbers, computed here: rendered alpaca text + <|endoftext|>.
    style = get_style("alpaca")
    lengths = sorted(len(encode(style.render(r).text)) + 1
                     for r in load_records(shared_instructions).records)
    assert tokens["min"] == lengths[0]
    assert tokens["max"] == lengths[-1]
    assert lengths[549] <= tokens["median"] <= lengths[550]
    assert lengths[1043] <= tokens["p95"] <= lengths[1045]
    assert report["truncated"] == 0

    short = run_cli_json("data", "inspect", shared_instructions, "--max-length", "50")
    assert short["truncated"] == sum(1 for n in lengths if n > 50)
    assert short["truncated"] > 0


def test_inspect_split_and_seed_options(run_cli_json, shared_instructions):
    a = run_cli_json("data", "inspect", shared_instructions, "--split", "60/20/20")
    assert abs(a["splits"]["val"] / 1100 - 0.2) < 0.04
    b = run_cli_json("data", "inspect", shared_instructions, "--seed", "7")
    c = run_cli_json("data", "inspect", shared_instructions, "--seed", "123")
    assert b["splits"] != c["splits"]


@pytest.mark.parametrize("content", [b"", b"  \n\n", b"[]"])
def test_inspect_unusable_file(run_cli, tmp_path, content):
    path = tmp_path / "bad.jsonl" if content != b"[]" else tmp_path / "bad.json"
    path.write_bytes(content)
    for extra in ([], ["--json"]):
        proc = run_cli("data", "inspect", path, *extra)
        assert_clean_failure(proc, str(path))


def test_inspect_file_with_no_good_record(run_cli, tmp_path):
    path = tmp_path / "nogood.jsonl"
    path.write_text('nope\n{"instruction": "x"}\n', encoding="utf-8")
    proc = run_cli("data", "inspect", path)
    assert_clean_failure(proc)
    assert f"{path}:1:" in proc.stdout and f"{path}:2:" in proc.stdout


def test_inspect_file_with_no_good_record_json(run_cli, tmp_path):
    path = tmp_path / "nogood.jsonl"
    path.write_text('nope\n{"instruction": "x"}\n', encoding="utf-8")
    proc = run_cli("data", "inspect", path, "--json")
    report = json.loads(proc.stdout)
    assert report["records"] == 0 and len(report["errors"]) == 2
    assert_clean_failure(proc)


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "missing.jsonl", ["no such file"]),
    (lambda p: p, ["folder"]),
])
def test_inspect_missing_or_folder(run_cli, tmp_path, make, words):
    path = make(tmp_path)
    assert_clean_failure(run_cli("data", "inspect", path), str(path), *words)


def test_inspect_bad_options(run_cli, mixed_jsonl):
    assert_clean_failure(run_cli("data", "inspect", mixed_jsonl, "--style", "nope"),
                         "nope", "alpaca")
    assert_clean_failure(run_cli("data", "inspect", mixed_jsonl, "--split", "50/10"))
    assert_clean_failure(run_cli("data", "inspect", mixed_jsonl, "--max-length", "1"))


def test_inspect_human_output_has_no_escape_codes(run_cli, tmp_path):
    path = tmp_path / "esc.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n" + json.dumps(
        {"messages": [{"role": "\x1b[31mevil", "content": "x"}]}) + "\n", encoding="utf-8")
    proc = run_cli("data", "inspect", path)
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert "[31mevil" in proc.stdout  # shown, made visible


# -- preview -----------------------------------------------------------------------


def check_preview(data: dict) -> tuple[list[int], list[int]]:
    ids, labels = data["input_ids"], data["labels"]
    assert isinstance(data["text"], str)
    assert len(ids) == len(labels) > 0
    assert all(isinstance(i, int) for i in ids + labels)
    assert ids[-1] == EOT
    for i in range(len(ids) - 1):
        assert labels[i] in (ids[i + 1], -100)
    assert labels[-1] == -100
    assert ids[:-1] == encode(data["text"])
    return ids, labels


def test_preview_json(run_cli_json, shared_instructions):
    raw = json.loads(shared_instructions.read_text(encoding="utf-8"))
    for index in (0, 1099):
        data = run_cli_json("data", "preview", shared_instructions, "--index", str(index))
        ids, labels = check_preview(data)
        assert labels[:-1] == ids[1:]
        assert labels.count(-100) == 1
        rec = raw[index]
        assert data["text"].endswith(f"### Response:\n{rec['output']}")
        assert f"### Instruction:\n{rec['instruction']}" in data["text"]

        masked = run_cli_json("data", "preview", shared_instructions, "-i", str(index),
                              "--mask-prompt")
        ids2, labels2 = check_preview(masked)
        assert ids2 == ids
        learned = [t for t in labels2 if t != -100]
        assert decode(learned) == rec["output"] + "<|endoftext|>"
        # Everything up to and including "### Response:\n" is masked.
        n_prompt = len(encode(data["text"][:-len(rec["output"])]))
        assert data["text"][:-len(rec["output"])].endswith("### Response:\n")
        assert labels2[:n_prompt - 1] == [-100] * (n_prompt - 1)
        assert labels2[n_prompt - 1:] == ids[n_prompt:] + [-100]


def test_preview_other_styles_and_chat(run_cli_json, sample_data_dir):
    chat = sample_data_dir / "chat.jsonl"
    lines = chat.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines)
                 if sum(m["role"] == "assistant" for m in json.loads(line)["messages"]) > 1)
    messages = json.loads(lines[index])["messages"]
    turns = [m["content"] for m in messages if m["role"] == "assistant"]
    data = run_cli_json("data", "preview", chat, "--index", str(index), "--style", "phi3",
                        "--mask-prompt")
    _, labels = check_preview(data)
    assert data["text"].startswith(("<|system|>\n", "<|user|>\n"))
    assert decode([t for t in labels if t != -100]) == "".join(turns) + "<|endoftext|>"


def test_preview_max_length(run_cli_json, sample_data_dir):
    data = run_cli_json("data", "preview", sample_data_dir / "instructions.jsonl", "-i", "0",
                        "--max-length", "10")
    assert len(data["input_ids"]) == len(data["labels"]) == 10
    assert data["input_ids"] == encode(data["text"])[:10]
    assert data["labels"] == encode(data["text"])[1:11]


@pytest.mark.parametrize("index", ["3", "99", "-1"])
def test_preview_out_of_range(run_cli, mixed_jsonl, index):
    # mixed.jsonl has 7 entries (non-blank lines): 0..6.
    proc = run_cli("data", "preview", mixed_jsonl, "--index", index)
    if index == "3":
        # Entry 3 (line 5) is a bad record: its location and reason are shown.
        assert_clean_failure(proc, f"{mixed_jsonl}:5", "empty")
    else:
        assert_clean_failure(proc, "range")
    assert proc.stdout == ""


def test_preview_unusable_file(run_cli, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert_clean_failure(run_cli("data", "preview", path, "-i", "0"), str(path))


def test_preview_human_output_has_no_escape_codes(run_cli, tmp_path):
    path = tmp_path / "esc.jsonl"
    record = {"id": "x\x1b[2Jy", "instruction": "Say \x1b[31mred\x1b[0m", "input": "\x9b31m",
              "output": "ok \x1b[31m done \x07"}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    for extra in ([], ["--mask-prompt"]):
        proc = run_cli("data", "preview", path, "-i", "0", *extra)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout
        assert "\x9b" not in proc.stdout and "\x07" not in proc.stdout
        assert "[31mred" in proc.stdout
    # The JSON form keeps the real text.
    data = json.loads(run_cli("data", "preview", path, "-i", "0", "--json").stdout)
    assert "\x1b[31mred" in data["text"]


def test_preview_human_output_shows_learned_tokens(run_cli, sample_data_dir):
    proc = run_cli("data", "preview", sample_data_dir / "instructions.jsonl", "-i", "0",
                   "--mask-prompt")
    assert proc.returncode == 0
    output = json.loads((sample_data_dir / "instructions.jsonl").read_text(
        encoding="utf-8").splitlines()[0])["output"]
    assert f"\u27e6{output}<|endoftext|>\u27e7" in proc.stdout


# -- styles ------------------------------------------------------------------------


def test_styles_command(run_cli, config_dir):
    folder = config_dir / "styles"
    folder.mkdir()
    (folder / "mine.yaml").write_text('templates:\n  user: "{content}"\n'
                                      '  assistant: "A: {content}"\n', encoding="utf-8")
    (folder / "broken.yaml").write_text("name: [\n", encoding="utf-8")
    proc = run_cli("styles")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert {"alpaca", "phi3", "chatml", "mine"} <= set(names)
    assert str(folder / "broken.yaml") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_style_usable_from_cli(run_cli_json, config_dir, sample_data_dir):
    folder = config_dir / "styles"
    folder.mkdir()
    (folder / "qa.yaml").write_text('templates:\n  user: "Q:\\n{content}"\n'
                                    '  assistant: "\\nA:\\n{content}"\n', encoding="utf-8")
    data = run_cli_json("data", "preview", sample_data_dir / "instructions.jsonl", "-i", "0",
                        "--style", "qa")
    assert data["text"].startswith("Q:\n") and "\nA:\n" in data["text"]


def test_console_script(tmp_path, mixed_jsonl):
    exe = shutil.which("tui-ft")
    if exe is None:
        pytest.skip("the tui-ft console script is not on PATH")
    proc = subprocess.run([exe, "data", "inspect", str(mixed_jsonl), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records"] == 3


def test_module_entry_point_version():
    proc = subprocess.run([sys.executable, "-m", "tui_ft.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("tui-ft ")


# -- settings: training's defaults, field keys, split method, @sample/ ----------------------


def test_inspect_defaults_are_trainings(run_cli_json, mixed_jsonl):
    """Left out, every setting is TrainConfig's: the parser restates none of them."""
    from tui_ft.cli import build_parser
    from tui_ft.config import TrainConfig

    args = build_parser().parse_args(["data", "inspect", "x.jsonl"])
    assert (args.style, args.max_length, args.seed, args.split, args.split_method,
            args.instruction_key, args.input_key, args.output_key) == (None,) * 8
    defaults = TrainConfig()
    report = run_cli_json("data", "inspect", mixed_jsonl)
    assert report["style"] == defaults.prompt_style
    assert report["max_length"] == defaults.sequence_length()
    assert report["split_method"] == defaults.split_method
    assert report["split_seed"] == defaults.split_seed
    assert report["split_ratios"] == defaults.split_ratios
    assert report["fields"] == {"instruction": defaults.instruction_key,
                                "input": defaults.input_key, "output": defaults.output_key}


def test_inspect_reports_the_keys_it_ignores(run_cli, run_cli_json, tmp_path):
    path = tmp_path / "pref.json"
    path.write_text(json.dumps([{**GOOD[0], "chosen": "5!", "rejected": "6"},
                                {**GOOD[1], "chosen": "le chat"}]), encoding="utf-8")
    report = run_cli_json("data", "inspect", path)
    assert report["records"] == 2 and report["ignored_keys"] == {"chosen": 2, "rejected": 1}
    proc = run_cli("data", "inspect", path)
    assert proc.returncode == 0, proc.stderr
    assert "ignored keys (records holding each): 'chosen' (2), 'rejected' (1)" in proc.stdout
    assert "--output-key" in proc.stdout
    # Read under a mapping, a key is no longer ignored.
    mapped = run_cli_json("data", "inspect", path, "--output-key", "chosen")
    assert mapped["ignored_keys"] == {"output": 2, "rejected": 1}


def test_mapped_keys_in_inspect_and_preview(run_cli, run_cli_json, tmp_path):
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["instruction"], "completion": r["output"]})
                            + "\n" for r in GOOD), encoding="utf-8")
    unmapped = run_cli("data", "inspect", path)
    assert unmapped.returncode == 1 and "no record could be loaded" in unmapped.stderr
    assert "its keys are 'prompt', 'completion'" in unmapped.stdout
    keys = ("--instruction-key", "prompt", "--output-key", "completion")
    report = run_cli_json("data", "inspect", path, *keys)
    assert report["records"] == 3 and report["errors"] == [] and report["ignored_keys"] == {}
    assert report["fields"]["instruction"] == "prompt"
    preview = run_cli_json("data", "preview", path, "-i", "1", *keys)
    assert "### Instruction:\nTranslate to French." in preview["text"]
    assert preview["text"].endswith("### Response:\nchat")
    clash = run_cli("data", "inspect", path, "--instruction-key", "prompt", "--output-key",
                    "prompt")
    assert_clean_failure(clash, "output_key", "the same key as instruction_key")


def test_inspect_ordered_split_of_the_books_file(run_cli, run_cli_json, shared_instructions):
    report = run_cli_json("data", "inspect", shared_instructions, "--split-method", "ordered")
    assert report["splits"] == {"train": 935, "val": 55, "test": 110}
    assert report["split_method"] == "ordered" and report["split_seed"] is None
    proc = run_cli("data", "inspect", shared_instructions, "--split-method", "ordered")
    assert "split (ordered, 85/5/10): train 935, val 55, test 110" in proc.stdout
    assert_clean_failure(run_cli("data", "inspect", shared_instructions, "--split-method",
                                 "random"), "split_method", "must be one of hash, ordered")


def test_sample_prefix_in_inspect_and_preview(run_cli, run_cli_json, sample_data_dir):
    report = run_cli_json("data", "inspect", "@sample/instructions.jsonl")
    assert report["records"] == 1500 and report["path"] == "@sample/instructions.jsonl"
    first = json.loads((sample_data_dir / "chat.jsonl").read_text(
        encoding="utf-8").splitlines()[0])
    preview = run_cli_json("data", "preview", "@sample/chat.jsonl", "-i", "0",
                           "--style", "phi3")
    assert first["messages"][-1]["content"] in preview["text"]
    assert_clean_failure(run_cli("data", "inspect", "@sample/nosuch.jsonl"),
                         "nosuch.jsonl", "no such file")


def test_styles_json(run_cli, config_dir):
    folder = config_dir / "styles"
    folder.mkdir()
    (folder / "mine.yaml").write_text('description: my own\ntemplates:\n  user: "Q: {content}"\n'
                                      '  assistant: "\\nA: {content}"\n', encoding="utf-8")
    (folder / "broken.yaml").write_text("name: [\n", encoding="utf-8")
    proc = run_cli("styles", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    rows = json.loads(proc.stdout)
    by_name = {row["name"]: row for row in rows if row["name"]}
    assert {"alpaca", "chatml", "phi3", "mine"} <= set(by_name)
    assert by_name["alpaca"]["builtin"] is True and by_name["alpaca"]["source"] == "built-in"
    assert by_name["alpaca"]["stop"] == ["\n\n### Instruction:"]
    assert "### Response:" in by_name["alpaca"]["templates"]["assistant"]
    mine = by_name["mine"]
    assert mine["builtin"] is False and mine["source"] == str(folder / "mine.yaml")
    assert mine["description"] == "my own" and mine["error"] is None
    (broken,) = [row for row in rows if row["name"] is None]
    assert str(folder / "broken.yaml") in broken["error"]
