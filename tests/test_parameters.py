"""One home for parameter rules: the configuration check asks model/precision.py which
device and precision names are usable (so a name the trainer refuses is refused as it
is typed), without importing torch; check() takes the style names from its caller."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui_ft.config import TrainConfig, check
from tui_ft.model.precision import DeviceError, device_problem, pick_device


def problems_of(data: dict, **kwargs) -> dict:
    return {p.key: p.reason for p in check(data, **kwargs)[1]}


@pytest.mark.parametrize("name", ["mps", "tpu", "cuda:x", "gpu", "cuda:-1"])
def test_a_device_the_trainer_refuses_is_refused_by_the_config_check(name):
    reason = problems_of({"device": name})["device"]
    assert reason == device_problem(name)
    with pytest.raises(DeviceError) as caught:
        pick_device(name)
    assert reason in str(caught.value) and repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_names_the_trainer_takes_pass_the_check(name):
    assert "device" not in problems_of({"device": name})


def test_fp16_on_the_cpu_is_refused_by_config_and_by_precision_alike():
    from tui_ft.model.precision import PrecisionError, precision_problem, resolve_precision

    assert "needs a CUDA device" in problems_of({"fp16": True, "device": "cpu"})["fp16"]
    assert precision_problem("fp16", "cpu") is not None
    with pytest.raises(PrecisionError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", "cpu")


def test_the_config_check_imports_no_torch():
    code = ("import json, sys\n"
            "from tui_ft.config import check\n"
            "_, problems = check({'device': 'mps', 'fp16': True})\n"
            "print(json.dumps({'keys': [p.key for p in problems], "
            "'torch': 'torch' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"keys": ["device"], "torch": False}


def test_check_uses_the_style_names_it_is_given(monkeypatch):
    import tui_ft.data.styles as styles_module

    def no_reading(*args, **kwargs):
        raise AssertionError("style files read although the names were given")

    monkeypatch.setattr(styles_module, "load_styles", no_reading)
    assert problems_of({"prompt_style": "mine"}, styles=["alpaca", "mine"]) == {}
    reason = problems_of({"prompt_style": "alpaca"}, styles=["mine"])["prompt_style"]
    assert reason == "unknown style (available: mine)"
    config = TrainConfig.from_dict({"prompt_style": "mine"}, styles=["mine"])
    assert config.prompt_style == "mine"


def test_recipes_apply_with_the_names_given_and_keep_the_files(monkeypatch):
    import tui_ft.data.styles as styles_module
    from tui_ft.recipes import RECIPES, defaults_keeping_files, matching_recipe

    names = styles_module.load_styles().names()
    monkeypatch.setattr(styles_module, "load_styles", None)  # any read would fail
    mine = TrainConfig(dataset="/data/mine.jsonl", output_dir="/runs/x")
    book = RECIPES[1].apply(mine, styles=names)
    assert (book.model, book.dataset, book.output_dir) == ("gpt2", mine.dataset,
                                                          mine.output_dir)
    assert matching_recipe(book, styles=names) == 1
    assert defaults_keeping_files(book, styles=names) == TrainConfig(
        dataset=mine.dataset, output_dir=mine.output_dir)
