"""The two choices the Grading screen asks for, each a small modal list: which run to
grade (from the runs folder) and which checkpoint answers the test set, with the
generation settings (max_new_tokens, temperature) checked as they are typed."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ...config import check
from ...runfolder import Run
from .response_view import shown

# The settings the generate dialog offers, with their labels.
GENERATION_FIELDS = {"max_new_tokens": "max new tokens", "temperature": "temperature"}


@dataclass(frozen=True)
class GenerateRequest:
    """What the generate dialog returns: the checkpoint and the settings to use."""

    checkpoint: str
    max_new_tokens: int
    temperature: float


def generation_problems(config: dict, texts: dict[str, str]) -> tuple[dict, dict]:
    """The typed generation settings checked with the run's config (as read from its
    file), by the rules of a config (so a length that leaves the prompt no room in
    the model's context is refused here as in the Params form): (values, {field:
    reason})."""
    values, problems = check({**config, **texts})
    return values, {p.key: p.reason for p in problems if p.key in texts}

def dialog_css(name: str) -> str:
    """The frame every dialog of the Grading screen has: centred, a bordered column
    at most 100 wide (the pickers here, the judge's server dialog)."""
    return f"""
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
"""


_PICKER_CSS = """
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
{name} .picker-settings {{
    height: 1;
}}
{name} .picker-settings Static {{
    width: auto;
    padding: 0 1 0 0;
}}
{name} .picker-settings Input {{
    width: 10;
    height: 1;
    border: none;
    padding: 0 1;
    margin: 0 2 0 0;
}}
{name} .picker-problem {{
    color: $error;
    display: none;
}}
{name} .picker-problem.-shown {{
    display: block;
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

    DEFAULT_CSS = dialog_css("RunPicker") + _PICKER_CSS.format(name="RunPicker")
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
    # The run's one rule for best (runfolder.BestCheckpoint): its own loss, never a
    # later evaluation's that has no checkpoint.
    chosen = run.best_checkpoint()
    best, metric = chosen.checkpoint, chosen.metric
    last = checkpoints[-1]
    best_label = Text("best", style="bold")
    best_label.append(f"  {best.name}")
    if metric is not None:
        best_label.append(f" (eval {metric:.4f})")
    last_label = Text("last", style="bold")
    last_label.append(f"  {last.name}")
    out = [(best.name, best_label), (last.name, last_label)]
    out += [(c.name, Text(c.name)) for c in reversed(checkpoints)]
    return out


class CheckpointPicker(ModalScreen):
    """Choose the checkpoint that answers the test set and the generation settings
    (the run's by default); dismisses with a GenerateRequest, or None on Escape."""

    DEFAULT_CSS = dialog_css("CheckpointPicker") + _PICKER_CSS.format(name="CheckpointPicker")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run: Run, warning: str = "", config: dict | None = None) -> None:
        super().__init__()
        self.run = run
        self.warning = warning
        # The run's parameters as in its file: its own generation settings may fail
        # today's checks (they are shown, with the reason, to be corrected here).
        self.config = config if config is not None else {}
        self.choices = checkpoint_choices(run)
        self.problems: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "generate responses with which checkpoint?"
            if not self.choices:
                why = ("holds imported answers and no model to generate new ones"
                       if self.run.is_imported() else
                       "has no checkpoint yet: train it first (Training screen, 3)")
                yield Static(Text(f"{shown(self.run.name)} {why}."), classes="picker-warning")
                return
            yield OptionList(*[Option(label, id=f"{i}") for i, (_, label)
                               in enumerate(self.choices)], id="checkpoint-options")
            with Horizontal(classes="picker-settings"):
                start, _ = check(self.config)
                for name, label in GENERATION_FIELDS.items():
                    yield Static(Text(label))
                    value = start[name]
                    yield Input(f"{value:g}" if isinstance(value, float) else str(value),
                                id=f"gen-{name}")
            yield Static(id="settings-problem", classes="picker-problem", markup=False)
            if self.warning:
                yield Static(Text(self.warning), classes="picker-warning")
            yield Static(Text("Enter starts generation in the background (you can grade "
                              "while it runs) \u00b7 Tab: the settings \u00b7 Escape "
                              "cancels"), classes="picker-help")

    def _texts(self) -> dict[str, str]:
        return {name: self.query_one(f"#gen-{name}", Input).value
                for name in GENERATION_FIELDS}

    def _check(self) -> dict:
        values, self.problems = generation_problems(self.config, self._texts())
        line = self.query_one("#settings-problem", Static)
        line.update(Text("; ".join(f"{GENERATION_FIELDS[k]}: {reason}"
                                   for k, reason in self.problems.items())))
        line.set_class(bool(self.problems), "-shown")
        return values

    def on_mount(self) -> None:
        if self.choices:
            self._check()

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        self._check()

    def _start(self, index: int | None) -> None:
        values = self._check()
        if self.problems:
            self.query_one(f"#gen-{next(iter(self.problems))}", Input).focus()
            return
        if index is None:
            return
        self.dismiss(GenerateRequest(self.choices[index][0], values["max_new_tokens"],
                                     values["temperature"]))

    @on(OptionList.OptionSelected, "#checkpoint-options")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self._start(int(event.option.id))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self._start(self.query_one("#checkpoint-options", OptionList).highlighted)

    def action_cancel(self) -> None:
        self.dismiss(None)
