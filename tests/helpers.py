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


def word_task_files(tmp_path, name: str, *, n_train: int = 8, n_val: int = 4,
                    n_test: int = 0) -> dict:
    """`dataset`, `val_dataset` (and `test_dataset` when n_test) of code-word records
    on disjoint words, written under tmp_path as NAME-train/-val/-test.jsonl."""
    words = one_token_words()
    files = {"dataset": write_jsonl(tmp_path / f"{name}-train.jsonl",
                                    code_word_records(words[:n_train], 1, "t")),
             "val_dataset": write_jsonl(tmp_path / f"{name}-val.jsonl",
                                        code_word_records(words[n_train:n_train + n_val],
                                                          2, "v"))}
    if n_test:
        start = n_train + n_val
        files["test_dataset"] = write_jsonl(tmp_path / f"{name}-test.jsonl",
                                            code_word_records(words[start:start + n_test],
                                                              3, "q"))
    return files


def word_task_config(tmp_path, name: str, *, n_train: int = 8, **overrides) -> dict:
    """Parameters of a small CPU run on code-word records into tmp_path/NAME: 4 steps,
    no evaluation, no checkpoint but the last; `overrides` replace any of them."""
    data = {"output_dir": str(tmp_path / name), **word_task_files(tmp_path, name,
                                                                  n_train=n_train),
            "prompt_style": "phi3", "max_length": 32, "device": "cpu",
            "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
            "learning_rate": 1e-3, "max_steps": 4, "logging_steps": 1,
            "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False,
            "save_total_limit": None}
    data.update(overrides)
    return data


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.1, what: str = ""):
    """Poll `predicate` until it returns something true (returned), else fail."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
