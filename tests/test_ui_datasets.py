"""The Datasets screen driven through Textual's Pilot, and once through a real pty to
prove that escape codes inside data never reach the terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tui_ft.paths import default_dataset
from tui_ft.ui.app import create_app
from tui_ft.ui.widgets.prompt_preview import PromptPreview
from tui_ft.ui.widgets.record_list import RecordList

from helpers import PtyApp, pilot_wait_for as wait_for


def preview_text(screen) -> str:
    return str(screen.query_one("#preview-body").content)


def info_text(screen) -> str:
    return str(screen.query_one("#dataset-info").content)


def write_jsonl(path: Path, lines: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TUI_FT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(tmp_path / "runs"))


async def test_opens_sample_data_and_previews_first_record():
    app = create_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        records = screen.query_one(RecordList)
        await wait_for(pilot, lambda: screen.scan is not None and screen.lengths)
        assert records.count == 1500
        assert screen.dataset_path == default_dataset()
        first = json.loads(default_dataset().read_text(encoding="utf-8").splitlines()[0])
        text = preview_text(screen)
        assert text.startswith("Below is an instruction that describes a task.")
        assert first["instruction"] in text and first["output"] + "<|endoftext|>" in text
        info = info_text(screen)
        assert "0 bad" in info and "train 1,262 / val 83 / test 155" in info
        assert "median" in info


async def test_cursor_style_and_mask_follow_keys():
    app = create_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.dataset is not None)
        lines = default_dataset().read_text(encoding="utf-8").splitlines()
        await pilot.press("down", "down")
        assert screen.query_one(RecordList).cursor == 2
        assert json.loads(lines[2])["instruction"] in preview_text(screen)

        preview = screen.query_one(PromptPreview)
        assert "mask off" in preview.border_title
        unmasked = int(preview.border_title.split(" learned")[0].rsplit("\u00b7 ", 1)[1])
        await pilot.press("m")
        assert "mask on" in preview.border_title
        masked = int(preview.border_title.split(" learned")[0].rsplit("\u00b7 ", 1)[1])
        assert masked < unmasked

        await pilot.press("s")  # alpaca -> chatml (alphabetical)
        await wait_for(pilot, lambda: screen.style_name == "chatml")
        assert preview_text(screen).startswith("<|im_start|>user\n")
        await pilot.press("end")
        assert screen.query_one(RecordList).cursor == 1499
        assert json.loads(lines[-1])["instruction"] in preview_text(screen)


async def test_bad_records_are_listed_with_their_lines(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        "{not json",
        {"instruction": "", "output": "x"},
        {"instruction": "Count.", "input": "", "output": 3},
        {"instruction": "Say bye.", "output": "bye"},
    ])
    app = create_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.scan is not None)
        await pilot.press("e")
        body = str(screen.query_one("#side-body").content)
        assert f"{path}:2: invalid JSON" in body
        assert f"{path}:3: field 'instruction' is empty" in body
        assert f"{path}:4: field 'output' must be a string" in body
        assert "3 bad" in info_text(screen)
        # The bad record's own row says why, and so does the preview.
        await pilot.press("down")
        assert "invalid JSON" in preview_text(screen)
        assert "{not json" in preview_text(screen)


async def test_open_another_file_from_the_path_input(tmp_path):
    path = write_jsonl(tmp_path / "two.jsonl", [
        {"instruction": "First?", "output": "one"},
        {"instruction": "Second?", "output": "two"},
    ])
    app = create_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.dataset is not None)
        await pilot.press("o")
        field = screen.query_one("#dataset-path")
        field.value = ""
        await pilot.press(*str(path))
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.query_one(RecordList).count == 2)
        assert "First?" in preview_text(screen)


async def test_unusable_file_shows_a_located_message(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    app = create_app(empty)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.load_error is not None)
        assert str(empty) in info_text(screen) and "empty" in info_text(screen)


HOSTILE = {
    "id": "evil",
    "instruction": "[bold red]not markup[/] \x1b]0;PWNED\x07 title \x1b[2J clear",
    "input": "\x9b31m c1 csi",
    "output": "[link=http://x]y[/link] \x1b[31mRED",
}


async def test_markup_and_escape_codes_are_shown_literally(tmp_path):
    path = write_jsonl(tmp_path / "hostile.jsonl", [HOSTILE])
    app = create_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.scan is not None)
        text = preview_text(screen)
        assert "[bold red]not markup[/]" in text and "[link=http://x]y[/link]" in text
        assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
        assert "\u241b]0;PWNED\u2407" in text
        row = screen.query_one(RecordList).render_line(0).text
        assert "[bold red]not markup[/]" in row and "\x1b" not in row


def test_escape_codes_from_data_never_reach_the_real_terminal(tmp_path):
    """Run the real app on a pty and read every byte it writes to the terminal."""
    path = write_jsonl(tmp_path / "hostile.jsonl", [HOSTILE])
    with PtyApp([sys.executable, "-m", "tui_ft.cli", "--dataset", str(path)],
                rows=30, cols=100) as app:
        app.read_until(lambda: b"PWNED" in app.output, 20)
        app.read_until(lambda: False, 1.0)
        app.write(b"q")
        app.wait(timeout=10)
    output = app.output
    assert b"PWNED" in output, "the hostile record was never drawn"
    assert b"\x1b]0;PWNED" not in output
    assert b"\x1b[2J clear" not in output
    assert b"\x1b[31mRED" not in output
    assert "\u241b".encode() in output  # ESC drawn as a visible symbol


async def test_every_key_of_the_screen_is_in_the_command_palette():
    app = create_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.dataset is not None)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for expected in ("Open (o)", "Style (s)", "Mask prompt (m)", "Errors (e)",
                         "Histogram (h)", "Data (1)", "Params (2)", "Train (3)",
                         "Grade (4)", "Quit (q)"):
            assert expected in titles
        command = next(c for c in app.get_system_commands(app.screen)
                       if c.title == "Mask prompt (m)")
        before = app.screen.mask_prompt
        await command.callback()
        assert app.screen.mask_prompt is not before


def test_snapshot_80x24(snap_compare, tmp_path, monkeypatch):
    """The look of the screen at 80x24, on a relative path so the picture does not
    depend on where the checkout lives."""
    lines = default_dataset().read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "data.jsonl").write_text("".join(lines[:40]) + "{broken\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    async def settle(pilot):
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.scan is not None and screen.lengths)
        await pilot.press("down", "m")

    assert snap_compare(create_app(Path("data.jsonl")), terminal_size=(80, 24),
                        run_before=settle)


# -- the data settings of the shared configuration: paths, field keys, split method -------


def path_field(screen) -> str:
    return screen.query_one("#dataset-path").value


async def test_default_path_is_short_and_sample_paths_open(tmp_path):
    app = create_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.dataset is not None)
        assert path_field(screen) == "@sample/instructions.jsonl"
        await pilot.press("o")
        screen.query_one("#dataset-path").value = ""
        await pilot.press(*"@sample/chat.jsonl", "enter")
        await wait_for(pilot, lambda: screen.scan is not None
                       and screen.query_one(RecordList).count == 60)
        assert screen.dataset_path == default_dataset().with_name("chat.jsonl")
        assert app.state.config.dataset == "@sample/chat.jsonl"
        assert "0 bad" in info_text(screen)


async def test_dataset_option_takes_a_sample_path():
    """`tui-ft --dataset @sample/chat.jsonl` hands the app the path as typed."""
    app = create_app(Path("@sample/chat.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.scan is not None)
        assert len(screen.scan.records) == 60 and path_field(screen) == "@sample/chat.jsonl"


async def test_split_method_and_field_keys_follow_the_configuration(tmp_path):
    from tui_ft.config import TrainConfig
    from tui_ft.data.dataset import load_records
    from tui_ft.data.records import RecordFields
    from tui_ft.data.split import split_records

    path = write_jsonl(tmp_path / "renamed.jsonl", [
        {"question": f"Question {i}?", "answer": f"Answer {i}", "score": i} for i in range(40)])
    app = create_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.scan is not None)
        assert len(screen.scan.records) == 0 and "40 bad" in info_text(screen)
        await pilot.press("e")
        assert "its keys are 'question', 'answer', 'score'" in \
            str(screen.query_one("#side-body").content)

        # Set on the Parameters screen (any screen's config change reaches it the same way).
        app.set_config(TrainConfig.from_dict({**app.state.config.to_dict(),
                                              "instruction_key": "question",
                                              "output_key": "answer",
                                              "split_method": "ordered"}))
        await pilot.press("2")
        await pilot.press("1")
        await wait_for(pilot, lambda: screen.scan is not None and len(screen.scan.records) == 40
                       and screen.lengths)
        expected = split_records(
            load_records(path, RecordFields("question", "input", "answer")).records,
            method="ordered").sizes()
        assert expected == {"train": 34, "val": 2, "test": 4}
        info = info_text(screen)
        assert "0 bad" in info and "ordered split: train 34 / val 2 / test 4" in info
        assert "keys not read: score" in info
        side = str(screen.query_one("#side-body").content)
        assert "no bad records" in side and "score (40)" in side
        assert "Question 0?" in preview_text(screen) and "Answer 0" in preview_text(screen)


async def test_a_path_typed_right_after_o_reaches_the_field():
    """Keys that arrive in one read (a paste, a slow SSH link, tmux send-keys) are
    queued before `o` has run: the path must still go to the field, not to s, m, h."""
    from textual import events

    app = create_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.scan is not None)
        for key in ["o", *"@sample/chat.jsonl", "enter"]:
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await wait_for(pilot, lambda: screen.scan is not None
                       and screen.query_one(RecordList).count == 60)
        assert (screen.style_name, screen.mask_prompt, screen.side) == ("alpaca", False, "")
        assert path_field(screen) == "@sample/chat.jsonl"
        # In the field, `o` is a letter.
        await pilot.press("o")
        screen.query_one("#dataset-path").value = ""
        await pilot.press(*"foo", "enter")
        assert app.state.config.dataset == "foo"
