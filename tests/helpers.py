"""Small data builders the engine tests share (imported as `helpers`: pytest puts
this folder on sys.path)."""

from __future__ import annotations

import json
import random

from tui_ft.data.tokenizer import encode


def one_token_words() -> list[str]:
    """Words that are one GPT-2 token with and without a leading space."""
    words = ("cat dog sun red blue tree book fish bird car hat cup pen box map key door "
             "rain star moon king ship bell ring rock leaf wolf bear frog seed corn wind "
             "fire sand gold iron wood wall road farm lake hill park bank shop city").split()
    return [w for w in words if len(encode(" " + w)) == 1 and len(encode(w)) == 1]


def code_word_records(words: list[str], seed: int = 0, prefix: str = "r") -> list[dict]:
    """Arbitrary word -> word pairs of equal token length (19 with phi3): a model can
    only memorise them, and a batch of them has no padding."""
    rng = random.Random(seed)
    return [{"id": f"{prefix}-{i}", "instruction": f"Code word {w}", "input": "",
             "output": rng.choice(words)} for i, w in enumerate(words)]


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)
