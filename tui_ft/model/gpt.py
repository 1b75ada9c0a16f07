"""GPT-2 in PyTorch: the architecture of OpenAI's GPT-2 (pre-LayerNorm blocks, GELU
with the tanh approximation, learned positions, tied input/output embeddings), with
attention through `scaled_dot_product_attention` and a static KV cache for
generation. Parameter names follow Hugging Face's GPT-2 so weights map one to one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .shape import GPTConfig  # noqa: F401  (re-exported: the model's config lives with it)


class KVCache:
    """Preallocated keys and values for every layer: (batch, heads, max_len, head_dim).
    `length` is how many positions are filled. A static shape keeps decoding free of
    reallocation (and friendly to CUDA graphs)."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int,
                 device, dtype) -> None:
        if max_len > config.context_length:
            raise ValueError(f"cache length {max_len} exceeds the model's context "
                             f"({config.context_length})")
        shape = (batch_size, config.n_head, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0
        self.max_len = max_len
        # Static decoding (fixed shapes, e.g. for a CUDA graph): a (T,) tensor of the
        # cache positions the next call writes, and attention then runs over the whole
        # cache under the caller's mask; `length` is left alone.
        self.write_at: torch.Tensor | None = None

    def reorder(self, index: torch.Tensor) -> None:
        """Keep only the batch rows in `index` (finished sequences dropped)."""
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0
        if cache is not None and cache.write_at is not None:
            cache.k[layer].index_copy_(2, cache.write_at, k)
            cache.v[layer].index_copy_(2, cache.write_at, v)
            k, v = cache.k[layer], cache.v[layer]
        elif cache is not None:
            start = cache.length
            cache.k[layer][:, :, start:start + T] = k
            cache.v[layer][:, :, start:start + T] = v
            k = cache.k[layer][:, :, :start + T]
            v = cache.v[layer][:, :, :start + T]
        if _is_block_mask(attn_mask):
            # Packed rows under torch.compile: block-sparse attention that skips the
            # blocks no document reaches (no dropout in flex attention: the trainer
            # uses it only at dropout 0).
            from torch.nn.attention.flex_attention import flex_attention

            y = flex_attention(q, k, v, block_mask=attn_mask)
        elif attn_mask is None and k.size(2) > T:
            # Continuing a cache: SDPA's is_causal aligns the mask top-left (query i
            # would see only keys 0..i), so the queries, which sit at the end, need
            # the bottom-right alignment written out; one query may see every key.
            if T > 1:
                attn_mask = torch.ones(T, k.size(2), dtype=torch.bool,
                                       device=x.device).tril(diagonal=k.size(2) - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        elif attn_mask is None:
            # Causal over the block itself: the flash / memory-efficient kernels.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.context_length, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden_states(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                      attn_mask: torch.Tensor | None = None,
                      cache: KVCache | None = None,
                      document_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The final (normalised) hidden states, before the output projection.
        `document_ids` (batch x time) is for packed rows: each token attends only to
        earlier tokens of its own document (pass the positions restarting at each
        document too), so a row of several documents computes what each would alone."""
        B, T = input_ids.shape
        static = cache is not None and cache.write_at is not None
        if static and (position_ids is None or attn_mask is None):
            raise ValueError("a static cache needs explicit position_ids and attn_mask")
        if document_ids is not None:
            if attn_mask is not None or cache is not None:
                raise ValueError("document_ids builds the attention mask itself: pass "
                                 "neither attn_mask nor a cache with it")
            attn_mask = document_mask(document_ids)
        start = cache.length if cache is not None and not static else 0
        if start + T > self.config.context_length:
            raise ValueError(f"sequence of {start + T} tokens exceeds the model's context "
                             f"({self.config.context_length})")
        if position_ids is None:
            position_ids = torch.arange(start, start + T, device=input_ids.device).unsqueeze(0)
        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))
        checkpointing = (self.config.activation_checkpointing and self.training
                         and cache is None and torch.is_grad_enabled())
        for i, block in enumerate(self.h):
            if checkpointing:
                x = torch.utils.checkpoint.checkpoint(block, x, attn_mask, None, i,
                                                      use_reentrant=False)
            else:
                x = block(x, attn_mask, cache, i)
        if cache is not None and not static:
            cache.length = start + T
        return self.ln_f(x)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None,
                cache: KVCache | None = None,
                document_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, time, vocab). Without `attn_mask` attention is causal; with
        one (boolean, True = may attend, broadcastable to batch x 1 x T x keys) the
        mask alone decides, e.g. causal plus left padding in generation."""
        return self.lm_head(self.hidden_states(input_ids, position_ids, attn_mask, cache,
                                               document_ids))


def _is_block_mask(mask) -> bool:
    return mask is not None and type(mask).__name__ == "BlockMask"


def flex_document_mask(document_ids: torch.Tensor):
    """The same causal-within-each-document mask as `document_mask`, as a flex
    attention BlockMask: blocks of 128 x 128 that no document spans are skipped, so
    packed rows of short documents cost attention for their documents only, not for
    T x T. Build it outside compiled code and pass it as `attn_mask`."""
    from torch.nn.attention.flex_attention import create_block_mask

    B, T = document_ids.shape

    def same_document_causal(b, h, q, k):
        return (k <= q) & (document_ids[b, q] == document_ids[b, k])

    return create_block_mask(same_document_causal, B, None, T, T,
                             device=document_ids.device)


def flex_attention_available(device) -> bool:
    """Whether packed rows should use flex attention on `device`: CUDA (where its
    kernels are generated by torch.compile) and a torch that has it."""
    if torch.device(device).type != "cuda":
        return False
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def document_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """Causal attention within each document of packed rows: (batch, 1, T, T), True
    where query i may attend to key j (j <= i and both in the same document). Every
    query sees at least itself, so no row of the softmax is empty."""
    T = document_ids.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()
    same = document_ids.unsqueeze(2) == document_ids.unsqueeze(1)
    return (same & causal).unsqueeze(1)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100 (labels are
    already aligned with the logits: labels[i] is the token after input i)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=-100)
