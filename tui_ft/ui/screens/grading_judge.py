"""The Grading screen's side of the LLM judge: `l` asks for the judge's server (base
URL, model, prompt, concurrency, key file) in a small dialog and judges the run's
answers in a background thread with grade/judge.judge_run, the same engine as
'tui-ft judge' (resumable, fsynced per answer, one judge per run at a time); the
judgments appear under the answers as they are written, and `l` again stops it.
The dialog remembers the server, model and prompt (never the key: it comes from
TUI_FT_JUDGE_API_KEY / OPENAI_API_KEY or a mode-600 key file, as on the CLI).
A mixin of GradingScreen, like grading_generation."""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...errors import TuiFtError
from ...grade.judge import (API_KEY_ENVS, EXTRA_HINT, JudgeError, JudgeSettings,
                            JudgeStopped, judge_run, load_prompt, read_api_key)
from ...runfolder import Run
from ...settings import load_settings, save_setting
from ..widgets.grade_pickers import dialog_css
from ..widgets.response_view import shown

SETTING = "judge"  # settings.yaml key: {base_url, model, prompt, concurrency}
FIELDS = (("base_url", "base URL", "http://127.0.0.1:8000/v1"),
          ("model", "model", ""),
          ("prompt", "prompt", "score100"),
          ("concurrency", "concurrency", "4"),
          ("key_file", "key file", ""))


def remembered() -> dict:
    data, _ = load_settings()
    value = data.get(SETTING)
    return value if isinstance(value, dict) else {}


def settings_from(texts: dict[str, str]) -> JudgeSettings:
    """The dialog's fields as JudgeSettings, checked as the CLI checks its flags;
    JudgeError (a TuiFtError) names what is wrong."""
    try:
        concurrency = int(texts["concurrency"].strip())
    except ValueError:
        raise JudgeError(f"concurrency {texts['concurrency']!r}: a whole number, "
                         "e.g. 4") from None
    key_file = texts["key_file"].strip() or None
    settings = JudgeSettings(base_url=texts["base_url"].strip(), model=texts["model"].strip(),
                             prompt=load_prompt(texts["prompt"].strip() or "score100"),
                             api_key=read_api_key(None, key_file), concurrency=concurrency)
    settings.check()
    return settings


def key_source(key_file: str) -> str:
    """Where the API key will come from, said without the key."""
    if key_file.strip():
        return f"the API key is read from {key_file.strip()} (mode 600)"
    import os

    for name in API_KEY_ENVS:
        if os.environ.get(name, "").strip():
            return f"the API key comes from ${name}"
    return (f"no API key (a local server needs none; else set ${API_KEY_ENVS[0]} or give a "
            "key file)")


class JudgeDialog(ModalScreen):
    """Ask for the judge's server; dismisses with JudgeSettings, or None on Escape."""

    DEFAULT_CSS = dialog_css("JudgeDialog") + """
    JudgeDialog .judge-field {
        height: 1;
    }
    JudgeDialog .judge-field Static {
        width: 14;
    }
    JudgeDialog .judge-field Input {
        width: 1fr;
        height: 1;
        border: none;
        padding: 0 1;
    }
    JudgeDialog .judge-help {
        color: $text-muted;
    }
    JudgeDialog #judge-problem {
        color: $error;
        display: none;
    }
    JudgeDialog #judge-problem.-shown {
        display: block;
    }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run: Run, pending: int) -> None:
        super().__init__()
        self.run = run
        self.pending = pending

    def compose(self) -> ComposeResult:
        last = remembered()
        with Vertical() as box:
            box.border_title = "judge the answers with an LLM"
            for name, label, default in FIELDS:
                value = last.get(name, default) if name != "key_file" else last.get(name, "")
                with Horizontal(classes="judge-field"):
                    yield Static(Text(label))
                    yield Input(str(value), id=f"judge-{name}")
            yield Static(id="judge-key", classes="judge-help", markup=False)
            yield Static(id="judge-problem", markup=False)
            yield Static(Text(
                f"any OpenAI-compatible server; prompt score100, correct-wrong or a YAML "
                f"file. {self.pending} answers of {shown(self.run.name)}; answers this "
                "judge has judged are not sent again. Enter starts (in the background; "
                "l stops) \u00b7 Escape cancels"), classes="judge-help")

    def on_mount(self) -> None:
        self._show_key_source()
        self.query_one("#judge-model", Input).focus()

    def _texts(self) -> dict[str, str]:
        return {name: self.query_one(f"#judge-{name}", Input).value for name, _, _ in FIELDS}

    @on(Input.Changed, "#judge-key_file")
    def _show_key_source(self) -> None:
        self.query_one("#judge-key", Static).update(
            Text(shown(key_source(self.query_one("#judge-key_file", Input).value))))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        texts = self._texts()
        problem = self.query_one("#judge-problem", Static)
        try:
            settings = settings_from(texts)
        except TuiFtError as exc:
            problem.update(Text(shown(str(exc))))
            problem.add_class("-shown")
            return
        try:
            save_setting(SETTING, {"base_url": settings.base_url, "model": settings.model,
                                   "prompt": texts["prompt"].strip() or "score100",
                                   "concurrency": settings.concurrency,
                                   "key_file": texts["key_file"].strip()})
        except OSError:
            pass  # not remembered next time; the judging itself is unaffected
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)


class JudgeProgress(Message):
    def __init__(self, run: Run, done: int, total: int) -> None:
        super().__init__()
        self.run, self.done, self.total = run, done, total


class JudgeEnded(Message):
    def __init__(self, run: Run, summary: dict | None, error: str | None) -> None:
        super().__init__()
        self.run, self.summary, self.error = run, summary, error


@dataclass
class JudgeTask:
    run: Run
    model: str
    stop: threading.Event


def summary_text(summary: dict) -> str:
    """What a finished (or stopped) batch says, like 'tui-ft judge' does."""
    rate = summary.get("pass_rate")
    parts = [f"{summary['judged']} of {summary['total']} answers judged by "
             f"{summary['model']} ({summary['prompt']})",
             f"unparseable {summary['unparseable']}", f"errors {summary['errors']}"]
    if rate is not None:
        parts.append(f"pass rate {rate:.0%}")
    text = ", ".join(parts)
    if summary.get("errors"):
        text += (f"; one error: {summary.get('last_error') or '?'} (l sends those again)")
    return text


class ScreenJudge:
    run: Run | None
    judging: JudgeTask | None = None

    def action_judge(self) -> None:
        if self.judging is not None:
            self.judging.stop.set()
            self._say(f"stopping the judge ({self.judging.model}); what is judged is kept")
            return
        if self.run is None or not self.responses:
            return
        if importlib.util.find_spec("httpx") is None:
            # Said before the dialog: filling it in would be for nothing.
            self._say(f"the LLM judge needs the optional HTTP client httpx: {EXTRA_HINT}",
                      error=True)
            return
        self.app.push_screen(JudgeDialog(self.run, len(self.responses)), self._judge_chosen)

    def _judge_chosen(self, settings: JudgeSettings | None) -> None:
        if settings is None or self.run is None:
            return
        self.judging = JudgeTask(self.run, settings.model, threading.Event())
        self._say(f"judging with {settings.model} ({settings.prompt.name}) in the "
                  "background; l stops")
        self._judge_in_background(self.judging, settings)
        self.refresh_bindings()

    @work(thread=True, group="grading-judge", exit_on_error=False)
    def _judge_in_background(self, task: JudgeTask, settings: JudgeSettings) -> None:
        def progress(done: int, total: int) -> None:
            self.post_message(JudgeProgress(task.run, done, total))

        try:
            summary = judge_run(task.run, settings, on_progress=progress, stop=task.stop)
        except JudgeStopped as stopped:
            summary = stopped.summary
        except TuiFtError as exc:
            self.post_message(JudgeEnded(task.run, None, str(exc)))
            return
        except Exception as exc:  # the thread must report, whatever happened
            self.post_message(JudgeEnded(task.run, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(JudgeEnded(task.run, summary, None))

    def on_judge_progress(self, message: JudgeProgress) -> None:
        if self.judging is None or self.judging.stop.is_set():
            return
        if self.run is not None and message.run.path == self.run.path:
            self._say(f"judging with {self.judging.model}: {message.done} of {message.total} "
                      "answers judged \u00b7 l stops")
            if self.session.refresh_judgments():
                self._redraw()

    def on_judge_ended(self, message: JudgeEnded) -> None:
        task, self.judging = self.judging, None
        self.refresh_bindings()
        if self.run is None or message.run.path != self.run.path:
            return  # another run is on screen now; its judgments were kept on disk
        self.session.refresh_judgments()
        self._redraw()
        if message.error is not None:
            self._say(f"judging failed: {message.error}", error=True)
            return
        summary = message.summary
        stopped = "stopped: " if summary.get("stopped") or (task and task.stop.is_set()) else ""
        self._say(stopped + summary_text(summary), error=bool(summary.get("errors")))

    def stop_judging(self) -> None:
        """On the way out: the batch ends at once; what is judged is on disk."""
        if self.judging is not None:
            self.judging.stop.set()
