"""`tui-ft export SOURCE OUT_DIR`, run for real in a subprocess, for a preset, a tui-ft
checkpoint and a Hugging Face folder: the folder it writes loads in
`GPT2LMHeadModel.from_pretrained` with no missing or unexpected weights and gives our
logits, and its tokenizer files load offline in `AutoTokenizer.from_pretrained` and give
tiktoken's ids; an existing non-empty OUT_DIR is refused untouched; the write is atomic."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

transformers = pytest.importorskip("transformers")

from tui_ft.model.gpt import GPT, GPTConfig  # noqa: E402
from tui_ft.model.export import export_hf  # noqa: E402
from tui_ft.model.sources import WeightsError  # noqa: E402
from tui_ft.model.weights import load_model, save_checkpoint_weights  # noqa: E402

TOKENIZER_FILES = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json",
                   "vocab.json"]
FILES = sorted(["config.json", "generation_config.json", "model.safetensors",
                *TOKENIZER_FILES])


def export(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", "export", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def small_model(seed: int) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(context_length=128, n_embd=64, n_layer=2, n_head=2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture
def transformers_log():
    """What transformers logs at WARNING and above (its logger does not propagate, so
    caplog would see nothing)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("sources")
    save_checkpoint_weights(small_model(1), base / "run" / "checkpoints" / "checkpoint-5")
    config = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=96)
    torch.manual_seed(2)
    hf = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(base / "hf")
    return {"tiny": "tiny", "checkpoint": str(base / "run" / "checkpoints" / "checkpoint-5"),
            "hf": str(base / "hf")}


@pytest.mark.parametrize("kind", ["tiny", "checkpoint", "hf"])
def test_export_loads_in_transformers_with_our_logits(sources, tmp_path, kind,
                                                     transformers_log):
    out = tmp_path / "exported"
    proc = export(sources[kind], out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # no temp folder left
    for name in FILES:
        assert name in proc.stdout
    assert "MB" in proc.stdout and "GPT2LMHeadModel.from_pretrained" in proc.stdout
    assert "AutoTokenizer.from_pretrained" in proc.stdout

    ours, info = load_model(sources[kind])
    c = info.config
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["n_embd"], config["n_layer"], config["n_head"]) == (c.n_embd, c.n_layer,
                                                                        c.n_head)
    assert config["n_positions"] == config["n_ctx"] == c.context_length
    assert config["vocab_size"] == 50257
    assert config["layer_norm_epsilon"] == c.layer_norm_eps
    assert config["activation_function"] == "gelu_new"
    assert config["bos_token_id"] == config["eos_token_id"] == 50256
    assert {config[k] for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")} == {c.dropout}
    assert config["tie_word_embeddings"] is True
    assert config["torch_dtype"] == "float32"
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 50256, "eos_token_id": 50256,
                          "pad_token_id": 50256, "max_length": c.context_length}

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        keys = set(f.keys())
        shape = f.get_slice("transformer.h.0.mlp.c_fc.weight").get_shape()
    assert keys == {"transformer." + k for k in ours.state_dict() if k != "lm_head.weight"}
    assert shape == [c.n_embd, 4 * c.n_embd]  # Conv1D: (in, out)

    reference, loading = transformers.GPT2LMHeadModel.from_pretrained(
        out, output_loading_info=True)
    assert not any(loading.values()), loading
    # transformers reports missing / unexpected / mismatched weights in a "load report".
    report = transformers_log.getvalue()
    for word in ("LOAD REPORT", "MISSING", "UNEXPECTED", "MISMATCH", "newly initialized"):
        assert word not in report, report
    reference.eval()
    assert reference.generation_config.pad_token_id == 50256
    ids = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(5))
    ids = ids[:, : min(64, c.context_length)]
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), reference(ids).logits, rtol=0, atol=1e-4)


def test_non_empty_out_dir_is_refused_and_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = export("tiny", out)
    assert proc.returncode == 1
    assert "already exists and is not empty" in proc.stderr and str(out) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_export_creates_nothing(tmp_path):
    out = tmp_path / "out"
    proc = export(tmp_path / "no-such-model", out)
    assert proc.returncode == 1
    assert "unknown model" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_api_into_empty_folder_and_refusal(tmp_path):
    model, _ = load_model("tiny")
    out = tmp_path / "empty"
    out.mkdir()
    written = export_hf(model, out)
    assert sorted(p.name for p in written) == sorted(FILES)
    assert sorted(p.name for p in out.iterdir()) == FILES
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(WeightsError, match="not empty"):
        export_hf(model, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]

    (tmp_path / "file").write_text("x")
    with pytest.raises(WeightsError, match="not a folder"):
        export_hf(model, tmp_path / "file")


def test_export_of_a_half_precision_model(tmp_path):
    model, _ = load_model("tiny", dtype=torch.bfloat16)
    export_hf(model, tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] \
        == "bfloat16"
    back, _ = load_model(str(tmp_path / "bf16"), dtype=torch.bfloat16)
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


# ------------------------------------------------------------------------ the tokenizer

# Text that exercises the GPT-2 split: contractions, runs of spaces and new lines,
# numbers, punctuation, accents, combining marks, CJK, emoji (multi-token UTF-8),
# control characters and the end-of-text token between and inside words.
TEXTS = [
    "Hello, world!", "  two leading spaces and three trailing   ", "it's we'll they're I'M",
    "numbers 1234567 3.14159 1,000,000 -42 0x1F", "tabs\tand\nnew lines\n\n\n \n",
    "naïve café — “quotes” «guillemets» Ωμέγα Привет", "e\u0301 combining \u0301x",
    "日本語のテキスト、中文文本。한국어", "emoji 🤖🎉👩‍👩‍👧 flags 🇫🇷", "\x00\x07\x1b[31m bell",
    "<|endoftext|>", "a<|endoftext|>b", "end.<|endoftext|>\n\nnext <|endoftext|>",
    "<|endoftext", "   \n  \t ", "",
]
LOAD = """\
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
texts = json.load(sys.stdin)
print(json.dumps({
    "ids": [tok(t, add_special_tokens=False)["input_ids"] for t in texts],
    "ordinary": [tok(t, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                 for t in texts],
    "eos": tok.eos_token_id, "bos": tok.bos_token_id, "vocab": len(tok),
    "max_length": tok.model_max_length, "kind": type(tok).__name__,
}))
"""


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer") / "tiny"
    proc = export("tiny", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_exported_tokenizer_gives_tiktokens_ids_offline(tiny_export, sample_data_dir):
    from tui_ft.data.tokenizer import gpt2_encoding

    records = [json.loads(line) for line in
               (sample_data_dir / "instructions.jsonl").read_text().splitlines()[:300]]
    texts = TEXTS + [r[k] for r in records for k in ("instruction", "input", "output")]
    # Offline: no network, and nothing but the folder to read from.
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tiny_export.parent / "hf-home"))
    proc = subprocess.run([sys.executable, "-c", LOAD, str(tiny_export)], input=json.dumps(texts),
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    hf = json.loads(proc.stdout)
    enc = gpt2_encoding()
    # Where the text holds <|endoftext|>, transformers reads it as the special token,
    # as tiktoken does when it is allowed; split as text, it is what tui-ft trains on.
    assert hf["ids"] == [enc.encode(t, allowed_special="all") for t in texts]
    assert hf["ordinary"] == [enc.encode_ordinary(t) for t in texts]
    assert hf["ids"][TEXTS.index("a<|endoftext|>b")] == [64, 50256, 65]
    assert hf["eos"] == hf["bos"] == 50256
    assert hf["vocab"] == 50257
    assert hf["max_length"] == 256  # the tiny model's context


def test_vocab_and_merges_are_complete(tiny_export):
    from tui_ft.data.tokenizer import gpt2_ranks

    ranks = gpt2_ranks()
    vocab = json.loads((tiny_export / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 50257 and sorted(vocab.values()) == list(range(50257))
    assert vocab["<|endoftext|>"] == 50256
    lines = (tiny_export / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version") and lines[-1] == ""
    merges = lines[1:-1]
    assert len(merges) == 50000
    by_rank = {r: t for t, r in ranks.items()}
    # GPT-2's spelling of each byte, read back from the 256 single-byte tokens.
    byte_of = {word: by_rank[rank][0] for word, rank in vocab.items() if rank < 256}
    assert len(byte_of) == 256 and vocab["\u0120"] == ranks[b" "]  # Ġ is the space
    spell = {b: word for word, b in byte_of.items()}
    assert {w: r for w, r in vocab.items() if r != 50256} == \
        {"".join(spell[b] for b in t): r for t, r in ranks.items()}
    for i, line in enumerate(merges):
        left, right = line.split(" ")
        # Merge i makes token 256 + i, from two tokens of lower rank.
        assert bytes(byte_of[c] for c in left + right) == by_rank[256 + i], (i, line)
        assert vocab[left] < 256 + i and vocab[right] < 256 + i, (i, line)
