"""load_model on every kind of source (presets, tui-ft checkpoints, runs, Hugging Face
folders and files, the HF hub cache), save_checkpoint_weights, and every way a weights
file can be wrong: each must end in a WeightsError that names the file and the fix."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tui_ft.errors import TuiFtError
from tui_ft.model.gpt import GPT, GPTConfig
from tui_ft.model.presets import PRESETS, Preset, TINY_INIT_SEED
from tui_ft.model.pretrained import find_pretrained, pretrained_cache_path
from tui_ft.model.sources import WeightsError
from tui_ft.model.weights import ModelInfo, load_model, save_checkpoint_weights
from tui_ft.runs.run_source import run_checkpoint

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
SMALL = GPTConfig(vocab_size=1000, context_length=64, n_embd=64, n_layer=2, n_head=4)
IDS = torch.randint(0, 1000, (2, 40), generator=torch.Generator().manual_seed(7))


def make_model(config: GPTConfig = SMALL, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():  # non-trivial biases and norms, so that a swap would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def logits(model: GPT, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


def hf_tensors(model: GPT, *, prefix: bool = True, lm_head: bool = False,
               mask_buffers: bool = False) -> dict:
    """The state dict as Hugging Face files hold it (written out here, not through
    tui_ft's own converter): Conv1D weights transposed, `transformer.` names from
    save_pretrained or bare ones as on the hub, optional lm_head and mask buffers."""
    out = {}
    pre = "transformer." if prefix else ""
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        t = tensor.t() if key.endswith(CONV1D) else tensor
        out[pre + key] = t.contiguous().clone()
    if lm_head:
        out["lm_head.weight"] = model.wte.weight.detach().clone()
    if mask_buffers:
        n = model.config.context_length
        for i in range(model.config.n_layer):
            out[f"{pre}h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
            out[f"{pre}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return out


def hf_config(config: GPTConfig) -> dict:
    return {"model_type": "gpt2", "n_embd": config.n_embd, "n_layer": config.n_layer,
            "n_head": config.n_head, "n_positions": config.context_length,
            "vocab_size": config.vocab_size, "layer_norm_epsilon": config.layer_norm_eps,
            "activation_function": "gelu_new"}


def write_hf_folder(folder: Path, model: GPT, tensors: dict | None = None,
                    config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or hf_config(model.config)))
    save_file(tensors if tensors is not None else hf_tensors(model),
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def small_model() -> GPT:
    return make_model()


# ------------------------------------------------------------------- tui-ft checkpoints


def test_checkpoint_round_trip(small_model, tmp_path):
    folder = tmp_path / "checkpoint-7"
    path = save_checkpoint_weights(small_model, folder)
    assert path == folder / "model.safetensors"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors",
                                                        "model_config.json"]
    assert json.loads((folder / "model_config.json").read_text()) == SMALL.to_dict()
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        assert f.get_slice("h.0.attn.c_attn.weight").get_shape() == [192, 64]  # Linear
    assert keys == set(small_model.state_dict()) - {"lm_head.weight"}  # tied: stored once

    model, info = load_model(folder)  # a Path works as well as a str
    assert info.kind == "checkpoint" and info.checkpoint == "checkpoint-7"
    assert info.weights_path == path and info.config == SMALL
    assert isinstance(info, ModelInfo)
    assert not model.training
    assert model.lm_head.weight is model.wte.weight
    assert next(model.parameters()).dtype == torch.float32
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)

    # The model owns its memory: training it in place leaves the file alone.
    before = path.read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert path.read_bytes() == before


def test_checkpoint_overwrite_is_atomic_and_leaves_no_temp_files(small_model, tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint_weights(make_model(seed=5), folder)
    save_checkpoint_weights(small_model, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors",
                                                        "model_config.json"]
    model, _ = load_model(str(folder))
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)


def test_dtype_and_device(small_model, tmp_path):
    save_checkpoint_weights(small_model, tmp_path / "c")
    model, _ = load_model(str(tmp_path / "c"), dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    model, _ = load_model(str(tmp_path / "c"), dtype="fp16")
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_run_folder_picks_best_else_last(tmp_path, monkeypatch):
    run = tmp_path / "run"
    models = {n: make_model(seed=n) for n in (10, 20)}
    for n, m in models.items():
        save_checkpoint_weights(m, run / "checkpoints" / f"checkpoint-{n}")
    # A checkpoint still being written (temporary name) is never picked.
    save_checkpoint_weights(make_model(seed=99), run / "checkpoints" / "checkpoint-30.tmp")

    model, info = load_model(str(run), runs=run_checkpoint)
    assert info.kind == "run" and info.checkpoint == "checkpoint-20"
    torch.testing.assert_close(logits(model), logits(models[20]), rtol=0, atol=0)

    for best in ("checkpoint-10", "checkpoints/checkpoint-10",
                 str(run / "checkpoints" / "checkpoint-10"), 10):
        (run / "status.json").write_text(json.dumps({"state": "finished",
                                                     "best_checkpoint": best}))
        model, info = load_model(str(run), runs=run_checkpoint)
        assert info.checkpoint == "checkpoint-10", best
    torch.testing.assert_close(logits(model), logits(models[10]), rtol=0, atol=0)
    _, info = load_model(str(run / "checkpoints"), runs=run_checkpoint)
    assert info.checkpoint == "checkpoint-10"

    # A run is also found by its name in the runs folder.
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(tmp_path))
    _, info = load_model("run", runs=run_checkpoint)
    assert info.kind == "run" and info.checkpoint == "checkpoint-10"


def test_run_without_checkpoints_says_so(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(WeightsError, match="no checkpoint yet"):
        load_model(str(tmp_path / "run"), runs=run_checkpoint)


def test_a_run_is_a_run_only_through_the_run_layers_lookup(tmp_path):
    """The model layer does not know runs: without the lookup a run folder holds no
    model it can read, and a run's name is no model."""
    save_checkpoint_weights(make_model(), tmp_path / "run" / "checkpoints" / "checkpoint-1")
    with pytest.raises(WeightsError, match="holds no model"):
        load_model(str(tmp_path / "run"))


# -------------------------------------------------------------- Hugging Face layout


@pytest.mark.parametrize("prefix", [True, False], ids=["transformer.", "bare"])
@pytest.mark.parametrize("lm_head", [True, False], ids=["lm_head", "no-lm_head"])
@pytest.mark.parametrize("mask_buffers", [True, False], ids=["buffers", "no-buffers"])
def test_hf_folder_variants(small_model, tmp_path, prefix, lm_head, mask_buffers):
    tensors = hf_tensors(small_model, prefix=prefix, lm_head=lm_head,
                         mask_buffers=mask_buffers)
    folder = write_hf_folder(tmp_path / "hf", small_model, tensors)
    model, info = load_model(str(folder))
    assert info.kind == "hf-folder" and info.config == SMALL
    assert model.lm_head.weight is model.wte.weight
    assert all(p.is_contiguous() for p in model.parameters())  # Conv1D transposed for real
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)


def test_hf_folder_with_pytorch_model_bin(small_model, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config(SMALL)))
    torch.save(hf_tensors(small_model, mask_buffers=True), folder / "pytorch_model.bin")
    model, _ = load_model(str(folder))
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)


def test_hf_folder_sharded(small_model, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config(SMALL)))
    tensors = hf_tensors(small_model)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model, _ = load_model(str(folder))
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)


def test_safetensors_file_config_from_sibling_config_json(small_model, tmp_path):
    folder = write_hf_folder(tmp_path / "hf", small_model)
    model, info = load_model(str(folder / "model.safetensors"))
    assert info.kind == "safetensors-file" and info.config.n_head == 4
    assert info.config == SMALL
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)


def test_safetensors_file_config_from_shapes(tmp_path):
    """No config beside the file: n_layer, n_embd, vocab and context come from the
    shapes; n_head from the preset of that width (128 -> tiny's 4), else 64-wide heads."""
    preset_width = make_model(GPTConfig(vocab_size=500, context_length=32, n_embd=128,
                                        n_layer=3, n_head=4))
    save_file(hf_tensors(preset_width, prefix=False, mask_buffers=True),
              str(tmp_path / "a.safetensors"))
    model, info = load_model(str(tmp_path / "a.safetensors"))
    assert info.config == preset_width.config
    torch.testing.assert_close(logits(model, IDS[:, :30] % 500),
                               logits(preset_width, IDS[:, :30] % 500), rtol=0, atol=0)

    odd_width = make_model(GPTConfig(vocab_size=500, context_length=32, n_embd=192,
                                     n_layer=1, n_head=3))
    save_file(hf_tensors(odd_width), str(tmp_path / "b.safetensors"))
    _, info = load_model(str(tmp_path / "b.safetensors"))
    assert (info.config.n_head, info.config.n_layer, info.config.n_embd) == (3, 1, 192)


def test_our_checkpoint_file_is_recognised_alone(small_model, tmp_path):
    save_checkpoint_weights(small_model, tmp_path / "c")
    model, info = load_model(str(tmp_path / "c" / "model.safetensors"))
    assert info.kind == "safetensors-file" and info.config == SMALL
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)


# ------------------------------------------------------------------------ bad input


def expect_error(source, *fragments):
    with pytest.raises(WeightsError) as info:
        load_model(str(source))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, TuiFtError)
    return message


def test_wrong_shape_names_key_expected_and_actual(small_model, tmp_path):
    tensors = hf_tensors(small_model)
    tensors["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 255)
    folder = write_hf_folder(tmp_path / "hf", small_model, tensors)
    expect_error(folder, str(folder / "model.safetensors"), "'transformer.h.1.mlp.c_fc.weight'",
                 "[64, 255]", "expected [64, 256]", "config.json")


def test_integer_tensor_is_refused(small_model, tmp_path):
    tensors = hf_tensors(small_model)
    tensors["transformer.ln_f.bias"] = torch.zeros(64, dtype=torch.int64)
    folder = write_hf_folder(tmp_path / "hf", small_model, tensors)
    expect_error(folder, "'transformer.ln_f.bias'", "I64", "floating-point")


def test_missing_and_unexpected_keys(small_model, tmp_path):
    tensors = hf_tensors(small_model)
    del tensors["transformer.h.1.attn.c_attn.bias"]  # a weight, not the mask buffer
    folder = write_hf_folder(tmp_path / "missing", small_model, tensors)
    expect_error(folder, "missing", "'h.1.attn.c_attn.bias'")

    tensors = hf_tensors(small_model)
    tensors["transformer.h.2.ln_1.weight"] = torch.ones(64)
    folder = write_hf_folder(tmp_path / "unexpected", small_model, tensors)
    expect_error(folder, "unexpected", "'transformer.h.2.ln_1.weight'")


def test_untied_output_layer_is_refused(small_model, tmp_path):
    tensors = hf_tensors(small_model, lm_head=True)
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    folder = write_hf_folder(tmp_path / "hf", small_model, tensors)
    expect_error(folder, "'lm_head.weight'", "ties")


@pytest.mark.parametrize("change, fragment", [
    ({"model_type": "llama"}, "'llama'"),
    ({"n_head": None}, "n_head"),
    ({"activation_function": "relu"}, "relu"),
])
def test_bad_config_json(small_model, tmp_path, change, fragment):
    config = {**hf_config(SMALL), **change}
    config = {k: v for k, v in config.items() if v is not None}
    folder = write_hf_folder(tmp_path / "hf", small_model, config=config)
    expect_error(folder, str(folder / "config.json"), fragment)


def test_truncated_file(small_model, tmp_path):
    folder = write_hf_folder(tmp_path / "hf", small_model)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(folder, str(path), "truncated or corrupt")
    expect_error(path, str(path), "truncated or corrupt")


def test_random_bytes_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(4096))
    expect_error(path, str(path), "not a readable safetensors file")


class Payload:
    """Unpickling this runs code (writes a marker file): the classic pickle attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def test_malicious_pickle_is_never_run(small_model, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config(SMALL)))
    tensors = hf_tensors(small_model)
    tensors["transformer.wte.weight"] = Payload(marker)
    torch.save(tensors, folder / "pytorch_model.bin")
    expect_error(folder, str(folder / "pytorch_model.bin"), "never unpickles", "exec")
    assert not marker.exists()


def test_unknown_source_lists_presets():
    message = expect_error("no-such-model", "'no-such-model'")
    for name in PRESETS:
        assert name in message


def test_folder_without_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    expect_error(tmp_path, str(tmp_path), "holds no model")


def test_other_file_types_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    expect_error(path, str(path), ".safetensors")


# -------------------------------------------------------------------- pretrained cache


def made_up_preset(data: bytes, **changes) -> Preset:
    fields = dict(name="test-gpt", n_layer=SMALL.n_layer, n_head=SMALL.n_head,
                  n_embd=SMALL.n_embd, context_length=SMALL.context_length,
                  vocab_size=SMALL.vocab_size, hub_repo="openai-community/test-gpt",
                  revision="c0ffee", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    fields.update(changes)
    return Preset(**fields)


def hub_file_bytes(model: GPT, tmp_path: Path) -> bytes:
    path = tmp_path / "hub-file.safetensors"
    save_file(hf_tensors(model, prefix=False, mask_buffers=True), str(path),
              metadata={"format": "pt"})
    return path.read_bytes()


def put_in_hub_cache(hub: Path, repo_dir: str, revision: str, data: bytes, *,
                     symlink: bool = True, ref: str | None = None) -> Path:
    """The layout huggingface_hub writes: blobs named by sha256, snapshots linking to them."""
    root = hub / repo_dir
    snapshot = root / "snapshots" / revision / "model.safetensors"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    if symlink:
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    else:
        snapshot.write_bytes(data)
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text(ref)
    return snapshot


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty HF cache and no network: anything found was found locally."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TUI_FT_HUB_URL", "http://127.0.0.1:9")  # never asked
    return tmp_path / "hf-home" / "hub"


def test_hub_cache_discovery(small_model, tmp_path, no_network, monkeypatch):
    data = hub_file_bytes(small_model, tmp_path)
    preset = made_up_preset(data)
    assert find_pretrained(preset) is None
    snapshot = put_in_hub_cache(no_network, "models--openai-community--test-gpt", "c0ffee", data)
    assert find_pretrained(preset) == snapshot
    model, info = load_model(preset, download=False)
    assert info.kind == "preset-pretrained" and info.weights_path == snapshot
    torch.testing.assert_close(logits(model), logits(small_model), rtol=0, atol=0)

    # HF_HUB_CACHE wins over HF_HOME.
    other = tmp_path / "elsewhere"
    moved = put_in_hub_cache(other, "models--openai-community--test-gpt", "c0ffee", data)
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    assert find_pretrained(preset) == moved


def test_hub_cache_legacy_name_and_any_snapshot(small_model, tmp_path, no_network):
    data = hub_file_bytes(small_model, tmp_path)
    preset = made_up_preset(data)
    # The pre-2024 repository name, under another revision than the pinned one,
    # copied rather than linked: accepted after hashing.
    snapshot = put_in_hub_cache(no_network, "models--test-gpt", "0ld", data, symlink=False)
    assert find_pretrained(preset) == snapshot


def test_hub_cache_wrong_file_is_skipped_and_reported(small_model, tmp_path, no_network):
    data = hub_file_bytes(small_model, tmp_path)
    preset = made_up_preset(data)
    other = hub_file_bytes(make_model(seed=3), tmp_path)
    assert len(other) == len(data)
    bad = put_in_hub_cache(no_network, "models--openai-community--test-gpt", "c0ffee", other)
    assert find_pretrained(preset) is None
    message = expect_error_preset(preset)
    assert str(bad) in message and hashlib.sha256(other).hexdigest() in message


def test_hub_cache_unpinned_prefers_refs_main(tmp_path, no_network):
    old, new = make_model(seed=1), make_model(seed=2)
    repo = "models--openai-community--test-gpt"
    put_in_hub_cache(no_network, repo, "aaa", hub_file_bytes(old, tmp_path))
    wanted = put_in_hub_cache(no_network, repo, "bbb", hub_file_bytes(new, tmp_path),
                              ref="bbb")
    os.utime(wanted.parent, (1, 1))  # older than "aaa": refs/main decides, not the date
    preset = made_up_preset(b"", revision="main", size=None, sha256=None)
    assert find_pretrained(preset) == wanted


def test_our_cache_file_placed_by_hand_is_verified_once(small_model, tmp_path, no_network):
    data = hub_file_bytes(small_model, tmp_path)
    preset = made_up_preset(data)
    dest = pretrained_cache_path(preset)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)
    assert find_pretrained(preset) == dest
    assert json.loads(dest.with_name("model.safetensors.verified").read_text())["sha256"] \
        == preset.sha256
    _, info = load_model(preset)
    assert info.weights_path == dest

    dest.write_bytes(hub_file_bytes(make_model(seed=4), tmp_path))  # same size, other bytes
    assert find_pretrained(preset) is None


def expect_error_preset(preset, **kwargs) -> str:
    with pytest.raises(WeightsError) as info:
        load_model(preset, **kwargs)
    return str(info.value)


def test_real_gpt2_missing_offline_is_one_clear_error(no_network, isolated_cache):
    message = expect_error_preset(PRESETS["gpt2"])
    gpt2 = PRESETS["gpt2"]
    assert "model.safetensors" in message
    assert (f"https://huggingface.co/openai-community/gpt2/resolve/{gpt2.revision}/"
            "model.safetensors") not in message  # TUI_FT_HUB_URL is honoured...
    assert f"http://127.0.0.1:9/openai-community/gpt2/resolve/{gpt2.revision}/" \
           "model.safetensors" in message
    expected_path = isolated_cache / "models" / "gpt2" / gpt2.revision / "model.safetensors"
    assert str(expected_path) in message
    assert "--model /path/to/model.safetensors" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert str(no_network) in message  # says where it looked


def test_real_gpt2_download_false(no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TUI_FT_HUB_URL")
    message = expect_error_preset(PRESETS["gpt2"], download=False)
    assert "downloading was not allowed" in message
    assert "https://huggingface.co/openai-community/gpt2/resolve/" in message


@pytest.fixture
def isolated_cache(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "tui-cache"
    monkeypatch.setenv("TUI_FT_CACHE_DIR", str(folder))
    return folder


# -------------------------------------------------------------------------- tiny preset


TINY_PROBE = """
import sys, torch
from tui_ft.model.weights import load_model
model, info = load_model("tiny")
ids = torch.arange(32).view(2, 16) * 97
with torch.no_grad():
    out = model(ids)
print(info.kind, torch.cat([out.flatten()[:64], out.sum().view(1)]).tolist())
"""


def test_tiny_is_the_same_in_every_process():
    procs = [subprocess.Popen([sys.executable, "-c", TINY_PROBE], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("preset-random [")
    here, _ = load_model("tiny")
    ids = torch.arange(32).view(2, 16) * 97
    with torch.no_grad():
        out = here(ids)
    values = json.loads(outputs[0].split(" ", 1)[1])
    torch.testing.assert_close(torch.tensor(values[:64]), out.flatten()[:64], rtol=0, atol=0)


def test_tiny_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    model, info = load_model("tiny")
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(5), expected)
    assert info.kind == "preset-random" and info.weights_path is None
    assert info.config == GPTConfig(**PRESETS["tiny"].config_dict())
    assert not model.training and model.lm_head.weight is model.wte.weight


def test_tiny_seed_is_the_presets_seed():
    torch.manual_seed(TINY_INIT_SEED)
    reference = GPT(GPTConfig(**PRESETS["tiny"].config_dict()))
    model, _ = load_model("tiny")
    torch.testing.assert_close(model.state_dict(), reference.state_dict(), rtol=0, atol=0)


def test_weights_and_download_modules_do_not_import_torch():
    """The UI can ask whether weights are cached, and `export` can refuse an OUT_DIR,
    without paying for torch."""
    code = ("import sys, tui_ft.model.weights, tui_ft.model.download, "
            "tui_ft.model.pretrained, tui_ft.model.tensors, tui_ft.model.export; "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
