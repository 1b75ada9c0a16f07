"""The Grading screen's side of response generation: picking a run, starting the
detached `tui-ft responses` job with a checkpoint, following it (its end, or a job
another session started) and counting the split it answers. A mixin of GradingScreen:
it uses the screen's run, job, feed, session, expected_total and its drawing methods
(_say, _redraw, _redraw_header, _reload_responses, load_run)."""

from __future__ import annotations

from textual import work
from textual.message import Message

from ...config import ConfigError, check, read_yaml
from ...errors import TuiFtError
from ...grade.responses import generation_holder, partial_path
from ...paths import runs_dir
from ...runfolder import Run
from ...runs.jobs import GenerationJob, count_test_records
from ...runs.registry import list_runs
from ..widgets.grade_pickers import (GENERATION_FIELDS, CheckpointPicker, GenerateRequest,
                                     RunPicker)
from . import grading_lines


class SplitCounted(Message):
    """How many responses generation will write (the run's test split size)."""

    def __init__(self, run: Run, total: int | None) -> None:
        super().__init__()
        self.run = run
        self.total = total


class ResponseGeneration:
    run: Run | None
    job: GenerationJob | None

    @work(thread=True, exclusive=True, group="grading-count", exit_on_error=False)
    def _count_expected(self, run: Run) -> None:
        # Reading the dataset may take a while on a big file: never on the UI thread.
        self.post_message(SplitCounted(run, count_test_records(run)))

    def on_split_counted(self, message: SplitCounted) -> None:
        if self.run is not None and message.run.path == self.run.path:
            self.expected_total = message.total
            self._redraw_header()

    def _follow_job(self) -> bool:
        """Look at the generation job (ours, or one another session started); True
        when it ended."""
        if self.job is not None:
            code = self.job.poll()
            if code is not None:
                self._generation_ended(self.job, code)
                self.job = None
                return True
        elif partial_path(self.run).exists():
            self.job = GenerationJob.find(self.run)  # started by another session
            if self.job is not None:
                self._count_expected(self.run)
        return False

    def _generation_ended(self, job: GenerationJob, code: int) -> None:
        complete = not partial_path(job.run).exists()
        if code == 0 or (code == -1 and complete):
            self._reload_responses()
        message, error = grading_lines.generation_ended(job, code, complete,
                                                        len(self.responses))
        self._say(message, error=error)

    def action_open_run(self) -> None:
        runs = list_runs(runs_dir())
        self.app.push_screen(RunPicker(runs, str(runs_dir())), self._run_picked)

    def _run_picked(self, run: Run | None) -> None:
        if run is None:
            return
        select = getattr(self.app, "select_run", None)
        if select is not None:
            select(run)
        self.load_run(run)

    def action_generate(self) -> None:
        if self.run is None:
            self.action_open_run()
            return
        if self.job is not None:
            self._say(f"generation with {self.job.checkpoint} is already running "
                      f"(pid {self.job.pid}; log {self.job.log_path})")
            return
        # Read now: a config that cannot be used would only fail the generation. Its
        # generation settings are checked (and can be corrected) in the dialog.
        try:
            config = read_yaml(self.run.config_path)
            _, problems = check(config)
        except (OSError, TuiFtError) as exc:
            self._say(f"cannot generate: {exc}", error=True)
            return
        problems = [p for p in problems if p.key not in GENERATION_FIELDS]
        if problems:
            self._say(f"cannot generate: {ConfigError(problems, str(self.run.config_path))}",
                      error=True)
            return
        self.app.push_screen(CheckpointPicker(self.run, self._replace_warning(), config),
                             self._checkpoint_picked)

    def _replace_warning(self) -> str:
        """What new responses would put aside: the answers graded in responses.jsonl."""
        if self.run is None or self.store is None or self.feed is None or self.feed.is_partial:
            return ""
        return grading_lines.replace_warning(self.session)

    def _checkpoint_picked(self, request: GenerateRequest | None) -> None:
        if request is None or self.run is None:
            return
        checkpoint = request.checkpoint
        holder = generation_holder(self.run)
        if holder is not None:
            # Another session's job: its partial file is its work in progress.
            self._say("another session is generating this run's answers"
                      + (f" (pid {holder})" if holder > 0 else "")
                      + "; its answers appear here as they come", error=True)
            return
        partial_path(self.run).unlink(missing_ok=True)  # an interrupted run's leftovers
        try:
            self.job = GenerationJob.start(self.run, checkpoint,
                                           max_new_tokens=request.max_new_tokens,
                                           temperature=request.temperature)
        except OSError as exc:
            self._say(f"cannot start generation: {exc}", error=True)
            return
        self._say(f"generating responses with {checkpoint} in the background "
                  f"(max new tokens {request.max_new_tokens}, temperature "
                  f"{request.temperature:g}; log: {self.job.log_path})")
        self._count_expected(self.run)
        self._reload_responses()
        self._redraw()
