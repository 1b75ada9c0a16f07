"""Generation settings that work together: the default answer length fits the default
model, a length the context cannot hold is refused where it is set (config, Params
form, `tui-ft responses` flags, the generate dialog), a long prompt lowers it once
with a note, a failed generation leaves no empty partial file, and the Grading
screen shows the exact-match suggestion beside each answer.

Runs are built by hand (config, a checkpoint of the tiny preset's weights, a test
split) and answered for real by the tiny model on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import write_jsonl
from test_ui_grading import CHECKPOINT, journal, make_run, message, wait_for
from tui_ft.config import TrainConfig, check
from tui_ft.grade.responses import generate_responses, partial_path, read_responses
from tui_ft.model.generate import fit_max_new_tokens
from tui_ft.model.presets import get_preset
from tui_ft.runfolder import Run
from tui_ft.ui.app import create_app
from tui_ft.ui.widgets.grade_pickers import CheckpointPicker
from tui_ft.ui.widgets.response_view import ResponseView

TINY_CONTEXT = get_preset("tiny").context_length


def problems_of(**values) -> dict[str, str]:
    return {p.key: p.reason for p in check(values)[1]}


# -- the configuration -------------------------------------------------------------------


def test_the_default_answer_length_fits_the_default_model():
    config = TrainConfig()
    assert get_preset(config.model).context_length == TINY_CONTEXT
    assert 0 < config.max_new_tokens < TINY_CONTEXT
    assert check({})[1] == []


def test_a_length_that_leaves_no_room_for_the_prompt_is_refused_as_typed():
    reason = problems_of(max_new_tokens=TINY_CONTEXT)["max_new_tokens"]
    assert f"{TINY_CONTEXT}-token context" in reason and "tiny" in reason
    assert "max_new_tokens" in problems_of(max_new_tokens="300")  # as text, from the form
    assert "max_new_tokens" not in problems_of(max_new_tokens=TINY_CONTEXT - 1)
    # gpt2's context is 1024 tokens: the same length is fine there.
    assert "max_new_tokens" not in problems_of(model="gpt2", max_new_tokens=TINY_CONTEXT)


def test_fit_max_new_tokens_lowers_the_length_to_what_the_longest_prompt_leaves():
    assert fit_max_new_tokens(128, 256, [20, 61]) == (128, None)
    assert fit_max_new_tokens(195, 256, [61]) == (195, None)
    length, note = fit_max_new_tokens(200, 256, [20, 61])
    assert length == 195
    assert "200 lowered to 195" in note and "61 tokens" in note and "256-token" in note


def test_one_very_long_prompt_does_not_shrink_every_answer():
    # Never below a quarter of the context: the prompts longer than the rest are cut.
    length, note = fit_max_new_tokens(128, 256, [30, 250, 240, 40])
    assert length == 64
    assert "2 prompts longer than 192 tokens are cut" in note
    assert fit_max_new_tokens(10, 256, [250])[0] == 10  # never raised


# -- generation from a run -------------------------------------------------------------------


def tiny_run(tmp_path: Path, test_records: list[dict], **config) -> Run:
    """A run of the tiny preset with one checkpoint (its initial weights), whose test
    split is `test_records`."""
    run = Run(tmp_path / "run")
    (run.checkpoints_dir / CHECKPOINT).mkdir(parents=True)
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"id": f"t{i}", "instruction": f"Say {w}.", "input": "", "output": w}
        for i, w in enumerate(["alpha", "beta", "gamma", "delta"])])
    test = write_jsonl(tmp_path / "test.jsonl", test_records)
    TrainConfig(**{"model": "tiny", "dataset": train, "test_dataset": test, "device": "cpu",
                   "max_new_tokens": 8, **config}).save(run.config_path)
    run.write_status(state="finished", step=10, best_checkpoint=CHECKPOINT)
    subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        from tui_ft.model.weights import load_model, save_checkpoint_weights
        from tui_ft.runfolder import write_checkpoint_marker
        save_checkpoint_weights(load_model("tiny")[0], sys.argv[1])
        write_checkpoint_marker(__import__("pathlib").Path(sys.argv[1]), 10)
        """), str(run.checkpoints_dir / CHECKPOINT)], check=True, timeout=120)
    return run


SHORT = [{"id": f"q{i}", "instruction": f"Write the number {i}.", "input": "",
          "output": str(i)} for i in range(3)]
# About 170 tokens in the alpaca style: with 128 new tokens it would not fit tiny's 256.
LONG = {"id": "long", "instruction": "Summarise: " + "the cat sat on the mat " * 25,
        "input": "", "output": "a cat sat"}


@pytest.fixture(scope="module")
def run_with_a_long_prompt(tmp_path_factory) -> Run:
    return tiny_run(tmp_path_factory.mktemp("long"), SHORT + [LONG], max_new_tokens=128)


def prompt_tokens(run: Run, record: dict) -> int:
    from tui_ft.data.styles import load_styles
    from tui_ft.data.tokenizer import encode
    from tui_ft.train.splits import config_splits

    config = TrainConfig.load(run.config_path)
    splits, _ = config_splits(config)
    style = load_styles().get(config.prompt_style)
    return len(encode(style.prompt(next(r for r in splits.test if r.id == record["id"]))))


def test_a_long_test_prompt_lowers_the_length_once_with_a_note(run_with_a_long_prompt):
    run = run_with_a_long_prompt
    longest = prompt_tokens(run, LONG)
    assert longest + 128 > TINY_CONTEXT, "the long record must not fit with 128 new tokens"
    notes = []
    summary = generate_responses(run, device="cpu", on_note=notes.append)
    fitted = TINY_CONTEXT - longest
    assert summary["max_new_tokens"] == fitted and summary["prompts_cut"] == 0
    assert len(notes) == 1 and summary["note"] == notes[0]
    assert f"128 lowered to {fitted}" in notes[0] and f"{longest} tokens" in notes[0]
    lines = read_responses(run.responses_path)
    assert len(lines) == 4
    assert {line["generation"]["max_new_tokens"] for line in lines} == {fitted}
    assert not any("prompt_truncated" in line for line in lines)
    assert run.read_status()["responses"]["note"] == notes[0]


def test_responses_flags_choose_the_settings(run_with_a_long_prompt, run_cli):
    run = run_with_a_long_prompt
    proc = run_cli("responses", str(run.path), "--max-new-tokens", "6", "--temperature",
                   "0.8", "--top-k", "20", "--seed", "5", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr  # 6 tokens fit beside every prompt
    summary = json.loads(proc.stdout)
    assert summary["max_new_tokens"] == 6 and summary["note"] is None
    lines = read_responses(run.responses_path)
    settings = {json.dumps(line["generation"], sort_keys=True) for line in lines}
    assert len(settings) == 1
    used = lines[0]["generation"]
    assert (used["max_new_tokens"], used["temperature"], used["top_k"], used["seed"]) == \
        (6, 0.8, 20, 5)


@pytest.mark.parametrize("flags, words", [
    (("--max-new-tokens", "300"), ("max_new_tokens = 300", f"{TINY_CONTEXT}-token context")),
    (("--max-new-tokens", "0"), ("max_new_tokens = 0", "at least 1")),
    (("--temperature", "-1"), ("temperature = -1.0", "at least 0")),
    (("--top-p", "1.5"), ("top_p = 1.5", "at most 1")),
    (("--batch-size", "0"), ("--batch-size 0", "at least 1")),
])
def test_impossible_settings_are_refused_before_anything_is_written(tmp_path, run_cli, flags,
                                                                   words):
    run = make_run(tmp_path)  # responses.jsonl holds answers that must stay as they are
    before = run.responses_path.read_bytes()
    proc = run_cli("responses", str(run.path), *flags)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("tui-ft: error:")
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert run.responses_path.read_bytes() == before
    assert not partial_path(run).exists()


@pytest.mark.slow
def test_a_run_saved_with_a_length_now_refused_still_answers(tmp_path, run_cli):
    """Runs made before max_new_tokens had to fit the context have 256 with tiny: the
    rule steers new configs; a recorded run answers (the length fitted, said once),
    while a flag asking for the impossible is refused."""
    run = tiny_run(tmp_path, SHORT)
    text = run.config_path.read_text(encoding="utf-8")
    run.config_path.write_text(text.replace("max_new_tokens: 8", "max_new_tokens: 256"),
                               encoding="utf-8")
    proc = run_cli("responses", str(run.path), "--max-new-tokens", "256")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "max_new_tokens = 256" in proc.stderr and "use less" in proc.stderr
    assert not partial_path(run).exists() and not run.responses_path.exists()
    proc = run_cli("responses", str(run.path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("256 lowered to") == 1, proc.stderr
    assert len(read_responses(run.responses_path)) == 3
    proc = run_cli("responses", str(run.path), "--max-new-tokens", "4", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read_responses(run.responses_path)) == 3


def test_a_failure_before_the_first_answer_leaves_no_partial_file(tmp_path):
    run = tiny_run(tmp_path, SHORT)
    with pytest.raises(Exception, match="batch_size"):
        # Refused inside generation, after the partial file was opened.
        generate_responses(run, device="cpu", batch_size=0)
    assert not partial_path(run).exists() and not run.responses_path.exists()


def test_an_interrupted_generation_keeps_the_answers_written(tmp_path):
    run = tiny_run(tmp_path, SHORT)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_responses(run, device="cpu", on_progress=interrupt)
    assert len(read_responses(partial_path(run))) == 1
    assert not run.responses_path.exists()


# -- the Grading screen ----------------------------------------------------------------------


async def test_the_exact_match_suggestion_is_shown_beside_each_answer(tmp_path):
    run = make_run(tmp_path)
    # A check recorded by generation (its own normalisation) is shown as recorded.
    lines = [json.loads(line) for line in run.responses_path.read_text().splitlines()]
    assert lines[1]["id"] == "markup-2" and lines[1]["response"] != lines[1]["expected"]
    lines[1]["exact_match"] = True
    write_jsonl(run.responses_path, lines)
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        view = screen.query_one(ResponseView)
        # plural-1: "buses" for "buses", worked out from the texts (nothing recorded).
        assert screen.current["id"] == "plural-1"
        assert view.automatic_text() == "auto: matches expected"
        await pilot.press("j")
        assert view.automatic_text() == "auto: matches expected"  # as recorded
        await pilot.press("j")
        assert view.automatic_text() == "auto: differs from expected"
        # The mark is the person's: a suggested match can be marked wrong.
        await pilot.press("k", "k", "w")
        assert [(e["id"], e["grade"]) for e in journal(run)] == [("plural-1", "wrong")]
        await pilot.press("k")
        assert screen.current["id"] == "plural-1"
        assert "\u2717 wrong" in str(view.query_one("#response-panel").border_title)
        assert view.automatic_text() == "auto: matches expected"


async def test_an_empty_partial_file_is_not_an_incomplete_generation(tmp_path):
    run = make_run(tmp_path, responses=None)
    partial_path(run).write_text("")  # a generation killed before its first answer
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        header = str(app.screen.query_one("#grading-header").content)
        assert "incomplete" not in header and "no responses" in header
        assert "Press r to generate" in app.screen.query_one(ResponseView).text_of("prompt")


async def test_the_generate_dialog_checks_the_settings_as_they_are_typed(tmp_path):
    run = make_run(tmp_path, responses=None, max_new_tokens=8)
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointPicker))
        picker = app.screen
        tokens = picker.query_one("#gen-max_new_tokens")
        temperature = picker.query_one("#gen-temperature")
        assert (tokens.value, temperature.value) == ("8", "0")  # the run's
        tokens.value = "300"
        await pilot.pause()
        problem = str(picker.query_one("#settings-problem").content)
        assert "leaves no room for the prompt" in problem
        await pilot.press("enter")  # refused: the dialog stays, on the field to fix
        assert app.screen is picker and picker.focused is tokens
        tokens.value = "5"
        temperature.value = "hot"
        await pilot.pause()
        assert "temperature: must be a number" in str(
            picker.query_one("#settings-problem").content)
        temperature.value = "0.5"
        await pilot.pause()
        assert "-shown" not in picker.query_one("#settings-problem").classes
        await pilot.press("enter")  # from the field: the highlighted checkpoint (best)
        await wait_for(pilot, lambda: app.screen is screen and screen.job is not None)
        assert "max new tokens 5, temperature 0.5" in message(screen)
        # This run's checkpoint holds no weights: the failure says why, and leaves no
        # partial file to read as "incomplete: 0 responses".
        await wait_for(pilot, lambda: screen.job is None, timeout=60)
        assert "failed" in message(screen) and "holds no model" in message(screen)
        assert not partial_path(run).exists()
        assert "incomplete" not in str(screen.query_one("#grading-header").content)
        log = (run.path / "responses.log").read_text()
        assert "--max-new-tokens 5 --temperature 0.5" in log


async def test_a_run_whose_saved_length_is_refused_is_corrected_in_the_dialog(tmp_path):
    run = make_run(tmp_path, responses=None)
    text = run.config_path.read_text(encoding="utf-8")
    run.config_path.write_text(text.replace("max_new_tokens: 8", "max_new_tokens: 256"),
                               encoding="utf-8")
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointPicker))
        picker = app.screen
        assert picker.query_one("#gen-max_new_tokens").value == "256"
        assert "leaves no room" in str(picker.query_one("#settings-problem").content)
