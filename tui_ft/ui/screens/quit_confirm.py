"""Asked when the app is quit while a run it knows of trains: the run goes on in its
own process, and this says how to find it again."""

from __future__ import annotations

import shlex

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from ...paths import runs_dir
from ...text import visible
from ...runfolder import Run


def run_reference(run: Run) -> str:
    """How to name `run` on the command line: its name when it lives in the runs
    directory (tui-ft finds it by name), else its path."""
    try:
        if run.path.resolve().parent == runs_dir().resolve():
            return run.name
    except OSError:
        pass
    return str(run.path)


def reopen_lines(runs: list[Run]) -> list[str]:
    """What to tell about runs that go on training: the same words in the dialog and
    on the terminal after the app has closed."""
    lines = []
    for run in runs:
        ref = visible(shlex.quote(run_reference(run)), keep_newlines=False)
        lines += [f"{visible(run.name, keep_newlines=False)} goes on training in its own "
                  "process.",
                  f"  reopen it:  tui-ft {ref}",
                  f"  follow it:  tui-ft attach {ref}",
                  f"  stop it:    tui-ft stop {ref}"]
    return lines


class QuitConfirm(ModalScreen[bool]):
    """q or Enter quits, Escape stays."""

    BINDINGS = [
        Binding("q,enter", "leave", "Quit"),
        Binding("escape", "stay", "Stay"),
    ]
    CSS_PATH = "quit_confirm.tcss"

    def __init__(self, lines: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("\n".join(self.lines)), id="quit-text", markup=False)
            yield Static("q or enter: quit (training goes on) \u00b7 escape: stay",
                         id="quit-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = "quit?"

    def action_leave(self) -> None:
        self.dismiss(True)

    def action_stay(self) -> None:
        self.dismiss(False)
