"""The LLM judge (`tui-ft judge`) against a real chat-completions server on loopback
(tests/judge_server.py): good replies, retries after 429 (Retry-After) and 500,
replies slower than the timeout, garbage recorded as unparseable, terminal escapes
kept as sent and shown escaped, a server gone mid-run then resumed without sending
a judged answer again, the API key kept out of every file, and prompt files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import sigint_as_at_a_terminal
from judge_server import JudgeServer, Reply
from tui_ft.grade.imported import import_answers
from tui_ft.grade.judge import (JudgeError, JudgeSettings, judge_run, load_prompt,
                                parse_reply, public_url, read_api_key,
                                retry_after)
from tui_ft.grade.responses import answer_key, read_responses
from tui_ft.runfolder import Run

CONTRACT = {"judged", "unparseable", "errors", "mean_score", "pass_rate"}
FAST = ("--backoff", "0.01", "--retries", "2")


def make_run(tmp_path, n: int, name: str = "judged") -> Run:
    rows = [{"instruction": f"Say the code word {i}.", "input": "x" if i % 2 else "",
             "output": f"word {i}", "response": f"ANS-{i} word {i}"} for i in range(n)]
    source = tmp_path / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Run(import_answers(str(source), name)["run_path"])


def journal(run: Run) -> list[dict]:
    path = run.path / "judgments.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def score_of(answer: str) -> int:
    return 10 * int(answer.split("-")[1])


def good(answer, attempt, body):
    return Reply(json.dumps({"score": score_of(answer)}))


def judge(run_cli, run, server, *extra, model="judge-m"):
    return run_cli("judge", run.path, "--base-url", server.url, "--model", model, *FAST,
                   *extra)


def test_good_replies_json_contract_and_no_second_send(run_cli, tmp_path):
    run = make_run(tmp_path, 6)
    with JudgeServer(good) as server:
        proc = judge(run_cli, run, server, "--json", "--concurrency", "3")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert CONTRACT <= set(summary)
        assert summary["judged"] == 6 and summary["unparseable"] == 0
        assert summary["errors"] == 0 and summary["sent"] == 6
        assert summary["mean_score"] == pytest.approx(sum(range(0, 60, 10)) / 6)
        # score100 passes at 50: answers 5 (50) only of 0..50.
        assert summary["pass_rate"] == pytest.approx(1 / 6)
        assert server.sent() == 6
        body = server.requests[0]["body"]
        assert body["model"] == "judge-m" and body["temperature"] == 0
        assert body["response_format"]["type"] == "json_schema"
        assert "Authorization" not in server.requests[0]["headers"]
        assert server.requests[0]["path"] == "/v1/chat/completions"

        lines = journal(run)
        responses = {r["id"]: r for r in read_responses(run.responses_path)}
        assert len(lines) == 6
        for line in lines:
            assert line["answer"] == answer_key(responses[line["id"]])
            assert line["score"] == score_of(responses[line["id"]]["response"].split()[0])
            assert line["unparseable"] is False and line["prompt"] == "score100"

        again = judge(run_cli, run, server, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["sent"] == 0
        assert json.loads(again.stdout)["judged"] == 6
        assert server.sent() == 6  # nothing sent again
        # Another model is another judge: everything is sent to it.
        other = judge(run_cli, run, server, "--json", model="judge-2")
        assert json.loads(other.stdout)["sent"] == 6 and server.sent() == 12


def test_concurrency_is_bounded(tmp_path):
    run = make_run(tmp_path, 8)
    with JudgeServer(lambda a, n, b: Reply('{"score": 1}', delay=0.2)) as server:
        summary = judge_run(run, JudgeSettings(server.url, "m", load_prompt("score100"),
                                               concurrency=3))
    assert summary["judged"] == 8
    assert server.most_in_flight == 3


def test_429_with_retry_after_and_500_are_retried(tmp_path):
    run = make_run(tmp_path, 3)

    def behave(answer, attempt, body):
        if answer == "ANS-1" and attempt == 1:
            return Reply(status=429, body=b'{"error": "slow down"}',
                         headers={"Retry-After": "1"})
        if answer == "ANS-2" and attempt == 1:
            return Reply(status=500, body=b"boom")
        return good(answer, attempt, body)

    with JudgeServer(behave) as server:
        summary = judge_run(run, JudgeSettings(server.url, "m", load_prompt("score100"),
                                               concurrency=2, retries=3, backoff=0.01))
        assert summary["judged"] == 3 and summary["errors"] == 0
        assert server.sent("ANS-1") == 2 and server.sent("ANS-2") == 2
        times = [r["t"] for r in server.requests if r["answer"] == "ANS-1"]
        # The server's Retry-After (1 s) won over the 0.01 s backoff.
        assert times[1] - times[0] >= 0.9
        times = [r["t"] for r in server.requests if r["answer"] == "ANS-2"]
        assert times[1] - times[0] < 0.9


def test_slow_reply_past_timeout_is_retried_then_recorded_as_error(run_cli, tmp_path):
    run = make_run(tmp_path, 3)

    def behave(answer, attempt, body):
        if answer == "ANS-1" and attempt == 1:
            return Reply(json.dumps({"score": 99}), delay=2.0)  # past the timeout
        if answer == "ANS-2":
            return Reply(json.dumps({"score": 99}), delay=2.0)  # always
        return good(answer, attempt, body)

    with JudgeServer(behave) as server:
        started = time.monotonic()
        proc = judge(run_cli, run, server, "--json", "--timeout", "0.5", "--retries", "1")
        assert time.monotonic() - started < 15
        assert proc.returncode == 1, proc.stderr
        assert "1 answers got no judgment (one: no reply within 0.5 s" in proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["judged"] == 2 and summary["errors"] == 1
        assert server.sent("ANS-1") == 2 and server.sent("ANS-2") == 2
        by_answer = {line["id"]: line for line in journal(run)}
        errors = [line for line in by_answer.values() if line.get("error")]
        assert len(errors) == 1 and "no reply within 0.5 s" in errors[0]["error"]
        assert "score" not in errors[0]  # an error is no score, not zero
        assert [x["score"] for x in by_answer.values() if not x.get("error")] == [0, 10]

    # The answer that failed is sent again next time; the others are not.
    with JudgeServer(good) as server:
        proc = judge(run_cli, run, server, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["errors"] == 0
        assert [r["answer"] for r in server.requests] == ["ANS-2"]


def test_a_trickling_or_huge_reply_is_bounded(tmp_path):
    run = make_run(tmp_path, 2)

    def behave(answer, attempt, body):
        if answer == "ANS-0":
            return Reply('{"score": 1}', trickle=0.1)  # a byte each 0.1 s: ~10 s
        return Reply(body=b"x" * (5 << 20))

    with JudgeServer(behave) as server:
        started = time.monotonic()
        summary = judge_run(run, JudgeSettings(server.url, "m", load_prompt("score100"),
                                               timeout=1.0, retries=0))
        assert time.monotonic() - started < 5
    assert summary["errors"] == 2
    errors = sorted(line["error"] for line in journal(run))
    assert errors[0].startswith("a reply larger than 4 MiB")
    assert errors[1].startswith("no reply within 1 s")


def test_garbage_is_recorded_unparseable_never_zero_and_not_resent(run_cli, tmp_path):
    run = make_run(tmp_path, 4)

    def behave(answer, attempt, body):
        return {"ANS-0": Reply("I cannot judge this."),
                "ANS-1": Reply(body=b"<html>not json</html>"),
                "ANS-2": Reply(body=b'{"choices": []}'),
                "ANS-3": Reply("Score: 80/100")}[answer]

    with JudgeServer(behave) as server:
        proc = judge(run_cli, run, server, "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["judged"] == 4 and summary["unparseable"] == 3
        # The mean is of the one score given, not of 80, 0, 0, 0.
        assert summary["mean_score"] == 80.0 and summary["pass_rate"] == 1.0
        lines = {line["id"]: line for line in journal(run)}
        replies = sorted(line["reply"] for line in lines.values() if line["unparseable"])
        assert replies == ['<html>not json</html>', 'I cannot judge this.',
                           '{"choices": []}']
        assert all(line["score"] is None for line in lines.values() if line["unparseable"])
        again = judge(run_cli, run, server, "--json")
        assert json.loads(again.stdout)["sent"] == 0 and server.sent() == 4


def test_reply_with_terminal_escapes_is_kept_and_shown_escaped(run_cli, tmp_path):
    run = make_run(tmp_path, 1)
    nasty = "\x1b]0;owned\x07\x1b[2J\x1b[31mno idea\x9b1m"

    with JudgeServer(lambda a, n, b: Reply(nasty)) as server:
        proc = judge(run_cli, run, server)
        assert proc.returncode == 0, proc.stderr
    assert journal(run)[0]["reply"] == nasty  # stored exactly as sent
    assert "\x1b" not in proc.stdout + proc.stderr and "\x9b" not in proc.stdout
    assert "\u241b]0;owned\u2407\u241b[2J" in proc.stdout  # shown, visibly
    out = tmp_path / "export.jsonl"
    proc = run_cli("grades", "export", run.path, out)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert row["judge_reply"] == nasty and row["judge_unparseable"] is True


def test_server_gone_mid_run_then_resume_sends_only_the_rest(run_cli, tmp_path):
    run = make_run(tmp_path, 8)
    first = JudgeServer(lambda a, n, b: Reply(drop=True))
    served = []

    def behave(answer, attempt, body):
        if len(served) >= 3:
            # The server goes away mid-run: this connection drops, the rest are refused.
            threading.Thread(target=first.close, daemon=True).start()
            return Reply(drop=True)
        served.append(answer)
        return good(answer, attempt, body)

    first.behave = behave
    with first:
        proc = judge(run_cli, run, first, "--json", "--concurrency", "1", "--retries", "1")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["judged"] == 3 and summary["errors"] == 5
    assert "connection failed" in journal(run)[-1]["error"]

    with JudgeServer(good) as second:
        proc = judge(run_cli, run, second, "--json", "--concurrency", "2")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["judged"] == 8 and summary["errors"] == 0
        assert second.sent() == 5
        assert not {r["answer"] for r in second.requests} & set(served)


def test_ctrl_c_stops_cleanly_and_keeps_what_is_judged(tmp_path):
    run = make_run(tmp_path, 6)

    def behave(answer, attempt, body):
        return Reply(json.dumps({"score": 70}), delay=0 if answer in ("ANS-0", "ANS-1") else 30)

    with JudgeServer(behave) as server:
        env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
        proc = subprocess.Popen([sys.executable, "-m", "tui_ft.cli", "judge", str(run.path),
                                 "--base-url", server.url, "--model", "m", "--json",
                                 "--concurrency", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=sigint_as_at_a_terminal)
        deadline = time.monotonic() + 30
        while server.sent() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.sent() == 3  # two judged, the third waiting on a slow reply
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped: 2 of 6" in err
    assert json.loads(out)["judged"] == 2
    assert [line["score"] for line in journal(run)] == [70, 70]


def test_api_key_from_private_file_or_env_and_never_written(run_cli, tmp_path,
                                                            monkeypatch):
    run = make_run(tmp_path, 2)
    secret = "sk-test-0123456789abcdef"
    key_file = tmp_path / "key"
    key_file.write_text(secret + "\n")
    key_file.chmod(0o644)
    seen = []

    def behave(answer, attempt, body):
        seen.append(answer)
        if answer == "ANS-1" and attempt == 1:
            # A careless server that echoes the key in its error.
            return Reply(status=500, body=f"bad token {secret}".encode())
        return good(answer, attempt, body)

    with JudgeServer(behave) as server:
        proc = judge(run_cli, run, server, "--api-key-file", key_file)
        assert proc.returncode == 1 and "chmod 600" in proc.stderr and "0644" in proc.stderr
        assert server.sent() == 0
        key_file.chmod(0o600)
        proc = judge(run_cli, run, server, "--api-key-file", key_file, "--retries", "0")
        assert proc.returncode == 1, proc.stderr  # ANS-1's 500, not retried
        assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {secret}"}
        assert secret not in proc.stdout + proc.stderr
        monkeypatch.setenv("TUI_FT_JUDGE_API_KEY", "sk-env-key")
        proc = judge(run_cli, run, server, "--json")
        assert proc.returncode == 0, proc.stderr
        assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-env-key"
        export = tmp_path / "out.jsonl"
        assert run_cli("grades", "export", run.path, export).returncode == 0
    files = [p for p in run.path.rglob("*") if p.is_file()] + [export]
    assert any(p.name == "judgments.jsonl" for p in files)
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and b"sk-env-key" not in data, path
    assert "<api key>" in (run.path / "judgments.jsonl").read_text()


def test_read_api_key_prefers_the_named_variable(monkeypatch):
    monkeypatch.delenv("TUI_FT_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert read_api_key() is None
    monkeypatch.setenv("OPENAI_API_KEY", "b")
    assert read_api_key() == "b"
    monkeypatch.setenv("TUI_FT_JUDGE_API_KEY", "a")
    assert read_api_key() == "a"
    monkeypatch.setenv("MY_KEY", "c")
    assert read_api_key("MY_KEY") == "c"
    with pytest.raises(JudgeError, match="UNSET_KEY is not set"):
        read_api_key("UNSET_KEY")


def test_server_without_constrained_output_is_asked_plainly(tmp_path):
    run = make_run(tmp_path, 3)

    def behave(answer, attempt, body):
        if "response_format" in body:
            return Reply(status=400, body=b'{"error": "response_format is not supported"}')
        return Reply(str(score_of(answer)))  # a bare number, as the book's judge replies

    with JudgeServer(behave) as server:
        summary = judge_run(run, JudgeSettings(server.url, "m", load_prompt("score100"),
                                               concurrency=1, backoff=0.01))
        assert summary["judged"] == 3 and summary["unparseable"] == 0
        # Refused once, then every request is plain.
        assert [("response_format" in r["body"]) for r in server.requests] == [
            True, False, False, False]
    assert [line["constrained"] for line in journal(run)] == [False] * 3
    assert sorted(line["score"] for line in journal(run)) == [0, 10, 20]


def test_bad_key_stops_the_batch_with_one_message(run_cli, tmp_path):
    run = make_run(tmp_path, 5)
    with JudgeServer(lambda a, n, b: Reply(status=401, body=b'{"error": "invalid key"}')
                     ) as server:
        proc = judge(run_cli, run, server, "--concurrency", "1")
    assert proc.returncode == 1
    assert proc.stderr.startswith("tui-ft: error: ") and "API key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert server.sent() == 1
    assert not (run.path / "judgments.jsonl").exists()


def test_verdict_prompt_and_prompt_files(run_cli, tmp_path):
    run = make_run(tmp_path, 2)

    def behave(answer, attempt, body):
        verdict = "correct" if answer == "ANS-0" else "wrong"
        return Reply(json.dumps({"reason": "because", "verdict": verdict}))

    mine = tmp_path / "mine.yaml"
    mine.write_text("kind: verdict\nuser: 'Is {response} right for {instruction}? "
                    "Expected {expected}.'\nconstrain: false\n")
    with JudgeServer(behave) as server:
        proc = judge(run_cli, run, server, "--json", "--prompt", "correct-wrong")
        summary = json.loads(proc.stdout)
        assert summary["pass_rate"] == 0.5 and summary["mean_score"] is None
        assert server.requests[0]["body"]["messages"][0]["role"] == "system"
        assert {line["reason"] for line in journal(run)} == {"because"}
        proc = judge(run_cli, run, server, "--json", "--prompt", mine)
        assert proc.returncode == 0, proc.stderr
        last = server.requests[-1]["body"]
        assert "response_format" not in last
        assert last["messages"][0]["content"].startswith("Is ANS-")

    for text, words in (("kind: verdict\nuser: 'no answer here'\n", ["{response}"]),
                        ("kind: stars\nuser: '{response}'\n", ["'kind'", "stars"]),
                        ("kind: score\nuser: '{response}'\ncolour: red\n", ["'colour'"]),
                        ("kind: score\nuser: x: y\n", ["bad.yaml:2:8", "mapping values"]),
                        ("kind: score\nuser: '{response}'\npass_threshold: 101\n",
                         ["pass_threshold", "0 to 100"])):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        proc = run_cli("judge", run.path, "--base-url", "http://127.0.0.1:9/v1", "--model",
                       "m", "--prompt", bad)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"tui-ft: error: {bad}"), proc.stderr
        for word in words:
            assert word in proc.stderr, proc.stderr
    proc = run_cli("judge", run.path, "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                   "--prompt", "nosuch")
    assert proc.returncode == 1 and "score100" in proc.stderr and "correct-wrong" in proc.stderr


def test_without_httpx_the_message_names_the_extra(run_cli, tmp_path):
    run = make_run(tmp_path, 1)
    block = ("import sys, runpy\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'httpx':\n"
             "            raise ImportError('no httpx')\n"
             "sys.meta_path.insert(0, Block())\n"
             "sys.argv = ['tui-ft'] + sys.argv[1:]\n"
             "runpy.run_module('tui_ft.cli', run_name='__main__')\n")
    base = [sys.executable, "-c", block]
    proc = subprocess.run(base + ["judge", str(run.path), "--base-url",
                                  "http://127.0.0.1:9/v1", "--model", "m"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert 'pip install "tui-ft[judge]"' in proc.stderr and "Traceback" not in proc.stderr
    # Everything else works without it.
    proc = subprocess.run(base + ["grades", "summary", str(run.path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_bad_settings_are_refused_before_anything_is_sent(tmp_path):
    run = make_run(tmp_path, 1)
    prompt = load_prompt("score100")
    for settings, word in ((JudgeSettings("ftp://x/v1", "m", prompt), "--base-url"),
                           (JudgeSettings("http://h/v1", " ", prompt), "--model"),
                           (JudgeSettings("http://h/v1", "m", prompt, timeout=0), "--timeout"),
                           (JudgeSettings("http://h/v1", "m", prompt, retries=-1),
                            "--retries")):
        with pytest.raises(JudgeError, match=word):
            judge_run(run, settings)
    assert not (run.path / "judgments.jsonl").exists()


@pytest.mark.parametrize("kind,text,expected", [
    ("score", "85", (85, None)), ("score", "Score: 85/100", (85, None)),
    ("score", '```json\n{"score": 7}\n```', (7, None)), ("score", "85.0", (85, None)),
    ("score", "I'd give it 40 out of 100.", (40, None)),
    ("score", "between 80 and 90", (None, None)), ("score", '{"score": 150}', (None, None)),
    ("score", '{"rating": 3}', (None, None)), ("score", "3.5", (None, None)),
    ("score", "", (None, None)),
    # Numbers inside terminal escapes are not scores.
    ("score", "\x1b]0;title\x07\x1b[2Jno idea", (None, None)),
    ("score", "\x1b[1m85\x1b[0m", (85, None)),
    ("verdict", "Correct.", (None, "correct")), ("verdict", "incorrect", (None, "wrong")),
    ("verdict", "not correct", (None, "wrong")),
    ("verdict", '{"reason": "r", "verdict": "WRONG"}', (None, "wrong")),
    ("verdict", "correct or wrong?", (None, None)), ("verdict", "maybe", (None, None)),
])
def test_parse_reply(kind, text, expected):
    parsed = parse_reply(kind, text)
    assert (parsed.score, parsed.verdict) == expected
    assert parsed.ok == (expected != (None, None))


def test_retry_after_header_forms():
    from email.utils import formatdate

    assert retry_after("2") == 2.0 and retry_after(" 0.5 ") == 0.5
    assert 3 <= retry_after(formatdate(time.time() + 5, usegmt=True)) <= 5
    assert retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after("1e9") == 120.0  # capped: a server cannot park the batch for days
    assert retry_after("soon") is None and retry_after(None) is None
    assert retry_after("nan") is None


def test_stop_event_ends_the_batch_and_keeps_what_is_judged(tmp_path):
    run = make_run(tmp_path, 6)
    stop = threading.Event()

    def behave(answer, attempt, body):
        return Reply('{"score": 60}', delay=0 if answer in ("ANS-0", "ANS-1") else 5)

    def progress(done, total):
        if done == 2:
            stop.set()

    with JudgeServer(behave) as server:
        started = time.monotonic()
        summary = judge_run(run, JudgeSettings(server.url, "m", load_prompt("score100"),
                                               concurrency=1),
                            on_progress=progress, stop=stop)
        assert time.monotonic() - started < 4
    assert summary["stopped"] is True and summary["judged"] == 2
    assert summary["errors"] == 0 and len(journal(run)) == 2


@pytest.mark.slow
def test_wheel_ships_the_prompts_and_declares_the_judge_extra(tmp_path, repo_root):
    import zipfile

    pytest.importorskip("hatchling", reason="the test extra installs hatchling")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(repo_root)], check=True,
                   capture_output=True)
    (path,) = tmp_path.glob("tui_ft-*.whl")
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        assert "tui_ft/grade/judge_prompts/score100.yaml" in names
        assert "tui_ft/grade/judge_prompts/correct-wrong.yaml" in names
        meta = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: judge" in meta
    assert any(line.startswith("Requires-Dist: httpx") and "extra == 'judge'" in line
               for line in meta.splitlines())
    # httpx is never a plain dependency: the app installs without it.
    assert not any(line.startswith("Requires-Dist: httpx") and "extra" not in line
                   for line in meta.splitlines())


def test_a_second_judge_on_one_run_is_refused(run_cli, tmp_path):
    from tui_ft.fsio import try_lock

    run = make_run(tmp_path, 1)
    fd = try_lock(run.path / ".judge.lock")  # as a 'tui-ft judge' running now holds it
    try:
        with JudgeServer(good) as server:
            proc = judge(run_cli, run, server)
            assert proc.returncode == 1 and "another 'tui-ft judge'" in proc.stderr
            assert server.sent() == 0
    finally:
        os.close(fd)
    with JudgeServer(good) as server:
        assert judge(run_cli, run, server).returncode == 0


def test_the_url_written_has_no_credentials():
    # Stored in each judgment: a key put in the URL must not travel with it.
    assert public_url("https://me:sk-secret@api.example.com:8443/v1?api-key=sk-2") == (
        "https://api.example.com:8443/v1")
    assert public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
