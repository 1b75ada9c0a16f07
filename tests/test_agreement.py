"""How far the judge agrees with the person (`tui-ft grades agreement`): figures
checked against values worked out by hand, a judge that says "correct" to
everything gets kappa 0 (its accuracy is the base rate), the 0-100 threshold
chosen on the graded answers, and the judge's word beside the mark in the export."""

from __future__ import annotations

import json

import pytest

from judge_server import JudgeServer, Reply
from test_judge import make_run
from tui_ft.grade.agreement import Confusion, choose_threshold
from tui_ft.grade.responses import answer_key, read_responses
from tui_ft.grade.store import GradeStore


def test_kappa_on_a_table_worked_by_hand():
    # 50 answers: judge and person agree on 20 correct and 15 wrong.
    table = Confusion(jc_hc=20, jc_hw=5, jw_hc=10, jw_hw=15)
    assert table.n == 50
    assert table.accuracy == pytest.approx(35 / 50)
    assert table.base_rate == pytest.approx(30 / 50)
    # Chance agreement: judge says correct 25/50, person 30/50:
    # 0.5 * 0.6 + 0.5 * 0.4 = 0.5, so kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    assert table.kappa == pytest.approx(0.4)
    # Another: po = 0.85, pe = 0.6*0.55 + 0.4*0.45 = 0.51, kappa = 0.34/0.49.
    table = Confusion(jc_hc=50, jc_hw=10, jw_hc=5, jw_hw=35)
    assert table.kappa == pytest.approx(0.34 / 0.49)
    # Perfect agreement is 1, perfect disagreement on a balanced run is -1.
    assert Confusion(7, 0, 0, 3).kappa == pytest.approx(1.0)
    assert Confusion(0, 5, 5, 0).kappa == pytest.approx(-1.0)


def test_a_judge_that_always_says_correct_gets_kappa_zero():
    pairs = [(True, h) for h in [True] * 8 + [False] * 2]
    table = Confusion.of(pairs)
    assert table.accuracy == pytest.approx(0.8) == pytest.approx(table.base_rate)
    assert table.kappa == 0.0
    # Judge and person both constant and alike: kappa is 0/0, reported as 0.
    assert Confusion.of([(True, True)] * 4).kappa == 0.0


def test_threshold_chosen_on_the_graded_answers():
    # The person marks correct exactly the answers scored 70 or more, except one 40.
    scored = [(90, True), (75, True), (70, True), (40, True), (60, False), (30, False),
              (10, False), (65, False)]
    # At 70: 3 of 4 correct caught, no false alarm -> accuracy 7/8, the best kappa.
    assert choose_threshold(scored) == 70
    # A person who marks everything correct: no threshold beats chance; lowest wins.
    assert choose_threshold([(s, True) for s in (10, 50, 90)]) == 10


def grade(run, marks: dict[str, str]) -> None:
    store = GradeStore(run)
    for record in read_responses(run.responses_path):
        answer = record["response"].split()[0]
        if answer in marks:
            store.mark(str(record["id"]), record.get("checkpoint"), marks[answer],
                       answer_key(record))


def test_agreement_cli_matches_the_hand_computed_table(run_cli, tmp_path):
    run = make_run(tmp_path, 10)
    judge_says = {f"ANS-{i}": v for i, v in enumerate(
        "correct correct correct correct wrong wrong wrong correct wrong correct".split())}
    human = {f"ANS-{i}": v for i, v in enumerate(
        "correct correct correct wrong wrong wrong correct correct wrong".split())}
    # ANS-9 is judged but not graded: it does not count.
    grade(run, human)

    def behave(answer, attempt, body):
        return Reply(json.dumps({"reason": "r", "verdict": judge_says[answer]}))

    with JudgeServer(behave) as server:
        proc = run_cli("judge", run.path, "--base-url", server.url, "--model", "m",
                       "--prompt", "correct-wrong", "--json")
        assert proc.returncode == 0, proc.stderr
    proc = run_cli("grades", "agreement", run.path, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # By hand over ANS-0..8: judge c,c,c,c,w,w,w,c,w; person c,c,c,w,w,w,c,c,w.
    # jc_hc: 0,1,2,7 = 4; jc_hw: 3 = 1; jw_hc: 6 = 1; jw_hw: 4,5,8 = 3.
    assert result["confusion"] == {"judge_correct_human_correct": 4,
                                   "judge_correct_human_wrong": 1,
                                   "judge_wrong_human_correct": 1,
                                   "judge_wrong_human_wrong": 3}
    assert result["n"] == 9
    assert result["accuracy"] == pytest.approx(7 / 9)
    assert result["base_rate"] == pytest.approx(5 / 9)
    # pe = (5/9)(5/9) + (4/9)(4/9) = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40.
    assert result["kappa"] == pytest.approx(22 / 40)
    assert result["baseline_accuracy"] == pytest.approx(5 / 9)
    assert result["baseline_label"] == "correct"
    assert "threshold" not in result

    text = run_cli("grades", "agreement", run.path)
    assert text.returncode == 0, text.stderr
    assert "kappa 0.550" in text.stdout and "77.8%" in text.stdout
    assert result["taken_from_judge"] == 0


    # The export carries the judge's word beside the mark; old fields unchanged.
    out = tmp_path / "export.jsonl"
    assert run_cli("grades", "export", run.path, out).returncode == 0
    rows = {r["response"].split()[0]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["ANS-3"]["grade"] == "wrong" and rows["ANS-3"]["judge_verdict"] == "correct"
    assert rows["ANS-3"]["judge_reason"] == "r" and rows["ANS-3"]["judge_model"] == "m"
    assert rows["ANS-9"]["grade"] == "ungraded" and rows["ANS-9"]["judge_verdict"] == "correct"
    assert json.loads(rows["ANS-0"]["judge_reply"])["verdict"] == "correct"
    for key in ("id", "instruction", "input", "expected", "response", "grade", "note", "run",
                "checkpoint", "graded_at", "exact_match"):
        assert key in rows["ANS-0"]

    # ANS-9 marked by taking the judge's verdict (the Grading screen's v): the judge
    # agreeing with itself is no evidence, so the table stays as it was.
    record = next(r for r in read_responses(run.responses_path)
                  if r["response"].startswith("ANS-9"))
    GradeStore(run).mark(str(record["id"]), record.get("checkpoint"), "correct",
                         answer_key(record), by="judge")
    again = json.loads(run_cli("grades", "agreement", run.path, "--json").stdout)
    assert again["n"] == 9 and again["confusion"] == result["confusion"]
    assert again["taken_from_judge"] == 1
    assert GradeStore(run).of(record).by == "judge"
    # Marked again by hand: a person's mark, counted.
    GradeStore(run).mark(str(record["id"]), record.get("checkpoint"), "correct",
                         answer_key(record))
    assert GradeStore(run).of(record).by is None


def test_constant_judge_cli_kappa_zero_and_score_threshold(run_cli, tmp_path):
    run = make_run(tmp_path, 6)
    grade(run, {"ANS-0": "correct", "ANS-1": "correct", "ANS-2": "correct",
                "ANS-3": "correct", "ANS-4": "wrong", "ANS-5": "wrong"})
    with JudgeServer(lambda a, n, b: Reply('{"reason": "fine", "verdict": "correct"}')) as s:
        proc = run_cli("judge", run.path, "--base-url", s.url, "--model", "yes-man",
                       "--prompt", "correct-wrong")
        assert proc.returncode == 0, proc.stderr
    result = json.loads(run_cli("grades", "agreement", run.path, "--json").stdout)
    assert result["kappa"] == 0.0
    assert result["accuracy"] == pytest.approx(4 / 6) == pytest.approx(result["base_rate"])
    assert result["baseline_accuracy"] == pytest.approx(4 / 6)

    # A 0-100 judge: scores 95, 85, 75, 45, 55, 15 against c, c, c, c, w, w.
    scores = {"ANS-0": 95, "ANS-1": 85, "ANS-2": 75, "ANS-3": 45, "ANS-4": 55, "ANS-5": 15}
    with JudgeServer(lambda a, n, b: Reply(json.dumps({"score": scores[a]}))) as s:
        proc = run_cli("judge", run.path, "--base-url", s.url, "--model", "scorer")
        assert proc.returncode == 0, proc.stderr
    # The last judge is the default; the earlier one can still be asked for.
    result = json.loads(run_cli("grades", "agreement", run.path, "--json").stdout)
    assert result["kind"] == "score" and result["model"] == "scorer"
    # At 75: c,c,c | w(45 is c), w, w -> jc_hc 3, jw_hc 1, jw_hw 2: kappa
    # po 5/6, pe (3/6)(4/6) + (3/6)(2/6) = 1/2, kappa = (5/6 - 1/2) / (1/2) = 2/3.
    # At 45: 45, 55 pass -> jc_hw 1 too: po 5/6, pe (5/6)(4/6)+(1/6)(2/6) = 22/36,
    # kappa = (30/36 - 22/36) / (14/36) = 8/14 < 2/3. So 75.
    assert result["threshold"] == 75
    assert result["kappa"] == pytest.approx(2 / 3)
    named = json.loads(run_cli("grades", "agreement", run.path, "--json", "--model",
                               "yes-man").stdout)
    assert named["kappa"] == 0.0 and named["model"] == "yes-man"


def test_agreement_without_judgments_or_grades_is_a_clear_error(run_cli, tmp_path):
    run = make_run(tmp_path, 2)
    proc = run_cli("grades", "agreement", run.path, "--json")
    assert proc.returncode == 1 and "no judgments" in proc.stderr
    assert "tui-ft judge" in proc.stderr and "Traceback" not in proc.stderr
    with JudgeServer(lambda a, n, b: Reply('{"score": 50}')) as s:
        assert run_cli("judge", run.path, "--base-url", s.url, "--model", "m").returncode == 0
    proc = run_cli("grades", "agreement", run.path)
    assert proc.returncode == 1 and "graded by both" in proc.stderr
    proc = run_cli("grades", "agreement", run.path, "--model", "other")
    assert proc.returncode == 1 and "model 'other'" in proc.stderr
