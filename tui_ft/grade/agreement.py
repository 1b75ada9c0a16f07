"""How far the LLM judge can be trusted: its agreement with the person's marks on the
answers both have judged. Accuracy alone flatters a judge on a skewed run (a judge
that says "correct" to everything is right as often as the answers are), so Cohen's
kappa, the confusion table, the base rate and the constant predictor's accuracy
are reported beside it."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TuiFtError
from ..runfolder import Run
from .judge import JudgmentStore, passes
from .responses import read_responses
from .store import GradeStore


class AgreementError(TuiFtError):
    """Agreement cannot be measured (no answers graded by both)."""


@dataclass(frozen=True)
class Confusion:
    """Counts of (judge, human) pairs; True is "correct"."""

    jc_hc: int = 0
    jc_hw: int = 0
    jw_hc: int = 0
    jw_hw: int = 0

    @classmethod
    def of(cls, pairs: list[tuple[bool, bool]]) -> "Confusion":
        return cls(sum(j and h for j, h in pairs), sum(j and not h for j, h in pairs),
                   sum(h and not j for j, h in pairs), sum(not j and not h for j, h in pairs))

    @property
    def n(self) -> int:
        return self.jc_hc + self.jc_hw + self.jw_hc + self.jw_hw

    @property
    def accuracy(self) -> float:
        return (self.jc_hc + self.jw_hw) / self.n

    @property
    def base_rate(self) -> float:
        """How many of the answers the person marked correct."""
        return (self.jc_hc + self.jw_hc) / self.n

    @property
    def kappa(self) -> float:
        """Cohen's kappa: agreement beyond what two raters guessing at their own rates
        would reach. 0 where chance explains all of it, and where chance agreement is
        total (both raters constant, alike) and kappa is 0/0."""
        n = self.n
        judge_correct = (self.jc_hc + self.jc_hw) / n
        chance = judge_correct * self.base_rate + (1 - judge_correct) * (1 - self.base_rate)
        if chance >= 1:
            return 0.0
        return (self.accuracy - chance) / (1 - chance)

    def as_dict(self) -> dict:
        return {"judge_correct_human_correct": self.jc_hc,
                "judge_correct_human_wrong": self.jc_hw,
                "judge_wrong_human_correct": self.jw_hc,
                "judge_wrong_human_wrong": self.jw_hw}


def choose_threshold(scored: list[tuple[int, bool]]) -> int:
    """The pass mark for 0-100 scores that agrees best with the person's marks
    (a score at or above it reads as "correct"): the highest kappa, then the highest
    accuracy, then the lowest mark. Chosen on the same answers it is measured on, so
    the figures at it are optimistic; with few answers, read them with care."""
    best = None
    for threshold in sorted({s for s, _ in scored} | {101}):
        table = Confusion.of([(s >= threshold, h) for s, h in scored])
        rank = (round(table.kappa, 12), round(table.accuracy, 12), -threshold)
        if best is None or rank > best[0]:
            best = (rank, threshold)
    return best[1]


def agreement(run: Run, *, prompt: str | None = None, model: str | None = None) -> dict:
    """Judge against person on the run's answers graded by both. The judge is the one
    named (prompt name and/or model), else the one that judged last."""
    responses = read_responses(run.responses_path)
    grades = GradeStore(run)
    store = JudgmentStore(run)
    judges = [entry for entry in store.judges.values()
              if (prompt is None or entry.get("prompt") == prompt)
              and (model is None or entry.get("model") == model)]
    if not judges:
        named = " and ".join(x for x in (prompt and f"prompt {prompt!r}",
                                         model and f"model {model!r}") if x)
        raise AgreementError(f"{store.path}: no judgments" + (f" by {named}" if named else "")
                             + f"; make them with 'tui-ft judge {run.name} --base-url URL "
                               "--model NAME'")
    last = judges[-1]
    judge = last["judge"]
    kind = last.get("kind", "verdict")
    pairs_verdict: list[tuple[bool, bool]] = []
    scored: list[tuple[int, bool]] = []
    taken = 0
    for record in responses:
        mark = grades.of(record)
        if mark.by == "judge" and mark.grade is not None:
            # The judge's own verdict taken as the mark: agreeing with itself.
            taken += 1
            continue
        human = mark.grade
        entry = store.get(record, judge)
        if human is None or entry is None or entry.get("error") or entry.get("unparseable"):
            continue
        if kind == "score":
            if isinstance(entry.get("score"), int):
                scored.append((entry["score"], human == "correct"))
        elif (said := passes("verdict", entry, 0)) is not None:
            pairs_verdict.append((said, human == "correct"))
    threshold = None
    if kind == "score":
        if scored:
            threshold = choose_threshold(scored)
        pairs = [(s >= threshold, h) for s, h in scored] if scored else []
    else:
        pairs = pairs_verdict
    if not pairs:
        raise AgreementError(
            f"{run.path}: no answer is graded by both a person and the judge "
            f"({last.get('prompt')}, {last.get('model')}); grade some in the Grading "
            f"screen ('tui-ft {run.name}') first")
    table = Confusion.of(pairs)
    majority = "correct" if table.base_rate >= 0.5 else "wrong"
    out = {"n": table.n, "accuracy": table.accuracy, "kappa": table.kappa,
           "base_rate": table.base_rate, "confusion": table.as_dict(),
           # Always saying the person's more common mark: the accuracy to beat.
           "baseline_accuracy": max(table.base_rate, 1 - table.base_rate),
           "baseline_label": majority,
           "judge_pass_rate": (table.jc_hc + table.jc_hw) / table.n,
           "prompt": last.get("prompt"), "model": last.get("model"), "kind": kind,
           # Marks taken from the judge (the Grading screen's v), left out of n.
           "taken_from_judge": taken}
    if kind == "score":
        out["threshold"] = threshold
    return out
