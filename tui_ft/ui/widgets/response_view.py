"""One test record and the model's answer: the instruction and input above, the
expected output and the model's response side by side (stacked on a narrow
terminal), and under them an LLM judge's verdict and reason where there is one.
Every field is untrusted text, shown literally: a Rich `Text` (no markup) with
control characters and bidirectional overrides made visible; long lines wrap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from ...grade.responses import automatic_match
from ...text import visible

if TYPE_CHECKING:
    from ...grade.session import Suggestion

JUDGE_LINES = 3
SHORT_BELOW = 16  # rows of this view under which the judge gets one line (60x20: 13)
JUDGE_MARKS = {"correct": "\u2713 correct", "wrong": "\u2717 wrong"}


def shown(text: object) -> str:
    """Untrusted text as it may be drawn: control and bidi characters made visible,
    tabs expanded to 4 columns (Textual's 8 waste the narrow columns)."""
    return visible(text if isinstance(text, str) else str(text)).expandtabs(4)


def literal(text: object, *, empty: str = "(empty)", muted: str = "") -> Text:
    """A `Text` that shows `text` literally, or a muted placeholder when it is blank."""
    value = text if isinstance(text, str) else ("" if text is None else str(text))
    if not value:
        return Text(empty, style=muted)
    if not value.strip():
        return Text(f"(blank: {len(value)} white-space characters)", style=muted)
    return Text(shown(value), overflow="fold")


class ResponseView(Vertical):
    """Shows one response record (`show`) or a message in its place (`show_message`)."""

    COMPONENT_CLASSES = {"response-view--label", "response-view--muted",
                         "response-view--correct", "response-view--wrong"}
    DEFAULT_CSS = """
    ResponseView {
        height: 1fr;
    }
    ResponseView > .response-view--label {
        color: $text-accent;
        text-style: bold;
    }
    ResponseView > .response-view--muted {
        color: $text-muted;
        text-style: italic;
    }
    ResponseView > .response-view--correct {
        color: $text-success;
        text-style: bold;
    }
    ResponseView > .response-view--wrong {
        color: $text-error;
        text-style: bold;
    }
    ResponseView #judge-text {
        height: auto;
        max-height: 3;
        padding: 0 1;
        display: none;
    }
    ResponseView #judge-text.-shown {
        display: block;
    }
    ResponseView #prompt-panel {
        height: auto;
        max-height: 40%;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    ResponseView #answer-columns {
        height: 1fr;
    }
    ResponseView .answer-panel {
        width: 1fr;
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    ResponseView #response-panel {
        border-subtitle-color: $text-muted;
    }
    ResponseView #response-panel.-correct {
        border: round $success;
        border-title-color: $success;
    }
    ResponseView #response-panel.-wrong {
        border: round $error;
        border-title-color: $error;
    }
    ResponseView.-stacked #answer-columns {
        layout: vertical;
    }
    ResponseView Static {
        width: 1fr;
    }
    """

    _said: "Suggestion | None" = None  # the judgment shown, fitted again on resize

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="prompt-panel", can_focus=False):
            yield Static(id="prompt-text", markup=False)
        with Horizontal(id="answer-columns"):
            with VerticalScroll(id="expected-panel", classes="answer-panel", can_focus=False):
                yield Static(id="expected-text", markup=False)
            with VerticalScroll(id="response-panel", classes="answer-panel", can_focus=False):
                yield Static(id="response-text", markup=False)
        yield Static(id="judge-text", markup=False)

    def on_mount(self) -> None:
        self.query_one("#prompt-panel").border_title = "instruction"
        self.query_one("#expected-panel").border_title = "expected"
        self.query_one("#response-panel").border_title = "response"

    def _muted(self):
        return self.get_component_rich_style("response-view--muted", partial=True)

    def show(self, record: dict, grade: str | None = None) -> None:
        self.query_one("#prompt-panel").border_title = "instruction"
        muted = self._muted()
        label = self.get_component_rich_style("response-view--label", partial=True)
        prompt = literal(record.get("instruction"), muted=muted)
        if record.get("input"):
            prompt.append("\n")
            prompt.append("input ", label)
            prompt.append_text(literal(record.get("input"), muted=muted))
        self.query_one("#prompt-text", Static).update(prompt)
        self.query_one("#expected-text", Static).update(
            literal(record.get("expected"), muted=muted))
        self.query_one("#response-text", Static).update(
            literal(record.get("response"), muted=muted))
        # A suggestion beside the answer, never the mark: the title shows the mark.
        match = automatic_match(record)
        self.query_one("#response-panel").border_subtitle = (
            None if match is None else "auto: matches expected" if match
            else "auto: differs from expected")
        self.set_grade(grade)
        for scroller in self.query(VerticalScroll):
            scroller.scroll_home(animate=False)

    def set_grade(self, grade: str | None) -> None:
        panel = self.query_one("#response-panel")
        panel.set_class(grade == "correct", "-correct")
        panel.set_class(grade == "wrong", "-wrong")
        panel.border_title = {"correct": "response \u2713 correct",
                              "wrong": "response \u2717 wrong"}.get(grade or "", "response")

    def set_judgment(self, said: "Suggestion | None") -> None:
        """The judge's verdict (or score) and reason under the answers, as a
        suggestion; hidden where this answer has no judgment."""
        self._said = said
        line = self.query_one("#judge-text", Static)
        line.set_class(said is not None, "-shown")
        line.update(Text("") if said is None else self._fitted(self._judgment_text(said)))

    def on_resize(self) -> None:
        if self._said is not None:
            self.set_judgment(self._said)

    def _fitted(self, text: Text) -> Text:
        """At most JUDGE_LINES lines at this width, the last ending in '…' when the
        reason goes on (a reply can be 20,000 characters; the export keeps it whole)."""
        width = self.size.width - 2  # the line's padding
        if width < 10:
            return text
        # On a short terminal one line: the answers keep their three lines each.
        most = JUDGE_LINES if self.size.height >= SHORT_BELOW else 1
        lines = text.wrap(self.app.console, width)
        if len(lines) <= most:
            return text
        last = lines[most - 1]
        last.rstrip()
        last.truncate(width - 1)
        last.append("\u2026")
        return Text("\n").join(lines[:most])

    def _judgment_text(self, said: "Suggestion") -> Text:
        text = Text("judge ", self.get_component_rich_style("response-view--label",
                                                            partial=True))
        if said.verdict is not None:
            text.append(JUDGE_MARKS[said.verdict],
                        self.get_component_rich_style(f"response-view--{said.verdict}",
                                                      partial=True))
        if said.score is not None:
            text.append(" " if said.verdict else "")
            text.append(f"score {said.score}" + (f" (pass \u2265 {said.threshold})"
                                                   if said.threshold is not None else ""))
        if said.why_not:
            text.append(" \u00b7 " if said.verdict or said.score is not None else "")
            text.append(shown(said.why_not), self._muted())
        if said.reason:
            # The reply is one untrusted string: newlines shown, never obeyed.
            text.append(" \u00b7 ")
            text.append(shown(said.reason).replace("\n", " \u21b5 "))
        return text

    def show_message(self, message: str) -> None:
        self.query_one("#prompt-panel").border_title = "grading"
        self.query_one("#prompt-text", Static).update(Text(shown(message)))
        self.query_one("#expected-text", Static).update(Text(""))
        self.query_one("#response-text", Static).update(Text(""))
        self.query_one("#response-panel").border_subtitle = None
        self.set_judgment(None)
        self.set_grade(None)

    def scroll_answers(self, pages: int) -> None:
        """Scroll the expected and response columns together by `pages` pages."""
        for panel in self.query(".answer-panel"):
            height = max(1, panel.scrollable_content_region.height - 1)
            panel.scroll_relative(y=pages * height, animate=False)

    def text_of(self, part: str) -> str:
        """What panel `part` (prompt, expected, response) shows, as plain text."""
        return str(self.query_one(f"#{part}-text", Static).content)

    def judge_text(self) -> str:
        """The judge's suggestion shown under the answers ('' when none)."""
        line = self.query_one("#judge-text", Static)
        return str(line.content) if line.has_class("-shown") else ""

    def automatic_text(self) -> str:
        """The exact-match suggestion shown under the response ('' when none)."""
        return str(self.query_one("#response-panel").border_subtitle or "")
