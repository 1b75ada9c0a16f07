"""What a run's metrics.jsonl says so far, for a reader: the metrics event vocabulary
(one line per event) and the progress state (step, epoch, losses, speed, ETA) that
the CLI's progress line and the Training screen both render."""

from __future__ import annotations

import time

# The events the trainer writes into metrics.jsonl (a record with an "event" field);
# a record without one is a training or evaluation point. describe_event says each.
EVENTS = ("data", "packing", "start", "resumed", "checkpoint", "checkpoint_kept",
          "overfitting", "overfitting_cleared", "compile_fallback", "compile_mode_changed",
          "best_model_loaded", "early_stopping", "stopped", "failed", "end")


def metric_label(name) -> str:
    """How metric_for_best_model reads beside its value: val loss, val accuracy."""
    return "val accuracy" if str(name or "").removeprefix("eval_") == "accuracy" \
        else "val loss"


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


class ProgressState:
    """The progress of a run, fed its metric records in order (`feed`). The ETA comes
    from the records' own times, so a reader that attaches late (or replays the
    history) knows the pace as well as one that watched from the start."""

    def __init__(self) -> None:
        self.total_steps: int | None = None
        self.step = 0
        self.epoch = 0.0
        self.train_loss: float | None = None
        self.val_loss: float | None = None
        self.speed: float | None = None
        self.overfitting: dict | None = None
        # What runs: the checkpoint a resume continued from, the device of the last start.
        self.resumed_from: str | None = None
        self.device: str | None = None
        # (time, step) of the first record since the last (re)start, and of the latest.
        self.first_time: tuple[float, int] | None = None
        self.last_time: tuple[float, int] | None = None

    def feed(self, m: dict) -> None:
        step = int(m.get("step", self.step) or 0)
        event = m.get("event")
        if event in ("start", "resumed"):
            self.total_steps = m.get("total_steps", self.total_steps)
        if event == "resumed":
            self.resumed_from = m.get("checkpoint")
        if event == "start" and m.get("device"):
            self.device = f"{m['device']} {m.get('precision') or ''}".strip()
            world = m.get("world_size")
            if isinstance(world, int) and world > 1:
                self.device += f" x {world} ranks"
        if "time" in m:
            if self.first_time is None or event in ("start", "resumed"):
                self.first_time = (float(m["time"]), step)
            self.last_time = (float(m["time"]), step)
        self.step = max(self.step, step) if event != "resumed" else step
        self.epoch = float(m.get("epoch", self.epoch) or 0.0)
        # A null loss (a hand-made or foreign line) is no loss: the last one stays.
        if m.get("train_loss") is not None:
            self.train_loss = m["train_loss"]
        if m.get("val_loss") is not None:
            self.val_loss = m["val_loss"]
        if "tokens_per_s" in m:
            self.speed = m["tokens_per_s"]
        if event == "overfitting":
            self.overfitting = m
        elif event == "overfitting_cleared":
            self.overfitting = None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the pace since the last (re)start, counted from `now`."""
        if not (self.total_steps and self.first_time and self.last_time):
            return None
        (t0, s0), (t1, s1) = self.first_time, self.last_time
        if s1 <= s0:
            return None
        now = time.time() if now is None else now
        return (t1 - t0) / (s1 - s0) * (self.total_steps - s1) - (now - t1)

    def parts(self, show_eta: bool = True) -> list[str]:
        return progress_parts(self.step, self.total_steps, self.epoch, self.train_loss,
                              self.val_loss, self.speed, self.eta() if show_eta else None,
                              show_eta=show_eta)


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
        text = (f"started: {m.get('total_steps')} steps on {m.get('device')} "
                f"({m.get('precision')})")
        world = m.get("world_size")
        if isinstance(world, int) and world > 1:
            text += (f", {world} ranks: batch {m.get('per_device_train_batch_size')} per "
                     f"rank x {world} x {m.get('gradient_accumulation_steps')} "
                     f"accumulation = {m.get('effective_batch_size')} per step")
        return text
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
                + (f" ({metric_label(m.get('metric_name'))} {metric:.4f})"
                   if isinstance(metric, (int, float)) else ""))
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
