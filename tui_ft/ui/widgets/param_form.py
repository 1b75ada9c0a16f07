"""The parameters form: one row per TrainConfig field (name, input, help, problem),
under a header per group, built from the fields' metadata. It holds the draft as the
raw values the person typed; the screen checks the draft and says what is wrong."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import Reactive
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static

from ...config import GROUPS, TrainConfig
from ...text import visible

# Shorter names for the group list, which is narrow at 80 columns.
GROUP_SHORT = {"evaluation and checkpoints": "eval & checkpoints"}


PROBLEM_MARK = "\u2717 "


# Shown where more than one GPU is visible (or set away from their defaults).
MULTI_GPU_FIELDS = ("nproc_per_node", "distributed")


def _default(name: str) -> Any:
    # The field's default, without making a TrainConfig (that checks, reading styles).
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _on_off(value: bool) -> str:
    # Said in words as well: the check mark's colour alone is lost on a plain terminal.
    return "on" if value else "off"


def group_id(group: str) -> str:
    return "group-" + group.replace(" ", "-")


def fields_by_group() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {group: [] for group in GROUPS}
    for f in fields(TrainConfig):
        out.setdefault(f.metadata["group"], []).append(f.name)
    return out


def format_value(value: Any) -> str:
    """A config value as the text an Input shows (and `coerce` reads back)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " / ".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)  # exact: 5e-05, 0.1, 3.0
    return str(value)


def raw_value(name: str, value: Any) -> Any:
    """A config value as the form's draft holds it: bools as bools, the rest as text."""
    if TrainConfig.meta(name)["kind"] is bool:
        return bool(value)
    return format_value(value)


class ParamInput(Input):
    """An Input whose typing does not re-lay out the screen. Textual's Input sets its
    virtual size (text length + 1) on every keystroke, and that reactive asks for a
    layout of the whole screen: with a form this size, the bulk of each keystroke's
    cost. Our inputs have a fixed size (1fr x 1), so a repaint is enough; the virtual
    size is still kept, for the Input's own horizontal scrolling."""

    virtual_size = Reactive(Size(0, 0), layout=False)


class ParamForm(VerticalScroll, can_focus=False):
    """Every parameter, grouped. `raw()` is the draft; `fill()` replaces it;
    `show_problems()` puts each reason under its field.

    A row is its name, its editor, and one note below: the help, then the problem in
    the error colour. Few widgets per row on purpose: every keystroke in an Input
    re-lays out the whole screen (Textual), and that costs per widget."""

    COMPONENT_CLASSES = {"param-form--error"}

    DEFAULT_CSS = """
    ParamForm {
        padding: 0 1 0 1;
    }
    ParamForm > .param-group {
        margin-top: 1;
        padding: 0 1;
        text-style: bold;
        color: $text-accent;
        background: $panel;
    }
    ParamForm > .param-group.-first {
        margin-top: 0;
    }
    ParamForm > .param-line {
        height: 1;
    }
    ParamForm .param-name {
        width: 28;
        height: 1;
    }
    ParamForm > .param-line.-invalid > .param-name {
        color: $text-error;
        text-style: bold;
    }
    ParamForm .param-line > Input {
        width: 1fr;
    }
    ParamForm .param-line > Select {
        width: 1fr;
    }
    ParamForm .param-line > Checkbox {
        width: auto;
    }
    ParamForm .param-note {
        color: $text-muted;
        padding-left: 2;
    }
    ParamForm > .param-form--error {
        color: $text-error;
    }
    """
    BINDINGS = [
        # Up and down move between fields (the container would scroll instead).
        Binding("down", "next_field", "Next field", show=False),
        Binding("up", "previous_field", "Previous field", show=False),
    ]

    class Edited(Message):
        """The person changed field `name` in the draft."""

        def __init__(self, form: "ParamForm", name: str) -> None:
            super().__init__()
            self.form = form
            self.name = name

        @property
        def control(self) -> "ParamForm":
            return self.form

    class FieldFocused(Message):
        """Focus moved to the field `name` of `group`."""

        def __init__(self, name: str, group: str) -> None:
            super().__init__()
            self.name = name
            self.group = group

    def __init__(self, config: TrainConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self._raw: dict[str, Any] = {name: raw_value(name, value)
                                     for name, value in config.to_dict().items()}
        self._groups = fields_by_group()
        self._group_of = {name: group for group, names in self._groups.items()
                          for name in names}
        self._shown: dict[str, tuple[str, ...]] = {}  # the reasons on screen, per field
        self._help: dict[str, str] = {}

    # -- building ----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        first = True
        for group, names in self._groups.items():
            header = Static(group, id=group_id(group), classes="param-group", markup=False)
            header.set_class(first, "-first")
            first = False
            yield header
            for name in names:
                yield from self._row(name)

    def _row(self, name: str) -> ComposeResult:
        meta = TrainConfig.meta(name)
        editor = self._editor(name, meta)
        editor.param_name = name  # type: ignore[attr-defined]
        editor.add_class("param-field")
        help_text = meta["help"]
        if meta["optional"]:
            help_text += "" if "empty" in help_text else " (may be empty)"
        self._help[name] = help_text
        # Two widgets straight in the form, no row container: fewer widgets to lay out.
        line = Horizontal(Label(name, classes="param-name", markup=False), editor,
                          id=f"line-{name}", classes="param-line")
        note = Static(Text(help_text), id=f"note-{name}", classes="param-note", markup=False)
        if (name in MULTI_GPU_FIELDS and not self._gpus_to_share()
                and self._raw[name] == raw_value(name, _default(name))):
            # Several processes pay off on several GPUs: the fields are there (a config
            # that sets them shows them), out of the way on a machine with one or none.
            line.display = note.display = False
        yield line
        yield note

    @staticmethod
    def _gpus_to_share() -> bool:
        from ...model.precision import visible_gpus

        return visible_gpus() > 1

    def _editor(self, name: str, meta: dict) -> Widget:
        value = self._raw[name]
        widget_id = f"param-{name}"
        if meta["kind"] is bool:
            return Checkbox(_on_off(value), value=value, compact=True, id=widget_id)
        if meta["choices"]:
            return Select([(c, c) for c in meta["choices"]], value=value, allow_blank=False,
                          compact=True, id=widget_id)
        placeholder = "(empty)" if meta["optional"] else ""
        return ParamInput(value, placeholder=placeholder, compact=True, id=widget_id)

    # -- the draft ---------------------------------------------------------------

    def raw(self) -> dict[str, Any]:
        return dict(self._raw)

    def field_names(self) -> list[str]:
        return list(self._raw)

    def editor(self, name: str) -> Widget:
        return self.query_one(f"#param-{name}")

    def group_of(self, name: str) -> str:
        return self._group_of[name]

    def names_in(self, group: str) -> list[str]:
        return list(self._groups[group])

    def fill(self, config: TrainConfig) -> None:
        """Show `config`: every field's draft and widget take its value."""
        for name, value in config.to_dict().items():
            self.set_field(name, value)

    def set_field(self, name: str, value: Any) -> None:
        raw = raw_value(name, value)
        # The draft first: the widget's Changed event then finds nothing new.
        self._raw[name] = raw
        editor = self.editor(name)
        if isinstance(editor, Input):
            if editor.value != raw:
                editor.value = raw
                editor.cursor_position = len(raw)
        elif isinstance(editor, Checkbox):
            editor.value = raw
            editor.label = _on_off(raw)
        elif isinstance(editor, Select):
            editor.value = raw

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        # The problem lines carry the error colour of the theme they were drawn in.
        def redraw() -> None:
            shown = {name: list(reasons) for name, reasons in self._shown.items() if reasons}
            self._shown = {}
            self.show_problems(shown)

        self.call_after_refresh(redraw)

    def show_problems(self, problems: dict[str, list[str]]) -> None:
        """Show each field's reasons under it; clear the others. Only rows whose
        reasons changed are touched: every update re-lays out the whole screen."""
        for name in self._raw:
            reasons = tuple(problems.get(name, ()))
            if self._shown.get(name, ()) == reasons:
                continue
            self._shown[name] = reasons
            self.query_one(f"#line-{name}").set_class(bool(reasons), "-invalid")
            note = Text(self._help[name])
            if reasons:
                note.append("\n" + PROBLEM_MARK + "; ".join(
                    visible(r, keep_newlines=False) for r in reasons),
                    self.get_component_rich_style("param-form--error", partial=True))
            self.note(name).update(note)

    def note(self, name: str) -> Static:
        """The help and problem lines under field `name`."""
        return self.query_one(f"#note-{name}", Static)

    def is_invalid(self, name: str) -> bool:
        return self.query_one(f"#line-{name}").has_class("-invalid")

    def help_text(self, name: str) -> str:
        return self._help[name]

    def problem_text(self, name: str) -> str:
        """What the problem line under `name` says ('' when valid)."""
        note = str(self.note(name).content)
        _, mark, problem = note.partition("\n" + PROBLEM_MARK)
        return PROBLEM_MARK + problem if mark else ""

    # -- events ------------------------------------------------------------------

    def _edited(self, control: Widget, value: Any) -> None:
        name = getattr(control, "param_name", None)
        if name is None or self._raw.get(name) == value:
            return
        self._raw[name] = value
        self.post_message(self.Edited(self, name))

    def on_input_changed(self, event: Input.Changed) -> None:
        if getattr(event.input, "param_name", None) is not None:
            event.stop()
            self._edited(event.input, event.value)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        event.checkbox.label = _on_off(event.value)
        self._edited(event.checkbox, bool(event.value))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL:
            self._edited(event.select, str(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if getattr(event.input, "param_name", None) is not None:
            event.stop()
            self.action_next_field()

    def on_descendant_focus(self, event) -> None:
        name = getattr(event.widget, "param_name", None)
        if name is None:
            return
        # Show the whole row (help and problem lines too), not just the input.
        self.scroll_to_widget(self.note(name), animate=False)
        self.scroll_to_widget(self.query_one(f"#line-{name}"), animate=False)
        self.post_message(self.FieldFocused(name, self._group_of[name]))

    # -- navigation --------------------------------------------------------------

    def _editors(self) -> list[Widget]:
        return [self.editor(name) for name in self._raw]

    def _move(self, step: int) -> None:
        editors = self._editors()
        focused = self.screen.focused
        if focused in editors:
            index = editors.index(focused) + step
        else:
            index = 0 if step > 0 else len(editors) - 1
        if 0 <= index < len(editors):
            editors[index].focus()

    def action_next_field(self) -> None:
        self._move(1)

    def action_previous_field(self) -> None:
        self._move(-1)

    def scroll_to_group(self, group: str) -> None:
        self.scroll_to_widget(self.query_one(f"#{group_id(group)}"), animate=False, top=True)

    def focus_group(self, group: str) -> None:
        self.scroll_to_group(group)
        self.editor(self._groups[group][0]).focus(scroll_visible=False)
