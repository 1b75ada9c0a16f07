"""A YAML alias bomb (the "billion laughs", ~400 bytes) in a config, style, theme or
settings file is refused at once with its place, instead of hanging the CLI and the
app while memory grows (issue 13). Real files, real processes with a time limit."""

from __future__ import annotations

import subprocess
import sys

from tui_ft.paths import user_styles_dir
from tui_ft.settings import load_settings, settings_path
from tui_ft.ui.themes import theme_from_file
from tui_ft.yamlfile import load_user_yaml

BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                 + [f"{chr(c)}: &{chr(c)} [" + ",".join([f"*{chr(c - 1)}"] * 9) + "]"
                    for c in range(ord("b"), ord("j"))]) + "\n"


def cli(*args: str) -> subprocess.CompletedProcess:
    # A hang is the bug: the time limit turns it into a failure, not a stuck suite.
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_the_bomb_is_small_and_would_expand():
    assert len(BOMB) < 600 and BOMB.count("*") == 8 * 9


def test_a_config_bomb_is_refused_with_its_line(tmp_path, isolated_dirs):
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB, encoding="utf-8")
    proc = cli("train", str(config))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{config}:2:" in proc.stderr and "aliases" in proc.stderr, proc.stderr
    assert len(proc.stderr) < 500  # never the expanded value
    assert not any(isolated_dirs["runs"].iterdir())  # no run was made


def test_a_style_bomb_is_one_error_in_the_style_list(isolated_dirs):
    folder = user_styles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "laughs.yaml").write_text(BOMB, encoding="utf-8")
    proc = cli("styles")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stdout + proc.stderr
    assert "laughs.yaml" in proc.stdout + proc.stderr and "aliases" in proc.stdout + proc.stderr
    assert "alpaca" in proc.stdout  # the built-in styles still list


def test_theme_and_settings_bombs_are_set_aside(tmp_path, isolated_dirs):
    theme = tmp_path / "laughs.yaml"
    theme.write_text(BOMB, encoding="utf-8")
    try:
        theme_from_file(theme)
    except ValueError as exc:
        assert "laughs.yaml" in str(exc)
    else:
        raise AssertionError("a theme of aliases was accepted")
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(BOMB, encoding="utf-8")
    settings, warning = load_settings()
    assert settings == {} and "using defaults" in warning


def test_anchors_without_aliases_and_plain_yaml_still_load():
    assert load_user_yaml("a: &x 1\nb: [2, 3]\n") == {"a": 1, "b": [2, 3]}
