"""The Training screen through Pilot, on real run folders: a run trained for real in
a worker process, one started from the screen, and hand-made folders for the states
that take long to reach (an overfitting alert, a failed worker)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tui_ft.config import TrainConfig
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process
from tui_ft.ui.app import create_app
from tui_ft.ui.widgets.loss_chart import LossChart, thin

from helpers import fake_checkpoint, pilot_wait_for as wait_for


def small_config(tmp_path: Path, **changes) -> TrainConfig:
    data = {"max_steps": 6, "logging_steps": 1, "eval_steps": 2, "save_steps": 2,
            "learning_rate": 1e-3, "max_length": 64, "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 16, "split_ratios": [0.9, 0.02, 0.08],
            "output_dir": str(tmp_path / "run")}
    data.update(changes)
    return TrainConfig.from_dict(data)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("trained")
    run, _ = prepare_run(small_config(tmp))
    run_in_process(run)
    return run


async def test_reattach_shows_whole_history(trained_run):
    metrics = trained_run.read_metrics()
    train_steps = [m["step"] for m in metrics if "train_loss" in m]
    val_steps = [m["step"] for m in metrics if "val_loss" in m]
    app = create_app(run=trained_run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one(LossChart).train_points)
        chart = screen.query_one(LossChart)
        assert [s for s, _ in chart.train_points] == train_steps == [1, 2, 3, 4, 5, 6]
        assert [s for s, _ in chart.val_points] == val_steps == [2, 4, 6]
        best = trained_run.read_status()["best_checkpoint"]
        assert chart.best_step == int(best.split("-")[1])
        listing = str(screen.query_one("#checkpoint-list").content)
        assert f"{best} \u2605" in listing.splitlines()
        progress = str(screen.query_one("#run-progress-text").content)
        assert "step 6/6" in progress and "val " in progress
        assert "finished" in str(screen.query_one("#run-header").content)


async def test_chart_redraws_only_when_new_points_arrive(trained_run):
    app = create_app(run=trained_run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: chart.redraws >= 1)
        before = chart.redraws
        for _ in range(3):
            app.screen.poll()
            await pilot.pause(0.05)
        assert chart.redraws == before  # nothing new in a finished run: no redraw


def test_thin_keeps_the_last_point_and_the_limit():
    points = [(i, float(i)) for i in range(1000)]
    out = thin(points, 50)
    assert len(out) == 50 and out[-1] == (999, 999.0) and out[0] == (0, 0.0)
    assert thin(points[:10], 50) == points[:10]


def write_run(tmp_path: Path, metrics: list[dict], status: dict, log: str = "") -> Run:
    run = Run(tmp_path / "handmade")
    run.path.mkdir()
    TrainConfig().save(run.config_path)
    run.status_path.write_text(json.dumps(status))
    run.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if log:
        run.log_path.write_text(log)
    fake_checkpoint(run, 20)
    return run


async def test_overfitting_banner_names_step_and_best_checkpoint(tmp_path):
    metrics = [{"step": 0, "event": "start", "total_steps": 100}]
    for step, (tr, va) in enumerate([(3.0, 3.1), (2.5, 2.6), (2.0, 2.7), (1.5, 2.9), (1.0, 3.2)],
                                    start=1):
        metrics += [{"step": step * 10, "train_loss": tr}, {"step": step * 10, "val_loss": va}]
    metrics.append({"step": 50, "event": "overfitting", "began_at_step": 30, "best_step": 20,
                    "best_val_loss": 2.6, "best_checkpoint": "checkpoint-20"})
    run = write_run(tmp_path, metrics, {"state": "finished", "step": 50,
                                        "best_checkpoint": "checkpoint-20"})
    app = create_app(run=run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        banner = screen.query_one("#overfit-banner")
        await wait_for(pilot, lambda: banner.has_class("shown"))
        text = str(banner.content)
        assert "Overfitting since step 30" in text and "best val 2.6000 at checkpoint-20" \
            in text
        assert "x stops" not in text  # the run is over: nothing to stop
        # The whole story on hover.
        assert "not improved since step 20" in str(banner.tooltip)
        assert "Press x" not in str(banner.tooltip)


async def test_failed_worker_and_hostile_log_are_shown_literally(tmp_path):
    run = write_run(tmp_path, [{"step": 0, "event": "start", "total_steps": 10}],
                    {"state": "failed", "error": "the loss became NaN [bold]x[/bold]"},
                    log="Traceback \x1b]0;PWNED\x07 [red]boom[/red]\n")
    app = create_app(run=run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "failed" in str(screen.query_one("#run-header").content))
        # The error on a line of its own, below the header, with the way on.
        problem = str(screen.query_one("#run-problem").content)
        assert "NaN [bold]x[/bold]" in problem and "s starts a new run" in problem
        log = screen.query_one("#run-log")
        lines = "\n".join(strip.text for strip in log.lines)
        assert "\u241b]0;PWNED\u2407 [red]boom[/red]" in lines
        assert "\x1b" not in lines


@pytest.mark.slow
async def test_start_from_screen_then_stop_and_quit_leaves_nothing_running(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(tmp_path / "runs"))
    config = small_config(tmp_path, max_steps=400, output_dir=None, eval_steps=100,
                          save_steps=100)
    app = create_app(start_mode="training")
    app.state.config = config
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.run is not None)
        run = screen.run
        await wait_for(pilot, lambda: len(screen.query_one(LossChart).train_points) >= 2,
                       timeout=120)
        await pilot.press("x")
        await wait_for(pilot, lambda: run.state() == "stopped", timeout=120)
        status = run.read_status()
        assert status["last_checkpoint"] == f"checkpoint-{status['step']}"
    # The app is gone; the run folder tells the whole story to the next one.
    assert run.state() == "stopped"
    assert any(m.get("event") == "stopped" for m in run.read_metrics())


@pytest.mark.slow
async def test_run_outlives_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(tmp_path / "runs"))
    app = create_app(start_mode="training")
    app.state.config = small_config(tmp_path, max_steps=30, output_dir=None, eval_steps=10,
                                    save_steps=10)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.run is not None)
        run = app.screen.run
    pid = run.read_status()["pid"]
    assert os.getsid(pid) != os.getsid(0)  # its own session: no hang-up reaches it
    deadline = time.monotonic() + 180
    while run.state() in ("starting", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        assert run.state() == "finished"
        assert [c.name for c in run.checkpoints()][-1] == "checkpoint-30"
    finally:
        if run.state() in ("starting", "running"):
            os.kill(pid, signal.SIGKILL)


def test_snapshot_80x24(snap_compare, tmp_path):
    metrics = [{"step": 0, "event": "start", "total_steps": 60, "device": "cpu",
                "precision": "fp32"}]
    for step in range(5, 65, 5):
        metrics.append({"step": step, "epoch": step / 30, "train_loss": 3.0 / (1 + step / 20),
                        "tokens_per_s": 1234.0})
        if step % 20 == 0:
            metrics.append({"step": step, "val_loss": 2.0 + (step - 40) ** 2 / 800})
            metrics.append({"step": step, "event": "checkpoint",
                            "checkpoint": f"checkpoint-{step}"})
    metrics.append({"step": 60, "event": "overfitting", "began_at_step": 60, "best_step": 40,
                    "best_val_loss": 2.0, "best_checkpoint": "checkpoint-40"})
    run = write_run(tmp_path, metrics, {"state": "finished", "step": 60,
                                        "best_checkpoint": "checkpoint-40",
                                        "model": "tiny (random init)"})
    for step in (40, 60):
        fake_checkpoint(run, step)

    async def settle(pilot):
        chart = pilot.app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: chart.redraws >= 1 and chart.val_points)

    assert snap_compare(create_app(run=run.path), terminal_size=(80, 24), run_before=settle)


async def test_a_distributed_run_shows_its_ranks_and_names_a_silent_one(tmp_path):
    """World size in the header, each rank's last heartbeat on hover, and a rank not
    heard from for longer than RANK_SILENT_AFTER named on the problem line."""
    import os
    import time

    from tui_ft.ui.screens.training_lines import RANK_SILENT_AFTER

    metrics = [{"step": 0, "event": "start", "total_steps": 100, "device": "cpu",
                "precision": "fp32", "world_size": 2, "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1, "effective_batch_size": 8},
               {"step": 5, "train_loss": 3.0}]
    run = write_run(tmp_path, metrics, {"state": "running", "step": 5, "world_size": 2})
    run.write_status(pid=os.getpid())  # this process stands for rank 0: alive
    run.write_heartbeat(0, 5)
    run.write_heartbeat(1, 4)
    app = create_app(run=run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        header = screen.query_one("#run-header")
        await wait_for(pilot, lambda: "x 2 ranks" in str(header.content))
        assert "rank 1: step 4" in str(header.tooltip)
        problem = screen.query_one("#run-problem")
        assert not problem.has_class("shown")
        # Rank 1 goes quiet: its heartbeat is older than the bar.
        beat = run.ranks_dir / "rank-1.json"
        record = json.loads(beat.read_text())
        record["time"] = time.time() - RANK_SILENT_AFTER - 30
        beat.write_text(json.dumps(record))
        screen.poll()
        await wait_for(pilot, lambda: problem.has_class("shown"))
        text = str(problem.content)
        assert "rank 1" in text and "last step 4" in text and "rank 0" not in text
        assert "silent for 5m" in text


async def test_a_cycles_the_chart_through_the_validation_metrics(tmp_path):
    metrics = [{"step": 0, "event": "start", "total_steps": 30}]
    for step, (loss, acc, em) in zip((10, 20, 30), [(3.0, 0.2, 0.0), (2.5, 0.4, 0.25),
                                                     (2.4, 0.5, 0.5)]):
        metrics += [{"step": step, "train_loss": loss + 0.1},
                    {"step": step, "val_loss": loss, "val_accuracy": acc,
                     "val_exact_match": em}]
    run = write_run(tmp_path, metrics, {"state": "finished", "step": 30})
    app = create_app(run=run.path)
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: len(chart.val_points) == 3)
        assert chart.shown == "loss" and chart.shown_points()[0]
        await pilot.press("a")
        assert chart.shown == "accuracy"
        assert chart.shown_points() == ([], [(10, 0.2), (20, 0.4), (30, 0.5)])
        assert chart.title().startswith("val accuracy")
        assert chart.border_title == "val accuracy"
        await pilot.press("a")
        assert chart.shown == "exact_match" and chart.shown_points()[1][-1] == (30, 0.5)
        await pilot.press("a")
        assert chart.shown == "loss" and chart.border_title == "loss"
