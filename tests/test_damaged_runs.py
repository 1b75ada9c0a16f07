"""Run folders with valid JSON of the wrong types (issue 13) never break a listing,
`attach` or the app: each bad field reads as absent, one bad run never hides the
others. Real files, the real CLI and the real app."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui_ft.runs.registry import list_runs
from tui_ft.ui.app import create_app

from helpers import pilot_wait_for

DAMAGED = {
    "pid-float": {"state": "running", "pid": 1.5},
    "pid-string": {"state": "running", "pid": "1e20"},
    "pid-huge": {"state": "running", "pid": 10 ** 20},
    "step-text": {"state": "finished", "step": "abc", "epoch": "x"},
    "best-list": {"state": "finished", "best_checkpoint": ["a"], "best_metric": "low"},
    "state-number": {"state": 7, "error": {"a": 1}},
    "not-an-object": [1, 2, 3],
}
METRICS = ['{"step": "abc", "train_loss": null}', '{"step": 1, "val_loss": null}',
           '{"step": 2, "epoch": 0.5, "train_loss": "low"}', '[]', '3']


@pytest.fixture
def damaged_runs(isolated_dirs):
    root = isolated_dirs["runs"]
    for name, status in DAMAGED.items():
        (root / name).mkdir()
        (root / name / "status.json").write_text(json.dumps(status))
        (root / name / "metrics.jsonl").write_text("\n".join(METRICS) + "\n")
    (root / "healthy").mkdir()
    (root / "healthy" / "status.json").write_text('{"state": "finished", "step": 4}')
    return root


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_runs_lists_every_run_and_attach_ends(damaged_runs):
    assert len(list_runs(damaged_runs)) == len(DAMAGED) + 1
    for args in (["runs"], ["runs", "--json"]):
        proc = cli(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        for name in [*DAMAGED, "healthy"]:
            assert name in proc.stdout
    for name in DAMAGED:
        proc = cli("attach", name, "--interval", "0.05")
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        proc = cli("stop", name, "--wait", "0")
        assert "Traceback" not in proc.stderr, (name, proc.stderr)


@pytest.mark.parametrize("name", sorted(DAMAGED))
async def test_the_app_opens_on_a_damaged_run(damaged_runs, name):
    app = create_app(run=damaged_runs / name)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)  # the Training screen polls the run's files
        for key, mode in (("3", "training"), ("4", "grading"), ("1", "datasets")):
            await pilot.press(key)
            await pilot_wait_for(pilot, lambda: app.current_mode == mode, timeout=15)
            await pilot.pause(0.2)
        assert app.is_running
