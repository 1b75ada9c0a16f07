"""The installed package carries what a fresh machine needs: the GPT-2 rank file and
its notice, the built-in styles, the sample data, the themes and the screens'
stylesheets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    pytest.importorskip("hatchling", reason="the test extra installs hatchling")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("tui_ft-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def test_wheel_has_assets_styles_sample_data_and_themes(wheel):
    names = set(wheel.namelist())
    for required in [
        "tui_ft/assets/gpt2.tiktoken",
        "tui_ft/assets/NOTICE.gpt2.tiktoken",
        "tui_ft/data/styles/alpaca.yaml",
        "tui_ft/data/styles/phi3.yaml",
        "tui_ft/_shipped/sample_data/instructions.jsonl",
        "tui_ft/_shipped/sample_data/chat.jsonl",
        "tui_ft/_shipped/themes/tui-ft-dark.yaml",
        "tui_ft/_shipped/themes/tui-ft-light.yaml",
        "tui_ft/_shipped/themes/tui-ft-high-contrast.yaml",
    ]:
        assert required in names, f"{required} missing from the wheel"
    assert wheel.read("tui_ft/assets/gpt2.tiktoken") == (ROOT / "tui_ft/assets/gpt2.tiktoken").read_bytes()
    # Each screen's stylesheet (CSS_PATH, beside its module): without it the screen
    # fails to open.
    sheets = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tui_ft").rglob("*.tcss"))
    assert "tui_ft/ui/screens/grading.tcss" in sheets
    for sheet in sheets:
        assert sheet in names, f"{sheet} missing from the wheel"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tui-ft = tui_ft.cli:main" in wheel.read(entry).decode()


def test_installed_wheel_finds_its_shipped_files(wheel, tmp_path):
    """Unpacked on its own (no source checkout beside it), the package still finds the
    sample data, the themes and the rank file."""
    wheel.extractall(tmp_path)
    code = (
        "from tui_ft import paths\n"
        "from tui_ft.data.tokenizer import encode\n"
        "assert paths.default_dataset().is_file(), paths.default_dataset()\n"
        "assert '_shipped' in str(paths.default_dataset())\n"
        "assert (paths.themes_dir() / 'tui-ft-dark.yaml').is_file()\n"
        "assert encode('Hello world') == [15496, 995]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
