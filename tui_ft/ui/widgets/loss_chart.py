"""Live train and validation loss (plotext). Redrawn at most once per interval and
only when new points arrived (every redraw of a full chart costs SSH bandwidth);
long histories are thinned to about twice the chart's width."""

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
        self.best_step: int | None = None
        self.min_interval = min_interval
        self.redraws = 0
        self._dirty = True
        self._last_draw = 0.0

    def clear(self) -> None:
        self.train_points.clear()
        self.val_points.clear()
        self.best_step = None
        self._dirty = True

    def add_train(self, step: int, loss: float) -> None:
        self.train_points.append((step, loss))
        self._dirty = True

    def add_val(self, step: int, loss: float) -> None:
        self.val_points.append((step, loss))
        self._dirty = True

    def set_best(self, step: int | None) -> None:
        if step != self.best_step:
            self.best_step = step
            self._dirty = True

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
        limit = max(20, 2 * max(10, self.size.width))
        if self.train_points:
            xs, ys = zip(*thin(self.train_points, limit))
            plt.plot(list(xs), list(ys), label="train", marker="braille")
        if self.val_points:
            xs, ys = zip(*thin(self.val_points, limit))
            plt.plot(list(xs), list(ys), label="validation", marker="dot")
        if self.best_step is not None and (self.train_points or self.val_points):
            plt.vline(self.best_step)
        title = "loss"
        if self.best_step is not None:
            title += f" (best at step {self.best_step})"
        plt.title(title)
        plt.xlabel("step")
        self.refresh()
