"""Datasets screen: open a file, page through its records, and see each one exactly
as the model is trained on it (style, tokens, masked prompt), with load errors,
split sizes and token-length statistics. The file is read, split and measured with
the shared configuration's data settings (field keys, split method, max_length), as
training reads it."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Select, Static
from textual.worker import get_current_worker

from ...config import TrainConfig, resolve_data_path, short_data_path
from ...data.batches import Example, encode_record
from ...data.dataset import Dataset, ScanResult
from ...data.records import RecordError, RecordFields
from ...data.stats import counting_limit, token_lengths
from ...data.styles import StyleCatalog, load_styles
from ...errors import TuiFtError
from ...text import format_bytes, visible
from ..widgets.key_legend import KeyLegend
from ..widgets.path_suggester import PathSuggester
from ..widgets.prompt_preview import PromptPreview
from ..widgets.record_list import LARGE_ENTRY_BYTES, RecordList
from .datasets_lines import error_lines, info_line


# How much of a bad record's line the preview shows.
RAW_SHOWN = 20_000


class DatasetOpened(Message):
    def __init__(self, dataset: Dataset) -> None:
        super().__init__()
        self.dataset = dataset


class DatasetFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ScanProgressed(Message):
    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class ScanFinished(Message):
    def __init__(self, dataset: Dataset, result: ScanResult) -> None:
        super().__init__()
        self.dataset = dataset
        self.result = result


class LengthsCounted(Message):
    def __init__(self, result: ScanResult, style_name: str, lengths: list[int],
                 counted_to: int) -> None:
        super().__init__()
        self.result = result
        self.style_name = style_name
        self.lengths = lengths
        self.counted_to = counted_to


class PreviewBuilt(Message):
    def __init__(self, request: tuple, title: str, example: Example | None,
                 text: str) -> None:
        super().__init__()
        self.request = request
        self.title = title
        self.example = example
        self.text = text


class _Abandoned(Exception):
    """The scan's worker was cancelled (another file was opened)."""


class DatasetsScreen(Screen):
    # The list, not the first focusable widget (the path field): keys pressed on the
    # way here (1 then h) would be typed into the field before on_mount moved the focus.
    AUTO_FOCUS = "#record-list"
    BINDINGS = [
        # Priority: acted on as the key arrives, so a path typed or pasted right after
        # it (one read of a slow link, tmux send-keys) goes to the field, not to the
        # bindings; off while the field has focus, where `o` is a letter.
        Binding("o", "open_file", "Open", priority=True),
        Binding("s", "next_style", "Style"),
        Binding("m", "toggle_mask", "Mask prompt"),
        Binding("e", "toggle_errors", "Errors"),
        Binding("h", "toggle_histogram", "Histogram"),
        Binding("escape", "focus_list", "Records", show=False),
    ]
    CSS_PATH = "datasets.tcss"

    def __init__(self, dataset_path: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dataset_path = dataset_path
        self.dataset: Dataset | None = None
        self.scan: ScanResult | None = None
        self.lengths: list[int] = []
        # Lengths above this read counted_to + 1: counted no further (data/stats.py).
        self.counted_to = 0
        # What the preview shows, or is being built to show, in a worker.
        self._preview_request: tuple | None = None
        self.catalog: StyleCatalog = load_styles()
        # Training's defaults until the shared configuration is read (on_screen_resume).
        defaults = TrainConfig()
        self.style_name = defaults.prompt_style
        self.mask_prompt = defaults.mask_prompt
        self.max_length = defaults.sequence_length()
        self.seed = defaults.split_seed
        self.ratios = tuple(defaults.split_ratios)
        self.split_method = defaults.split_method
        self.fields: RecordFields = defaults.record_fields()
        self.load_error: str | None = None
        self.side = ""  # "", "errors" or "histogram"

    def compose(self) -> ComposeResult:
        with Horizontal(id="dataset-bar"):
            yield Input(short_data_path(self.dataset_path),
                        placeholder="dataset file (.json, .jsonl; @sample/ for the samples)",
                        id="dataset-path", suggester=PathSuggester())
            yield Select([(n, n) for n in self.catalog.names()], value=self.style_name,
                         allow_blank=False, id="style-select")
        with Horizontal(id="dataset-main"):
            yield RecordList(id="record-list")
            yield PromptPreview(id="prompt-preview")
            with Vertical(id="side-panel"):
                with VerticalScroll(id="side-scroll"):
                    yield Static(id="side-body", markup=False)
        yield Static(id="dataset-info", markup=False)
        yield KeyLegend(id="key-legend")

    def on_screen_resume(self) -> None:
        """Follow the shared configuration (edited on the Parameters screen)."""
        config = self.app.state.config
        max_length = config.sequence_length()
        restyle = config.prompt_style != self.style_name and config.prompt_style in \
            self.catalog.styles
        split = (config.split_seed, tuple(config.split_ratios), config.split_method)
        changed = restyle or config.mask_prompt != self.mask_prompt or \
            max_length != self.max_length or split != (self.seed, self.ratios, self.split_method)
        # Other field keys read other records: the file is read again.
        reread = config.record_fields() != self.fields
        self.mask_prompt, self.max_length = config.mask_prompt, max_length
        self.seed, self.ratios, self.split_method = split
        self.fields = config.record_fields()
        if restyle:
            self.query_one("#style-select", Select).value = config.prompt_style
        path = config.dataset_path()
        if path is not None and (path != self.dataset_path or reread):
            self.query_one("#dataset-path", Input).value = short_data_path(path)
            self.open_dataset(path)
        elif changed:
            self.show_preview(self.query_one(RecordList).cursor)
            self._refresh_info()
            if self.scan is not None and self.lengths and \
                    counting_limit(max_length) != self.counted_to:
                self._recount()

    def _update_config(self, **changes) -> None:
        from ...config import ConfigError, TrainConfig

        try:
            # The style names this screen read: a change reads no style file again.
            config = TrainConfig.from_dict({**self.app.state.config.to_dict(), **changes},
                                           styles=self.catalog.names())
        except ConfigError:
            return  # the Parameters screen shows the problem; keep what works
        self.app.set_config(config)

    def on_mount(self) -> None:
        self.query_one("#record-list").border_title = "records"
        self.query_one("#prompt-preview").border_title = "preview"
        # Loading threads hold the GIL for a while (BPE ranks, JSON): start them once
        # the first frame is out, so it is not kept waiting.
        self.call_after_refresh(self._start_loading)
        self.query_one(RecordList).focus()
        for error in self.catalog.errors:
            self.notify(visible(error), title="style file skipped", severity="warning")

    # -- loading ---------------------------------------------------------------

    def _start_loading(self) -> None:
        self._warm_tokenizer()
        if self.dataset_path is not None and self.dataset is None:
            self.open_dataset(self.dataset_path)

    @work(thread=True, exclusive=True, group="tokenizer", exit_on_error=False)
    def _warm_tokenizer(self) -> None:
        # Built once per process (~0.1 s); doing it here keeps it off the first frame.
        from ...data.tokenizer import gpt2_encoding

        gpt2_encoding()

    def open_dataset(self, path: Path) -> None:
        self.dataset_path = Path(path)
        self._set_info(Text(f"opening {visible(short_data_path(path))} ..."))
        self._open_worker(self.dataset_path)

    @work(thread=True, exclusive=True, group="dataset", exit_on_error=False)
    def _open_worker(self, path: Path) -> None:
        worker = get_current_worker()
        try:
            dataset = Dataset(path, self.fields)
        except TuiFtError as exc:
            self.post_message(DatasetFailed(str(exc)))
            return
        self.post_message(DatasetOpened(dataset))

        def progress(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise _Abandoned
            self.post_message(ScanProgressed(done, total))

        try:
            result = dataset.scan(progress=progress)
        except _Abandoned:
            return
        if not worker.is_cancelled:
            self.post_message(ScanFinished(dataset, result))

    # A description of its own: Textual's default is the repr() of the arguments, made
    # on the screen's thread, and the repr of every record (one of 100 MB) held the
    # keys for 20 s.
    @work(thread=True, exclusive=True, group="lengths", exit_on_error=False,
          description="count tokens")
    def _count_lengths(self, result: ScanResult, style_name: str, counted_to: int) -> None:
        lengths = token_lengths(result.records, self.catalog.get(style_name), counted_to)
        if not get_current_worker().is_cancelled:
            self.post_message(LengthsCounted(result, style_name, lengths, counted_to))

    @on(DatasetOpened)
    def _dataset_opened(self, message: DatasetOpened) -> None:
        if self.dataset is not None and self.dataset is not message.dataset:
            self.dataset.close()
        self.dataset = message.dataset
        self.scan = None
        self.lengths = []
        self.load_error = None
        records = self.query_one(RecordList)
        records.set_dataset(message.dataset)
        records.border_title = f"records ({len(message.dataset):,})"
        self._refresh_info()
        self._refresh_side()
        self.show_preview(0)

    @on(DatasetFailed)
    def _dataset_failed(self, message: DatasetFailed) -> None:
        self.load_error = message.error
        self._preview_request = None
        self._set_info(Text(visible(message.error, keep_newlines=False), style="bold red"))
        self.query_one(PromptPreview).show_message(message.error)

    @on(ScanProgressed)
    def _scan_progressed(self, message: ScanProgressed) -> None:
        if message.total:
            self._set_info(Text(f"checking records: {message.done:,} of {message.total:,}"))

    @on(ScanFinished)
    def _scan_finished(self, message: ScanFinished) -> None:
        if message.dataset is not self.dataset:
            return
        self.scan = message.result
        self.lengths = []
        self._count_lengths(message.result, self.style_name, counting_limit(self.max_length))
        records = self.query_one(RecordList)
        bad = len(message.result.errors)
        records.border_title = (f"records ({len(message.result.records):,}"
                                + (f", {bad:,} bad)" if bad else ")"))
        self._refresh_info()
        self._refresh_side()

    @on(LengthsCounted)
    def _lengths_counted(self, message: LengthsCounted) -> None:
        if message.result is not self.scan or message.style_name != self.style_name:
            return
        self.lengths = message.lengths
        self.counted_to = message.counted_to
        self._refresh_info()
        self._refresh_side()

    # -- preview ---------------------------------------------------------------

    @on(RecordList.Highlighted)
    def _record_highlighted(self, message: RecordList.Highlighted) -> None:
        self.show_preview(message.index)

    def show_preview(self, index: int) -> None:
        preview = self.query_one(PromptPreview)
        if self.dataset is None or not 0 <= index < len(self.dataset):
            self._preview_request = None
            preview.show_message("no record")
            return
        request = (self.dataset, index, self.style_name, self.mask_prompt, self.max_length)
        if request == self._preview_request:
            return  # shown, or being built (opening a file highlights its first record too)
        self._preview_request = request
        size = self.dataset.entry_size(index)
        if size <= LARGE_ENTRY_BYTES:
            self._show_built(*self._build_preview(request))
            return
        # Reading a record this large (its JSON, its rendering) would hold the keys
        # for as long: it is built in a worker, and shown if still wanted.
        preview.border_title = "preview"
        preview.show_message(f"reading record {index} ({format_bytes(size)}) ...")
        self._preview_worker(request)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False,
          description="build a preview")
    def _preview_worker(self, request: tuple) -> None:
        try:
            built = self._build_preview(request)
        except (TuiFtError, ValueError):
            return  # the dataset was closed meanwhile: another file is shown
        if not get_current_worker().is_cancelled:
            self.post_message(PreviewBuilt(request, *built))

    def _build_preview(self, request: tuple) -> tuple[str, Example | None, str]:
        """(title, example, text): what the preview shows for `request`; a bad
        record is its error and the start of its line."""
        dataset, index, style_name, mask_prompt, max_length = request
        item = dataset.get(index)
        if isinstance(item, RecordError):
            raw = dataset.raw_text(index, RAW_SHOWN)
            more = " ..." if dataset.entry_size(index) > RAW_SHOWN else ""
            return "bad record", None, f"{item}\n\n{raw}{more}"
        style = self.catalog.get(style_name)
        example = encode_record(item, style, mask_prompt=mask_prompt, max_length=max_length)
        title = (f"{style.name} \u00b7 {len(example.input_ids)} tokens \u00b7 "
                 f"{example.n_targets} learned \u00b7 mask {'on' if mask_prompt else 'off'}")
        return title, example, ""

    @on(PreviewBuilt)
    def _preview_built(self, message: PreviewBuilt) -> None:
        if message.request == self._preview_request:
            self._show_built(message.title, message.example, message.text)

    def _show_built(self, title: str, example: Example | None, text: str) -> None:
        preview = self.query_one(PromptPreview)
        preview.border_title = title
        if example is None:
            preview.show_message(text)
        else:
            preview.show_example(example)

    # -- info and side panel -----------------------------------------------------

    def _set_info(self, text: Text) -> None:
        self.query_one("#dataset-info", Static).update(text)

    def _refresh_info(self) -> None:
        if self.dataset is None:
            return
        self._set_info(Text(info_line(self.dataset, self.scan, self.lengths, seed=self.seed,
                                      ratios=self.ratios, split_method=self.split_method,
                                      max_length=self.max_length,
                                      counted_to=self.counted_to)))

    def _refresh_side(self) -> None:
        panel = self.query_one("#side-panel")
        panel.set_class(bool(self.side), "shown")
        body = self.query_one("#side-body", Static)
        if self.side == "errors":
            panel.border_title = "load errors"
            body.update(Text("checking records ..." if self.scan is None
                             else error_lines(self.scan)))
        self.query_one("#side-scroll").display = self.side != "histogram"
        if self.side == "histogram":
            panel.border_title = f"token lengths ({self.style_name})"
            self._show_histogram(panel)
        else:
            for plot in panel.query("LengthHistogram"):
                plot.display = False

    def _show_histogram(self, panel) -> None:
        # plotext is imported only when the histogram is first shown.
        from ..widgets.histogram import LengthHistogram

        plots = panel.query(LengthHistogram)
        if plots:
            plot = plots.first()
        else:
            plot = LengthHistogram(id="length-histogram")
            panel.mount(plot)
        plot.display = True
        plot.set_lengths(self.lengths, self.max_length)

    # -- actions -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "open_file" and self.focused is self.query_one("#dataset-path", Input):
            return False
        return True

    def action_open_file(self) -> None:
        # Focused now, not on the next refresh: the keys after `o` are routed to
        # whatever has focus when they arrive.
        self.set_focus(self.query_one("#dataset-path", Input))

    def action_focus_list(self) -> None:
        # Escape leaves the path field; outside it, it closes the side panel.
        if self.side and not isinstance(self.focused, Input):
            self.side = ""
            self._refresh_side()
        self.query_one(RecordList).focus()

    @on(Input.Submitted, "#dataset-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            path = resolve_data_path(value)
            self.open_dataset(path)
            self._update_config(dataset=short_data_path(path))
            self.query_one(RecordList).focus()

    @on(Select.Changed, "#style-select")
    def _style_changed(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.style_name:
            return
        self.style_name = str(event.value)
        self._update_config(prompt_style=self.style_name)
        self._restyle()

    def _restyle(self) -> None:
        self.show_preview(self.query_one(RecordList).cursor)
        if self.scan is not None:
            # Token lengths depend on the style: recount them.
            self._recount()

    def _recount(self) -> None:
        self.lengths = []
        self._refresh_info()
        self._count_lengths(self.scan, self.style_name, counting_limit(self.max_length))

    def action_next_style(self) -> None:
        names = self.catalog.names()
        self.query_one("#style-select", Select).value = names[
            (names.index(self.style_name) + 1) % len(names)]

    def action_toggle_mask(self) -> None:
        self.mask_prompt = not self.mask_prompt
        self._update_config(mask_prompt=self.mask_prompt)
        self.show_preview(self.query_one(RecordList).cursor)

    def action_toggle_errors(self) -> None:
        self.side = "" if self.side == "errors" else "errors"
        self._refresh_side()

    def action_toggle_histogram(self) -> None:
        self.side = "" if self.side == "histogram" else "histogram"
        self._refresh_side()

    def on_unmount(self) -> None:
        if self.dataset is not None:
            self.dataset.close()
