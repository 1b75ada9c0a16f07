"""The training batch pipeline: encoded examples (or packed rows) to device batches,
with widths chosen so that compiled code and the CPU's bf16 kernels see few shapes."""

from __future__ import annotations

from ..config import TrainConfig
from ..data.batches import Example, Pack, collate, collate_packed, pack_examples

# bf16 on the CPU: batch widths and the loss's rows rounded up to these (Collator).
CPU_BF16_WIDTH_MULTIPLE = 16
CPU_BF16_TARGETS_MULTIPLE = 64


def item_length(item: Example | Pack) -> int:
    """Tokens of an example or of a packed row (padding not counted)."""
    return item.length if isinstance(item, Pack) else len(item.input_ids)


def pack(train: list[Example], max_length: int, seed: int) -> tuple[list[Pack], dict]:
    """Rows of `max_length` packed from the examples, and the 'packing' event's fields."""
    packs = pack_examples(train, max_length, seed=seed)
    tokens = sum(p.length for p in packs)
    return packs, {"rows": len(packs), "examples": len(train), "row_length": max_length,
                   "fill": round(tokens / max(1, len(packs) * max_length), 4)}


class Collator:
    """Makes a device batch of examples or packed rows, as the run's config asks."""

    def __init__(self, config: TrainConfig, device, max_length: int) -> None:
        self.config, self.device, self.max_length = config, device, max_length

    def __call__(self, items: list, *, pin: bool = False) -> dict:
        c = self.config
        # bf16 on the CPU runs its matmuls through oneDNN, which builds and caches a
        # kernel (with buffers) for every new shape: with a shape per batch width and
        # per count of learned tokens, its cache grew the process by 20-65 MB a step
        # (100 steps of W1: tiny 0.65 to 2.5 GB, gpt2 2.4 to 9 GB). Widths rounded to
        # 16 (the rows of an AMX tile) and the loss's rows to 64 keep the shapes few:
        # the same runs stay flat (0.9 and 3.2 GB) and are faster, kernels reused.
        cpu_bf16 = self.device.type == "cpu" and c.bf16
        targets_multiple = CPU_BF16_TARGETS_MULTIPLE if cpu_bf16 else None
        if items and isinstance(items[0], Pack):
            return collate_packed(items, width=self.max_length, device=self.device,
                                  pin_memory=pin, targets_multiple=targets_multiple)
        # Compiled code specialises on shapes: a few bucketed widths, not one per batch.
        multiple = c.pad_to_multiple_of or (64 if c.torch_compile else
                                            CPU_BF16_WIDTH_MULTIPLE if cpu_bf16 else None)
        return collate(items, device=self.device, pin_memory=pin,
                       pad_to_multiple_of=multiple, max_width=self.max_length,
                       targets_multiple=targets_multiple)
