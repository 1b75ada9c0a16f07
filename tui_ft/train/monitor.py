"""The overfitting alert and early stopping. Both judge evaluations over the whole
validation split (never single batches) and need an improvement of at least a
minimum size, so noise does not set them off: an alert that cries wolf is ignored."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OverfitMonitor:
    """Says `overfitting` once validation loss has not improved by `min_delta` for
    `patience` evaluations in a row while training loss kept falling."""

    patience: int = 3
    min_delta: float = 0.01
    best_val: float = float("inf")
    best_step: int | None = None
    best_train: float | None = None
    since_best: int = 0
    first_bad_step: int | None = None
    alerted: bool = False
    history: list = field(default_factory=list)

    def update(self, step: int, val_loss: float, train_loss: float | None) -> dict | None:
        """Feed one evaluation. Returns an event dict when the alert starts (once per
        episode) or ends (validation loss improved again), else None."""
        self.history.append((step, val_loss, train_loss))
        if val_loss < self.best_val - self.min_delta:
            was_alerted = self.alerted
            self.best_val, self.best_step, self.best_train = val_loss, step, train_loss
            self.since_best, self.first_bad_step, self.alerted = 0, None, False
            if was_alerted:
                # Not "val_loss": readers chart every line that has one, and the
                # evaluation line already holds it.
                return {"event": "overfitting_cleared", "step": step, "best_val_loss": val_loss}
            return None
        self.since_best += 1
        if self.first_bad_step is None:
            self.first_bad_step = step
        if self.alerted or self.since_best < self.patience:
            return None
        if not self._train_kept_falling():
            return None
        self.alerted = True
        return {
            "event": "overfitting",
            "step": step,
            "began_at_step": self.first_bad_step,
            "best_step": self.best_step,
            "best_val_loss": self.best_val,
            "last_val_loss": val_loss,
            "last_train_loss": train_loss,
            "evaluations_without_improvement": self.since_best,
        }

    def _train_kept_falling(self) -> bool:
        """Training loss now is below its value at the best evaluation by more than
        min_delta (noise in a flat training loss is not a fall)."""
        if self.best_train is None or self.history[-1][2] is None:
            return False
        return self.history[-1][2] < self.best_train - self.min_delta


@dataclass
class EarlyStopping:
    """Hugging Face's EarlyStoppingCallback: stop after `patience` evaluations whose
    metric did not beat the best by more than `threshold`."""

    patience: int
    threshold: float = 0.0
    greater_is_better: bool = False
    best: float | None = None
    bad_evaluations: int = 0

    def update(self, metric: float) -> bool:
        """Feed one evaluation; True means stop now."""
        if self.best is None:
            improved = True
        elif self.greater_is_better:
            improved = metric > self.best and abs(metric - self.best) > self.threshold
        else:
            improved = metric < self.best and abs(metric - self.best) > self.threshold
        if improved:
            self.best = metric
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
        return self.bad_evaluations >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")
        self.bad_evaluations = int(state.get("bad_evaluations", 0))


def monitor_state(monitor: OverfitMonitor) -> dict:
    return {"best_val": monitor.best_val, "best_step": monitor.best_step,
            "best_train": monitor.best_train, "since_best": monitor.since_best,
            "first_bad_step": monitor.first_bad_step, "alerted": monitor.alerted,
            "history": [list(h) for h in monitor.history]}


def load_monitor_state(monitor: OverfitMonitor, state: dict) -> None:
    monitor.best_val = float(state.get("best_val", float("inf")))
    monitor.best_step = state.get("best_step")
    monitor.best_train = state.get("best_train")
    monitor.since_best = int(state.get("since_best", 0))
    monitor.first_bad_step = state.get("first_bad_step")
    monitor.alerted = bool(state.get("alerted", False))
    monitor.history = [tuple(h) for h in state.get("history", [])]
