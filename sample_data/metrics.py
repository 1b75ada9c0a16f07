"""An example compute_metrics file for the shipped sample data (instructions.jsonl):
its answers can be checked mechanically, so more can be said of an answer than "the
same text or not". Use it with `compute_metrics: "@sample/metrics.py"` (and, to pick
the best checkpoint by one of these, e.g. `metric_for_best_model: eval_number_right`,
`greater_is_better: true`). tui-ft logs each name as val_NAME: the mean over the
validation records.

The function gets the prompt (in the run's prompt style), the expected output and the
model's greedy answer, and returns numbers (booleans count as 0 or 1). A name returned
for some records only is averaged over those."""

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.casefold())


def compute_metrics(prompt: str, expected: str, answer: str) -> dict:
    expected_words, answer_words = _words(expected), _words(answer)
    common = sum(min(expected_words.count(w), answer_words.count(w))
                 for w in set(expected_words))
    precision = common / len(answer_words) if answer_words else 0.0
    recall = common / len(expected_words) if expected_words else 0.0
    f1 = 2 * precision * recall / (precision + recall) if common else 0.0
    metrics = {"word_f1": f1,
               # The answer starts with the expected text (a model that goes on talking).
               "starts_right": " ".join(answer_words[:len(expected_words)])
               == " ".join(expected_words)}
    # Arithmetic, counting, sequences and units: the first number is what counts.
    # Returned for those records only: its mean is over the records that have it.
    want = _NUMBER.search(expected)
    if want is not None:
        got = _NUMBER.search(answer)
        metrics["number_right"] = got is not None and float(got.group()) == float(want.group())
    return metrics
