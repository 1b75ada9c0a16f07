"""A record list that renders only the lines on screen (Textual's line API), so a
million-record JSONL scrolls as fast as a ten-record one. Rows are read from the
dataset on demand; bad records show their reason in place."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...data.dataset import Dataset
from ...data.records import RecordError
from ...text import format_bytes, visible

# A row is one line of the terminal: more of a field than this is never seen, and a
# field of 100 MB made visible and measured on every redraw held keys for seconds.
ROW_CHARS = 1000
# An entry this large is not decoded to draw its row (that would hold the screen
# while its JSON is read); the row shows the start of its line as it is in the file.
LARGE_ENTRY_BYTES = 1 << 20


class RecordList(ScrollView, can_focus=True):
    """Rows of `index  id  instruction`; the cursor row is highlighted."""

    COMPONENT_CLASSES = {"record-list--cursor", "record-list--error", "record-list--index"}
    DEFAULT_CSS = """
    RecordList {
        overflow-x: hidden;
    }
    RecordList > .record-list--cursor {
        background: $primary 40%;
        text-style: bold;
    }
    RecordList:focus > .record-list--cursor {
        background: $primary 70%;
    }
    RecordList > .record-list--error {
        color: $error;
    }
    RecordList > .record-list--index {
        color: $text-muted;
    }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, init=False)

    class Highlighted(Message):
        """The cursor moved to record `index`."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._dataset: Dataset | None = None
        self._cache: dict[int, tuple[str, bool]] = {}

    @property
    def count(self) -> int:
        return len(self._dataset) if self._dataset is not None else 0

    def set_dataset(self, dataset: Dataset | None) -> None:
        self._dataset = dataset
        self._cache.clear()
        self.virtual_size = Size(self.size.width, self.count)
        self.scroll_to(y=0, animate=False)
        self.cursor = 0
        self.refresh()

    def _row(self, i: int) -> tuple[str, bool]:
        """(text, is_error) of row i, cached while the dataset stays the same."""
        row = self._cache.get(i)
        if row is None:
            size = self._dataset.entry_size(i)
            item = None if size > LARGE_ENTRY_BYTES else self._dataset.get(i)
            if item is None:
                raw = self._dataset.raw_text(i, ROW_CHARS)
                row = (f"[{format_bytes(size)}] {visible(raw, keep_newlines=False)}", False)
            elif isinstance(item, RecordError):
                row = (f"\u2717 {visible(item.message[:ROW_CHARS], keep_newlines=False)}", True)
            else:
                text = item.instruction[:ROW_CHARS]
                if item.input and len(text) < ROW_CHARS:
                    text += " \u2502 " + item.input[:ROW_CHARS]
                row = (f"{visible(item.id[:ROW_CHARS], keep_newlines=False)}  "
                       f"{visible(text[:ROW_CHARS], keep_newlines=False)}", False)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[i] = row
        return row

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        i = round(self.scroll_offset.y) + y
        if self._dataset is None or i >= self.count:
            return Strip.blank(width, self.rich_style)
        text, is_error = self._row(i)
        digits = len(str(self.count - 1))
        base = self.rich_style
        if i == self.cursor:
            base = base + self.get_component_rich_style("record-list--cursor")
        index_style = base + self.get_component_rich_style("record-list--index", partial=True)
        text_style = base + (self.get_component_rich_style("record-list--error", partial=True)
                             if is_error else Style())
        segments = [Segment(f"{i:>{digits}} ", index_style), Segment(text, text_style)]
        return Strip(segments).crop_extend(0, width, base)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.count)

    def watch_cursor(self, old: int, new: int) -> None:
        if self.count == 0:
            return
        clamped = max(0, min(new, self.count - 1))
        if clamped != new:
            self.cursor = clamped
            return
        top = round(self.scroll_offset.y)
        height = max(1, self.scrollable_content_region.height)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False)
        self.refresh()
        self.post_message(self.Highlighted(new))

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= max(1, self.scrollable_content_region.height - 1)

    def action_page_down(self) -> None:
        self.cursor += max(1, self.scrollable_content_region.height - 1)

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = self.count - 1

    def on_click(self, event: Click) -> None:
        row = round(self.scroll_offset.y) + event.y
        if 0 <= row < self.count:
            self.cursor = row
