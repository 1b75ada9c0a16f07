"""How Hugging Face's GPT-2 files name and lay out tensors, configs and the tokenizer,
and how ours map onto them. Plain functions over names, shapes and dicts: no torch
import here."""

from __future__ import annotations

import json
import re

# HF's GPT-2 uses Conv1D, whose weight is (in, out); ours are nn.Linear, (out, in).
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                   "mlp.c_proj.weight")
HF_PREFIX = "transformer."
# Causal-mask buffers that older transformers versions (and the hub's gpt2 files)
# store inside each block. Only exactly these: `h.N.attn.c_attn.bias` is a weight.
_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_BLOCK = re.compile(r"^h\.(\d+)\.")

EOT_TOKEN_ID = 50256
# The config.json keys whose meaning our GPT follows; anything else changes the maths.
REQUIRED_CONFIG_KEYS = ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size",
                        "layer_norm_epsilon")
# Activations that equal GPT-2's tanh-approximated GELU (what our MLP computes).
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")


class HFLayoutError(ValueError):
    """A Hugging Face config or key that our GPT-2 cannot represent (the caller adds
    the file name)."""


def is_conv1d(our_key: str) -> bool:
    return our_key.endswith(CONV1D_SUFFIXES)


def is_mask_buffer(key: str) -> bool:
    """True for the attention-mask buffers some HF files carry (not weights)."""
    return bool(_MASK_BUFFER.match(strip_prefix(key)))


def strip_prefix(key: str) -> str:
    return key[len(HF_PREFIX):] if key.startswith(HF_PREFIX) else key


def block_index(our_key: str) -> int | None:
    match = _BLOCK.match(our_key)
    return int(match.group(1)) if match else None


def config_kwargs_from_hf(data: dict) -> dict:
    """GPTConfig keyword arguments from a Hugging Face GPT-2 config.json."""
    if not isinstance(data, dict):
        raise HFLayoutError("is not a JSON object")
    model_type = data.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise HFLayoutError(f"describes a '{model_type}' model; tui-ft loads GPT-2 "
                            f"(model_type 'gpt2') only")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in data]
    if missing:
        raise HFLayoutError(f"lacks the GPT-2 key(s) {', '.join(missing)}")
    for key in REQUIRED_CONFIG_KEYS:
        value = data[key]
        wanted = float if key == "layer_norm_epsilon" else int
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                wanted is int and not isinstance(value, int)):
            raise HFLayoutError(f"has {key} = {value!r}; expected a number")
    activation = data.get("activation_function", "gelu_new")
    if activation not in SUPPORTED_ACTIVATIONS:
        raise HFLayoutError(f"uses activation_function '{activation}'; tui-ft's GPT-2 "
                            f"computes {' / '.join(SUPPORTED_ACTIVATIONS)}")
    n_inner = data.get("n_inner")
    if n_inner not in (None, 4 * data["n_embd"]):
        raise HFLayoutError(f"has n_inner = {n_inner}; tui-ft's GPT-2 uses 4 * n_embd "
                            f"({4 * data['n_embd']})")
    # These switch GPT-2's attention to a different formula; our logits would differ.
    if data.get("scale_attn_by_inverse_layer_idx"):
        raise HFLayoutError("sets scale_attn_by_inverse_layer_idx, which tui-ft's GPT-2 "
                            "does not implement")
    if data.get("scale_attn_weights") is False:
        raise HFLayoutError("sets scale_attn_weights to false, which tui-ft's GPT-2 does "
                            "not implement")
    if data.get("tie_word_embeddings") is False:
        raise HFLayoutError("sets tie_word_embeddings to false; tui-ft's GPT-2 ties the "
                            "output layer to the token embeddings")
    return {
        "vocab_size": data["vocab_size"],
        "context_length": data["n_positions"],
        "n_embd": data["n_embd"],
        "n_layer": data["n_layer"],
        "n_head": data["n_head"],
        "layer_norm_eps": float(data["layer_norm_epsilon"]),
    }


def hf_config(config, dtype_name: str = "float32") -> dict:
    """config.json for `GPT2LMHeadModel.from_pretrained`, from a GPTConfig."""
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        # Older readers (and some tools) look for the context under its old name.
        "n_ctx": config.context_length,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": config.layer_norm_eps,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": EOT_TOKEN_ID,
        "eos_token_id": EOT_TOKEN_ID,
        "torch_dtype": dtype_name,
    }


def hf_generation_config(config) -> dict:
    return {
        "bos_token_id": EOT_TOKEN_ID,
        "eos_token_id": EOT_TOKEN_ID,
        # GPT-2 has no padding token; batched generation pads with <|endoftext|>, as
        # tui-ft's batches do.
        "pad_token_id": EOT_TOKEN_ID,
        "max_length": config.context_length,
    }


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, as its vocab.json and merges.txt spell
    tokens: printable Latin-1 bytes stand for themselves, the other 68 for chr(256 + n)
    (a space is "\u0120", Ġ)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1),
            *range(ord("\xae"), ord("\xff") + 1)]
    table = {b: chr(b) for b in keep}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that makes each token of rank >= 256, in rank order (merges.txt's
    order). A .tiktoken file keeps only the merged tokens; the pair that makes one is
    what byte-pair encoding of its bytes with the lower ranks leaves."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if rank < 256:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2:
            raise HFLayoutError(f"token {rank} ({token!r}) is no merge of two lower-ranked "
                                f"tokens: the rank file is not a byte-pair encoding")
        merges.append((parts[0], parts[1]))
    return merges


def hf_tokenizer_files(ranks: dict[bytes, int], special: dict[str, int],
                       context_length: int) -> dict[str, bytes]:
    """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json of a
    GPT-2 byte-level BPE, for `AutoTokenizer.from_pretrained` (offline: nothing else is
    fetched). `special` maps each special token to its id; the first is GPT-2's
    <|endoftext|>, which begins, ends and stands for unknown text."""
    spell = byte_to_unicode()

    def word(token: bytes) -> str:
        return "".join(spell[b] for b in token)

    vocab = {word(token): rank for token, rank in sorted(ranks.items(), key=lambda i: i[1])}
    vocab.update(special)
    merges = "".join(f"{word(a)} {word(b)}\n" for a, b in bpe_merges(ranks))
    eot = next(iter(special))
    tokens = {"bos_token": eot, "eos_token": eot, "unk_token": eot}
    config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": context_length,
              "add_prefix_space": False, "add_bos_token": False, "errors": "replace",
              **tokens}
    return {
        "vocab.json": (json.dumps(vocab, ensure_ascii=False) + "\n").encode(),
        "merges.txt": ("#version: 0.2\n" + merges).encode(),
        "tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "special_tokens_map.json": (json.dumps(tokens, indent=2) + "\n").encode(),
    }


def to_hf_state_dict(state_dict: dict) -> dict:
    """Our state dict (our names, Linear layout) as `save_pretrained` writes it:
    `transformer.` names, Conv1D layout, contiguous tensors, the tied output layer
    left out (HF stores it once, as the token embeddings)."""
    out = {}
    for key, tensor in state_dict.items():
        if key == "lm_head.weight":
            continue
        tensor = tensor.detach()
        if is_conv1d(key):
            tensor = tensor.t()
        out[HF_PREFIX + key] = tensor.contiguous()
    return out
