"""The prompt-format preview: a record rendered in the chosen style, with the tokens
that count toward the loss set apart from the masked ones. Text is shown literally
(a Rich `Text`, control characters made visible)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ...data.batches import Example, loss_segments
from ...text import visible


class PromptPreview(VerticalScroll, can_focus=True):
    COMPONENT_CLASSES = {"prompt-preview--learned", "prompt-preview--masked"}
    DEFAULT_CSS = """
    PromptPreview {
        padding: 0 1;
    }
    PromptPreview > .prompt-preview--learned {
        color: $text;
        background: $success 30%;
    }
    PromptPreview > .prompt-preview--masked {
        color: $text-muted;
    }
    PromptPreview #preview-body {
        width: 1fr;
    }
    """

    def compose(self):
        yield Static(id="preview-body", markup=False)

    def show_message(self, message: str) -> None:
        self.query_one("#preview-body", Static).update(Text(visible(message)))

    def show_example(self, example: Example) -> None:
        learned = self.get_component_rich_style("prompt-preview--learned", partial=True)
        masked = self.get_component_rich_style("prompt-preview--masked", partial=True)
        text = Text(no_wrap=False)
        for piece, is_learned in loss_segments(example.input_ids, example.labels):
            text.append(visible(piece), learned if is_learned else masked)
        if example.truncated:
            # A long record is tokenized only as far as max_length can use.
            more = "" if example.length_exact else "more than "
            text.append(f"\n[truncated from {more}{example.full_length} tokens]", masked)
        self.query_one("#preview-body", Static).update(text)
