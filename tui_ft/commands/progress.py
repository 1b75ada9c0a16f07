"""A one-line progress display for the terminal (stderr), redrawn in place at most a
few times a second; on a pipe it prints a plain line now and then instead."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_parts(step: int, total, epoch: float, train_loss=None, val_loss=None,
                   speed=None, eta: float | None = None, show_eta: bool = True) -> list[str]:
    """The pieces of a training progress line, shared by the CLI and the TUI."""
    parts = [f"step {step}/{total or '?'}", f"epoch {epoch:.2f}"]
    if train_loss is not None:
        parts.append(f"loss {train_loss:.4f}")
    if val_loss is not None:
        parts.append(f"val {val_loss:.4f}")
    if speed is not None:
        parts.append(f"{speed:,.0f} tok/s")
    if show_eta:
        parts.append(f"ETA {format_duration(eta)}")
    return parts


class ProgressLine:
    def __init__(self, stream=None, interval: float = 0.25, pipe_interval: float = 10.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else pipe_interval
        self.last = 0.0
        self.width = 0
        self.written = None  # the last line written to a pipe
        self.dead = False  # the stream went away (a closed pipe, a hung-up terminal)

    def _write(self, text: str) -> None:
        """Progress is a view of the run, never part of it: a reader that went away
        (`tui-ft train 2>&1 | head`, a dropped SSH link) silences the line instead of
        failing the run it describes."""
        if self.dead:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.dead = True

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            pad = max(0, self.width - len(text))
            self._write("\r" + text + " " * pad)
            self.width = len(text)
        elif text != self.written:  # a log keeps one copy of a line that did not change
            self._write(text + "\n")
            self.written = text

    def message(self, text: str) -> None:
        """A line of its own above the progress line."""
        if self.tty and self.width:
            self._write("\r" + " " * self.width + "\r")
            self.width = 0
        self._write(text + "\n")
        self.last = 0.0

    def close(self) -> None:
        if self.tty and self.width:
            self._write("\n")
            self.width = 0


class TrainingProgress:
    """Turns metric records into the progress line: step, epoch, losses, speed, ETA."""

    def __init__(self, line: ProgressLine | None = None) -> None:
        self.line = line or ProgressLine()
        self.total = None
        self.step = 0
        self.epoch = 0.0
        self.train_loss = None
        self.val_loss = None
        self.speed = None
        self.t0 = None
        self.step0 = 0

    def feed(self, m: dict) -> None:
        event = m.get("event")
        if event == "start" or event == "resumed":
            self.total = m.get("total_steps", self.total)
            self.t0, self.step0 = time.monotonic(), int(m.get("step", 0))
        self.step = int(m.get("step", self.step))
        self.epoch = float(m.get("epoch", self.epoch))
        if "train_loss" in m:
            self.train_loss = m["train_loss"]
        if "tokens_per_s" in m:
            self.speed = m["tokens_per_s"]
        if "val_loss" in m:
            self.val_loss = m["val_loss"]
            self.line.message(f"step {self.step}: validation loss {self.val_loss:.4f}")
        if event == "overfitting":
            metric = m.get("best_checkpoint_metric")
            self.line.message(
                f"OVERFITTING: validation loss has not improved since step "
                f"{m.get('best_step')} (best {m.get('best_val_loss', 0):.4f}, began at step "
                f"{m.get('began_at_step')}) while training loss kept falling; best checkpoint: "
                f"{m.get('best_checkpoint') or 'not saved yet'}"
                + (f" (val loss {metric:.4f})" if isinstance(metric, (int, float)) else "")
                + ". 'tui-ft stop RUN' stops it.")
        elif event == "checkpoint":
            self.line.message(f"step {self.step}: saved {m.get('checkpoint')}")
        elif event in ("packing", "compile_fallback", "compile_mode_changed",
                       "checkpoint_kept"):
            self.line.message(f"step {self.step}: {describe_event(m)}")
        elif event in ("failed", "stopped", "early_stopping"):
            self.line.message(f"step {self.step}: "
                              + (describe_event(m) if event == "stopped" else event)
                              + (f": {m['error']}" if m.get("error") else ""))
        self.line.update(self.text(), force=event is not None)

    def eta(self) -> float | None:
        if not self.total or self.t0 is None or self.step <= self.step0:
            return None
        rate = (time.monotonic() - self.t0) / (self.step - self.step0)
        return rate * (self.total - self.step)

    def text(self) -> str:
        return " | ".join(progress_parts(self.step, self.total, self.epoch, self.train_loss,
                                         self.val_loss, self.speed, self.eta()))


def describe_event(m: dict) -> str:
    """One line about a metrics event, for the run log of the Training screen and the
    CLI's progress messages."""
    event = m.get("event")
    if event == "checkpoint":
        return f"saved {m.get('checkpoint')}" + (
            f" (removed {', '.join(m['removed'])})" if m.get("removed") else "")
    if event == "data":
        return (f"data: {m.get('train')} train, {m.get('val')} val, {m.get('test')} test, "
                f"{m.get('bad_records')} bad, {m.get('truncated')} truncated")
    if event == "packing":
        fill = m.get("fill")
        return (f"packing: {m.get('examples')} records in {m.get('rows')} rows of "
                f"{m.get('row_length')} tokens"
                + (f", {100 * fill:.1f}% full" if isinstance(fill, (int, float)) else ""))
    if event == "start":
        return (f"started: {m.get('total_steps')} steps on {m.get('device')} "
                f"({m.get('precision')})")
    if event == "overfitting":
        return (f"overfitting since step {m.get('began_at_step')}; best "
                f"{m.get('best_checkpoint') or 'step ' + str(m.get('best_step'))}")
    if event == "compile_fallback":
        return f"torch.compile failed, training without it: {m.get('reason')}"
    if event == "compile_mode_changed":
        return (f"torch.compile mode {m.get('from')} -> {m.get('to')}: {m.get('reason')}")
    if event == "failed":
        return f"failed: {m.get('error')}"
    if event == "best_model_loaded":
        metric = m.get("metric")
        return (f"the run hands on its best checkpoint, {m.get('checkpoint')}"
                + (f" (val loss {metric:.4f})" if isinstance(metric, (int, float)) else ""))
    if event == "checkpoint_kept":
        return (f"kept {m.get('checkpoint')} beyond save_total_limit "
                f"{m.get('save_total_limit')}: {m.get('graded')} of its responses are graded")
    if event == "stopped":
        by = {"SIGINT": "Ctrl-C", "SIGTERM": "a stop request",
              "STOP file": "a stop request"}.get(m.get("by"), m.get("by"))
        return ("stopped" + (f" by {by}" if by else "")
                + (" at once, without a checkpoint" if m.get("interrupted") else ""))
    if event == "end":
        return f"ended: {m.get('state')}"
    if event == "resumed":
        return f"resumed from {m.get('checkpoint')}"
    if event == "early_stopping":
        return (f"early stopping: no improvement in {m.get('patience')} evaluations")
    return str(event)
