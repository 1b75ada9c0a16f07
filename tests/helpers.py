"""Small data builders and process runners the tests share (imported as `helpers`:
pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import time

from tui_ft.data.tokenizer import encode
from tui_ft.runfolder import write_checkpoint_marker


def one_token_words() -> list[str]:
    """Words that are one GPT-2 token with and without a leading space."""
    words = ("cat dog sun red blue tree book fish bird car hat cup pen box map key door "
             "rain star moon king ship bell ring rock leaf wolf bear frog seed corn wind "
             "fire sand gold iron wood wall road farm lake hill park bank shop city").split()
    return [w for w in words if len(encode(" " + w)) == 1 and len(encode(w)) == 1]


def code_word_records(words: list[str], seed: int = 0, prefix: str = "r") -> list[dict]:
    """Arbitrary word -> word pairs of equal token length (19 with phi3): a model can
    only memorise them, and a batch of them has no padding."""
    rng = random.Random(seed)
    return [{"id": f"{prefix}-{i}", "instruction": f"Code word {w}", "input": "",
             "output": rng.choice(words)} for i, w in enumerate(words)]


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def word_task_files(tmp_path, name: str, *, n_train: int = 8, n_val: int = 4,
                    n_test: int = 0) -> dict:
    """`dataset`, `val_dataset` (and `test_dataset` when n_test) of code-word records
    on disjoint words, written under tmp_path as NAME-train/-val/-test.jsonl."""
    words = one_token_words()
    files = {"dataset": write_jsonl(tmp_path / f"{name}-train.jsonl",
                                    code_word_records(words[:n_train], 1, "t")),
             "val_dataset": write_jsonl(tmp_path / f"{name}-val.jsonl",
                                        code_word_records(words[n_train:n_train + n_val],
                                                          2, "v"))}
    if n_test:
        start = n_train + n_val
        files["test_dataset"] = write_jsonl(tmp_path / f"{name}-test.jsonl",
                                            code_word_records(words[start:start + n_test],
                                                              3, "q"))
    return files


def word_task_config(tmp_path, name: str, *, n_train: int = 8, **overrides) -> dict:
    """Parameters of a small CPU run on code-word records into tmp_path/NAME: 4 steps,
    no evaluation, no checkpoint but the last; `overrides` replace any of them."""
    data = {"output_dir": str(tmp_path / name), **word_task_files(tmp_path, name,
                                                                  n_train=n_train),
            "prompt_style": "phi3", "max_length": 32, "device": "cpu",
            "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
            "learning_rate": 1e-3, "max_steps": 4, "logging_steps": 1,
            "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False,
            "save_total_limit": None}
    data.update(overrides)
    return data


def sigint_as_at_a_terminal() -> None:
    """preexec_fn for a child that a test stops with SIGINT: a test runner started in
    the background (`pytest &`, a CI step) hands its children SIGINT ignored, and the
    child would never see the Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.1, what: str = ""):
    """Poll `predicate` until it returns something true (returned), else fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")


class PtyApp:
    """A program on a real pseudo-terminal of ROWSxCOLS, as a person's terminal runs it
    (its own session, TERM set, Textual's animations off so frames are deterministic).
    Every byte it writes is kept in `output`; on leaving the `with` block it is killed
    if still alive and the terminal closed, so a failed assertion never leaks it.
    `env` adds to os.environ; other keywords go to Popen (cwd, preexec_fn)."""

    def __init__(self, argv, *, rows: int = 24, cols: int = 80, env: dict | None = None,
                 **popen):
        # Imported here: they exist on POSIX only, and every test imports this module.
        import fcntl
        import pty
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = dict(os.environ, TERM="xterm-256color", TEXTUAL_ANIMATIONS="none",
                        **(env or {}))
        try:
            self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                         env=full_env, start_new_session=True, **popen)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master: int | None = master
        self.output = b""

    def read_until(self, predicate, seconds: float) -> None:
        """Collect output until `predicate()` holds, `seconds` pass, or the terminal
        closes (pass `lambda: False` to just collect for `seconds`)."""
        deadline = time.monotonic() + seconds
        while self.master is not None and time.monotonic() < deadline and not predicate():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the program closed the terminal
                    return

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def hang_up(self) -> None:
        """Close our end of the terminal, as a dropped SSH link does."""
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.hang_up()

    def __enter__(self) -> "PtyApp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def pilot_wait_for(pilot, condition, timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds, else fail (Pilot tests wait on
    conditions, never on bare sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def fake_checkpoint(run, step: int, *, trainer_state: dict | None = None):
    """A checkpoint folder that lists as complete (its marker written by the real
    writer) but holds no weights: for tests of listings and screens."""
    folder = run.checkpoints_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(
        json.dumps(trainer_state or {"global_step": step}))
    write_checkpoint_marker(folder, step)
    return folder
