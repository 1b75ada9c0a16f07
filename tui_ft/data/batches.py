"""From rendered records to training tensors. Each example is its GPT-2 tokens plus
<|endoftext|>; `labels[i]` is the token to predict after `input_ids[:i + 1]`, or -100
where nothing is learned (the last position, padding, and, with prompt masking,
every token of the prompt). Batches are padded to their longest sequence."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Sequence

from .records import Record
from .styles import Rendered, Style
from .tokenizer import EOT_ID, encode_prefix, token_bytes

IGNORE_INDEX = -100
GPT2_CONTEXT = 1024


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    # Length before truncation (end-of-text included), and whether it was cut.
    full_length: int
    # False when the text was tokenized only as far as max_length could use:
    # full_length is then a lower bound (the text is longer still).
    length_exact: bool = True

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def trainable_tokens(text: str, ids: Sequence[int],
                     spans: Sequence[tuple[int, int]]) -> list[bool]:
    """For each token of `text`, whether it overlaps one of the character spans.
    A token that straddles the boundary (a style whose prompt ends in a space, so the
    answer's first word merges with it) holds answer text, so it is learned.
    Offsets are compared in UTF-8 bytes, since a token may hold part of a character."""
    byte_spans = []
    for start, end in spans:
        b0 = len(text[:start].encode("utf-8"))
        byte_spans.append((b0, b0 + len(text[start:end].encode("utf-8"))))
    starts = [s for s, _ in byte_spans]
    flags = []
    pos = 0
    for piece in token_bytes(list(ids)):
        end = pos + len(piece)
        # The last span that starts before the token ends; spans are sorted and
        # disjoint, so if it does not reach into the token no earlier one does.
        k = bisect.bisect_left(starts, end) - 1
        flags.append(k >= 0 and byte_spans[k][1] > pos and byte_spans[k][0] < byte_spans[k][1])
        pos = end
    return flags


def encode_rendered(rendered: Rendered, *, mask_prompt: bool = False,
                    max_length: int = GPT2_CONTEXT) -> Example:
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    text, spans = rendered.text, rendered.answer_spans
    # Only the tokens max_length can use, and the one after (the last label): a
    # record of 100 MB was tokenized whole, for seconds and a gigabyte.
    ids, covered = encode_prefix(text, max_length)
    whole = covered == len(text)
    if not whole:
        text = text[:covered]
        spans = [(start, min(end, covered)) for start, end in spans if start < covered]
    trainable = trainable_tokens(text, ids, spans) if mask_prompt else [True] * len(ids)
    if whole:
        ids.append(EOT_ID)
        trainable.append(True)  # the model must learn to stop
    full = len(ids)
    # Labels are the inputs shifted by one; truncation keeps the real next token
    # as the last label, as a causal LM sees it.
    labels = [ids[i + 1] if trainable[i + 1] else IGNORE_INDEX for i in range(full - 1)]
    labels.append(IGNORE_INDEX)
    return Example(tuple(ids[:max_length]), tuple(labels[:max_length]),
                   full if whole else full + 1, length_exact=whole)


def encode_record(record: Record, style: Style, *, mask_prompt: bool = False,
                  max_length: int = GPT2_CONTEXT) -> Example:
    return encode_rendered(style.render(record), mask_prompt=mask_prompt,
                           max_length=max_length)


def encode_records(records: Sequence[Record], style: Style, *, mask_prompt: bool = False,
                   max_length: int = GPT2_CONTEXT) -> list[Example]:
    return [encode_record(r, style, mask_prompt=mask_prompt, max_length=max_length)
            for r in records]


def loss_segments(input_ids: Sequence[int], labels: Sequence[int]) -> list[tuple[str, bool]]:
    """The tokens as text runs, each marked learned (the model is trained to predict
    it) or not. Token j is learned when it is the label of position j - 1. Runs are
    cut only where the flag changes, so multi-byte characters stay whole."""
    learned = [False] + [lab != IGNORE_INDEX for lab in labels[:-1]]
    runs: list[tuple[bytes, bool]] = []
    for piece, flag in zip(token_bytes(list(input_ids)), learned):
        if runs and runs[-1][1] == flag:
            runs[-1] = (runs[-1][0] + piece, flag)
        else:
            runs.append((piece, flag))
    return [(raw.decode("utf-8", "replace"), flag) for raw, flag in runs]


def pad_batch(examples: Sequence[Example], pad_id: int = EOT_ID,
              ignore_index: int = IGNORE_INDEX) -> tuple[list[list[int]], list[list[int]]]:
    """Pad to the longest example of the batch: inputs with end-of-text, labels with
    -100 (so every padding target after the real end-of-text is ignored)."""
    if not examples:
        raise ValueError("cannot pad an empty batch")
    width = max(len(e.input_ids) for e in examples)
    inputs = [list(e.input_ids) + [pad_id] * (width - len(e.input_ids)) for e in examples]
    labels = [list(e.labels) + [ignore_index] * (width - len(e.labels)) for e in examples]
    return inputs, labels


def padded_width(longest: int, multiple: int | None, limit: int | None = None) -> int:
    """`longest` rounded up to a multiple of `multiple` (when set), but not past
    `limit` (the model's context): few distinct shapes for torch.compile and CUDA
    graphs to specialise on."""
    if not multiple or multiple <= 1:
        return longest
    width = -(-longest // multiple) * multiple
    return max(longest, min(width, limit)) if limit else width


def _to_device(batch: dict, device, pin_memory: bool) -> dict:
    if pin_memory:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    if device is not None:
        batch = {k: v.to(device, non_blocking=pin_memory) for k, v in batch.items()}
    return batch


def collate(examples: Sequence[Example], *, pad_id: int = EOT_ID, device=None,
            pin_memory: bool = False, pad_to_multiple_of: int | None = None,
            max_width: int | None = None, targets_multiple: int | None = None) -> dict:
    """Tensors for one batch: `input_ids` and `labels` (long, batch x longest, or the
    longest rounded up to `pad_to_multiple_of`, at most `max_width`), `lengths` (the
    unpadded length of each row) and `target_positions` (see `_target_positions`)."""
    import torch

    inputs, labels = pad_batch(examples, pad_id)
    width = padded_width(len(inputs[0]), pad_to_multiple_of, max_width)
    extra = width - len(inputs[0])
    if extra:
        inputs = [row + [pad_id] * extra for row in inputs]
        labels = [row + [IGNORE_INDEX] * extra for row in labels]
    batch = {
        "input_ids": torch.tensor(inputs, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "lengths": torch.tensor([len(e.input_ids) for e in examples], dtype=torch.long),
    }
    batch["target_positions"] = _target_positions(batch["labels"], targets_multiple)
    return _to_device(batch, device, pin_memory)


def _target_positions(labels, multiple: int | None = None):
    """Flat indices of the positions that have a label (for `lm_loss_sum`), found on
    the host before the batch moves, so the device never has to be asked.

    With `multiple`, their count is rounded up to a multiple of it with positions
    whose label is -100 (which add nothing to the loss or its gradients), as far as
    the batch has such positions: the loss's matmuls then come in few shapes (see
    `Trainer._collate` for why that matters on the CPU)."""
    import torch

    flat = labels.reshape(-1)
    learned = flat != IGNORE_INDEX
    positions = torch.nonzero(learned).squeeze(1)
    if multiple and multiple > 1 and len(positions) % multiple:
        fill = torch.nonzero(~learned).squeeze(1)[:-len(positions) % multiple]
        positions = torch.cat([positions, fill])
    return positions


@dataclass(frozen=True)
class Pack:
    """Several examples laid end to end in one row of a packed batch."""

    examples: tuple[Example, ...]

    @property
    def length(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def n_targets(self) -> int:
        return sum(e.n_targets for e in self.examples)


def pack_examples(examples: Sequence[Example], capacity: int, *, seed: int) -> list[Pack]:
    """Examples grouped into rows of at most `capacity` tokens, best-fit decreasing
    (each example, longest first, goes into the fullest row it still fits in), so
    little of a row is padding. The grouping is fixed by `seed` (ties between equal
    lengths follow a seeded shuffle) and the rows come out in a seeded random order;
    every example is in exactly one row, whole (examples are already cut to the
    maximum length, which is the capacity)."""
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")
    too_long = [i for i, e in enumerate(examples) if len(e.input_ids) > capacity]
    if too_long:
        raise ValueError(f"{len(too_long)} examples are longer than the row capacity "
                         f"{capacity} (the first is #{too_long[0]})")
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    order.sort(key=lambda i: -len(examples[i].input_ids))  # stable: ties stay shuffled
    rows: list[list[int]] = []
    # Rows that still have room, as (room left, row index), kept sorted.
    open_rows: list[tuple[int, int]] = []
    for i in order:
        n = len(examples[i].input_ids)
        k = bisect.bisect_left(open_rows, (n, -1))
        if k < len(open_rows):
            room, r = open_rows.pop(k)
        else:
            room, r = capacity, len(rows)
            rows.append([])
        rows[r].append(i)
        if room - n > 0:
            bisect.insort(open_rows, (room - n, r))
    rng.shuffle(rows)
    return [Pack(tuple(examples[i] for i in row)) for row in rows]


def collate_packed(packs: Sequence[Pack], *, width: int, pad_id: int = EOT_ID, device=None,
                   pin_memory: bool = False, targets_multiple: int | None = None) -> dict:
    """Tensors for a batch of packed rows, each `width` tokens: `input_ids`, `labels`,
    `position_ids` (restarting at 0 with each example, as if it were alone) and
    `document_ids` (which example of the row a token belongs to; -1 for the padding
    at the end of a row, whose targets are all -100). Labels never cross from one
    example to the next: an example's last label is already -100 or its own next
    token."""
    import torch

    inputs, labels, positions, documents = [], [], [], []
    for pack in packs:
        ids: list[int] = []
        labs: list[int] = []
        pos: list[int] = []
        doc: list[int] = []
        for d, e in enumerate(pack.examples):
            ids.extend(e.input_ids)
            labs.extend(e.labels)
            pos.extend(range(len(e.input_ids)))
            doc.extend([d] * len(e.input_ids))
        if len(ids) > width:
            raise ValueError(f"a packed row of {len(ids)} tokens does not fit width {width}")
        pad = width - len(ids)
        inputs.append(ids + [pad_id] * pad)
        labels.append(labs + [IGNORE_INDEX] * pad)
        positions.append(pos + list(range(pad)))
        documents.append(doc + [-1] * pad)
    batch = {
        "input_ids": torch.tensor(inputs, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(positions, dtype=torch.long),
        "document_ids": torch.tensor(documents, dtype=torch.long),
        "lengths": torch.tensor([p.length for p in packs], dtype=torch.long),
    }
    batch["target_positions"] = _target_positions(batch["labels"], targets_multiple)
    return _to_device(batch, device, pin_memory)


def batch_order(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int = 0,
                shuffle: bool = True, group_by_length: bool = False,
                drop_last: bool = False, megabatch_factor: int = 50) -> list[list[int]]:
    """The indices of each batch of one epoch, fixed by (seed, epoch).

    With `group_by_length`, a shuffled order is cut into megabatches of
    `batch_size * megabatch_factor` sorted by length, so each batch holds similar
    lengths (less padding) while the epoch stays random; the batch with the longest
    example comes first, so an out-of-memory shows at the first step."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = list(range(len(lengths)))
    rng = random.Random(seed * 1_000_003 + epoch)
    if shuffle or group_by_length:
        rng.shuffle(order)
    if group_by_length:
        size = batch_size * megabatch_factor
        megas = [sorted(order[i:i + size], key=lambda j: -lengths[j])
                 for i in range(0, len(order), size)]
        order = [j for mega in megas for j in mega]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if group_by_length and batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[j] for j in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches
