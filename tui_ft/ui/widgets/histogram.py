"""Token-length histogram (plotext), with the truncation length marked."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LengthHistogram(PlotextPlot):
    DEFAULT_CSS = """
    LengthHistogram {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lengths: list[int] = []
        self._max_length = 0

    def set_lengths(self, lengths: list[int], max_length: int) -> None:
        self._lengths = lengths
        self._max_length = max_length
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if self._lengths:
            bins = min(40, max(5, len(set(self._lengths))))
            plt.hist(self._lengths, bins=bins)
            if max(self._lengths) > self._max_length:
                plt.vline(self._max_length, "red")
            plt.title(f"{len(self._lengths):,} records")
        else:
            plt.title("counting tokens ...")
        plt.xlabel("tokens")
        self.refresh()
