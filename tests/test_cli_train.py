"""`tui-ft train`, `runs`, `attach`, `stop` and `responses`, run for real as
sub-processes on the tiny model."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_ft.grade.responses import generate_responses, read_responses
from tui_ft.text import normalise
from tui_ft.runfolder import Run, pid_alive

from helpers import wait_for, word_task_files, write_jsonl

# -- helpers ---------------------------------------------------------------------------------


def write_config(tmp_path, name: str, **overrides) -> Path:
    data = {"output_dir": str(tmp_path / name), **word_task_files(tmp_path, name, n_test=6),
            "prompt_style": "phi3", "max_length": 32, "device": "cpu",
            "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
            "learning_rate": 3e-3, "max_steps": 6, "logging_steps": 1,
            "eval_strategy": "steps", "eval_steps": 3, "save_strategy": "steps",
            "save_steps": 3, "save_total_limit": None, "max_new_tokens": 8}
    data.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in data.items()),
                    encoding="utf-8")
    return path


def assert_clean_failure(proc, *words):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def kill(pid) -> None:
    if pid and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cli_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# -- foreground training ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`tui-ft train CONFIG.yaml` in the foreground, its stderr on a terminal (a pty)
    so the progress bar draws, its stdout on a pipe."""
    tmp = tmp_path_factory.mktemp("cli-train")
    config = write_config(tmp, "fg")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tui_ft.cli", "train", str(config)],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env=cli_env())
    os.close(slave)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("tui-ft train printed nothing for 120 s")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    stdout = proc.stdout.read().decode()
    assert proc.wait(timeout=60) == 0, terminal.decode(errors="replace")
    return Run(tmp / "fg"), stdout, terminal.decode("utf-8", errors="replace"), tmp


def test_train_in_the_foreground_prints_the_run_folder(trained):
    run, stdout, terminal, _ = trained
    assert stdout.strip().splitlines()[-1] == str(run.path)
    assert run.state() == "finished"
    assert run.read_status()["step"] == 6
    assert [c.step for c in run.checkpoints()] == [3, 6]
    assert "Traceback" not in terminal


def test_train_draws_a_progress_bar_on_a_terminal(trained):
    _, _, terminal, _ = trained
    assert "\r" in terminal  # redrawn in place
    assert "step 6/6" in terminal and "loss " in terminal and "tok/s" in terminal
    assert "validation loss" in terminal and "saved checkpoint-3" in terminal
    assert "finished: step 6" in terminal


def test_runs_lists_the_run(trained, run_cli):
    run, _, _, tmp = trained
    listing = run_cli("runs", "--dir", str(tmp), "--json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    row = next(r for r in rows if r["path"] == str(run.path))
    assert row["state"] == "finished" and row["step"] == 6 and row["total_steps"] == 6
    vals = [m["val_loss"] for m in run.read_metrics() if "val_loss" in m]
    assert row["best_val_loss"] == pytest.approx(min(vals))
    text = run_cli("runs", "--dir", str(tmp))
    assert text.returncode == 0
    header, *lines = text.stdout.splitlines()
    assert "STATE" in header and "STEP" in header and "BEST VAL" in header and "AGE" in header
    line = next(l for l in lines if l.startswith(run.name))
    assert "finished" in line and "6/6" in line and f"{min(vals):.4f}" in line
    assert line.rstrip().endswith("ago")


def test_attach_to_a_finished_run_returns_at_once(trained, run_cli):
    run, _, _, _ = trained
    proc = run_cli("attach", str(run.path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stderr


def test_responses_with_cuda_graphs_on_the_cpu_is_refused_before_writing(trained, run_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA (tests/test_gpu.py runs it there)")
    run, _, _, _ = trained
    before = run.responses_path.read_bytes() if run.responses_path.exists() else None
    proc = run_cli("responses", str(run.path), "--cuda-graphs", "--device", "cpu",
                   timeout=120)
    assert_clean_failure(proc, "--cuda-graphs needs a CUDA device")
    after = run.responses_path.read_bytes() if run.responses_path.exists() else None
    assert after == before
    assert not list(run.path.glob("*.partial"))


def test_responses_writes_the_file_and_reports_exact_match(trained, run_cli):
    run, _, _, _ = trained
    proc = run_cli("responses", str(run.path), "--checkpoint", "last", "--split", "test",
                   "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["count"] == 6 and summary["checkpoint"] == "checkpoint-6"
    assert "exact match:" in proc.stderr and "6 responses from checkpoint-6" in proc.stderr
    lines = [json.loads(l) for l in run.responses_path.read_text().splitlines()]
    assert len(lines) == 6 == len(read_responses(run.responses_path))
    test_records = [json.loads(l) for l in
                    Path(str(run.path) + "-test.jsonl").read_text().splitlines()]
    for line, record in zip(lines, test_records):
        assert {"id", "instruction", "input", "expected", "response", "checkpoint",
                "generation", "finish_reason", "exact_match"} <= set(line)
        assert line["id"] == record["id"] and line["instruction"] == record["instruction"]
        assert line["expected"] == record["output"] and line["checkpoint"] == "checkpoint-6"
        assert line["generation"]["max_new_tokens"] == 8
        assert line["generation"]["temperature"] == 0.0
        assert line["finish_reason"] in ("eos", "stop_string", "length")
        assert line["exact_match"] == (normalise(line["response"]) == normalise(record["output"]))
    assert summary["exact_match"] == pytest.approx(sum(l["exact_match"] for l in lines) / 6)
    assert not Path(str(run.responses_path) + ".partial").exists()


def test_exact_match_accuracy_counts_the_answers_that_match(trained):
    """Greedy answers are deterministic: give half the test records the answer the
    model gives (in other case and spacing) and the accuracy is one half."""
    run, _, _, _ = trained
    first = generate_responses(run, checkpoint="best", device="cpu")
    answers = {l["id"]: l["response"] for l in read_responses(run.responses_path)}
    test_path = Path(str(run.path) + "-test.jsonl")
    records = [json.loads(l) for l in test_path.read_text().splitlines()]
    for i, record in enumerate(records):
        # Another output that no response can match, or the response itself.
        record["output"] = (f"  {answers[record['id']].upper()} " if i % 2 == 0
                            else "no answer is this")
    write_jsonl(test_path, records)
    second = generate_responses(run, checkpoint="best", device="cpu")
    assert second["checkpoint"] == first["checkpoint"] == run.read_status()["best_checkpoint"]
    assert second["correct"] == 3 and second["exact_match"] == pytest.approx(0.5)


def test_responses_for_a_checkpoint_that_does_not_exist(trained, run_cli):
    run, _, _, _ = trained
    proc = run_cli("responses", str(run.path), "--checkpoint", "99")
    assert_clean_failure(proc, "checkpoint-99", "checkpoint-3, checkpoint-6")


def test_resume_of_a_run_that_is_not_running_is_refused_when_it_runs(trained, run_cli):
    run, _, _, _ = trained
    status = json.loads(run.status_path.read_text())
    run.write_status(state="running", pid=os.getpid())  # pretend: this process is alive
    try:
        proc = run_cli("train", "--resume", str(run.path))
        assert_clean_failure(proc, "still running")
    finally:
        run.status_path.write_text(json.dumps(status))


# -- bad configuration files -----------------------------------------------------------------


def test_a_bad_config_lists_every_problem_and_creates_nothing(tmp_path, run_cli, isolated_dirs):
    out = tmp_path / "never"
    config = tmp_path / "bad.yaml"
    config.write_text(f"output_dir: {out}\nnum_train_epochs: -1\n"
                      "per_device_train_batch_size: lots\nlearnig_rate: 0.1\n"
                      "eval_steps: 50\nsave_steps: 75\n")
    proc = run_cli("train", str(config))
    assert_clean_failure(proc, str(config), "4 problems", "num_train_epochs = -1",
                         "per_device_train_batch_size = 'lots'", "whole number",
                         "did you mean 'learning_rate'", "save_steps = 75",
                         "multiple of eval_steps")
    assert not out.exists()
    assert list(isolated_dirs["runs"].iterdir()) == []


def test_a_config_with_python_tags_runs_nothing(tmp_path, run_cli, isolated_dirs):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"output_dir: {tmp_path / 'never'}\n"
                      f"max_steps: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = run_cli("train", str(config))
    assert_clean_failure(proc, str(config))
    assert not marker.exists()
    assert not (tmp_path / "never").exists()
    assert list(isolated_dirs["runs"].iterdir()) == []


def test_a_missing_config_file(tmp_path, run_cli, isolated_dirs):
    proc = run_cli("train", str(tmp_path / "absent.yaml"))
    assert_clean_failure(proc, "absent.yaml", "no such file")
    assert list(isolated_dirs["runs"].iterdir()) == []


# -- detached runs: attach, stop, resume -----------------------------------------------------


def test_detach_returns_at_once_and_attach_follows_to_the_end(tmp_path, run_cli):
    config = write_config(tmp_path, "bg", max_steps=12, eval_steps=6, save_steps=6)
    t0 = time.monotonic()
    proc = run_cli("train", str(config), "--detach")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    run = Run(proc.stdout.strip().splitlines()[-1])
    assert run.path == tmp_path / "bg"
    pid = run.read_status()["pid"]
    try:
        assert elapsed < 3.0, f"--detach took {elapsed:.1f}s"
        assert f"started worker {pid}" in proc.stderr
        # The CLI process is gone; its worker is not, and has a session of its own.
        assert pid_alive(pid) or run.state() == "finished"
        if pid_alive(pid):
            assert os.getsid(pid) != os.getsid(0)
        attach = run_cli("attach", str(run.path), "--interval", "0.2", timeout=300)
    finally:
        kill(pid)
    assert attach.returncode == 0, attach.stderr
    assert "finished" in attach.stderr and "step 12/12" in attach.stderr
    assert run.state() == "finished" and run.read_status()["step"] == 12
    assert "Traceback" not in run.log_path.read_text()


def test_stop_then_resume_from_the_command_line(tmp_path, run_cli):
    config = write_config(tmp_path, "stop", max_steps=2000, eval_steps=1000, save_steps=1000,
                          load_best_model_at_end=False)
    proc = run_cli("train", str(config), "--detach")
    assert proc.returncode == 0, proc.stderr
    run = Run(tmp_path / "stop")
    pid = run.read_status()["pid"]
    try:
        wait_for(lambda: (run.read_status().get("step") or 0) >= 2, what="step 2")
        stop = run_cli("stop", str(run.path), "--wait", "60")
        assert stop.returncode == 0, stop.stderr
        wait_for(lambda: not pid_alive(pid), what="the worker to exit")
    finally:
        kill(pid)
    assert run.state() == "stopped"
    first_stop = run.read_status()["step"]
    assert run.checkpoint("last").name == f"checkpoint-{first_stop}"
    assert f"stopped at step {first_stop}" in stop.stderr
    again = run_cli("stop", str(run.path))
    assert again.returncode == 0 and "not running" in again.stderr

    resumed = run_cli("train", "--resume", str(run.path), "--detach")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run.path} from checkpoint-{first_stop}" in resumed.stderr
    pid = run.read_status()["pid"]
    try:
        wait_for(lambda: (run.read_status().get("step") or 0) >= first_stop + 2,
                 what="steps after the resume")
        assert run_cli("stop", str(run.path), "--wait", "60").returncode == 0
        wait_for(lambda: not pid_alive(pid), what="the worker to exit")
    finally:
        kill(pid)
    assert run.state() == "stopped"
    second_stop = run.read_status()["step"]
    assert second_stop >= first_stop + 2
    metrics = run.read_metrics()
    steps = [m["step"] for m in metrics if "train_loss" in m]
    assert steps == list(range(1, second_stop + 1))  # no step twice, none missing
    assert [m["checkpoint"] for m in metrics if m.get("event") == "resumed"] == \
        [f"checkpoint-{first_stop}"]
    listing = json.loads(run_cli("runs", "--dir", str(tmp_path), "--json").stdout)
    assert [(r["state"], r["step"]) for r in listing] == [("stopped", second_stop)]


def test_attach_to_a_failed_run_exits_non_zero_with_the_error(tmp_path, run_cli):
    config = write_config(tmp_path, "fails", dataset=str(tmp_path / "missing.jsonl"))
    proc = run_cli("train", str(config))
    assert_clean_failure(proc, "missing.jsonl")
    run = Run(tmp_path / "fails")
    assert run.state() == "failed"
    attach = run_cli("attach", str(run.path))
    assert attach.returncode == 1
    assert "failed" in attach.stderr and "missing.jsonl" in attach.stderr
    listing = json.loads(run_cli("runs", "--dir", str(tmp_path), "--json").stdout)
    assert listing[0]["state"] == "failed" and "missing.jsonl" in listing[0]["error"]


@pytest.mark.slow
def test_a_run_recorded_before_a_config_rule_still_resumes(tmp_path, run_cli):
    """A default run made before max_new_tokens had to fit the context (256 with tiny)
    resumes; a config.yaml broken by hand is refused before the run's state changes
    (it was left 'starting', so the next resume said 'still running')."""
    cfg = write_config(tmp_path, "old", max_steps=4, save_strategy="steps", save_steps=2,
                       eval_strategy="no", load_best_model_at_end=False)
    proc = run_cli("train", str(cfg), timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = Run(Path(proc.stdout.strip().splitlines()[-1]))
    text = run.config_path.read_text(encoding="utf-8")
    assert "max_new_tokens:" in text
    old = "\n".join("max_new_tokens: 256" if line.startswith("max_new_tokens:") else line
                    for line in text.splitlines()) + "\n"
    run.config_path.write_text(old, encoding="utf-8")
    proc = run_cli("train", "--resume", str(run.path), "--checkpoint", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert run.read_status()["state"] == "finished" and run.read_status()["step"] == 4

    run.config_path.write_text(old.replace("max_new_tokens: 256", "learning_rate: fast"),
                               encoding="utf-8")
    proc = run_cli("train", "--resume", str(run.path))
    assert_clean_failure(proc, "learning_rate", "must be a number")
    assert run.read_status()["state"] == "finished"
