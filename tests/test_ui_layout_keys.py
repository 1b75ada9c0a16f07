"""The app at small sizes and under the keyboard, through Pilot on real run folders:
the Training screen's progress line keeps the speed and the ETA at 80x24 and 60x20,
the overfitting banner keeps to one line, a too-small terminal gets one notice, the
header says what a resumed run runs, quitting while a run trains says how to get
back to it, a new run from an app opened on a run gets its own folder, the loss chart
changes scale, and keys are neither swallowed nor trapped in a text field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual import events

from tui_ft.config import TrainConfig
from tui_ft.paths import runs_dir
from tui_ft.settings import load_settings
from tui_ft.runfolder import Run
from tui_ft.ui.app import TuiFtApp, create_app
from tui_ft.ui.screens.quit_confirm import QuitConfirm
from tui_ft.ui.screens.too_small import TooSmall
from tui_ft.ui.screens.training import config_for_new_run
from tui_ft.ui.screens.training_lines import fit_progress
from tui_ft.ui.widgets.key_legend import KeyLegend
from tui_ft.ui.widgets.loss_chart import LossChart

from helpers import PtyApp, fake_checkpoint, pilot_wait_for as wait_for

SIZES = [(80, 24), (60, 20)]


@pytest.fixture
def live_pid():
    """A process that stands in for a training worker: a run whose status names it is
    'running' for as long as it lives."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def long_run(folder: Path, pid: int | None, state: str = "running", *,
             overfitting: bool = True, resumed: bool = False) -> Run:
    """A run folder as a worker writes it, mid-way through a long run: four-digit
    steps, a five-digit speed, every piece of the progress line present."""
    run = Run(folder)
    run.path.mkdir(parents=True)
    TrainConfig.from_dict({"model": "tiny", "max_new_tokens": 64,
                           "output_dir": str(run.path)}).save(run.config_path)
    t0 = time.time() - 600
    metrics = [{"step": 0, "event": "start", "total_steps": 5000, "device": "cpu",
                "precision": "fp32", "time": t0}]
    for step in range(10, 1240, 10):
        metrics.append({"step": step, "epoch": step / 1000, "time": t0 + step * 0.48,
                        "train_loss": 1.5 + 9.0 / (1 + step / 30), "tokens_per_s": 12345.0})
        if step % 200 == 0:
            metrics.append({"step": step, "val_loss": 1.9 + 8.0 / (1 + step / 30)
                            + (step / 1000) ** 2})
            metrics.append({"step": step, "event": "checkpoint",
                            "checkpoint": f"checkpoint-{step}"})
            fake_checkpoint(run, step)
    if resumed:
        metrics.append({"step": 1000, "epoch": 1.0, "event": "resumed",
                        "checkpoint": "checkpoint-1000", "time": t0 + 500})
    if overfitting:
        metrics.append({"step": 1200, "event": "overfitting", "began_at_step": 1000,
                        "best_step": 800, "best_val_loss": 2.2345,
                        "best_checkpoint": "checkpoint-800", "best_checkpoint_metric": 2.2345})
    run.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    run.status_path.write_text(json.dumps({
        "state": state, "pid": pid, "step": 1230, "total_steps": 5000,
        "best_checkpoint": "checkpoint-800", "best_checkpoint_metric": 2.2345,
        "model": "tiny (random init; 4 layers, 4 heads, n_embd 256, context 256, "
                 "7.0M parameters)"}))
    return run


def shown_whole(widget) -> str:
    """The widget's one line of text, checked to be drawn whole in its width."""
    text = str(widget.content)
    assert "\n" not in text
    assert cell_len(text) <= widget.content_region.width, (text, widget.content_region)
    return text


# -- the Training screen's lines at 80x24 and 60x20 ------------------------------------

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_progress_line_keeps_speed_and_eta(tmp_path, live_pid, size):
    run = long_run(runs_dir() / "long", live_pid)
    app = create_app(run=run.path)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        text_widget = screen.query_one("#run-progress-text")
        await wait_for(pilot, lambda: "tok/s" in str(text_widget.content))
        await pilot.pause(0.1)
        assert not isinstance(app.screen, TooSmall)
        text = shown_whole(text_widget)
        assert text.startswith("step 1230/5000")
        assert "12,345 tok/s" in text and "ETA " in text and "ETA --" not in text
        if size == (80, 24):
            assert "loss " in text and "val " in text  # room for the losses too
        assert text_widget.size.height == 1
        banner = screen.query_one("#overfit-banner")
        assert banner.has_class("shown") and banner.size.height == 1
        words = shown_whole(banner)
        assert "checkpoint-800" in words and "x stops" in words
        if size == (80, 24):
            assert "since step 1000" in words and "2.2345" in words
        assert "tiny" in shown_whole(screen.query_one("#run-header"))


def test_fit_progress_drops_epoch_then_bar_then_losses():
    parts = ["step 1230/5000", "epoch 1.23", "loss 1.7143", "val 3.5351", "12,345 tok/s",
             "ETA 29m56s"]
    assert fit_progress(parts, 200, 20) == (parts, True)
    assert fit_progress(parts, 80, 20) == ([p for p in parts if p != "epoch 1.23"], False)
    assert fit_progress(parts, 60, 20) == (["step 1230/5000", "loss 1.7143", "12,345 tok/s",
                                            "ETA 29m56s"], False)
    # Nothing else can go: the rest is kept whole (the line wraps).
    assert fit_progress(parts, 10, 20) == (["step 1230/5000", "12,345 tok/s",
                                            "ETA 29m56s"], False)
    # A short line keeps its bar once the epoch is gone.
    short = ["step 10/40", "epoch 0.03", "loss 8.4415", "61 tok/s", "ETA 1m10s"]
    assert fit_progress(short, 70, 20) == ([p for p in short if p != "epoch 0.03"], True)


async def test_banner_drops_x_stops_when_the_run_ends_while_watched(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        run = long_run(runs_dir() / "ends", proc.pid)
        app = create_app(run=run.path)
        async with app.run_test(size=(80, 24)) as pilot:
            banner = app.screen.query_one("#overfit-banner")
            await wait_for(pilot, lambda: "x stops" in str(banner.content))
            proc.kill()
            proc.wait()
            run.write_status(state="finished")
            await wait_for(pilot, lambda: "x stops" not in str(banner.content))
            assert "checkpoint-800" in str(banner.content)
            assert "Press x" not in str(banner.tooltip)
    finally:
        proc.kill()
        proc.wait()


async def test_header_says_what_a_resumed_run_runs(tmp_path, live_pid):
    run = long_run(runs_dir() / "resumed", live_pid, resumed=True)
    app = create_app(run=run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        header = app.screen.query_one("#run-header")
        await wait_for(pilot, lambda: "resumed" in str(header.content))
        text = str(header.content)
        assert "running" in text and "tiny, resumed from checkpoint-1000 on cpu fp32" in text
        assert "7.0M parameters" in str(header.tooltip)  # the whole description


# -- below the smallest size: one notice -------------------------------------------------

async def test_too_small_terminal_gets_one_notice_that_goes_away(tmp_path, live_pid):
    run = long_run(runs_dir() / "small", live_pid)
    min_w, min_h = TuiFtApp.MIN_SIZE
    app = create_app(run=run.path)
    async with app.run_test(size=(min_w - 1, min_h)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, TooSmall))
        text = str(app.screen.query_one("#too-small-text").content)
        assert f"at least {min_w}x{min_h}" in text and f"is {min_w - 1}x{min_h}" in text
        await pilot.press("2")  # another screen would be drawn collapsed: no
        assert isinstance(app.screen, TooSmall) and app.current_mode == "training"
        await pilot.resize_terminal(min_w, min_h - 3)
        await wait_for(pilot, lambda: f"is {min_w}x{min_h - 3}" in str(
            app.screen.query_one("#too-small-text").content))
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: not isinstance(app.screen, TooSmall))
        assert app.screen.query_one("#run-progress-text").size.width > 0
        assert len([s for s in app.screen_stack if isinstance(s, TooSmall)]) == 0
        await pilot.press("2")
        assert app.current_mode == "params"


# -- quitting while a run trains -----------------------------------------------------------

async def test_quit_while_training_says_the_run_goes_on(tmp_path, live_pid):
    run = long_run(runs_dir() / "going", live_pid)
    app = create_app(run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.run is not None)
        await pilot.press("q")
        assert isinstance(app.screen, QuitConfirm)
        text = str(app.screen.query_one("#quit-text").content)
        assert "going goes on training" in text
        assert "tui-ft going" in text and "tui-ft attach going" in text
        await pilot.press("escape")  # stay
        assert not isinstance(app.screen, QuitConfirm) and app.is_running
        await pilot.press("q", "q")
        await wait_for(pilot, lambda: not app.is_running)
    assert [r.path for r in app.left_running] == [run.path]


async def test_quit_with_nothing_training_asks_nothing(tmp_path):
    run = long_run(runs_dir() / "done", None, state="finished")
    app = create_app(run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.run is not None)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.left_running == []


def test_after_quitting_the_terminal_shows_how_to_reopen_the_run(tmp_path, live_pid):
    """The real app on a pty: q, q, and once it has given the terminal back, the lines
    that say the run goes on and how to reopen, follow and stop it."""
    run = long_run(runs_dir() / "on-a-pty", live_pid)
    with PtyApp([sys.executable, "-m", "tui_ft.cli", "on-a-pty"]) as app:
        app.read_until(lambda: b"tok/s" in app.output, 30)
        assert b"tok/s" in app.output, "the Training screen was never drawn"
        app.write(b"q")
        app.read_until(lambda: b"quit?" in app.output, 10)
        app.write(b"q")
        app.wait(timeout=20)
        app.read_until(lambda: False, 2)
    output = app.output
    assert app.returncode == 0
    tail = output[output.rfind(b"quit?"):].decode("utf-8", "replace")
    after = tail[tail.find("on-a-pty goes on training in its own process"):]
    assert "reopen it:  tui-ft on-a-pty" in after and "follow it:  tui-ft attach on-a-pty" \
        in after and "stop it:    tui-ft stop on-a-pty" in after


# -- one key for a new run -------------------------------------------------------------------

def test_a_new_run_never_takes_a_folder_that_holds_one(tmp_path):
    inside = long_run(runs_dir() / "ours", None, state="failed")
    config = TrainConfig.load(inside.config_path)
    new, taken = config_for_new_run(config)
    assert taken == inside.path and new.output_dir is None  # a new one in the runs dir
    elsewhere = long_run(tmp_path / "mine" / "exp1", None, state="finished")
    new, taken = config_for_new_run(TrainConfig.load(elsewhere.config_path))
    assert taken == elsewhere.path
    made = Path(new.output_dir)
    assert made.parent == elsewhere.path.parent and made.name.endswith("-exp1")
    assert made.is_dir() and not any(made.iterdir())
    # A folder with no run in it yet is the one the user asked for.
    wanted = TrainConfig.from_dict({"output_dir": str(tmp_path / "fresh")})
    assert config_for_new_run(wanted) == (wanted, None)
    assert config_for_new_run(TrainConfig()) == (TrainConfig(), None)


@pytest.mark.slow
async def test_s_on_a_failed_run_starts_a_new_one_in_a_new_folder(tmp_path):
    from tui_ft.runs.jobs import stop_run

    failed = long_run(runs_dir() / "failed-run", None, state="failed", overfitting=False)
    failed.write_status(error="the loss became NaN")
    before = {p.name: p.read_bytes() for p in failed.path.iterdir() if p.is_file()}
    app = create_app(run=failed.path)
    new = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            problem = screen.query_one("#run-problem")
            await wait_for(pilot, lambda: "NaN" in str(problem.content))
            assert "s starts a new run" in str(problem.content)
            await pilot.press("3", "s")
            await wait_for(pilot, lambda: screen.run is not None
                           and screen.run.path != failed.path)
            new = screen.run
            assert new.path.parent == runs_dir() and new.config_path.is_file()
            assert app.state.run.path == new.path
            assert TrainConfig.load(new.config_path).output_dir == str(new.path.resolve())
            log = "\n".join(strip.text for strip in screen.query_one("#run-log").lines)
            assert "failed-run holds a run already (u resumes it)" in log
            await wait_for(pilot, lambda: new.read_status().get("pid"))
    finally:
        if new is not None:
            stop_run(new, wait=60)
            pid = new.read_status().get("pid")
            if pid and new.state() in ("starting", "running"):
                os.kill(pid, signal.SIGKILL)
    after = {p.name: p.read_bytes() for p in failed.path.iterdir() if p.is_file()}
    assert after == before  # the failed run is left as it was


# -- the loss chart's scale ------------------------------------------------------------------

async def test_l_cycles_the_loss_scale_and_the_app_remembers_it(tmp_path, live_pid):
    run = long_run(runs_dir() / "scaled", live_pid, overfitting=False)
    app = create_app(run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: chart.train_points and chart.redraws >= 1)
        assert chart.scale == "linear"
        legend = [e[1:3] for e in app.screen.query_one(KeyLegend).entries()]
        assert ("l", "Scale") in legend
        redraws = chart.redraws
        await pilot.press("l")
        assert chart.scale == "log" and chart.redraws == redraws + 1
        assert "log y" in chart.title()
        await pilot.press("l")
        assert chart.scale == "zoom"
        train, val = chart.shown_points()
        # The first tenth of the steps is left out: the loss of 8.25 at step 10 goes.
        assert max(loss for _, loss in chart.train_points) > 8
        assert train[0][0] == 140 and max(loss for _, loss in train) < 3.1
        assert val and val[0][0] >= train[0][0]
        assert "from step 132" in chart.title()
    assert load_settings()[0]["loss_scale"] == "zoom"
    app = create_app(run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: chart.redraws >= 1)
        assert chart.scale == "zoom"
        await pilot.press("l")
        assert chart.scale == "linear" and chart.shown_points()[0] == chart.train_points


# -- keys -------------------------------------------------------------------------------------

async def test_first_visit_to_datasets_does_not_swallow_a_key(tmp_path, live_pid):
    """1 then h at once, as a person types them: the h reached the path field (the
    first focusable widget) before the screen had moved the focus to the list."""
    run = long_run(runs_dir() / "keys", live_pid)
    app = create_app(run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.run is not None)
        assert app.screen.focused is None  # the hidden run picker does not take keys
        for key in ("1", "h"):
            app.post_message(events.Key(key, key))
        await wait_for(pilot, lambda: app.current_mode == "datasets")
        screen = app.screen
        await wait_for(pilot, lambda: screen.side == "histogram")
        assert not screen.query_one("#dataset-path").value.endswith("h")
        await pilot.press("escape")  # Escape closes the panel
        assert screen.side == "" and not screen.query_one("#side-panel").has_class("shown")


async def test_legend_says_how_to_leave_a_text_field(tmp_path):
    app = create_app(start_mode="datasets")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        legend = screen.query_one(KeyLegend)

        def entries():
            return {description: enabled for _k, _d, description, enabled in legend.entries()}

        assert entries()["Params"] is True and "Leave field" not in entries()
        await pilot.press("o")
        assert screen.focused is screen.query_one("#dataset-path")
        await wait_for(pilot, lambda: "Leave field" in entries())
        assert legend.entries()[0][:3] == ("escape", "esc", "Leave field")
        assert entries()["Params"] is False  # a digit goes into the field
        await pilot.press("2")
        assert app.current_mode == "datasets"
        await pilot.press("escape", "2")
        assert app.current_mode == "params"


async def test_escape_closes_the_run_picker_and_gives_keys_back(tmp_path, live_pid):
    run = long_run(runs_dir() / "picker", live_pid)
    app = create_app(run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.run is not None)
        await pilot.press("r")
        picker = screen.query_one("#run-picker")
        assert picker.has_class("shown") and screen.focused is picker
        await pilot.press("escape")
        assert not picker.has_class("shown") and screen.focused is None
        await pilot.press("l")  # the screen's keys work again
        assert screen.query_one(LossChart).scale == "log"
