"""The user's remembered choices (theme, last dataset, ...), in
`<config dir>/settings.yaml`. A broken file never stops the app: it is set aside
and defaults are used, with a message saying so."""

from __future__ import annotations

from pathlib import Path

from .fsio import write_atomic
from .paths import config_dir
from .yamlfile import load_user_yaml

SETTINGS_FILE = "settings.yaml"


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings() -> tuple[dict, str | None]:
    """(settings, warning). The warning names the file and the problem, if any."""
    import yaml

    path = settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"{path}: cannot read ({exc}); using defaults"
    try:
        data = load_user_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        return {}, f"{where}: invalid YAML; using defaults"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, f"{path}: expected a mapping of settings; using defaults"
    return data, None


def save_setting(key: str, value) -> None:
    import yaml

    data, _ = load_settings()
    data[key] = value
    write_atomic(settings_path(), yaml.safe_dump(data, sort_keys=True, allow_unicode=True))
