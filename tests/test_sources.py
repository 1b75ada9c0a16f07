"""model.sources: what a model source names, told without torch and without reading
weights; runs only through the run layer's lookup (runs.run_source.run_checkpoint);
and the model's shape as the memory estimate reads it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui_ft.model.presets import PRESETS
from tui_ft.model.sources import (UnknownModelError, WeightsError, resolve_source,
                                  source_shape)
from tui_ft.runs.run_source import run_checkpoint
from tui_ft.ui.widgets.memory_estimate import model_shape

OURS = {"vocab_size": 1000, "context_length": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
        "dropout": 0.0, "layer_norm_eps": 1e-5}


def checkpoint(folder, config=OURS):
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"not read")
    return folder


def test_each_kind_is_told_by_name_and_files(tmp_path):
    assert resolve_source("gpt2").preset is PRESETS["gpt2"]
    assert resolve_source(PRESETS["tiny"]).kind == "preset"
    ckpt = checkpoint(tmp_path / "c")
    assert (resolve_source(str(ckpt)).kind, resolve_source(ckpt).path) == ("checkpoint", ckpt)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"n_embd": 64, "n_layer": 2, "n_head": 4}))
    assert resolve_source(str(hf)).kind == "hf-folder"
    assert resolve_source(str(ckpt / "model.safetensors")).kind == "safetensors-file"
    (tmp_path / "w.pt").write_bytes(b"x")
    assert resolve_source(str(tmp_path / "w.pt")).kind == "file"
    with pytest.raises(UnknownModelError, match="unknown model 'nosuch'"):
        resolve_source("nosuch")
    with pytest.raises(WeightsError, match="holds no model"):
        resolve_source(str(tmp_path))


def test_a_run_resolves_to_the_checkpoint_the_run_layer_picks(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(tmp_path))
    run = tmp_path / "myrun"
    for n in (2, 4):
        checkpoint(run / "checkpoints" / f"checkpoint-{n}")
    (run / "status.json").write_text(json.dumps({"best_checkpoint": "checkpoint-2"}))
    for text in (str(run), "myrun", str(run / "checkpoints")):
        source = resolve_source(text, runs=run_checkpoint)
        assert (source.kind, source.path) == ("run", run / "checkpoints" / "checkpoint-2")
    # Without the lookup the model layer does not know runs.
    with pytest.raises(UnknownModelError):
        resolve_source("myrun")
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(WeightsError, match="no checkpoint yet"):
        resolve_source(str(tmp_path / "empty"), runs=run_checkpoint)


def test_shape_from_preset_or_config_files(tmp_path):
    assert source_shape(resolve_source("tiny")).n_embd == PRESETS["tiny"].n_embd
    ckpt = checkpoint(tmp_path / "c")
    assert source_shape(resolve_source(str(ckpt)), dropout=0.1).dropout == 0.1
    assert source_shape(resolve_source(str(ckpt / "model.safetensors"))).n_layer == 2
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "w.safetensors").write_bytes(b"x")
    assert source_shape(resolve_source(str(lone / "w.safetensors"))) is None


def test_memory_estimate_shape_of_a_run_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(tmp_path))
    checkpoint(tmp_path / "myrun" / "checkpoints" / "checkpoint-3")
    (tmp_path / "myrun" / "status.json").write_text(json.dumps({"state": "running"}))
    shape, label = model_shape("myrun")
    assert (shape.n_embd, label) == (64, "myrun")
    (tmp_path / "early" / "checkpoints").mkdir(parents=True)
    (tmp_path / "early" / "status.json").write_text(json.dumps({"state": "running"}))
    assert model_shape("early") == (None, "early: unknown until loaded")
    assert model_shape("nosuch") == (None, "'nosuch' is not a preset and not a file")
    assert model_shape(" tiny")[0].context_length == PRESETS["tiny"].context_length


def test_resolving_does_not_import_torch(tmp_path):
    checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint-1")
    code = ("import sys; from tui_ft.model.sources import resolve_source; "
            "from tui_ft.runs.run_source import run_checkpoint; "
            f"resolve_source({str(tmp_path / 'run')!r}, runs=run_checkpoint); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
