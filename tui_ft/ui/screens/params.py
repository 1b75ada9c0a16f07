"""Parameters screen: every training parameter in a grouped form, checked as it is
typed (the reason beside the field), recipes, YAML load and save, and the memory
the chosen model needs to train. The draft is applied to the app's configuration
only when it has no problem left, so the session always holds a valid one."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from ...config import GROUPS, Problem, TrainConfig, check
from ...data.styles import load_styles
from ...errors import TuiFtError
from ...text import visible
from ..widgets.key_legend import KeyLegend
from ..widgets.memory_estimate import EstimateRequest, MemoryEstimatePanel
from ..widgets.param_form import GROUP_SHORT, ParamForm
from ..widgets.path_suggester import PathSuggester
from ...recipes import KEPT_FIELDS, RECIPES, defaults_keeping_files, matching_recipe

DEFAULT_SAVE_NAME = "train.yaml"
MESSAGE_LINES = 6


class ParamsCommands(Provider):
    """The screen's actions and each recipe by name, in the command palette."""

    def _commands(self) -> list[tuple[str, object, str]]:
        screen = self.screen
        out = [("Parameters: save YAML", screen.action_save, "Write the parameters to a file"),
               ("Parameters: load YAML", screen.action_load, "Read parameters from a file"),
               ("Parameters: reset to defaults", screen.action_reset,
                "Every parameter back to its default (dataset and output paths kept)")]
        for index, recipe in enumerate(RECIPES):
            out.append((f"Parameters: recipe {recipe.name}",
                        partial(screen.apply_recipe, index), "Apply this set of parameters"))
        return out

    async def discover(self) -> Hits:
        for name, command, help_text in self._commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)


class ParamsScreen(Screen):
    COMMANDS = {ParamsCommands}
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "load", "Load"),
        Binding("r", "reset", "Reset"),
        Binding("p", "next_recipe", "Recipe"),
        Binding("escape", "escape", "Groups"),
    ]
    CSS_PATH = "params.tcss"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # The configuration this screen last gave the app (or found there): what the
        # draft is compared with to tell another screen's change from ours.
        self._applied: TrainConfig | None = None
        # The configuration as it is in the file at config_path (None: not saved).
        self._saved: TrainConfig | None = None
        self.problems: list[Problem] = []
        # The draft's values as last checked (problem fields at their defaults).
        self._values: dict = TrainConfig().to_dict()
        # The prompt style names, read from the style files once per visit: the draft
        # is checked on every key, and a check must not read every file each time.
        self._styles: list[str] = []
        self._path_mode = ""  # "", "save" or "load"
        self._confirm_overwrite: Path | None = None
        self._last_recipe: int | None = None
        self._return_focus = None

    # -- building ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        config = self.app.state.config
        with Horizontal(id="params-main"):
            yield OptionList(*[Option(GROUP_SHORT.get(g, g), id=g) for g in GROUPS],
                             id="group-nav", markup=False)
            yield ParamForm(config, id="param-form")
        with Horizontal(id="path-bar"):
            yield Label("", id="path-label", markup=False)
            yield Input(id="path-input", compact=True, suggester=PathSuggester())
            yield Label("enter: ok \u00b7 esc: cancel", id="path-hint")
        yield Static(id="params-message", markup=False)
        with Horizontal(id="params-status"):
            yield Static(id="problems-summary", markup=False)
            yield Static(id="config-file", markup=False)
        yield MemoryEstimatePanel(id="memory-estimate")
        yield KeyLegend(id="key-legend")

    @property
    def form(self) -> ParamForm:
        return self.query_one(ParamForm)

    @property
    def estimate(self) -> MemoryEstimatePanel:
        return self.query_one(MemoryEstimatePanel)

    def on_mount(self) -> None:
        state = self.app.state
        self._applied = state.config
        self._saved = state.config if state.config_path is not None else None
        self.query_one("#group-nav", OptionList).highlighted = 0
        self.query_one("#group-nav").focus()
        self._styles = load_styles().names()
        self.validate()

    def on_screen_resume(self) -> None:
        # Another screen may have changed the configuration (a dataset picked):
        # take over the fields it changed and keep the person's draft of the rest.
        current = self.app.state.config
        styles = load_styles().names()  # a style file may have been added meanwhile
        changed_styles, self._styles = styles != self._styles, styles
        if self._applied is not None and current != self._applied:
            before = self._applied.to_dict()
            for name, value in current.to_dict().items():
                if before[name] != value:
                    self.form.set_field(name, value)
            self._applied = current
            self.validate()
        elif changed_styles:
            self.validate()
        self._show_file()

    # -- checking and applying -------------------------------------------------------

    def validate(self) -> None:
        """Check the whole draft; show each problem beside its field; hand the
        configuration to the app when nothing is wrong."""
        values, problems = check(self.form.raw(), styles=self._styles)
        self._values = values
        self.problems = problems
        by_field: dict[str, list[str]] = {}
        for problem in problems:
            by_field.setdefault(problem.key, []).append(problem.reason)
        self.form.show_problems(by_field)
        if not problems:
            config = TrainConfig(**values)
            if config != self.app.state.config:
                self.app.set_config(config)
            self._applied = config
        self._show_summary(by_field)
        self._show_file()
        self.estimate.request(EstimateRequest.from_values(values, invalid=set(by_field)))

    def _show_summary(self, by_field: dict[str, list[str]]) -> None:
        summary = self.query_one("#problems-summary", Static)
        summary.set_class(bool(by_field), "-invalid")
        if not by_field:
            _update(summary, "\u2713 valid: in use for this session")
            return
        count = len(self.problems)
        names = ", ".join(by_field)
        _update(summary, f"\u2717 {count} problem{'s' if count != 1 else ''}: {names} "
                         "(the last valid values stay in use)")

    def _show_file(self) -> None:
        path = self.app.state.config_path
        label = self.query_one("#config-file", Static)
        if path is None:
            _update(label, "not saved")
            return
        changed = self._saved is None or self.app.state.config != self._saved or self.problems
        _update(label, visible(path.name, keep_newlines=False)
                + (" (modified)" if changed else ""))

    @on(ParamForm.Edited)
    def _edited(self, message: ParamForm.Edited) -> None:
        self._clear_message()
        self.validate()

    @on(ParamForm.FieldFocused)
    def _field_focused(self, message: ParamForm.FieldFocused) -> None:
        nav = self.query_one("#group-nav", OptionList)
        index = GROUPS.index(message.group)
        if nav.highlighted != index:
            nav.highlighted = index

    # -- group list ------------------------------------------------------------------

    @on(OptionList.OptionHighlighted, "#group-nav")
    def _group_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # Moving in the list previews the group; moving in the form only follows it.
        if event.option_list.has_focus and event.option.id:
            self.form.scroll_to_group(event.option.id)

    @on(OptionList.OptionSelected, "#group-nav")
    def _group_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.form.focus_group(event.option.id)

    def action_escape(self) -> None:
        if self._path_mode:
            self._close_path_bar()
            return
        nav = self.query_one("#group-nav", OptionList)
        focused = self.focused
        name = getattr(focused, "param_name", None)
        if name is not None:
            nav.highlighted = GROUPS.index(self.form.group_of(name))
        nav.focus()

    # -- recipes and reset -----------------------------------------------------------

    def _draft_config(self) -> TrainConfig:
        """The draft as a config, problem fields at their defaults (for kept fields):
        as validate() last checked it, on the latest change."""
        return TrainConfig(**self._values)

    def _replace(self, config: TrainConfig, message: str) -> None:
        self.form.fill(config)
        self.validate()
        self._show_message(message, ok=True)

    def _kept_note(self, config: TrainConfig) -> str:
        defaults = TrainConfig()
        kept = [n for n in KEPT_FIELDS if getattr(config, n) != getattr(defaults, n)]
        return f" (kept {', '.join(kept)})" if kept else ""

    def action_reset(self) -> None:
        config = defaults_keeping_files(self._draft_config(), styles=self._styles)
        self._last_recipe = None
        self._replace(config, "reset to defaults" + self._kept_note(config))

    def action_next_recipe(self) -> None:
        current = (matching_recipe(self._draft_config(), styles=self._styles)
                   if not self.problems else None)
        base = current if current is not None else self._last_recipe
        self.apply_recipe(0 if base is None else (base + 1) % len(RECIPES))

    def apply_recipe(self, index: int) -> None:
        recipe = RECIPES[index]
        config = recipe.apply(self._draft_config(), styles=self._styles)
        self._last_recipe = index
        self._replace(config, f"recipe {index + 1}/{len(RECIPES)}: {recipe.name}"
                      + self._kept_note(config) + " \u00b7 p: next")

    # -- load and save ---------------------------------------------------------------

    def action_save(self) -> None:
        if self.problems:
            count = len(self.problems)
            self._show_message(f"not saved: fix the {count} problem{'s' if count != 1 else ''}"
                               " first", ok=False)
            return
        path = self.app.state.config_path
        self._open_path_bar("save", str(path) if path is not None else DEFAULT_SAVE_NAME)

    def action_load(self) -> None:
        path = self.app.state.config_path
        self._open_path_bar("load", str(path) if path is not None else "")

    def _open_path_bar(self, mode: str, value: str) -> None:
        if not self._path_mode:
            self._return_focus = self.focused
        self._path_mode = mode
        self._confirm_overwrite = None
        self.query_one("#path-label", Label).update(
            "save to:" if mode == "save" else "load from:")
        self.query_one("#path-bar").add_class("shown")
        field = self.query_one("#path-input", Input)
        field.value = value
        field.cursor_position = len(value)
        field.focus()

    def _close_path_bar(self) -> None:
        self._path_mode = ""
        self.query_one("#path-bar").remove_class("shown")
        target = self._return_focus
        self._return_focus = None
        if target is not None and target.is_attached and target is not self.query_one(
                "#path-input"):
            target.focus()
        else:
            self.query_one("#group-nav").focus()

    @on(Input.Changed, "#path-input")
    def _path_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._confirm_overwrite = None

    @on(Input.Submitted, "#path-input")
    def _path_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self._show_message("give a file name", ok=False)
            return
        path = Path(os.path.expanduser(text))
        if self._path_mode == "save":
            self.save_to(path)
        elif self._path_mode == "load":
            self.load_from(path)

    def save_to(self, path: Path) -> bool:
        """Write the configuration to `path` (atomically); True when written."""
        if self.problems:
            self._show_message("not saved: fix the problems first", ok=False)
            return False
        if path.is_dir():
            self._show_message(f"{path}: is a folder; give a file name", ok=False)
            return False
        current = self.app.state.config_path
        same = current is not None and _same_file(path, current)
        if path.exists() and not same and self._confirm_overwrite != path:
            self._confirm_overwrite = path
            self._show_message(f"{path} already exists: press enter again to replace it",
                               ok=False)
            return False
        config = self.app.state.config
        try:
            config.save(path)
        except (OSError, TuiFtError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self._show_message(f"{path}: not saved ({reason})", ok=False)
            return False
        self._saved = config
        self.app.set_config(config, path)
        self._close_path_bar()
        self._show_file()
        self._show_message(f"saved to {path}", ok=True)
        return True

    def load_from(self, path: Path) -> bool:
        """Read a configuration from `path`; on any problem say what and where and
        leave everything as it was. True when loaded."""
        try:
            config = TrainConfig.load(path)
        except TuiFtError as exc:
            self._show_message(str(exc), ok=False)
            return False
        self._close_path_bar()
        self.form.fill(config)
        self._saved = config
        self.app.set_config(config, path)
        self._applied = config
        self._last_recipe = None
        self.validate()
        self._show_message(f"loaded {path}", ok=True)
        return True

    # -- messages --------------------------------------------------------------------

    def _show_message(self, text: str, *, ok: bool) -> None:
        lines = visible(text).splitlines() or [""]
        if len(lines) > MESSAGE_LINES:
            more = len(lines) - (MESSAGE_LINES - 1)
            lines = lines[:MESSAGE_LINES - 1] + [f"... and {more} more lines"]
        message = self.query_one("#params-message", Static)
        message.update(Text("\n".join(lines)))
        message.set_class(not ok, "-error")
        message.set_class(ok, "-ok")
        message.add_class("shown")

    def _clear_message(self) -> None:
        message = self.query_one("#params-message", Static)
        if message.has_class("shown"):
            message.update("")
            message.remove_class("shown", "-error", "-ok")

    def message_text(self) -> str:
        message = self.query_one("#params-message", Static)
        return str(message.content) if message.has_class("shown") else ""


def _update(widget: Static, text: str) -> None:
    # An update re-lays out the screen: skip it when the words are the same.
    if str(widget.content) != text:
        widget.update(Text(text))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
