"""The GPT-2 tokenizer: exact ids, offline from the shipped, hash-checked rank file."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_ft.data import tokenizer
from tui_ft.data.tokenizer import (
    ENDOFTEXT,
    EOT_ID,
    GPT2_RANKS_SHA256,
    decode,
    encode,
    encode_batch,
    read_ranks,
    token_bytes,
)
from tui_ft.errors import TokenizerError, TuiFtError
from tui_ft.paths import assets_dir

RANKS = assets_dir() / "gpt2.tiktoken"


def test_known_sentence_ids():
    assert encode("Hello world, this is GPT-2!") == [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0]


@pytest.mark.parametrize("text, ids", [
    ("Hello world", [15496, 995]),
    (" this is", [428, 318]),
    (" GPT-2!", [402, 11571, 12, 17, 0]),
    ("\n\n### Response:\n", [198, 198, 21017, 18261, 25, 198]),
    ("", []),
])
def test_more_known_ids(text, ids):
    assert encode(text) == ids
    assert decode(ids) == text


def test_endoftext_is_50256_and_decodes():
    assert EOT_ID == 50256
    assert ENDOFTEXT == "<|endoftext|>"
    assert decode([EOT_ID]) == "<|endoftext|>"
    assert decode([15496, 995, EOT_ID]) == "Hello world<|endoftext|>"


def test_endoftext_text_in_data_is_ordinary_text():
    ids = encode("<|endoftext|>")
    assert ids == [27, 91, 437, 1659, 5239, 91, 29]
    assert EOT_ID not in ids
    mixed = "answer<|endoftext|>more <|endoftext|>"
    ids = encode(mixed)
    assert EOT_ID not in ids
    assert decode(ids) == mixed
    assert EOT_ID not in encode_batch([mixed, "<|endoftext|>"])[0]
    assert EOT_ID not in encode_batch([mixed, "<|endoftext|>"])[1]


def test_encode_batch_matches_encode():
    texts = ["Hello world, this is GPT-2!", "", "héllo 日本語 😀", "<|endoftext|>", "a\n\nb"]
    assert encode_batch(texts) == [encode(t) for t in texts]


def test_token_bytes_concatenate_to_utf8():
    text = "héllo 日本語 😀 <|endoftext|>"
    ids = encode(text)
    pieces = token_bytes(ids)
    assert len(pieces) == len(ids)
    assert b"".join(pieces) == text.encode("utf-8")
    assert token_bytes([EOT_ID]) == [b"<|endoftext|>"]


def test_shipped_rank_file_matches_published_hash():
    assert GPT2_RANKS_SHA256 == "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
    assert hashlib.sha256(RANKS.read_bytes()).hexdigest() == GPT2_RANKS_SHA256
    ranks = read_ranks(RANKS)
    # r50k_base: 256 byte tokens + 50000 merges, ranks 0..50255.
    assert len(ranks) == 50256
    assert sorted(ranks.values()) == list(range(50256))
    assert ranks[b"Hello"] == 15496
    assert ranks[b" world"] == 995
    assert ranks[b"!"] == 0


def test_corrupted_rank_file_is_refused(tmp_path):
    copy = tmp_path / "gpt2.tiktoken"
    shutil.copyfile(RANKS, copy)
    data = bytearray(copy.read_bytes())
    data[1000] = ord("A") if data[1000] != ord("A") else ord("B")
    copy.write_bytes(bytes(data))
    with pytest.raises(TokenizerError) as info:
        read_ranks(copy)
    message = str(info.value)
    assert str(copy) in message
    assert "corrupt" in message
    assert GPT2_RANKS_SHA256 in message
    assert isinstance(info.value, TuiFtError)


def test_truncated_rank_file_is_refused(tmp_path):
    copy = tmp_path / "gpt2.tiktoken"
    copy.write_bytes(RANKS.read_bytes()[:-10])
    with pytest.raises(TokenizerError, match="corrupt"):
        read_ranks(copy)


def test_missing_rank_file_is_refused(tmp_path):
    missing = tmp_path / "nope.tiktoken"
    with pytest.raises(TokenizerError) as info:
        read_ranks(missing)
    assert str(missing) in str(info.value)


def test_rank_file_folder_is_refused(tmp_path):
    with pytest.raises(TokenizerError):
        read_ranks(tmp_path)


def test_encoding_is_built_from_the_shipped_file():
    enc = tokenizer.gpt2_encoding()
    assert enc.n_vocab == 50257
    assert enc.eot_token == EOT_ID


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_round_trip_any_text(text):
    ids = encode(text)
    assert decode(ids) == text
    assert all(0 <= i < EOT_ID for i in ids)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.sampled_from(["<|endoftext|>", "<|", "|>", "endoftext", " ", "\n", "é",
                                 "日本", "😀", "\r\n", "\t", "'s", "123", "GPT-2"]), max_size=30))
def test_round_trip_special_looking_text(pieces):
    text = "".join(pieces)
    ids = encode(text)
    assert EOT_ID not in ids
    assert decode(ids) == text
