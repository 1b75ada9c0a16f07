"""The app without a terminal (issue 13): `ssh host tui-ft < /dev/null`, or a script
that runs `tui-ft`, started Textual on an end-of-file stdin and spun a core for ever
(and drew escape codes into whatever stderr was). Now the app refuses at once, saying
what to do; the headless commands work with any stdin."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from helpers import word_task_config

APP = [sys.executable, "-m", "tui_ft.cli"]


def run(args, *, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([*APP, *map(str, args)], stdin=stdin, stdout=subprocess.PIPE,
                          stderr=stderr, env=env, timeout=timeout)


def refused(proc, stream: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.startswith(f"tui-ft: error: the app needs a terminal, and its {stream} is "
                          "not one"), err
    assert "ssh -t HOST tui-ft" in err and "tui-ft train CONFIG" in err
    assert "Traceback" not in err
    # Textual never started: not one escape code was drawn.
    assert b"\x1b" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [[], ["--screen", "params"], ["--config", "CONFIG"]],
                         ids=["tui-ft", "--screen", "--config"])
def test_the_app_with_stdin_devnull_ends_at_once_with_a_message(args, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("max_steps: 5\n")
    started = time.monotonic()
    # The timeout (30 s) is the old failure: it never ended.
    proc = run([config if a == "CONFIG" else a for a in args])
    assert time.monotonic() - started < 15
    refused(proc, "stdin")


def test_the_app_with_a_pipe_for_stdin_is_refused_too():
    refused(run([], stdin=subprocess.PIPE), "stdin")


def test_the_app_refuses_a_stderr_that_is_not_a_terminal_but_not_a_redirected_stdout(
        tmp_path):
    """Textual draws on stderr: a terminal stdin with stderr in a file is refused; with
    stdin and stderr a terminal and stdout redirected, the app runs as usual."""
    master, slave = pty.openpty()
    try:
        proc = run([], stdin=slave)
        refused(proc, "stderr")

        app = subprocess.Popen(APP, stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                               env=dict(os.environ, TERM="xterm-256color",
                                        TEXTUAL_ANIMATIONS="none"),
                               start_new_session=True)
    finally:
        os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"records" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
        assert b"records" in seen, seen[-2000:]  # the Datasets screen was drawn
        assert app.poll() is None
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()
        app.stdout.close()
        os.close(master)


@pytest.mark.slow
def test_headless_commands_keep_working_with_stdin_devnull(tmp_path, isolated_dirs):
    import yaml

    for args in (["runs"], ["styles"], ["data", "inspect", "@sample/instructions.jsonl"],
                 ["data", "preview", "@sample/instructions.jsonl", "--index", "0"]):
        proc = run(args)
        assert proc.returncode == 0, (args, proc.stderr.decode())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**word_task_config(tmp_path, "w"), "max_steps": 2,
                                      "output_dir": str(tmp_path / "run")}))
    proc = run(["train", config], timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert (tmp_path / "run" / "status.json").is_file()
    assert b"finished: step 2" in proc.stdout + proc.stderr
