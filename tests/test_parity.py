"""Same weights, same logits: our GPT-2 against transformers' GPT2LMHeadModel (the
reference, used only here and in test_export), fp32 on the CPU in eval mode, for the
tiny shape and for a GPT-2 small-shaped model saved with save_pretrained."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tui_ft.model.export import export_hf  # noqa: E402
from tui_ft.model.weights import load_model  # noqa: E402

ATOL = 1e-4


def reference_model(n_layer: int, n_head: int, n_embd: int, n_positions: int, seed: int):
    """A random HF GPT-2 with every parameter perturbed: HF's init leaves biases at
    zero and norms at one, which would hide a bias or norm that is mapped wrongly."""
    config = transformers.GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                     n_positions=n_positions, vocab_size=50257)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def batch(seed: int, length: int = 64) -> torch.Tensor:
    return torch.randint(0, 50257, (2, length), generator=torch.Generator().manual_seed(seed))


def assert_same_logits(ours, reference, ids) -> None:
    with torch.no_grad():
        mine = ours(ids)
        theirs = reference(ids).logits
    assert mine.shape == theirs.shape == (2, ids.shape[1], 50257)
    torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)


def test_tiny_shape_from_save_pretrained(tmp_path):
    reference = reference_model(4, 4, 128, 256, seed=11)
    reference.save_pretrained(tmp_path / "hf")
    ours, info = load_model(str(tmp_path / "hf"))
    assert info.kind == "hf-folder"
    assert (info.config.n_layer, info.config.n_head, info.config.n_embd,
            info.config.context_length) == (4, 4, 128, 256)
    assert_same_logits(ours, reference, batch(1))


def test_tiny_preset_exported_matches_reference(tmp_path):
    """The other direction: our weights, written by export_hf, read by transformers."""
    ours, _ = load_model("tiny")
    export_hf(ours, tmp_path / "out")
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    assert_same_logits(ours, reference, batch(2))


@pytest.fixture(scope="module")
def gpt2_shaped(tmp_path_factory):
    """Built and saved once: 124M parameters in GPT-2 small's shape."""
    reference = reference_model(12, 12, 768, 1024, seed=12)
    folder = tmp_path_factory.mktemp("gpt2-shaped")
    reference.save_pretrained(folder)
    return reference, folder


def test_gpt2_shape_from_save_pretrained(gpt2_shaped):
    reference, folder = gpt2_shaped
    ours, info = load_model(str(folder))
    assert (info.config.n_layer, info.config.n_head, info.config.n_embd,
            info.config.context_length, info.config.vocab_size) == (12, 12, 768, 1024, 50257)
    assert_same_logits(ours, reference, batch(3))
    # The end of the learned position table too, without a 1024-token forward.
    ids = batch(4, length=16)
    positions = torch.arange(1008, 1024).expand(2, 16)
    with torch.no_grad():
        tail_ours = ours(ids, position_ids=positions)
        tail_ref = reference(ids, position_ids=positions).logits
    torch.testing.assert_close(tail_ours, tail_ref, rtol=0, atol=ATOL)
