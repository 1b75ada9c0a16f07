"""The whole app, end to end, on the tiny model: train a few steps from the Training
screen and see both loss series get points, generate the test responses from the
Grading screen, grade three, SIGKILL the app, reopen it and find the three grades,
then export them. The first half runs in its own process (driven by Pilot) so that
it can really be killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tui_ft.config import TrainConfig
from tui_ft.runfolder import Run
from tui_ft.ui.app import create_app
from test_grade_store import EXPORT_FIELDS

ROOT = Path(__file__).resolve().parents[1]

PHASE_ONE = textwrap.dedent("""
    import asyncio, json, sys, time
    from tui_ft.config import TrainConfig
    from tui_ft.ui.app import create_app
    from tui_ft.ui.widgets.loss_chart import LossChart
    from tui_ft.ui.widgets.grade_pickers import CheckpointPicker

    async def wait_for(pilot, condition, timeout=240):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            await pilot.pause(0.1)

    async def main():
        app = create_app(config_path=sys.argv[1], start_mode="training")
        async with app.run_test(size=(100, 30)) as pilot:
            training = app.screen
            await pilot.press("s")
            await wait_for(pilot, lambda: training.run is not None)
            run = training.run
            await wait_for(pilot, lambda: run.state() == "finished")
            training.poll(force_chart=True)
            chart = training.query_one(LossChart)
            print(json.dumps({"run": str(run.path), "train_points": len(chart.train_points),
                              "val_points": len(chart.val_points)}), flush=True)
            await pilot.press("4")
            grading = app.screen
            await wait_for(pilot, lambda: grading.run is not None)
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, CheckpointPicker))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is grading)
            await wait_for(pilot, lambda: grading.job is None and len(grading.responses) >= 3)
            shown = []
            for key in ("c", "w", "c"):
                shown.append(grading.current["id"])
                await pilot.press(key)
            print(json.dumps({"graded": shown}), flush=True)
            time.sleep(3600)  # wait here to be killed

    asyncio.run(main())
""")


def small_dataset(path: Path) -> Path:
    lines = (ROOT / "sample_data" / "instructions.jsonl").read_text(encoding="utf-8")
    path.write_text("".join(lines.splitlines(keepends=True)[:80]), encoding="utf-8")
    return path


@pytest.mark.slow
async def test_train_generate_grade_kill_reopen_export(tmp_path):
    config = TrainConfig.from_dict({
        "dataset": str(small_dataset(tmp_path / "data.jsonl")),
        "split_ratios": [0.8, 0.1, 0.1], "max_steps": 8, "logging_steps": 1,
        "eval_steps": 4, "save_steps": 4, "learning_rate": 1e-3, "max_length": 64,
        "per_device_train_batch_size": 8, "max_new_tokens": 8})
    config_path = tmp_path / "train.yaml"
    config.save(config_path)
    script = tmp_path / "phase_one.py"
    script.write_text(PHASE_ONE)
    proc = subprocess.Popen([sys.executable, str(script), str(config_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reports = []
    try:
        deadline = time.monotonic() + 300
        while len(reports) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                reports.append(json.loads(line))
        assert len(reports) == 2, proc.stderr.read() if proc.poll() is not None else reports
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    trained, graded = reports
    assert trained["train_points"] == 8 and trained["val_points"] == 2
    run = Run(trained["run"])
    assert run.state() == "finished"
    shown = graded["graded"]
    assert len(shown) == 3 and len(set(shown)) == 3

    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        deadline = time.monotonic() + 30
        while not screen.responses and time.monotonic() < deadline:
            await pilot.pause(0.1)
        grades = {r["id"]: screen.session.grade_of(r).grade for r in screen.responses}
        assert [grades[i] for i in shown] == ["correct", "wrong", "correct"]
        assert "3/" in screen.progress_text()
        await pilot.press("e")
        await pilot.press("enter")
        out = run.path / "graded.jsonl"
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            await pilot.pause(0.1)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert [by_id[i]["grade"] for i in shown] == ["correct", "wrong", "correct"]
    assert sum(r["grade"] == "ungraded" for r in rows) == len(rows) - 3
    assert all(r["run"] == run.name and r["checkpoint"].startswith("checkpoint-") for r in rows)
    assert set(rows[0]) == EXPORT_FIELDS
    assert rows[0]["judge_verdict"] is None  # no judge read these answers
