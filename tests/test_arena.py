"""The blind A/B comparison engine (grade/arena.py): the Wilson interval and win rates
against hand-worked values, the order shown (random per prompt, the same for the same
seed, never naming a model before reveal), verdicts that survive a SIGKILL of the
process writing them and resume, and the LLM judge filling a comparison in both orders
against a real chat-completions server on loopback (tests/judge_server.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from judge_server import JudgeServer, Reply
from tui_ft.grade import arena
from tui_ft.grade.imported import import_answers
from tui_ft.grade.judge import JudgeSettings, load_prompt
from tui_ft.runfolder import Run

# The two models' names: nothing shown or exported before reveal may contain them.
NAMES = ("alphamodel", "betamodel")


def make_side(tmp_path, name: str, answers: list[str]) -> Run:
    rows = [{"instruction": f"Name the colour number {i}.", "input": "", "output": f"c{i}",
             "response": text} for i, text in enumerate(answers)]
    source = tmp_path / f"{name}-answers.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Run(import_answers(str(source), name)["run_path"])


def make_comparison(tmp_path, n: int = 8, seed: int = 7, first=None, second=None):
    first = first or [f"ANS-{i} first" for i in range(n)]
    second = second or [f"ANS-{100 + i} second" for i in range(n)]
    a = make_side(tmp_path, NAMES[0], first)
    b = make_side(tmp_path, NAMES[1], second)
    return arena.prepare((a, None), (b, None), seed=seed, name="cmp")


# -- numbers ------------------------------------------------------------------------------


def test_wilson_interval_matches_hand_worked_values():
    # 7 of 10, z = 1.959964: centre (0.7 + z^2/20) / (1 + z^2/10) = 0.644491,
    # half-width z / (1 + z^2/10) * sqrt(0.021 + z^2/400) = 0.247714.
    low, high = arena.wilson(7, 10)
    assert low == pytest.approx(0.396774, abs=1e-5)
    assert high == pytest.approx(0.892209, abs=1e-5)
    # At the edges the interval is not zero-width: 0/10 reaches z^2 / (n + z^2).
    assert arena.wilson(0, 10) == pytest.approx((0.0, 3.841459 / 13.841459), abs=1e-6)
    assert arena.wilson(10, 10) == pytest.approx((1 - 3.841459 / 13.841459, 1.0), abs=1e-6)
    assert arena.wilson(1, 2)[0] + arena.wilson(1, 2)[1] == pytest.approx(1.0)
    assert arena.wilson(0, 0) is None


def test_win_rates_count_decisive_verdicts_with_ties_and_both_bad_apart(tmp_path):
    comparison = make_comparison(tmp_path, n=8)
    pairs = comparison.pairs
    assert len(pairs) == 8
    # Verdicts given in side terms (the first side wins 4, the second 2), written in
    # the terms shown, which depend on each pair's random order.
    wanted = [0, 0, 0, 1, 0, 1, "tie", "both_bad"]
    for pair, outcome in zip(pairs, wanted):
        shown = outcome if isinstance(outcome, str) else ("A" if pair.shown_a == outcome else "B")
        comparison.record(pair, shown)
    results = comparison.results()
    assert (results["verdicts"], results["decisive"], results["ties"],
            results["both_bad"]) == (8, 6, 1, 1)
    assert results["complete"] and results["revealed"]
    first, second = results["sides"]
    assert first["spec"].startswith(NAMES[0]) and second["spec"].startswith(NAMES[1])
    assert (first["wins"], second["wins"]) == (4, 2)
    assert first["win_rate"] == pytest.approx(4 / 6) and second["win_rate"] == pytest.approx(2 / 6)
    assert (first["ci_low"], first["ci_high"]) == pytest.approx(arena.wilson(4, 6))
    # 4 of 6 by hand: centre (2/3 + z^2/12) / (1 + z^2/6) = 0.601611, half-width
    # z / (1 + z^2/6) * sqrt((2/9)/6 + z^2/144) = 0.301618.
    assert first["ci_low"] == pytest.approx(0.299993, abs=1e-5)
    assert first["ci_high"] == pytest.approx(0.903229, abs=1e-5)
    # A later word on a pair replaces the earlier one; None takes it back.
    comparison.record(pairs[6], None)
    again = comparison.results()
    assert again["verdicts"] == 7 and again["ties"] == 0 and not again["complete"]
    assert again["sides"] is None  # no longer complete: hidden again
    with pytest.raises(arena.ComparisonError, match="unknown verdict"):
        comparison.record(pairs[0], "left")


# -- order and blindness ----------------------------------------------------------------


def test_order_is_random_per_prompt_reproducible_and_names_no_model(tmp_path):
    comparison = make_comparison(tmp_path, n=40, seed=11)
    orders = [p.shown_a for p in comparison.pairs]
    assert 10 < sum(orders) < 30  # both orders drawn, not one side always first
    assert orders == [arena.shown_first(11, p.id) for p in comparison.pairs]
    reopened = arena.open_comparison("cmp")
    assert [p.shown_a for p in reopened.pairs] == orders
    other = [arena.shown_first(12, p.id) for p in comparison.pairs]
    assert other != orders
    # Shown: the answers as A and B in the drawn order.
    for pair in comparison.pairs:
        shown = pair.shown()
        assert shown["answer_a"] == pair.answers[pair.shown_a]
        assert shown["answer_b"] == pair.answers[1 - pair.shown_a]
        assert not re.search("|".join(NAMES), json.dumps(shown))
    # The same seed is kept when the comparison is reopened by its command.
    with pytest.raises(arena.ComparisonError, match="made with seed 11"):
        arena.prepare((Run(comparison.sides[0].run), None), (Run(comparison.sides[1].run), None),
                      name="cmp", seed=5)

    for pair in comparison.pairs[:5]:
        comparison.record(pair, "A")
    assert comparison.results()["sides"] is None
    hidden = tmp_path / "hidden.jsonl"
    comparison.export(hidden)
    text = hidden.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 5
    assert not re.search("|".join(NAMES), text)
    assert "model_a" not in text and "winner" not in text
    shown = tmp_path / "shown.jsonl"
    comparison.export(shown, reveal=True)
    rows = [json.loads(line) for line in shown.read_text(encoding="utf-8").splitlines()]
    for row, pair in zip(rows, comparison.pairs):
        # "A" was said of each: the winner is whichever side was shown as A.
        assert row["model_a"] == comparison.sides[pair.shown_a].spec == row["winner"]
        assert row["answer_a"] == pair.answers[pair.shown_a]
    assert comparison.results(reveal=True)["sides"][0]["spec"].startswith(NAMES[0])


def test_a_comparison_of_other_sides_under_the_same_name_is_refused(tmp_path):
    comparison = make_comparison(tmp_path, n=3)
    third = make_side(tmp_path, "gamma", ["x", "y", "z"])
    with pytest.raises(arena.ComparisonError, match="compares alphamodel.* another --name"):
        arena.prepare((Run(comparison.sides[0].run), None), (third, None), name="cmp")
    with pytest.raises(arena.ComparisonError, match="same answers"):
        arena.prepare((third, None), (third, None))


def test_answers_to_other_prompts_are_not_paired(tmp_path):
    a = make_side(tmp_path, "a", ["one", "two", "three"])
    rows = [{"instruction": "Something else entirely.", "input": "", "output": "o",
             "response": "r"}]
    source = tmp_path / "b.jsonl"
    source.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    b = Run(import_answers(str(source), "b")["run_path"])
    comparison = arena.prepare((a, None), (b, None))
    assert comparison.pairs == [] and comparison.unpaired == 4


# -- a verdict is on disk before the next ---------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from tui_ft.grade.arena import open_comparison
    comparison = open_comparison(sys.argv[1])
    for pair in comparison.pending():
        comparison.record(pair, "B")
        print(pair.key, flush=True)
    print("done", flush=True)
    """)


def test_verdicts_survive_sigkill_of_the_writer_and_resume(tmp_path):
    comparison = make_comparison(tmp_path, n=30)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(comparison.path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    said = [proc.stdout.readline().strip() for _ in range(6)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    reopened = arena.open_comparison(str(comparison.path))
    on_disk = {p.key for p in reopened.pairs if reopened.verdict(p) == "B"}
    # Every verdict the writer reported before it died is on disk.
    assert set(said) <= on_disk
    assert len(reopened.pending()) == 30 - len(on_disk)
    # The same writer goes on with the rest only.
    rest = subprocess.run([sys.executable, "-c", WRITER, str(comparison.path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert rest.returncode == 0, rest.stderr
    assert len(rest.stdout.split()) - 1 == 30 - len(on_disk)
    final = arena.open_comparison(str(comparison.path))
    results = final.results()
    assert results["verdicts"] == 30 and results["complete"]
    lines = final.verdicts_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30  # nothing recorded twice
    assert all(json.loads(line)["answers"] for line in lines)


# -- the judge in both orders ------------------------------------------------------------------

_ANSWER = re.compile(r"Answer A:\n(.*?)\n\nAnswer B:\n(.*?)\n\n", re.S)


def shown_answers(body) -> tuple[str, str]:
    return _ANSWER.search(body["messages"][-1]["content"]).groups()


def pair_judge(body) -> Reply:
    """A judge that prefers the answer saying 'good' (whatever its place), says tie
    when neither does, and for 'fickle' prompts always prefers the answer shown
    first: a position bias the two orders must cancel."""
    a, b = shown_answers(body)
    if "fickle" in a + b:
        verdict = "A"
    elif "garbled" in a + b:
        return Reply("I cannot decide which of answer A and answer B")
    elif "good" in a and "good" not in b:
        verdict = "A"
    elif "good" in b and "good" not in a:
        verdict = "B"
    else:
        verdict = "tie"
    return Reply(json.dumps({"reason": "because", "verdict": verdict}))


def test_the_judge_asks_both_orders_and_disagreement_is_a_tie(tmp_path):
    first = ["good ANS-0", "ANS-1 meh", "good ANS-2", "ANS-3 fickle", "ANS-4 garbled",
             "ANS-5 meh"]
    second = ["ANS-10 meh", "good ANS-11", "ANS-12 meh", "ANS-13 fickle", "ANS-14",
              "ANS-15 meh"]
    comparison = make_comparison(tmp_path, first=first, second=second)
    with JudgeServer(lambda answer, attempt, body: pair_judge(body)) as server:
        settings = JudgeSettings(server.url, "judge-m", load_prompt("pairwise"),
                                 retries=1, backoff=0.01)
        summary = arena.judge_comparison(comparison, settings)
        # Two requests per pair: each pair in both orders, each answer once as A.
        assert server.sent() == 12
        seen = {}
        for request in server.requests:
            seen.setdefault(request["answer"], []).append(shown_answers(request["body"]))
        for a, b in zip(first, second):
            asked = [x for xs in seen.values() for x in xs if set(x) == {a, b}]
            assert sorted(asked) == sorted([(a, b), (b, a)])
        body = server.requests[0]["body"]
        assert body["response_format"]["json_schema"]["schema"]["properties"]["verdict"][
            "enum"] == ["A", "B", "tie", "both_bad"]

        rater = arena.judge_rater("judge-m")
        outcome = {}
        for pair in comparison.pairs:
            verdict = comparison.verdict(pair, rater)
            outcome[pair.id] = None if verdict is None else (
                pair.winner(verdict) if pair.winner(verdict) is not None else verdict)
        got = [outcome[p.id] for p in comparison.pairs]
        # good first, good second, good first, position bias -> tie, unreadable -> none,
        # both meh -> tie.
        assert got == [0, 1, 0, "tie", None, "tie"]
        assert summary["unparseable"] == 1 and summary["errors"] == 0
        assert summary["judged"] == 5 and summary["decisive"] == 3 and summary["ties"] == 2
        # Not every pair has a verdict: the sides stay unnamed.
        assert summary["sides"] is None
        lines = [json.loads(x) for x in
                 (comparison.path / "judge.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(lines) == 12 and {x["order"] for x in lines} == {"AB", "BA"}
        fickle = next(json.loads(x) for x in comparison.verdicts_path.read_text(
            encoding="utf-8").splitlines() if json.loads(x)["id"] == comparison.pairs[3].id)
        assert fickle["orders"] == {"AB": "A", "BA": "A"} and fickle["verdict"] == "tie"

        # Run again: nothing is asked again (the unreadable pair included).
        again = arena.judge_comparison(arena.open_comparison(str(comparison.path)), settings)
        assert server.sent() == 12 and again["judged"] == 5


def test_the_judge_resumes_after_a_server_error_sending_only_what_is_missing(tmp_path):
    comparison = make_comparison(tmp_path, first=["good ANS-0", "good ANS-1"],
                                 second=["ANS-10", "ANS-11"])

    def behave(answer, attempt, body):
        # The second order of the second pair fails every time in the first batch.
        a, b = shown_answers(body)
        if a == "ANS-11" and failing[0]:
            return Reply(status=500, body=b"boom")
        return pair_judge(body)

    failing = [True]
    with JudgeServer(behave) as server:
        settings = JudgeSettings(server.url, "judge-m", load_prompt("pairwise"),
                                 retries=1, backoff=0.01)
        first = arena.judge_comparison(comparison, settings)
        assert first["errors"] == 1 and first["judged"] == 1
        sent = server.sent()
        failing[0] = False
        second = arena.judge_comparison(arena.open_comparison(str(comparison.path)), settings)
        assert second["errors"] == 0 and second["judged"] == 2 and second["complete"]
        assert server.sent() == sent + 1  # only the failed order is asked again
        assert [s["wins"] for s in second["sides"]] == [2, 0]


def test_a_score_prompt_cannot_fill_a_comparison(tmp_path):
    comparison = make_comparison(tmp_path, n=2)
    settings = JudgeSettings("http://127.0.0.1:9/v1", "m", load_prompt("score100"))
    with pytest.raises(Exception, match="pairwise prompt"):
        arena.judge_comparison(comparison, settings)
