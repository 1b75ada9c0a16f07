"""The Textual app: modes (one per screen), global bindings, themes. Screens live in
ui/screens, one module each; everything they show comes from the engine."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from ..paths import default_dataset
from ..settings import load_settings, save_setting
from .screens.datasets import DatasetsScreen
from .themes import DEFAULT_THEME, load_themes


class TuiFtApp(App):
    TITLE = "tui-ft"
    BINDINGS = [
        Binding("1", "switch_mode('datasets')", "Datasets"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, dataset_path: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dataset_path = dataset_path if dataset_path is not None else default_dataset()
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
        self.add_mode("datasets", lambda: DatasetsScreen(self.dataset_path))

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self.switch_mode("datasets")
        for warning in self.startup_warnings:
            self.notify(warning, severity="warning", markup=False)

    def _remember_theme(self, theme) -> None:
        try:
            save_setting("theme", theme.name)
        except OSError as exc:
            self.notify(f"could not remember the theme: {exc}", severity="warning",
                        markup=False)


def create_app(dataset_path: Path | None = None) -> TuiFtApp:
    """The app factory the CLI and the tests share."""
    return TuiFtApp(dataset_path=dataset_path)


def run_app(*, mouse: bool = True, dataset_path: Path | None = None) -> int:
    create_app(dataset_path).run(mouse=mouse)
    return 0
