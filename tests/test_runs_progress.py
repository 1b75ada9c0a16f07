"""tui_ft.runs.progress: the one progress state (and ETA) the CLI's progress line and
the Training screen both render from."""

from __future__ import annotations

import ast
from pathlib import Path

from tui_ft.commands.progress import ProgressLine, TrainingProgress
from tui_ft.runs.progress import EVENTS, ProgressState, describe_event

import tui_ft


def records(t0: float) -> list[dict]:
    return [
        {"event": "start", "step": 0, "epoch": 0.0, "total_steps": 100, "device": "cpu",
         "precision": "fp32", "time": t0},
        {"step": 10, "epoch": 0.1, "train_loss": 2.5, "tokens_per_s": 1000.0,
         "time": t0 + 10},
        {"step": 20, "epoch": 0.2, "train_loss": 2.0, "val_loss": 2.2, "time": t0 + 20},
    ]


def test_eta_comes_from_the_records_times_so_a_late_reader_knows_the_pace():
    state = ProgressState()
    for m in records(1000.0):
        state.feed(m)
    # 1 s a step since the start, 80 steps left, counted from 5 s after the last record.
    assert state.eta(now=1025.0) == 75.0
    assert (state.step, state.total_steps, state.device) == (20, 100, "cpu fp32")
    assert (state.train_loss, state.val_loss, state.speed) == (2.0, 2.2, 1000.0)
    parts = state.parts(show_eta=False)
    assert parts[:2] == ["step 20/100", "epoch 0.20"]
    assert not any(p.startswith("ETA") for p in parts)


def test_a_resume_restarts_the_pace_and_the_step():
    state = ProgressState()
    for m in records(1000.0):
        state.feed(m)
    state.feed({"event": "resumed", "step": 10, "checkpoint": "checkpoint-10",
                "total_steps": 100, "time": 5000.0})
    assert (state.step, state.resumed_from) == (10, "checkpoint-10")
    assert state.eta(now=5000.0) is None  # no pace yet since the resume
    state.feed({"step": 30, "train_loss": 1.0, "time": 5040.0})
    assert state.eta(now=5040.0) == 2.0 * 70


def test_overfitting_is_set_and_cleared():
    state = ProgressState()
    state.feed({"event": "overfitting", "step": 5, "began_at_step": 3, "time": 1.0})
    assert state.overfitting["began_at_step"] == 3
    state.feed({"event": "overfitting_cleared", "step": 6, "time": 2.0})
    assert state.overfitting is None


def test_the_cli_line_says_what_the_state_says(tmp_path):
    with open(tmp_path / "out.txt", "w") as out:
        progress = TrainingProgress(ProgressLine(out))
        for m in records(1000.0):
            progress.feed(m)
    assert progress.text().startswith(" | ".join(progress.state.parts()[:5]))
    text = (tmp_path / "out.txt").read_text()
    assert "step 20: validation loss 2.2000" in text


def test_every_event_has_its_own_description():
    for event in EVENTS:
        assert describe_event({"event": event, "step": 1}) != ""
    assert describe_event({"event": "resumed", "checkpoint": "checkpoint-4"}) == \
        "resumed from checkpoint-4"


def test_the_ui_never_imports_the_cli_commands():
    ui = Path(tui_ft.__file__).parent / "ui"
    offenders = []
    for path in ui.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module == "commands" or node.module.startswith("commands.")
                    or "tui_ft.commands" in node.module):
                offenders.append(f"{path.relative_to(ui)}:{node.lineno}")
    assert offenders == []
