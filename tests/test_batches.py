"""From rendered records to training tensors: exact input_ids / labels, masking,
padding, truncation, batch order."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui_ft.data.batches import (
    IGNORE_INDEX,
    Example,
    batch_order,
    collate,
    encode_record,
    encode_records,
    encode_rendered,
    pad_batch,
)
from tui_ft.data.dataset import load_records
from tui_ft.data.records import parse_record
from tui_ft.data.styles import Rendered, load_styles
from tui_ft.data.tokenizer import EOT_ID, decode, encode

EOT = 50256
X = -100  # ignored target

BUILTIN = load_styles(Path(__file__).resolve().parent / "no-such-styles-folder")

# "Hello world, this is GPT-2!" -> [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0]
#  chars: "Hello"0-5 " world"5-11 ","11-12 " this"12-17 " is"17-20 " GPT-2!"20-27
SENTENCE = "Hello world, this is GPT-2!"
SENTENCE_IDS = [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0]


def rendered(text: str, prompt: str, answer_end: int | None = None) -> Rendered:
    end = len(text) if answer_end is None else answer_end
    return Rendered(text, prompt, ((len(prompt), end),))


def learned_tokens(example: Example) -> list[int]:
    return [t for t in example.labels if t != IGNORE_INDEX]


def check_shift(example: Example) -> None:
    ids, labels = example.input_ids, example.labels
    assert len(ids) == len(labels)
    for i in range(len(ids) - 1):
        assert labels[i] in (ids[i + 1], IGNORE_INDEX)


# -- one example -------------------------------------------------------------------


def test_one_record_without_masking():
    ex = encode_rendered(rendered(SENTENCE, "Hello world,"))
    assert ex.input_ids == (15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0, EOT)
    assert ex.labels == (995, 11, 428, 318, 402, 11571, 12, 17, 0, EOT, X)
    assert not ex.truncated
    assert ex.full_length == 11
    assert ex.n_targets == 10


def test_mask_prompt_boundary_between_tokens():
    ex = encode_rendered(rendered(SENTENCE, "Hello world,"), mask_prompt=True)
    assert ex.input_ids == (15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0, EOT)
    # " this" is the first answer token: predicting it (after ",") is the first target.
    assert ex.labels == (X, X, 428, 318, 402, 11571, 12, 17, 0, EOT, X)
    assert decode(learned_tokens(ex)) == " this is GPT-2!<|endoftext|>"
    assert ex.n_targets == 8


def test_mask_prompt_boundary_later():
    ex = encode_rendered(rendered(SENTENCE, "Hello world, this is"), mask_prompt=True)
    assert ex.labels == (X, X, X, X, 402, 11571, 12, 17, 0, EOT, X)


def test_mask_prompt_with_empty_answer_learns_only_end_of_text():
    ex = encode_rendered(Rendered("Hello world", "Hello world", ((11, 11),)), mask_prompt=True)
    assert ex.input_ids == (15496, 995, EOT)
    assert ex.labels == (X, EOT, X)
    assert learned_tokens(ex) == [EOT]


def test_mask_prompt_multiple_answer_spans():
    # "Hello world, this is GPT-2!": learn " world" and " GPT-2!" only.
    r = Rendered(SENTENCE, "Hello world, this is", ((5, 11), (20, 27)))
    ex = encode_rendered(r, mask_prompt=True)
    assert ex.labels == (995, X, X, X, 402, 11571, 12, 17, 0, EOT, X)


def test_mask_prompt_multibyte_answer():
    # Tokens of "日本語" split characters into bytes; all of them are learned.
    r = rendered("Q:\n日本語", "Q:\n")
    ex = encode_rendered(r, mask_prompt=True)
    assert ex.input_ids == (48, 25, 198, 33768, 98, 17312, 105, 45739, 252, EOT)
    assert ex.labels == (X, X, 33768, 98, 17312, 105, 45739, 252, EOT, X)
    assert decode(learned_tokens(ex)) == "日本語<|endoftext|>"


def test_end_of_text_in_data_is_not_a_stop():
    ex = encode_rendered(rendered("Hi <|endoftext|>", "Hi"))
    assert ex.input_ids[-1] == EOT
    assert ex.input_ids.count(EOT) == 1


def test_answer_token_merged_with_prompt_space_is_learned():
    # "A: 5" -> [32 "A", 25 ":", 642 " 5"]; the answer "5" lives only in token 642.
    ex = encode_rendered(Rendered("A: 5", "A: ", ((3, 4),)), mask_prompt=True)
    assert ex.input_ids == (32, 25, 642, EOT)
    assert ex.labels == (X, 642, EOT, X)


# -- truncation --------------------------------------------------------------------


def test_truncate_to_three():
    ex = encode_rendered(rendered("Hello world, this is", "Hello"), max_length=3)
    assert ex.input_ids == (15496, 995, 11)
    # The last label is the real next token, as a causal LM sees it.
    assert ex.labels == (995, 11, 428)
    assert ex.truncated
    assert ex.full_length == 6


def test_truncate_to_four():
    ex = encode_rendered(rendered("Hello world, this is", "Hello"), max_length=4)
    assert ex.input_ids == (15496, 995, 11, 428)
    assert ex.labels == (995, 11, 428, 318)
    assert ex.truncated


def test_truncate_with_mask():
    ex = encode_rendered(rendered("Hello world, this is", "Hello world,"), mask_prompt=True,
                         max_length=4)
    assert ex.input_ids == (15496, 995, 11, 428)
    assert ex.labels == (X, X, 428, 318)
    ex = encode_rendered(rendered("Hello world, this is", "Hello world,"), mask_prompt=True,
                         max_length=2)
    assert ex.labels == (X, X) and ex.n_targets == 0 and ex.truncated


def test_exact_fit_is_not_truncated():
    ex = encode_rendered(rendered("Hello world, this is", "Hello"), max_length=6)
    assert ex.input_ids == (15496, 995, 11, 428, 318, EOT)
    assert ex.labels == (995, 11, 428, 318, EOT, X)
    assert not ex.truncated
    ex = encode_rendered(rendered("Hello world, this is", "Hello"), max_length=5)
    assert ex.input_ids == (15496, 995, 11, 428, 318)
    assert ex.labels == (995, 11, 428, 318, EOT)
    assert ex.truncated


def test_max_length_below_two_is_refused():
    with pytest.raises(ValueError):
        encode_rendered(rendered("Hello", ""), max_length=1)


# -- padding and collate ---------------------------------------------------------


def test_two_record_batch_is_padded_to_longest():
    import torch

    short = encode_rendered(rendered("Hello world", "Hello"))
    long = encode_rendered(rendered("Hello world, this is", "Hello"))
    assert short.input_ids == (15496, 995, EOT)
    assert short.labels == (995, EOT, X)
    batch = collate([short, long])
    assert batch["input_ids"].dtype == torch.long
    assert batch["labels"].dtype == torch.long
    assert batch["input_ids"].tolist() == [
        [15496, 995, EOT, EOT, EOT, EOT],
        [15496, 995, 11, 428, 318, EOT],
    ]
    assert batch["labels"].tolist() == [
        [995, EOT, X, X, X, X],
        [995, 11, 428, 318, EOT, X],
    ]
    assert batch["lengths"].tolist() == [3, 6]
    assert pad_batch([short, long]) == (batch["input_ids"].tolist(), batch["labels"].tolist())


def test_padded_batch_with_mask_and_truncation():
    a = encode_rendered(rendered(SENTENCE, "Hello world,"), mask_prompt=True)
    b = encode_rendered(rendered("Hello world, this is", "Hello"), max_length=3)
    c = encode_rendered(Rendered("Hello world", "Hello world", ((11, 11),)), mask_prompt=True)
    inputs, labels = pad_batch([b, c, a])
    assert inputs == [
        [15496, 995, 11, EOT, EOT, EOT, EOT, EOT, EOT, EOT, EOT],
        [15496, 995, EOT, EOT, EOT, EOT, EOT, EOT, EOT, EOT, EOT],
        [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0, EOT],
    ]
    assert labels == [
        [995, 11, 428, X, X, X, X, X, X, X, X],
        [X, EOT, X, X, X, X, X, X, X, X, X],
        [X, X, 428, 318, 402, 11571, 12, 17, 0, EOT, X],
    ]


def test_batch_is_not_padded_to_context_length():
    batch = collate([encode_rendered(rendered("Hello world", "Hello"))])
    assert tuple(batch["input_ids"].shape) == (1, 3)


def test_target_positions_rounded_up_with_ignored_positions():
    a = encode_rendered(rendered(SENTENCE, "Hello world,"), mask_prompt=True)
    b = encode_rendered(rendered("Hello world, this is", "Hello"), max_length=3)
    batch = collate([a, b])
    learned = batch["labels"].reshape(-1) != X
    plain = batch["target_positions"].tolist()
    assert plain == learned.nonzero().squeeze(1).tolist() and len(plain) == 11
    rounded = collate([a, b], targets_multiple=8)["target_positions"].tolist()
    # The learned positions first, then ignored ones up to a multiple of 8, no repeats.
    assert rounded[:11] == plain and len(rounded) == 16 == len(set(rounded))
    assert not learned[rounded[11:]].any()
    # Not enough ignored positions to reach the multiple: all of them, no more.
    assert len(collate([a, b], targets_multiple=64)["target_positions"]) == 22
    assert collate([a, b], targets_multiple=11)["target_positions"].tolist() == plain


def test_every_padding_target_is_ignored(sample_data_dir):
    import torch

    records = load_records(sample_data_dir / "instructions.jsonl").records[:16]
    examples = encode_records(records, BUILTIN.get("alpaca"))
    batch = collate(examples)
    width = max(len(e.input_ids) for e in examples)
    assert tuple(batch["input_ids"].shape) == (16, width)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        assert batch["input_ids"][row, n - 1].item() == EOT
        assert (batch["input_ids"][row, n:] == EOT).all()
        assert (batch["labels"][row, n - 1:] == X).all()
        # Exactly one EOT target per row: the real end of text.
        assert (batch["labels"][row] == EOT).sum().item() == 1
    # With ignore_index=-100, a uniform model's loss is log(vocab) over real targets only.
    logits = torch.zeros(16, width, 50257)
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 50257), batch["labels"].view(-1),
                                             ignore_index=-100)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(50257.0)).item(), rel=1e-5)


def test_empty_batch_is_refused():
    with pytest.raises(ValueError):
        pad_batch([])


# -- records through styles ------------------------------------------------------


def test_alpaca_example_masks_up_to_response_header():
    record = parse_record({"instruction": "Add 2 and 3.", "input": "", "output": "5"})
    style = BUILTIN.get("alpaca")
    ex = encode_record(record, style, mask_prompt=True)
    prompt_ids = [21106, 318, 281, 12064, 326, 8477, 257, 4876, 13, 19430, 257, 2882, 326,
                  20431, 32543, 262, 2581, 13, 198, 198, 21017, 46486, 25, 198, 4550, 362,
                  290, 513, 13, 198, 198, 21017, 18261, 25, 198]
    assert ex.input_ids == (*prompt_ids, 20, EOT)  # ..."###", " Response", ":", "\n", "5"
    assert ex.labels == (*[X] * 34, 20, EOT, X)
    assert decode(learned_tokens(ex)) == "5<|endoftext|>"
    plain = encode_record(record, style)
    assert plain.input_ids == ex.input_ids
    assert plain.labels == (*prompt_ids[1:], 20, EOT, X)


@pytest.mark.parametrize("name", ["alpaca", "phi3"])
def test_masked_learned_tokens_are_exactly_the_output(name, sample_data_dir):
    style = BUILTIN.get(name)
    for record in load_records(sample_data_dir / "instructions.jsonl").records[:200]:
        ex = encode_record(record, style, mask_prompt=True)
        check_shift(ex)
        assert decode(learned_tokens(ex)) == record.output + "<|endoftext|>"
        # The masked part is exactly the prompt's tokens.
        n_prompt = len(encode(style.render(record).prompt))
        assert all(t == X for t in ex.labels[:n_prompt - 1])
        assert ex.labels[n_prompt - 1] != X


def test_alpaca_with_input_masks_input_too():
    record = parse_record({"instruction": "Translate.", "input": "### Response:\ncat",
                           "output": "chat"})
    ex = encode_record(record, BUILTIN.get("alpaca"), mask_prompt=True)
    assert decode(learned_tokens(ex)) == "chat<|endoftext|>"


def test_multi_turn_chat_learns_every_assistant_turn():
    record = parse_record({"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello world"},
        {"role": "user", "content": "More"},
        {"role": "assistant", "content": "this is GPT-2!"},
    ]})
    for name in ("alpaca", "phi3"):
        ex = encode_record(record, BUILTIN.get(name), mask_prompt=True)
        check_shift(ex)
        assert decode(learned_tokens(ex)) == "Hello worldthis is GPT-2!<|endoftext|>"
    ex = encode_record(record, BUILTIN.get("chatml"), mask_prompt=True)
    assert decode(learned_tokens(ex)) == (
        "Hello world<|im_end|>this is GPT-2!<|im_end|><|endoftext|>")


@settings(max_examples=150, deadline=None, database=None)
@given(prompt=st.text(max_size=40), answer=st.text(max_size=40),
       mask=st.booleans(), max_length=st.integers(2, 60))
def test_label_invariants(prompt, answer, mask, max_length):
    text = prompt + answer
    ex = encode_rendered(Rendered(text, prompt, ((len(prompt), len(text)),)),
                         mask_prompt=mask, max_length=max_length)
    ids = encode(text) + [EOT_ID]
    assert ex.full_length == len(ids)
    assert list(ex.input_ids) == ids[:max_length]
    assert ex.truncated == (len(ids) > max_length)
    check_shift(ex)
    if not ex.truncated:
        assert ex.labels[-1] == X
        assert ex.labels[-2:-1] in ((EOT,), ())  # the end of text is always learned
    if not mask:
        full = ids[1:] + [X]
        assert list(ex.labels) == full[:max_length]


# -- batch order -------------------------------------------------------------------

LENGTHS = [(i * 7919) % 997 + 1 for i in range(1000)]


def flat(batches):
    return [i for b in batches for i in b]


def test_batch_order_covers_every_index_once():
    for group in (False, True):
        batches = batch_order(LENGTHS, 8, seed=1, epoch=0, group_by_length=group)
        assert sorted(flat(batches)) == list(range(1000))
        assert len(batches) == 125 and all(len(b) == 8 for b in batches)
    batches = batch_order(LENGTHS[:13], 4, seed=1)
    assert sorted(flat(batches)) == list(range(13))
    assert [len(b) for b in batches] == [4, 4, 4, 1]
    assert [len(b) for b in batch_order(LENGTHS[:13], 4, seed=1, drop_last=True)] == [4, 4, 4]


def test_batch_order_is_deterministic_and_varies():
    a = batch_order(LENGTHS, 8, seed=1, epoch=0)
    assert a == batch_order(LENGTHS, 8, seed=1, epoch=0)
    assert a != batch_order(LENGTHS, 8, seed=1, epoch=1)
    assert a != batch_order(LENGTHS, 8, seed=2, epoch=0)
    assert flat(a) != list(range(1000))  # shuffled
    g = batch_order(LENGTHS, 8, seed=1, epoch=0, group_by_length=True)
    assert g == batch_order(LENGTHS, 8, seed=1, epoch=0, group_by_length=True)
    assert g != batch_order(LENGTHS, 8, seed=1, epoch=1, group_by_length=True)


def test_batch_order_without_shuffle():
    assert batch_order(LENGTHS[:10], 4, seed=1, shuffle=False) == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                    [8, 9]]


def padding(batches, lengths) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_group_by_length():
    grouped = batch_order(LENGTHS, 8, seed=3, epoch=0, group_by_length=True)
    plain = batch_order(LENGTHS, 8, seed=3, epoch=0)
    # The batch with the longest example comes first, whatever the seed and epoch
    # (it is often in a later megabatch of the shuffled order).
    for seed in range(6):
        for epoch in range(3):
            order = batch_order(LENGTHS, 8, seed=seed, epoch=epoch, group_by_length=True)
            assert max(LENGTHS[i] for i in order[0]) == max(LENGTHS)
            assert sorted(flat(order)) == list(range(1000))
    # Similar lengths together: far less padding than a plain shuffle.
    assert padding(grouped, LENGTHS) < padding(plain, LENGTHS) / 5
    # The order of batches is still random (not sorted longest to shortest overall).
    firsts = [max(LENGTHS[i] for i in b) for b in grouped[1:]]
    assert firsts != sorted(firsts, reverse=True)


def test_batch_order_rejects_bad_batch_size():
    with pytest.raises(ValueError):
        batch_order(LENGTHS, 0, seed=1)
