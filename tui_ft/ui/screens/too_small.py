"""One clear notice instead of collapsed widgets when the terminal is smaller than
the screens can be drawn in; it goes away as soon as the terminal is big enough."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Static


class TooSmall(ModalScreen):
    CSS_PATH = "too_small.tcss"

    def __init__(self, minimum: tuple[int, int], size: tuple[int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.show_size(size)

    def compose(self) -> ComposeResult:
        yield Static(self.message, id="too-small-text", markup=False)

    def show_size(self, size: tuple[int, int]) -> None:
        (mw, mh), (w, h) = self.minimum, size
        self.message = (f"tui-ft needs at least {mw}x{mh}; this terminal is {w}x{h}. "
                        "Make it bigger (or the font smaller). q quits.")
        if self.is_mounted:
            self.query_one("#too-small-text", Static).update(self.message)
