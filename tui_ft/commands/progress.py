"""A one-line progress display for the terminal (stderr), redrawn in place at most a
few times a second; on a pipe it prints a plain line now and then instead. What the
line says comes from tui_ft.runs.progress, as the Training screen's does."""

from __future__ import annotations

import sys
import time

from ..runs.progress import ProgressState, describe_event, format_duration


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


class DownloadProgress:
    """A download's `progress(done, total)` callback (model/download.py), drawn by a
    ProgressLine: `downloading  123.4 / 548.1 MB  22%  41.3 MB/s  ETA 10s`, redrawn
    in place on a terminal, a line every few seconds into a log."""

    def __init__(self, label: str = "downloading", stream=None,
                 min_interval: float | None = None) -> None:
        self.label = label
        self.line = ProgressLine(stream, interval=0.25 if min_interval is None
                                 else min_interval,
                                 pipe_interval=5.0 if min_interval is None else min_interval)
        self._start: float | None = None
        self._start_done = 0
        self._finished = False

    def __call__(self, done: int, total: int | None) -> None:
        if self._finished:
            return
        now = time.monotonic()
        if self._start is None:
            self._start, self._start_done = now, done
        finished = total is not None and done >= total
        self.line.update(self.format(done, total, now - self._start, done - self._start_done),
                         force=finished)
        if finished:
            self.close()

    def format(self, done: int, total: int | None, elapsed: float, fetched: int) -> str:
        mb = 1e6
        speed = fetched / elapsed if elapsed > 0 else 0.0
        parts = [self.label]
        if total:
            parts.append(f"{done / mb:.1f} / {total / mb:.1f} MB")
            parts.append(f"{100 * done / total:3.0f}%")
        else:
            parts.append(f"{done / mb:.1f} MB")
        parts.append(f"{speed / mb:.1f} MB/s")
        if total and speed > 0 and done < total:
            parts.append(f"ETA {format_duration((total - done) / speed)}")
        elif total and done >= total:
            parts.append(f"done in {format_duration(elapsed)}")
        return "  ".join(parts)

    def close(self) -> None:
        """End the line (finished, failed or stopped)."""
        self.line.close()
        self._finished = True


class TrainingProgress:
    """Prints the progress of metric records: the line (step, epoch, losses, speed,
    ETA) and a message of its own for each event worth one."""

    def __init__(self, line: ProgressLine | None = None) -> None:
        self.line = line or ProgressLine()
        self.state = ProgressState()

    def feed(self, m: dict) -> None:
        event = m.get("event")
        self.state.feed(m)
        step = self.state.step
        if m.get("val_loss") is not None:
            self.line.message(f"step {step}: validation loss {self.state.val_loss:.4f}")
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
            self.line.message(f"step {step}: saved {m.get('checkpoint')}")
        elif event in ("packing", "compile_fallback", "compile_mode_changed",
                       "checkpoint_kept"):
            self.line.message(f"step {step}: {describe_event(m)}")
        elif event in ("failed", "stopped", "early_stopping"):
            self.line.message(f"step {step}: "
                              + (describe_event(m) if event == "stopped" else event)
                              + (f": {m['error']}" if m.get("error") else ""))
        self.line.update(self.text(), force=event is not None)

    def text(self) -> str:
        return " | ".join(self.state.parts())
