"""The two choices the Grading screen asks for, each a small modal list: which run to
grade (from the runs folder) and which checkpoint answers the test set."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...train.run import Run
from .response_view import shown

_PICKER_CSS = """
{name} {{
    align: center middle;
}}
{name} > Vertical {{
    width: 90%;
    max-width: 100;
    height: auto;
    max-height: 90%;
    border: round $primary;
    background: $surface;
    padding: 0 1;
}}
{name} OptionList, {name} OptionList:focus {{
    height: auto;
    max-height: 16;
    border: none;
    padding: 0;
}}
{name} .picker-help {{
    color: $text-muted;
}}
{name} .picker-warning {{
    color: $warning;
}}
"""


def describe_run(run: Run) -> Text:
    status = run.read_status()
    checkpoints = run.checkpoints()
    parts = [run.state()]
    if status.get("step"):
        parts.append(f"step {status['step']}")
    parts.append(f"{len(checkpoints)} checkpoint{'s' if len(checkpoints) != 1 else ''}")
    if run.responses_path.exists():
        parts.append("responses")
    text = Text(shown(run.name), style="bold")
    text.append("  " + " \u00b7 ".join(parts))
    return text


class RunPicker(ModalScreen):
    """Choose a run; dismisses with the Run, or None on Escape."""

    DEFAULT_CSS = _PICKER_CSS.format(name="RunPicker")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs: list[Run], where: str) -> None:
        super().__init__()
        self.runs = runs
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "grade which run?"
            if self.runs:
                yield OptionList(*[Option(describe_run(r), id=str(i))
                                   for i, r in enumerate(self.runs)], id="run-options")
                yield Static(Text("Enter picks \u00b7 Escape cancels"), classes="picker-help")
            else:
                yield Static(Text(f"No runs in {shown(self.where)}. Train one on the Training "
                                  "screen (3), or open one with 'tui-ft RUN'."),
                             classes="picker-warning")

    @on(OptionList.OptionSelected, "#run-options")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.runs[int(event.option.id)])

    def action_cancel(self) -> None:
        self.dismiss(None)


def checkpoint_choices(run: Run) -> list[tuple[str, Text]]:
    """(checkpoint name, label) for best, last and every checkpoint, newest first."""
    checkpoints = run.checkpoints()
    if not checkpoints:
        return []
    status = run.read_status()
    best = run.checkpoint("best")
    last = checkpoints[-1]
    metric = status.get("best_metric")
    best_label = Text("best", style="bold")
    best_label.append(f"  {best.name}")
    if isinstance(metric, (int, float)) and best.name == status.get("best_checkpoint"):
        best_label.append(f" (eval {metric:.4f})")
    last_label = Text("last", style="bold")
    last_label.append(f"  {last.name}")
    out = [(best.name, best_label), (last.name, last_label)]
    out += [(c.name, Text(c.name)) for c in reversed(checkpoints)]
    return out


class CheckpointPicker(ModalScreen):
    """Choose the checkpoint that answers the test set; dismisses with its name or None."""

    DEFAULT_CSS = _PICKER_CSS.format(name="CheckpointPicker")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run: Run, warning: str = "") -> None:
        super().__init__()
        self.run = run
        self.warning = warning
        self.choices = checkpoint_choices(run)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "generate responses with which checkpoint?"
            if not self.choices:
                yield Static(Text(f"{shown(self.run.name)} has no checkpoint yet: train it "
                                  "first (Training screen, 3)."), classes="picker-warning")
                return
            yield OptionList(*[Option(label, id=f"{i}") for i, (_, label)
                               in enumerate(self.choices)], id="checkpoint-options")
            if self.warning:
                yield Static(Text(self.warning), classes="picker-warning")
            yield Static(Text("Enter starts generation in the background (you can grade "
                              "while it runs) \u00b7 Escape cancels"), classes="picker-help")

    @on(OptionList.OptionSelected, "#checkpoint-options")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id)][0])

    def action_cancel(self) -> None:
        self.dismiss(None)
