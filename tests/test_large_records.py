"""A record of 100 MB on one line (issue 13): tokenizing it whole took 1.15 GB and
seconds in `tui-ft data inspect`, and the Datasets screen ignored keys for 20 s and
more. Work per record is bounded by what max_length can use, the record is reported
as longer, and the screen answers keys while such a file loads. Real files in
tmp_path, a real subprocess, the real app through Pilot."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_ft.data.batches import EOT_ID, encode_rendered
from tui_ft.data.records import Record
from tui_ft.data.stats import counting_limit, token_lengths
from tui_ft.data.styles import Rendered, get_style
from tui_ft.data.tokenizer import encode, encode_prefix

from helpers import pilot_wait_for as wait_for

BIG_MB = 100


def write_big_record(path: Path, megabytes: int = BIG_MB) -> Path:
    """One JSONL record whose input is `megabytes` MB of words, and a small one."""
    chunk = "lorem ipsum dolor sit amet " * 40_000  # ~1 MB
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"instruction": "Summarise this", "input": "')
        for _ in range(megabytes):
            f.write(chunk)
        f.write('", "output": "It repeats."}\n')
        f.write(json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    return path


# -- the tokenizer's bounded prefix --------------------------------------------------

def test_encode_prefix_is_the_start_of_the_whole_encoding():
    rng = random.Random(7)
    pieces = ["hello", " world", "  ", "\n", "\n\n", "'s", "'ll", "123", "!!", " ", "\t",
              "\u00e9", "\u65e5\u672c", "\x1c", "\u00a0", "\u3000", "x" * 50, "-" * 40,
              "\U0001F600"]
    cut_short = 0
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 600)))
        limit = rng.randint(1, 300)
        whole = encode(text)
        ids, covered = encode_prefix(text, limit)
        assert ids == encode(text[:covered])
        assert whole[:len(ids)] == ids, (text, limit)
        if covered < len(text):
            cut_short += 1
            assert len(ids) > limit and len(whole) > len(ids)
        else:
            assert ids == whole
    assert cut_short > 100  # the cut path was exercised, not only whole texts


@pytest.mark.parametrize("kind", ["one word", "spaces", "words"])
def test_encode_prefix_work_is_bounded_by_the_limit(kind):
    # 20 MB without a space took minutes to tokenize whole; here only its start.
    text = {"one word": "x" * 20_000_000, "spaces": " " * 20_000_000,
            "words": "word " * 4_000_000}[kind]
    start = time.monotonic()
    ids, covered = encode_prefix(text, 1000)
    assert len(ids) > 1000 and covered < 1_000_000
    assert time.monotonic() - start < 5


def test_encode_rendered_cut_short_matches_the_whole_encoding():
    style = get_style("alpaca")
    record = Record("r", "Summarise", "many words here, " * 5000, "short answer")
    rendered = style.render(record)
    for mask in (False, True):
        cut = encode_rendered(rendered, mask_prompt=mask, max_length=64)
        whole = encode_rendered(rendered, mask_prompt=mask, max_length=10 ** 9)
        assert cut.input_ids == whole.input_ids[:64]
        assert cut.labels == whole.labels[:64]
        assert cut.truncated and not cut.length_exact
        assert whole.length_exact and whole.full_length == len(encode(rendered.text)) + 1
        assert cut.full_length < whole.full_length


def test_encode_rendered_masks_an_answer_beyond_the_cut():
    # The answer starts past what max_length can use: every kept label is masked.
    text = "prompt words " * 3000 + "the answer"
    rendered = Rendered(text, text[:-10], ((len(text) - 10, len(text)),))
    example = encode_rendered(rendered, mask_prompt=True, max_length=32)
    assert len(example.input_ids) == 32 and example.n_targets == 0
    assert EOT_ID not in example.input_ids


def test_token_lengths_count_no_further_than_the_limit():
    style = get_style("alpaca")
    records = [Record("a", "hi", "", "there"), Record("b", "long", "word " * 200_000, "x")]
    exact = token_lengths(records, style)
    bounded = token_lengths(records, style, limit=500)
    assert bounded[0] == exact[0]
    assert exact[1] > 200_000 and bounded[1] == 501
    assert counting_limit(256) == 4096 and counting_limit(2048) == 8192


# -- the command line ----------------------------------------------------------------

# The child's peak memory, measured by a parent that has no other child.
_MEASURE = ("import resource, subprocess, sys\n"
            "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stderr.write(proc.stderr)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "print(proc.returncode)\n"
            "sys.stdout.write(proc.stdout)\n")


@pytest.mark.slow
def test_inspect_of_a_100_mb_record_has_bounded_memory(tmp_path):
    path = write_big_record(tmp_path / "big.jsonl")
    assert path.stat().st_size > BIG_MB * 1_000_000
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "tui_ft.cli", "data", "inspect",
         str(path), "--json"], capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.monotonic() - start
    assert "Traceback" not in proc.stderr, proc.stderr
    max_rss_kb, returncode, out = proc.stdout.split("\n", 2)
    assert int(returncode) == 0, proc.stderr
    report = json.loads(out)
    assert report["records"] == 2 and report["errors"] == []
    # The big record is over max_length, counted only so far, and says so.
    assert report["truncated"] == 1
    assert report["longer_than_counted"] == 1
    assert report["counted_to"] == counting_limit(report["max_length"])
    assert report["tokens"]["max"] == report["counted_to"] + 1
    # Tokenizing it whole took 1.15 GB. What remains is the record itself, a few
    # times over: the file's pages, its text, the parsed string and the rendered
    # prompt (about 4 x 100 MB), and the interpreter.
    max_rss_mb = int(max_rss_kb) / 1024
    assert max_rss_mb < 600, f"peak memory {max_rss_mb:.0f} MB"
    assert elapsed < 60


@pytest.mark.slow
def test_inspect_human_output_says_the_record_is_longer(tmp_path, run_cli):
    path = write_big_record(tmp_path / "big.jsonl", megabytes=20)
    proc = run_cli("data", "inspect", path)
    assert proc.returncode == 0, proc.stderr
    assert "truncated at 256 tokens: 1" in proc.stdout
    assert "max over 4096 (1 record longer than 4096 tokens, counted no further)" in \
        proc.stdout


# -- the app ---------------------------------------------------------------------------

@pytest.mark.slow
async def test_keys_answer_while_a_100_mb_record_loads(tmp_path):
    from tui_ft.ui.app import create_app
    from tui_ft.ui.widgets.record_list import RecordList

    path = write_big_record(tmp_path / "big.jsonl")
    app = create_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        # A key pressed while the file is read, checked and measured in workers.
        start = time.monotonic()
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.side == "errors", timeout=60)
        latency = time.monotonic() - start
        # It took 20 s and more when the screen itself read and tokenized the record
        # (and made a repr() of every record to name a worker).
        assert latency < 5, f"the key took {latency:.1f} s"

        await wait_for(pilot, lambda: screen.scan is not None and screen.lengths, timeout=60)
        info = str(screen.query_one("#dataset-info").content)
        assert "1 over 256" in info and "max >4,096" in info
        await wait_for(pilot, lambda: "256 tokens" in
                       (screen.query_one("#prompt-preview").border_title or ""), timeout=60)
        body = str(screen.query_one("#preview-body").content)
        assert re.search(r"\n\[truncated from more than \d+ tokens\]$", body)
        # The big record's row is the start of its line, not the decoded record.
        row = screen.query_one(RecordList)._row(0)[0]
        assert row.startswith("[10") and row[:12].endswith(" MiB] ") and \
            row[12:].startswith('{"instruction": "Summarise this"')
        await pilot.press("down")
        await wait_for(pilot, lambda: "Say hi" in
                       str(screen.query_one("#preview-body").content), timeout=10)
