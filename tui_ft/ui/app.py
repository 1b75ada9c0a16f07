"""The Textual app: modes (one per screen), global bindings, themes. Screens live in
ui/screens, one module each; everything they show comes from the engine."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from ..config import TrainConfig
from ..settings import load_settings, save_setting
from ..train.run import Run
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


class TuiFtApp(App):
    TITLE = "tui-ft"
    BINDINGS = [
        Binding("1", "switch_mode('datasets')", "Data", tooltip="Datasets screen"),
        Binding("2", "switch_mode('params')", "Params", tooltip="Parameters screen"),
        Binding("3", "switch_mode('training')", "Train", tooltip="Training screen"),
        Binding("4", "switch_mode('grading')", "Grade", tooltip="Grading screen"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, *, config: TrainConfig | None = None, config_path: Path | None = None,
                 run: Run | None = None, dataset_path: Path | None = None,
                 start_mode: str | None = None, low_bandwidth: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # Over a slow link: charts redraw every 5 s instead of every second.
        self.low_bandwidth = low_bandwidth
        if config is None:
            config = TrainConfig.load(run.config_path) if run is not None else TrainConfig()
        if dataset_path is not None:
            config = TrainConfig.from_dict({**config.to_dict(), "dataset": str(dataset_path)})
        self.state = AppState(config=config, config_path=config_path, run=run)
        self.start_mode = start_mode or ("training" if run is not None else "datasets")
        self.startup_warnings: list[str] = []
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
        self.add_mode("datasets", lambda: DatasetsScreen(self.state.config.dataset_path()))
        self.add_mode("params", _params_screen)
        self.add_mode("training", _training_screen)
        self.add_mode("grading", _grading_screen)

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
    create_app(dataset_path, config_path=config_path, run=run, start_mode=start_mode,
               low_bandwidth=low_bandwidth).run(mouse=mouse)
    return 0
