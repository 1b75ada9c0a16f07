"""The Textual app: modes (one per screen), global bindings, themes. Screens live in
ui/screens, one module each; everything they show comes from the engine."""

from __future__ import annotations

import sys
from pathlib import Path

from textual import events
from textual.app import App
from textual.binding import Binding

from ..errors import TuiFtError
from ..config import ConfigError, TrainConfig, check, read_yaml
from ..settings import load_settings, save_setting
from ..runfolder import Run
from .screens.datasets import DatasetsScreen
from .state import AppState
from .themes import DEFAULT_THEME, load_themes


def _params_screen():
    from .screens.params import ParamsScreen

    return ParamsScreen()


def _training_screen():
    from .screens.training import TrainingScreen

    return TrainingScreen()


def _grading_screen():
    from .screens.grading import GradingScreen

    return GradingScreen()


def _runs_screen():
    from .screens.runs import RunsScreen

    return RunsScreen()


def _config_of_run(run: Run) -> tuple[TrainConfig, str | None]:
    """The parameters a run was made with, as the starting point of the next one. A run
    from an older tui-ft may hold a value that is refused now: the app still opens on
    it, with the fields named in the problems at their defaults, and says so."""
    try:
        return TrainConfig.load(run.config_path), None
    except ConfigError as exc:
        data = read_yaml(run.config_path)
        reset: list[str] = []
        # A field at its default can make another one's cross-check fail in turn:
        # a few rounds settle it, else all the defaults.
        for _ in range(3):
            _, problems = check(data)
            if not problems:
                break
            reset += [p.key for p in problems]
            data = {k: v for k, v in data.items() if k not in reset}
        config = TrainConfig.from_dict(data) if not check(data)[1] else TrainConfig()
        return config, (f"{exc}\nfor the next run, {', '.join(dict.fromkeys(reset))} "
                        "set to the default")
    except TuiFtError as exc:  # no config.yaml, or not YAML: a damaged run still opens
        return TrainConfig(), f"{exc}\nfor the next run, the default parameters"


class TuiFtApp(App):
    TITLE = "tui-ft"
    # The smallest terminal every screen is drawn in without collapsed widgets, tried
    # in tmux: at 60x20 the loss chart keeps two labelled ticks and the grading panes
    # three lines each; below 20 rows the chart is down to one tick, below 60 columns
    # the record list to its ids. Below it the app shows one notice instead.
    MIN_SIZE = (60, 20)
    BINDINGS = [
        Binding("1", "switch_mode('datasets')", "Data", tooltip="Datasets screen"),
        Binding("2", "switch_mode('params')", "Params", tooltip="Parameters screen"),
        Binding("3", "switch_mode('training')", "Train", tooltip="Training screen"),
        Binding("4", "switch_mode('grading')", "Grade", tooltip="Grading screen"),
        Binding("5", "switch_mode('runs')", "Runs", tooltip="Runs screen: compare runs"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, *, config: TrainConfig | None = None, config_path: Path | None = None,
                 run: Run | None = None, dataset_path: Path | None = None,
                 start_mode: str | None = None, low_bandwidth: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # Over a slow link: charts redraw every 5 s instead of every second.
        self.low_bandwidth = low_bandwidth
        self.startup_warnings: list[str] = []
        if config is None:
            config = TrainConfig()
            if run is not None:
                config, warning = _config_of_run(run)
                if warning:
                    self.startup_warnings.append(warning)
        if dataset_path is not None:
            config = TrainConfig.from_dict({**config.to_dict(), "dataset": str(dataset_path)})
        self.state = AppState(config=config, config_path=config_path, run=run)
        # Imported answers have nothing to train or watch: they open where they are graded.
        self.start_mode = start_mode or ("datasets" if run is None else "grading"
                                         if run.is_imported() else "training")
        # What quitting left training, for the lines printed once the app has closed.
        self.left_running: list[Run] = []
        themes, errors = load_themes()
        self.startup_warnings.extend(errors)
        for theme in themes:
            self.register_theme(theme)
        settings, warning = load_settings()
        if warning:
            self.startup_warnings.append(warning)
        wanted = settings.get("theme", DEFAULT_THEME)
        if wanted not in self.available_themes:
            if wanted != DEFAULT_THEME:
                self.startup_warnings.append(f"theme '{wanted}' is not installed; using "
                                             f"{DEFAULT_THEME}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted
        scale = settings.get("loss_scale")
        self._loss_scale = scale if scale in ("linear", "log", "zoom") else "linear"
        self.add_mode("datasets", lambda: DatasetsScreen(self.state.config.dataset_path()))
        self.add_mode("params", _params_screen)
        self.add_mode("training", _training_screen)
        self.add_mode("grading", _grading_screen)
        self.add_mode("runs", _runs_screen)

    @property
    def dataset_path(self) -> Path | None:
        return self.state.config.dataset_path()

    def set_config(self, config: TrainConfig, path: Path | None = None) -> None:
        """Replace the shared configuration; each screen reads it when it comes to
        the front (on_screen_resume), so nothing else needs telling."""
        self.state.config = config
        if path is not None:
            self.state.config_path = path

    def select_run(self, run: Run | None) -> None:
        self.state.run = run

    def get_system_commands(self, screen):
        """The palette lists every key of the screen in front, so each action can be
        found by name as well as by key."""
        from functools import partial

        from textual.app import SystemCommand

        yield from super().get_system_commands(screen)
        seen = set()
        for node, binding, enabled, tooltip in screen.active_bindings.values():
            if not binding.show or not enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            key = self.get_key_display(binding)
            yield SystemCommand(f"{binding.description} ({key})",
                                tooltip or binding.tooltip or binding.description,
                                partial(self.run_action, binding.action, node))

    def on_mount(self) -> None:
        from .hangup import watch

        watch(self)
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self.switch_mode(self.start_mode)
        for warning in self.startup_warnings:
            self.notify(warning, severity="warning", markup=False)
        self.call_after_refresh(self._check_size)

    # -- too small a terminal ----------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._check_size)

    def too_small(self) -> bool:
        (min_w, min_h), size = self.MIN_SIZE, self.size
        return size.width < min_w or size.height < min_h

    def _check_size(self) -> None:
        from .screens.too_small import TooSmall

        notice = next((s for s in self.screen_stack if isinstance(s, TooSmall)), None)
        size = (self.size.width, self.size.height)
        if self.too_small():
            if notice is None:
                self.push_screen(TooSmall(self.MIN_SIZE, size))
            else:
                notice.show_size(size)
        elif notice is not None:
            if self.screen is notice:
                self.pop_screen()
            else:
                notice.remove()  # something was pushed over it meanwhile

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # Another screen would be drawn collapsed under the notice: stay.
        if action == "switch_mode" and self.too_small():
            return False
        return super().check_action(action, parameters)

    # -- quitting --------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit; while a run this app knows of trains, first say that it goes on and
        how to reopen it (q or Enter again quits, Escape stays)."""
        from .screens.quit_confirm import QuitConfirm, reopen_lines

        running = self.state.running_runs()
        if not running or isinstance(self.screen, QuitConfirm):
            self.left_running = running
            self.exit()
            return

        def answered(leave: bool | None) -> None:
            if leave:
                self.left_running = self.state.running_runs()
                self.exit()

        self.push_screen(QuitConfirm(reopen_lines(running)), answered)

    # -- loss chart scale, remembered -------------------------------------------------

    @property
    def loss_scale(self) -> str:
        return self._loss_scale

    @loss_scale.setter
    def loss_scale(self, scale: str) -> None:
        self._loss_scale = scale
        try:
            save_setting("loss_scale", scale)
        except OSError as exc:
            self.notify(f"could not remember the chart scale: {exc}", severity="warning",
                        markup=False)

    def _remember_theme(self, theme) -> None:
        try:
            save_setting("theme", theme.name)
        except OSError as exc:
            self.notify(f"could not remember the theme: {exc}", severity="warning",
                        markup=False)


def create_app(dataset_path: Path | None = None, *, config_path: Path | None = None,
               run: Path | None = None, start_mode: str | None = None,
               low_bandwidth: bool = False) -> TuiFtApp:
    """The app factory the CLI and the tests share."""
    config = TrainConfig.load(config_path) if config_path is not None else None
    return TuiFtApp(config=config, config_path=config_path,
                    run=Run.open(run) if run is not None else None,
                    dataset_path=dataset_path, start_mode=start_mode,
                    low_bandwidth=low_bandwidth)


def run_app(*, mouse: bool = True, dataset_path: Path | None = None,
            config_path: Path | None = None, run: Path | None = None,
            low_bandwidth: bool = False, start_mode: str | None = None) -> int:
    if low_bandwidth:
        import os

        os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    app = create_app(dataset_path, config_path=config_path, run=run, start_mode=start_mode,
                     low_bandwidth=low_bandwidth)
    from ..console import terminal_problem

    stream = terminal_problem()
    if stream is not None:
        # After the config is read (its problems come first), before Textual starts:
        # it would spin a core on an end-of-file stdin, or draw into a file, for ever.
        raise TuiFtError(
            f"the app needs a terminal, and its {stream} is not one (a file, a pipe or "
            "/dev/null): run 'tui-ft' in a terminal (over SSH: ssh -t HOST tui-ft), or "
            "use the headless commands: tui-ft train CONFIG, tui-ft runs, "
            "tui-ft attach RUN, ... ('tui-ft --help' lists them)")
    app.run(mouse=mouse)
    if app.left_running:
        from .screens.quit_confirm import reopen_lines

        # After the app has given the terminal back, so that it stays on screen.
        print("\n".join(reopen_lines(app.left_running)), file=sys.stdout, flush=True)
    return 0
