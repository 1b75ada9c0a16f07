"""Runs made with their own output_dir are listed and found by name (a registry in
the runs directory), and a listing piped into `head` ends quietly. Real sub-processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tui_ft.config import TrainConfig
from tui_ft.paths import run_registry
from tui_ft.runfolder import Run
from tui_ft.runs.registry import list_runs
from tui_ft.runs.jobs import prepare_run

from helpers import word_task_config


def make(tmp_path, where) -> Run:
    run, _ = prepare_run(TrainConfig.from_dict(word_task_config(tmp_path, "x",
                                                                output_dir=str(where))))
    return run


def test_runs_lists_runs_with_their_own_output_dir(tmp_path, run_cli, isolated_dirs):
    elsewhere = make(tmp_path, tmp_path / "projects" / "alpha")
    inside = make(tmp_path, isolated_dirs["runs"] / "beta")  # listed as before
    gone = make(tmp_path, tmp_path / "projects" / "gone")
    shutil.rmtree(gone.path)  # deleted by hand: skipped, never an error
    with open(run_registry(), "a") as f:
        f.write('{"path": "/nowhere/at/all"}\n{"torn": \n')

    listing = run_cli("runs", "--json")
    assert listing.returncode == 0, listing.stderr
    paths = sorted(row["path"] for row in json.loads(listing.stdout))
    assert paths == sorted([str(elsewhere.path.resolve()), str(inside.path)])
    text = run_cli("runs")
    assert text.returncode == 0 and "Traceback" not in text.stderr
    assert any(line.startswith("alpha ") for line in text.stdout.splitlines())
    assert [str(r.path) for r in list_runs()] == [str(r.path) for r in list_runs(
        isolated_dirs["runs"])]
    # Registered once, where made; the one inside the runs directory needs no note.
    lines = run_registry().read_text().splitlines()
    assert sum(str(elsewhere.path.resolve()) in line for line in lines) == 1
    assert not any(str(inside.path.resolve()) in line for line in lines)

    # Its name finds it, as a run in the runs directory is found.
    stop = run_cli("stop", "alpha")
    assert stop.returncode == 0 and "Traceback" not in stop.stderr
    assert "no such run" not in stop.stderr
    missing = run_cli("stop", "gone")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "gone: no such run folder" in missing.stderr and "tui-ft runs" in missing.stderr


def test_two_registered_runs_of_one_name_ask_for_the_path(tmp_path, run_cli):
    first = make(tmp_path, tmp_path / "a" / "same")
    second = make(tmp_path, tmp_path / "b" / "same")
    proc = run_cli("attach", "same")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "2 runs have this name" in proc.stderr
    assert str(first.path.resolve()) in proc.stderr and str(second.path.resolve()) in proc.stderr


def test_a_listing_into_a_closed_pipe_ends_quietly(isolated_dirs):
    for i in range(30):
        (isolated_dirs["runs"] / f"run-{i}").mkdir()
        (isolated_dirs["runs"] / f"run-{i}" / "status.json").write_text('{"state": "finished"}')
    for args in (["runs"], ["runs", "--json"], ["styles"], ["--help"]):
        # The reader is gone before the first byte: every write fails with EPIPE.
        read, write = os.pipe()
        os.close(read)
        proc = subprocess.run([sys.executable, "-m", "tui_ft.cli", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
        os.close(write)
        assert proc.stderr == "", (args, proc.stderr)
        assert proc.returncode in (141, 0), args  # 141: as if ended by SIGPIPE


def test_runs_piped_into_head(isolated_dirs):
    for i in range(200):
        (isolated_dirs["runs"] / f"run-{i:03d}").mkdir()
        (isolated_dirs["runs"] / f"run-{i:03d}" / "status.json").write_text("{}")
    proc = subprocess.run(f"{sys.executable} -m tui_ft.cli runs | head -3", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert len(proc.stdout.splitlines()) == 3
    assert proc.stderr == "", proc.stderr


def test_a_training_run_whose_output_pipe_closes_still_finishes(tmp_path, isolated_dirs):
    """`tui-ft train 2>&1 | head -1`: the reader leaves after the first line; the
    progress line goes quiet and the run finishes with its checkpoint (it was marked
    failed, 'internal error', when a progress write hit the closed pipe)."""
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(word_task_config(tmp_path, "piped", max_steps=6,
                                                   save_strategy="steps", save_steps=6)))
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "tui_ft.cli", "train", str(cfg)],
                          stdout=write, stderr=write, timeout=300)
    os.close(write)
    assert proc.returncode in (0, 141)
    status = json.loads((tmp_path / "piped" / "status.json").read_text())
    assert status["state"] == "finished", status
    assert (tmp_path / "piped" / "checkpoints" / "checkpoint-6").is_dir()
