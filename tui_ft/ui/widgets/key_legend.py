"""A key legend that never hides a binding: like Textual's Footer (the screen's and
the app's bindings, with their descriptions) but wrapped over as many lines as the
width needs, so every key stays on screen at 80 columns, on every screen.

While a text field has the focus, letters and digits are typed into it: the screen
keys 1-4 are shown dimmed, after how to leave the field (Escape, on every screen)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input, TextArea

LEAVE_FIELD = ("escape", "esc", "Leave field", True)


def typing_into(widget: Widget | None) -> bool:
    """Whether keys pressed now are typed as text (an input field has the focus)."""
    return isinstance(widget, (Input, TextArea))


class KeyLegend(Widget):
    COMPONENT_CLASSES = {"key-legend--key", "key-legend--description"}
    DEFAULT_CSS = """
    KeyLegend {
        dock: bottom;
        height: auto;
        padding: 0 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    KeyLegend > .key-legend--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyLegend > .key-legend--description {
        color: $footer-description-foreground;
    }
    """
    GAP = 1

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # (line, first cell, last cell, key) of each entry as last drawn, for clicks.
        self._spans: list[tuple[int, int, int, str]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, _screen) -> None:
        self.refresh(layout=True)

    def entries(self) -> list[tuple[str, str, str, bool]]:
        """(key, key as shown, description, enabled) of every shown binding, one per
        action, the focused widget's first and the app's last (as Footer orders them)."""
        typing = typing_into(self.screen.focused)
        out: list[tuple[str, str, str, bool]] = [LEAVE_FIELD] if typing else []
        seen: set[str] = set()
        active = self.screen.active_bindings
        for _node, binding, enabled, _tooltip in active.values():
            if not binding.show or binding.action in seen:
                continue
            if typing and binding.key == "escape":
                continue  # said once, first, as what it does here: leave the field
            seen.add(binding.action)
            out.append((binding.key, self.app.get_key_display(binding), binding.description,
                        enabled))
        if typing:
            # Textual leaves out the keys the field takes as text (the digits that
            # switch screens): shown dimmed, where they always are, after Escape.
            for binding in self.app.BINDINGS:
                if isinstance(binding, Binding) and binding.show \
                        and binding.action.startswith("switch_mode") \
                        and binding.action not in seen:
                    seen.add(binding.action)
                    out.append((binding.key, self.app.get_key_display(binding),
                                binding.description, False))
        return out

    def _palette_entry(self) -> tuple[str, str, str, bool] | None:
        palette = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        if not self.app.ENABLE_COMMAND_PALETTE or palette is None:
            return None
        return (palette.binding.key, self.app.get_key_display(palette.binding), "Palette", True)

    def _layout(self, width: int) -> list[list[tuple[str, str, str, bool]]]:
        lines: list[list[tuple[str, str, str, bool]]] = [[]]
        used = 0

        def size(entry) -> int:
            return cell_len(entry[1]) + 1 + cell_len(entry[2])

        for entry in self.entries():
            needed = size(entry) if not lines[-1] else used + self.GAP + size(entry)
            if lines[-1] and needed > width:
                lines.append([])
                needed = size(entry)
            lines[-1].append(entry)
            used = needed
        # The command palette (Textual's own, on every screen) only where it fits.
        palette = self._palette_entry()
        if palette is not None and used + self.GAP + size(palette) <= width:
            lines[-1].append(palette)
        return lines

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._layout(max(1, width)))

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-legend--key")
        desc_style = self.get_component_rich_style("key-legend--description")
        text = Text(no_wrap=True, overflow="crop")
        self._spans = []
        for row, line in enumerate(self._layout(max(1, self.content_region.width))):
            if row:
                text.append("\n")
            x = 0
            for i, (key, display, description, enabled) in enumerate(line):
                if i:
                    text.append(" " * self.GAP)
                    x += self.GAP
                dim = Style() if enabled else Style(dim=True)
                text.append(display, key_style + dim)
                text.append(" " + description, desc_style + dim)
                width = cell_len(display) + 1 + cell_len(description)
                self._spans.append((row, x, x + width, key))
                x += width
        return text

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        for row, start, end, key in self._spans:
            if row == offset.y and start <= offset.x < end:
                self.app.simulate_key(key.split(",")[0])
                return
