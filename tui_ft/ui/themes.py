"""Theme files (themes/*.yaml and <config dir>/themes/*.yaml) into Textual themes.
Every colour is checked when the file is read: Textual accepts a bad colour when a
theme is registered and fails much later, far from the cause."""

from __future__ import annotations

from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from ..paths import config_dir, themes_dir
from ..yamlfile import load_user_yaml

COLOUR_KEYS = ("primary", "secondary", "accent", "foreground", "background", "surface",
               "panel", "boost", "success", "warning", "error")
DEFAULT_THEME = "tui-ft-dark"


def theme_from_file(path: Path) -> Theme:
    import yaml

    try:
        data = load_user_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError:
        raise ValueError(f"{path}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of theme keys")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{path}: 'name' must be a non-empty string")
    if "primary" not in data:
        raise ValueError(f"{path}: 'primary' colour is required")
    colours = {}
    for key in COLOUR_KEYS:
        if key in data:
            value = data[key]
            try:
                Color.parse(value)
            except (ColorParseError, TypeError, ValueError):
                raise ValueError(f"{path}: {key}: {value!r} is not a colour") from None
            colours[key] = value
    unknown = sorted(set(map(str, data)) - set(COLOUR_KEYS) - {"name", "dark"})
    if unknown:
        raise ValueError(f"{path}: unknown key '{unknown[0]}'")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError(f"{path}: 'dark' must be true or false")
    return Theme(name=name, dark=dark, **colours)


def load_themes() -> tuple[list[Theme], list[str]]:
    """The shipped themes and the user's, and a located error for each bad file."""
    themes: list[Theme] = []
    errors: list[str] = []
    for folder in (themes_dir(), config_dir() / "themes"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            try:
                themes.append(theme_from_file(path))
            except ValueError as exc:
                errors.append(str(exc))
    return themes, errors
