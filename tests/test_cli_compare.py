"""`tui-ft compare RUN_A[:CKPT] RUN_B[:CKPT]` through real subprocesses: the summary and
its JSON, the export without names until --reveal, the judge filling the comparison
from a real loopback server (stopped by ctrl+c, then resumed), mistakes said in one
line, and two checkpoints of a real tiny run answering into the comparison's folder
while the run's own answers stay as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from judge_server import JudgeServer, Reply
from tui_ft.config import TrainConfig
from tui_ft.grade import arena
from tui_ft.grade.imported import import_answers
from tui_ft.grade.responses import generate_responses, read_responses
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import sigint_as_at_a_terminal, word_task_config, word_task_files

NAMES = ("alphamodel", "betamodel")
CONTRACT = {"comparison", "by", "pairs", "verdicts", "remaining", "decisive", "ties",
            "both_bad", "complete", "revealed", "sides"}


def make_side(tmp_path, name: str, answers: list[str]) -> Run:
    rows = [{"instruction": f"Spell the number {i}.", "input": "", "output": f"n{i}",
             "response": text} for i, text in enumerate(answers)]
    source = tmp_path / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Run(import_answers(str(source), name)["run_path"])


def sides(tmp_path, n: int = 4):
    make_side(tmp_path, NAMES[0], [f"good ANS-{i}" for i in range(n)])
    make_side(tmp_path, NAMES[1], [f"ANS-{100 + i}" for i in range(n)])


def test_compare_makes_a_comparison_and_exports_without_names_until_reveal(run_cli, tmp_path):
    sides(tmp_path)
    proc = run_cli("compare", *NAMES, "--json", "--seed", "4", "--name", "c1")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert CONTRACT <= set(summary)
    assert summary["pairs"] == 4 and summary["verdicts"] == 0 and summary["seed"] == 4
    assert summary["sides"] is None and summary["revealed"] is False

    # A person's verdicts (the screen's job), written through the engine.
    comparison = arena.open_comparison("c1")
    for pair in comparison.pairs[:3]:
        comparison.record(pair, "A" if pair.shown_a == 0 else "B")  # the first side wins

    out = tmp_path / "verdicts.jsonl"
    proc = run_cli("compare", *NAMES, "--name", "c1", "--export", out)
    assert proc.returncode == 0, proc.stderr
    assert "3 of 4 (1 left): 3 decisive" in proc.stdout
    assert "stays hidden" in proc.stdout
    text = out.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 3
    for name in NAMES:
        assert name not in text
        assert name not in proc.stdout.split("comparison:")[1].split("\n", 1)[1]
    rows = [json.loads(line) for line in text.splitlines()]
    assert {r["by"] for r in rows} == {"human"}
    assert all({"answer_a", "answer_b", "verdict", "instruction"} <= set(r) for r in rows)

    proc = run_cli("compare", *NAMES, "--name", "c1", "--export", out, "--reveal", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    first, second = summary["sides"]
    assert first["run"].endswith(NAMES[0]) and (first["wins"], second["wins"]) == (3, 0)
    assert first["win_rate"] == 1.0
    assert (first["ci_low"], first["ci_high"]) == pytest.approx(arena.wilson(3, 3))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all(r["winner"].startswith(NAMES[0]) for r in rows)
    assert all(NAMES[0] in (r["model_a"] if r["verdict"] == "A" else r["model_b"])
               for r in rows)


def test_compare_judge_fills_the_comparison_in_both_orders(run_cli, tmp_path):
    sides(tmp_path, n=3)

    def behave(answer, attempt, body):
        text = body["messages"][-1]["content"]
        a = text.split("Answer A:\n", 1)[1].split("\n\n", 1)[0]
        return Reply(json.dumps({"reason": "r", "verdict": "A" if "good" in a else "B"}))

    with JudgeServer(behave) as server:
        proc = run_cli("compare", *NAMES, "--judge", "--base-url", server.url, "--model",
                       "jm", "--backoff", "0.01", "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert server.sent() == 6
        assert summary["by"] == "judge:jm" and summary["judged"] == 3
        assert summary["complete"] and summary["revealed"]  # the end: names shown
        assert [s["wins"] for s in summary["sides"]] == [3, 0]
        assert summary["sent"] == 6 and summary["unparseable"] == 0
        # Again: nothing sent, the same results; the human has judged nothing.
        again = run_cli("compare", *NAMES, "--judge", "--base-url", server.url, "--model",
                        "jm", "--json")
        assert json.loads(again.stdout)["sent"] == 0 and server.sent() == 6
        human = run_cli("compare", *NAMES)
        assert "verdicts by human: 0 of 3" in human.stdout
        assert "other raters: judge:jm" in human.stdout


@pytest.mark.parametrize("args, message", [
    (["--judge"], "--judge needs the judge server"),
    (["--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "add --judge"),
    (["--judge", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--prompt",
      "score100"], "a score prompt reads one answer"),
])
def test_compare_mistakes_are_one_line(run_cli, tmp_path, args, message):
    sides(tmp_path, n=2)
    proc = run_cli("compare", *NAMES, *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith("tui-ft: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_grade_needs_a_terminal_and_stands_alone(run_cli, tmp_path):
    sides(tmp_path, n=2)
    proc = run_cli("compare", *NAMES, "--grade")
    assert proc.returncode == 1
    assert "the comparison screen needs a terminal" in proc.stderr
    proc = run_cli("compare", *NAMES, "--grade", "--json")
    assert proc.returncode == 1 and "--grade opens the screen" in proc.stderr


def test_compare_names_a_missing_run_or_checkpoint(run_cli, tmp_path):
    sides(tmp_path, n=2)
    proc = run_cli("compare", NAMES[0], "nosuchrun")
    assert proc.returncode == 1 and "nosuchrun: no such run" in proc.stderr
    proc = run_cli("compare", NAMES[0], f"{NAMES[1]}:checkpoint-7")
    assert proc.returncode == 1 and "no checkpoint-7 to answer with" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_two_checkpoints_of_a_real_run_answer_into_the_comparison(run_cli, tmp_path):
    config = word_task_config(tmp_path, "real", max_steps=4, save_strategy="steps",
                              save_steps=2, save_total_limit=None)
    config["test_dataset"] = word_task_files(tmp_path, "real", n_test=5)["test_dataset"]
    config["max_new_tokens"] = 4
    run, _ = prepare_run(TrainConfig.from_dict(config))
    assert run_in_process(run) == "finished"
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]
    # The run's own answers, from its last checkpoint, perhaps graded already.
    generate_responses(run, checkpoint="checkpoint-4", device="cpu")
    before = run.responses_path.read_bytes()
    status = run.read_status().get("responses")

    proc = run_cli("compare", f"{run.path}:2", f"{run.path}:last", "--device", "cpu",
                   "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["pairs"] == 5
    comparison = arena.open_comparison(summary["comparison"])
    assert [s.checkpoint for s in comparison.sides] == ["checkpoint-2", "checkpoint-4"]
    first = read_responses(comparison.answers_path(1))
    second = read_responses(comparison.answers_path(2))
    assert {r["checkpoint"] for r in first} == {"checkpoint-2"}
    # The last checkpoint's answers are the run's own, copied; the other's generated.
    assert comparison.answers_path(2).read_bytes() == before
    assert len(first) == len(second) == 5
    # The run's answers and their record in status.json are as they were.
    assert run.responses_path.read_bytes() == before
    assert run.read_status().get("responses") == status
    assert not list(comparison.path.glob("*.partial"))

    # The run's answers to the validation split are not the test answers a comparison
    # needs: a run alone then means its best checkpoint, answering the test split.
    generate_responses(run, checkpoint="checkpoint-2", split="val", device="cpu")
    other = arena.prepare((run, None), (run, "2"), name="val-answers", device="cpu")
    assert other.sides[0].checkpoint == "checkpoint-4"
    answers = read_responses(other.answers_path(1))
    assert {(r["split"], r["checkpoint"]) for r in answers} == {("test", "checkpoint-4")}
    assert len(other.pairs) == 5


def test_ctrl_c_stops_the_judge_and_the_same_command_goes_on(tmp_path):
    sides(tmp_path, n=3)

    def behave(answer, attempt, body):
        # The first pair's two orders come back at once, then the server hangs.
        fast = len(server.requests) <= 2
        return Reply(json.dumps({"verdict": "tie"}), delay=0 if fast else 30)

    args = ["compare", *NAMES, "--judge", "--model", "jm", "--concurrency", "1"]
    with JudgeServer(behave) as server:
        env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
        proc = subprocess.Popen([sys.executable, "-m", "tui_ft.cli", *args, "--base-url",
                                 server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, preexec_fn=sigint_as_at_a_terminal)
        deadline = time.monotonic() + 30
        while server.sent() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.sent() == 3
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped: 1 of 3 pairs judged" in err
    (folder,) = arena.comparisons_dir().iterdir()
    comparison = arena.open_comparison(str(folder))
    assert comparison.results("judge:jm")["verdicts"] == 1

    with JudgeServer(lambda a, n, b: Reply(json.dumps({"verdict": "tie"}))) as server:
        again = subprocess.run([sys.executable, "-m", "tui_ft.cli", *args, "--base-url",
                                server.url, "--json"], capture_output=True, text=True,
                               env=env, timeout=60)
        assert again.returncode == 0, again.stderr
        assert server.sent() == 4  # the two pairs left, in both orders
        assert json.loads(again.stdout)["ties"] == 3
