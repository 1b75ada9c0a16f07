"""Every on-disk location tui-ft uses. platformdirs decides the defaults; the
environment variables TUI_FT_CONFIG_DIR, TUI_FT_CACHE_DIR and TUI_FT_RUNS_DIR
override them (tests and shared GPU boxes use that)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "tui-ft"

_PACKAGE_DIR = Path(__file__).resolve().parent


def _from_env(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    """User configuration: settings, user prompt styles (styles/*.yaml), themes."""
    env = _from_env("TUI_FT_CONFIG_DIR")
    if env is not None:
        return env
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Downloaded weights and other re-creatable files."""
    env = _from_env("TUI_FT_CACHE_DIR")
    if env is not None:
        return env
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def runs_dir() -> Path:
    """Where run folders are created unless a config names its own output_dir."""
    env = _from_env("TUI_FT_RUNS_DIR")
    if env is not None:
        return env
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "runs"


def run_registry() -> Path:
    """Run folders made outside the runs directory (a config's output_dir), one JSON
    line each, so that listings and run names find them (runs/registry.py)."""
    return runs_dir() / "registry.jsonl"


def user_styles_dir() -> Path:
    return config_dir() / "styles"


def assets_dir() -> Path:
    return _PACKAGE_DIR / "assets"


def _shipped(name: str) -> Path:
    # An installed wheel carries the top-level folders inside the package
    # (see pyproject's force-include); a source checkout has them beside it.
    inside = _PACKAGE_DIR / "_shipped" / name
    if inside.is_dir():
        return inside
    return _PACKAGE_DIR.parent / name


def sample_data_dir() -> Path:
    return _shipped("sample_data")


def themes_dir() -> Path:
    return _shipped("themes")


def default_dataset() -> Path:
    """The shipped sample dataset the embedded default configuration trains on."""
    return sample_data_dir() / "instructions.jsonl"
