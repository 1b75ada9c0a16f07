"""Live train and validation loss (plotext). Redrawn at most once per interval and
only when new points arrived (every redraw of a full chart costs SSH bandwidth);
long histories are thinned to about twice the chart's width.

Three scales: linear; log y; and zoom, which leaves out the first tenth of the
steps. A model from scratch starts near a loss of 10 and ends near 1 to 2: on a
linear axis the first steps flatten everything after them."""

from __future__ import annotations

import time

from textual_plotext import PlotextPlot


def thin(points: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most `limit` points, evenly spread, always keeping the last one."""
    if len(points) <= limit or limit < 2:
        return points
    stride = len(points) / (limit - 1)
    picked = [points[int(i * stride)] for i in range(limit - 1)]
    picked.append(points[-1])
    return picked


SCALES = ("linear", "log", "zoom")
# Zoom leaves out this fraction of the steps drawn, from the first.
ZOOM_SKIP = 0.1


def zoom_start(points: list[tuple[int, float]]) -> int | None:
    """The first step the zoomed chart shows (None: nothing to leave out)."""
    if len(points) < 4:
        return None
    first, last = points[0][0], points[-1][0]
    return first + max(1, int((last - first) * ZOOM_SKIP)) if last > first else None


class LossChart(PlotextPlot):
    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, *, min_interval: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        # The other numbers of each evaluation (accuracy, exact_match, a hook's), by
        # name; `shown` is what the chart draws: "loss" (train and validation) or one.
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.shown = "loss"
        self.best_step: int | None = None
        # The best checkpoint's own validation loss, when the run says it.
        self.best_metric: float | None = None
        self.scale = "linear"
        self.min_interval = min_interval
        self.redraws = 0
        self._dirty = True
        self._last_draw = 0.0

    def clear(self) -> None:
        self.train_points.clear()
        self.val_points.clear()
        self.metrics.clear()
        self.best_step = None
        self.best_metric = None
        self._dirty = True

    def add_train(self, step: int, loss: float) -> None:
        self.train_points.append((step, loss))
        self._dirty = True

    def add_val(self, step: int, loss: float) -> None:
        self.val_points.append((step, loss))
        self._dirty = True

    def add_metric(self, name: str, step: int, value: float) -> None:
        self.metrics.setdefault(name, []).append((step, value))
        if self.shown == name:
            self._dirty = True

    def cycle_metric(self) -> str:
        """Draw the next of: the loss, each other validation metric; at once."""
        order = ["loss", *sorted(self.metrics)]
        self.shown = order[(order.index(self.shown) + 1) % len(order)] \
            if self.shown in order else "loss"
        self._dirty = True
        self.maybe_redraw(force=True)
        return self.shown

    def set_best(self, step: int | None, metric: float | None = None) -> None:
        if (step, metric) != (self.best_step, self.best_metric):
            self.best_step, self.best_metric = step, metric
            self._dirty = True

    def cycle_scale(self) -> str:
        """The next scale (linear, log y, zoom), drawn at once."""
        self.scale = SCALES[(SCALES.index(self.scale) + 1) % len(SCALES)] \
            if self.scale in SCALES else SCALES[0]
        self._dirty = True
        self.maybe_redraw(force=True)
        return self.scale

    def shown_points(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The train and validation points the current scale draws."""
        train, val = self.train_points, self.val_points
        if self.shown != "loss":
            train, val = [], self.metrics.get(self.shown, [])
        if self.scale == "zoom":
            start = zoom_start(train or val)
            if start is not None:
                train = [p for p in train if p[0] >= start]
                val = [p for p in val if p[0] >= start]
        elif self.scale == "log":
            # A log axis has no room for zero (a loss of 0.0 can be logged).
            train = [p for p in train if p[1] > 0]
            val = [p for p in val if p[1] > 0]
        return train, val

    def title(self) -> str:
        title = "loss" if self.shown == "loss" else f"val {self.shown.replace('_', ' ')}"
        if self.scale == "log":
            title += ", log y"
        elif self.scale == "zoom":
            start = zoom_start(self.train_points or self.val_points)
            if start is not None:
                title += f" from step {start}"
        if self.best_step is not None:
            title += f" \u00b7 best checkpoint-{self.best_step}"
            if self.best_metric is not None and self.shown == "loss":
                title += f" ({self.best_metric:.4f})"
        return title

    def maybe_redraw(self, force: bool = False) -> bool:
        """Redraw if there is something new and the interval has passed."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_draw < self.min_interval):
            return False
        self._last_draw = now
        self._dirty = False
        self.redraws += 1
        self.replot()
        return True

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.yscale("log" if self.scale == "log" else "linear")
        limit = max(20, 2 * max(10, self.size.width))
        train, val = self.shown_points()
        if train:
            xs, ys = zip(*thin(train, limit))
            plt.plot(list(xs), list(ys), label="train", marker="braille")
        if val:
            xs, ys = zip(*thin(val, limit))
            plt.plot(list(xs), list(ys), marker="dot",
                     label="validation" if self.shown == "loss" else self.shown)
        shown = [s for s, _ in train + val]
        if self.best_step is not None and shown and min(shown) <= self.best_step:
            plt.vline(self.best_step)
        plt.title(self.title())
        plt.xlabel("step")
        self.refresh()
