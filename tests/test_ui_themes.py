"""Themes are files: the shipped ones load, a bad one is reported (not a crash later),
and the chosen theme is remembered in the user config."""

from __future__ import annotations

import yaml

from tui_ft.settings import settings_path
from tui_ft.ui.app import create_app
from tui_ft.ui.themes import load_themes


def test_shipped_themes_load_and_a_bad_colour_is_located(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_CONFIG_DIR", str(tmp_path / "config"))
    user = tmp_path / "config" / "themes"
    user.mkdir(parents=True)
    (user / "broken.yaml").write_text("name: broken\nprimary: '#12'\n")
    (user / "mine.yaml").write_text("name: mine\nprimary: '#336699'\ndark: false\n")
    themes, errors = load_themes()
    names = {t.name for t in themes}
    assert {"tui-ft-dark", "tui-ft-light", "tui-ft-high-contrast", "mine"} <= names
    assert "broken" not in names
    assert len(errors) == 1 and "broken.yaml" in errors[0] and "primary" in errors[0]


async def test_the_chosen_theme_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_CONFIG_DIR", str(tmp_path / "config"))
    app = create_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "tui-ft-dark"
        app.theme = "tui-ft-high-contrast"
        await pilot.pause(0.2)
    assert yaml.safe_load(settings_path().read_text())["theme"] == "tui-ft-high-contrast"
    again = create_app()
    async with again.run_test(size=(100, 30)):
        assert again.theme == "tui-ft-high-contrast"


async def test_a_broken_settings_file_does_not_stop_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_CONFIG_DIR", str(tmp_path / "config"))
    settings_path().parent.mkdir(parents=True)
    settings_path().write_text("theme: [unclosed\n")
    app = create_app()
    async with app.run_test(size=(100, 30)):
        assert app.theme == "tui-ft-dark"
        assert any("settings.yaml" in w for w in app.startup_warnings)
