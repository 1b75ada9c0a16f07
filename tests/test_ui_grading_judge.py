"""The LLM judge inside the Grading screen, driven through Textual's Pilot: the
judgments are made for real (judge_run against the loopback chat-completions
server, writing RUN/judgments.jsonl), then the screen shows each verdict and reason
under its own answer, `v` takes the verdict as the mark (in grades.jsonl at once),
and the filter cycle's "disagree" lists exactly the answers judge and person mark
differently. Plus the GradingSession side of it, without Textual."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from judge_server import JudgeServer, Reply
from test_ui_grading import CHECKPOINT, make_run, response_line, write_jsonl
from tui_ft.grade.judge import JudgeSettings, JudgmentStore, judge_run, load_prompt
from tui_ft.grade.responses import answer_key, read_responses
from tui_ft.grade.session import GradingSession
from tui_ft.grade.store import GradeStore
from tui_ft.runfolder import Run
from tui_ft.ui.app import create_app
from tui_ft.ui.widgets.key_legend import KeyLegend
from tui_ft.ui.widgets.response_view import ResponseView

from helpers import pilot_wait_for as wait_for

HOSTILE = "[bold red]fake[/bold red] \x1b]0;PWNED\x07 \x1b[2J gone \x9b31m \u202eevil"
# The judge's word on each answer (the server finds the answer by its ANS-n tag).
VERDICTS = {
    "ANS-1": {"verdict": "correct", "reason": "names the plural buses"},
    "ANS-2": {"verdict": "wrong", "reason": HOSTILE},
    "ANS-3": {"verdict": "correct", "reason": "close enough"},
    "ANS-4": {"verdict": "wrong", "reason": "the wrong colour"},
    "ANS-5": None,  # a reply with no verdict in it: unparseable
}
RECORDS = [
    {"id": f"q{i}", "instruction": f"Question {i}?", "input": "", "expected": f"truth {i}",
     "response": f"ANS-{i} an answer"} for i in range(1, 7)  # q6 is never judged
]


def verdict_server(answer: str, attempt: int, body: dict) -> Reply:
    said = VERDICTS.get(answer)
    return Reply(json.dumps(said) if said is not None else "I cannot decide.")


def judge(run: Run, url: str, prompt: str = "correct-wrong", model: str = "judge-m") -> dict:
    return judge_run(run, JudgeSettings(url, model, load_prompt(prompt), retries=0,
                                        timeout=10))


@pytest.fixture
def judged(tmp_path) -> Run:
    run = make_run(tmp_path, responses=RECORDS)
    with JudgeServer(verdict_server) as server:
        # q6's answer is judged later: only five reach the judge now.
        write_jsonl(run.responses_path, [response_line(r) for r in RECORDS[:5]])
        summary = judge(run, server.url)
    write_jsonl(run.responses_path, [response_line(r) for r in RECORDS])
    assert summary["judged"] == 5 and summary["unparseable"] == 1 and summary["errors"] == 0
    return run


def journal(run: Run) -> list[dict]:
    if not run.grades_path.exists():
        return []
    return [json.loads(line) for line in run.grades_path.read_text(encoding="utf-8").splitlines()]


def judge_text(app) -> str:
    return app.screen.query_one(ResponseView).judge_text()


def message(screen) -> str:
    return str(screen.query_one("#grading-message").content)


def legend(app) -> dict[str, bool]:
    return {entry[2]: entry[3] for entry in app.screen.query_one(KeyLegend).entries()}


async def test_each_answer_shows_its_own_verdict_and_reason(judged):
    app = create_app(run=judged.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert screen.current["id"] == "q1"
        assert judge_text(app) == "judge \u2713 correct \u00b7 names the plural buses"
        assert legend(app)["Take judge"] is True
        await pilot.press("j")
        shown = judge_text(app)
        # The hostile reason, literally: markup as typed, escapes as symbols.
        assert shown.startswith("judge \u2717 wrong \u00b7 [bold red]fake[/bold red] ")
        assert "\u241b]0;PWNED\u2407" in shown and "\u241b[2J gone" in shown
        assert "<U+009B>31m" in shown and "<U+202E>evil" in shown
        assert not any(c in shown for c in "\x1b\x07\x9b\u202e")
        await pilot.press("j", "j", "j")
        assert screen.current["id"] == "q5"
        assert "unparseable" in judge_text(app) and "I cannot decide." in judge_text(app)
        await pilot.press("j")
        assert screen.current["id"] == "q6" and judge_text(app) == ""
        assert legend(app)["Take judge"] is False  # shown, dimmed: nothing to take
        assert not screen.query_one("#judge-text").display


async def test_v_takes_the_verdict_as_the_mark_through_the_journal(judged):
    app = create_app(run=judged.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.press("v")
        # On disk as soon as the key was handled, like c and w; then moved on.
        assert [(e["id"], e["checkpoint"], e["grade"]) for e in journal(judged)] == [
            ("q1", CHECKPOINT, "correct")]
        assert journal(judged)[0]["answer"]  # tied to the exact answer, as c/w marks are
        assert "q1 marked correct, as the judge said" in message(screen)
        assert screen.current["id"] == "q2"
        await pilot.press("v")
        assert journal(judged)[-1]["id"] == "q2" and journal(judged)[-1]["grade"] == "wrong"
        assert GradeStore(judged).get("q2", CHECKPOINT).grade == "wrong"
        assert screen.current["id"] == "q3"
        await pilot.press("j", "j")
        assert screen.current["id"] == "q5"
        await pilot.press("v")  # unparseable: nothing is written
        assert len(journal(judged)) == 2 and screen.current["id"] == "q5"
        assert "cannot be taken as the mark" in message(screen)
        assert "unparseable" in message(screen)


async def test_disagree_filter_lists_exactly_the_disagreements(judged):
    store = GradeStore(judged)
    store.mark("q1", CHECKPOINT, "wrong")      # judge: correct -> disagree
    store.mark("q2", CHECKPOINT, "wrong")      # judge: wrong   -> agree
    store.mark("q3", CHECKPOINT, "wrong")      # judge: correct -> disagree
    store.mark("q5", CHECKPOINT, "correct")    # judge: unparseable -> not counted
    store.mark("q6", CHECKPOINT, "correct")    # not judged -> not counted
    app = create_app(run=judged.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        seen = []
        for _ in range(5):
            await pilot.press("f")
            seen.append(screen.session.filter)
        assert seen == ["ungraded", "correct", "wrong", "disagree", "all"]
        await pilot.press("f", "f", "f", "f")
        assert screen.session.filter == "disagree"
        listed = [screen.current["id"]]
        for _ in range(3):
            await pilot.press("j")
            listed.append(screen.current["id"])
        assert listed == ["q1", "q3", "q3", "q3"]
        assert "(2 of 2 disagree)" in str(screen.query_one("#grade-line").content)
        # Taking the judge's verdict ends the disagreement: the filter moves on.
        await pilot.press("v")
        assert journal(judged)[-1]["id"] == "q3" and journal(judged)[-1]["grade"] == "correct"
        assert screen.session.filter_position()[1] == 1


async def test_the_disagree_filter_with_nothing_to_show_says_so(judged):
    store = GradeStore(judged)
    store.mark("q1", CHECKPOINT, "correct")  # as the judge said
    app = create_app(run=judged.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.press("f", "f", "f", "f")
        assert screen.session.filter == "disagree"
        assert "no answer you marked has the judge's other verdict" in message(screen)
        await pilot.press("f")
        assert screen.session.filter == "all"


async def test_a_judge_run_while_the_screen_is_open_appears(tmp_path):
    run = make_run(tmp_path, responses=RECORDS)
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert judge_text(app) == "" and "Take judge" not in legend(app)
        filters = []
        for _ in range(4):
            await pilot.press("f")
            filters.append(screen.session.filter)
        assert filters == ["ungraded", "correct", "wrong", "all"]  # no judge, no disagree
        with JudgeServer(verdict_server) as server:
            # As 'tui-ft judge' in another terminal would: not in the app's loop.
            await asyncio.to_thread(judge, run, server.url)
        await wait_for(pilot, lambda: judge_text(app).startswith("judge \u2713 correct"),
                       timeout=6)
        assert legend(app)["Take judge"] is True


async def test_a_replaced_answer_does_not_show_the_old_judgment(judged):
    replaced = [dict(r, response="ANS-9 a new answer") if r["id"] == "q1" else r
                for r in RECORDS]
    write_jsonl(judged.responses_path, [response_line(r) for r in replaced])
    app = create_app(run=judged.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.screen.current["id"] == "q1"
        assert judge_text(app) == ""
        assert legend(app)["Take judge"] is False  # dimmed: nothing to take
        await pilot.press("v")
        assert journal(judged) == []
        await pilot.press("j")
        assert judge_text(app).startswith("judge \u2717 wrong")


# -- the session, without Textual ------------------------------------------------------


def session_of(run: Run) -> GradingSession:
    session = GradingSession(GradeStore(run), JudgmentStore(run))
    session.take_responses(read_responses(run.responses_path))
    return session


def test_a_score_is_read_against_the_built_in_prompts_pass_mark(tmp_path):
    run = make_run(tmp_path, responses=RECORDS[:3])
    scores = {"ANS-1": 50, "ANS-2": 49, "ANS-3": 100}
    with JudgeServer(lambda a, n, b: Reply(json.dumps({"score": scores[a]}))) as server:
        judge(run, server.url, prompt="score100")
    s = session_of(run)
    said = [s.suggestion(r) for r in s.responses]
    assert [(x.score, x.threshold, x.verdict) for x in said] == [
        (50, 50, "correct"), (49, 50, "wrong"), (100, 50, "correct")]


def test_a_score_from_a_prompt_file_is_read_against_its_own_pass_mark(tmp_path):
    run = make_run(tmp_path, responses=RECORDS[:2])
    prompt = tmp_path / "strict.yaml"
    prompt.write_text("kind: score\npass_threshold: 90\nuser: 'Score {response}'\n")
    scores = {"ANS-1": 72, "ANS-2": 90}
    with JudgeServer(lambda a, n, b: Reply(json.dumps({"score": scores[a]}))) as server:
        judge(run, server.url, prompt=str(prompt))
    s = session_of(run)
    assert [(x.score, x.threshold, x.verdict) for x in map(s.suggestion, s.responses)] == [
        (72, 90, "wrong"), (90, 90, "correct")]
    s.store.mark("q1", CHECKPOINT, "correct", answer=answer_key(s.responses[0]))
    assert s.disagrees(0)


def test_a_score_without_a_known_pass_mark_is_not_a_verdict(tmp_path):
    """A judgment from before pass marks were recorded, by a prompt file (its name says
    nothing certain of its mark; a file named like a built-in is not the built-in)."""
    run = make_run(tmp_path, responses=RECORDS[:1])
    store = JudgmentStore(run)
    record = read_responses(run.responses_path)[0]
    for prompt, judge_id in (("strict", "0123456789abcdef"), ("score100", "fedcba9876543210")):
        store.append({"id": "q1", "checkpoint": CHECKPOINT, "answer": answer_key(record),
                      "judge": judge_id, "prompt": prompt, "kind": "score", "model": "m",
                      "score": 72, "verdict": None, "reason": None, "unparseable": False,
                      "reply": '{"score": 72}'})
        s = session_of(run)
        said = s.suggestion(s.current)
        assert said.score == 72 and said.verdict is None and said.threshold is None
        assert f"no pass mark is known for prompt {prompt!r}" in said.why_not
        s.store.mark("q1", CHECKPOINT, "wrong", answer=answer_key(record))
        assert not s.disagrees(0)  # no verdict: neither agrees nor disagrees
    # The built-in prompt itself (its text and the model give the judge's identity):
    # its pass mark is known even where the judgment does not record it.
    store.append({"id": "q1", "checkpoint": CHECKPOINT, "answer": answer_key(record),
                  "judge": load_prompt("score100").identity("m"), "prompt": "score100",
                  "kind": "score", "model": "m", "score": 72, "unparseable": False})
    s = session_of(run)
    said = s.suggestion(s.current)
    assert (said.threshold, said.verdict) == (50, "correct") and s.disagrees(0)


def test_a_judgments_file_that_is_a_folder_does_not_stop_grading(tmp_path):
    run = make_run(tmp_path, responses=RECORDS[:2])
    (run.path / "judgments.jsonl").mkdir()

    async def check():
        app = create_app(run=run.path, start_mode="grading")
        async with app.run_test(size=(100, 30)) as pilot:
            assert "cannot read the judge's judgments" in message(app.screen)
            await pilot.press("c")
            assert journal(run)[-1]["grade"] == "correct"

    asyncio.run(check())


async def test_a_long_reason_takes_three_lines_and_says_it_goes_on(tmp_path):
    run = make_run(tmp_path, responses=RECORDS[:1])
    long = "because " * 2000 + "THE END"  # under the 20,000 characters a reply keeps
    with JudgeServer(lambda a, n, b: Reply(json.dumps({"verdict": "wrong",
                                                        "reason": long}))) as server:
        await asyncio.to_thread(judge, run, server.url)
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        line = app.screen.query_one("#judge-text")
        shown = judge_text(app)
        assert shown.startswith("judge \u2717 wrong \u00b7 because because")
        assert shown.endswith("\u2026") and "THE END" not in shown
        assert line.region.height == 3 and len(shown.splitlines()) == 3
        assert app.screen.query_one("#response-panel").region.height >= 4
        await pilot.resize_terminal(120, 24)
        await pilot.pause()
        assert max(len(x) for x in judge_text(app).splitlines()) > 80  # fitted again
        # The smallest terminal: one line, so the answers keep theirs.
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        assert line.region.height == 1 and judge_text(app).endswith("\u2026")
        for panel in ("#expected-panel", "#response-panel"):
            assert app.screen.query_one(panel).region.height >= 4, panel


# -- judging from the screen (l) -------------------------------------------------------


def fill_dialog(app, **values: str) -> None:
    from tui_ft.ui.screens.grading_judge import JudgeDialog

    assert isinstance(app.screen, JudgeDialog)
    for name, value in values.items():
        app.screen.query_one(f"#judge-{name}").value = value


async def test_l_judges_in_the_background_and_remembers_the_server_not_the_key(
        tmp_path, isolated_dirs, monkeypatch):
    from tui_ft.ui.screens.grading_judge import JudgeDialog

    monkeypatch.setenv("TUI_FT_JUDGE_API_KEY", "sk-secret-123")
    run = make_run(tmp_path, responses=RECORDS)
    with JudgeServer(verdict_server) as server:
        app = create_app(run=run.path, start_mode="grading")
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert legend(app)["LLM judge"] is True
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog))
            assert "$TUI_FT_JUDGE_API_KEY" in str(app.screen.query_one("#judge-key").content)
            fill_dialog(app, base_url="", model="judge-m", prompt="correct-wrong")
            await pilot.press("enter")  # an empty URL: refused in the dialog, nothing sent
            assert isinstance(app.screen, JudgeDialog)
            assert "--base-url ''" in str(app.screen.query_one("#judge-problem").content)
            fill_dialog(app, base_url=server.url)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is screen)
            await wait_for(pilot, lambda: screen.judging is None, timeout=20)
            assert "6 of 6 answers judged by judge-m (correct-wrong), unparseable 2" in \
                message(screen)
            assert judge_text(app) == "judge \u2713 correct \u00b7 names the plural buses"
            assert server.sent() == 6
            assert all(r["headers"].get("Authorization") == "Bearer sk-secret-123"
                       for r in server.requests)
            # The same judge again sends nothing: every answer is judged.
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog))
            assert app.screen.query_one("#judge-base_url").value == server.url  # remembered
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is screen and screen.judging is None,
                           timeout=20)
            assert server.sent() == 6 and "6 of 6 answers judged" in message(screen)
    remembered = (isolated_dirs["config"] / "settings.yaml").read_text()
    assert "judge-m" in remembered and server.url in remembered
    for path in (isolated_dirs["config"] / "settings.yaml", run.path / "judgments.jsonl"):
        assert "sk-secret-123" not in path.read_text()


async def test_l_again_stops_the_judge_and_the_next_run_sends_only_the_rest(tmp_path):
    from tui_ft.ui.screens.grading_judge import JudgeDialog

    run = make_run(tmp_path, responses=RECORDS)
    slow = lambda a, n, b: Reply('{"verdict": "wrong", "reason": "slow"}', delay=0.4)  # noqa
    with JudgeServer(slow) as server:
        app = create_app(run=run.path, start_mode="grading")
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog))
            fill_dialog(app, base_url=server.url, model="slow-m", prompt="correct-wrong",
                        concurrency="1")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "1 of 6 answers judged" in message(screen),
                           timeout=10)
            await pilot.press("l")
            await wait_for(pilot, lambda: screen.judging is None, timeout=10)
            assert message(screen).startswith("stopped: ")
            kept = {e["id"] for e in JudgmentStore(run).entries()}
            assert 1 <= len(kept) < 6
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is screen and screen.judging is None,
                           timeout=20)
            assert "6 of 6 answers judged by slow-m" in message(screen)
    # What was judged before the stop was never sent again.
    assert [server.sent(f"ANS-{rid[1:]}") for rid in sorted(kept)] == [1] * len(kept)
    assert len(JudgmentStore(run).entries()) == 6


async def test_a_judge_that_cannot_start_says_why(tmp_path):
    from tui_ft.ui.screens.grading_judge import JudgeDialog

    run = make_run(tmp_path, responses=RECORDS[:2])
    key = tmp_path / "key"
    key.write_text("sk-x")
    key.chmod(0o644)
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog))
        fill_dialog(app, base_url="http://127.0.0.1:9/v1", model="m", key_file=str(key))
        await pilot.press("enter")
        assert "lets other users read the API key" in str(
            app.screen.query_one("#judge-problem").content)
        fill_dialog(app, key_file="", prompt="no-such-prompt")
        await pilot.press("enter")
        assert "no such judge prompt" in str(app.screen.query_one("#judge-problem").content)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.judging is None and not (run.path / "judgments.jsonl").exists()


async def test_without_the_http_client_l_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "httpx", None)  # 'import httpx' fails, as uninstalled
    run = make_run(tmp_path, responses=RECORDS[:2])
    app = create_app(run=run.path, start_mode="grading")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.press("l")
        await pilot.pause()
        assert app.screen is screen
        assert 'pip install "tui-ft[judge]"' in message(screen)
        await pilot.press("c")  # grading goes on
        assert journal(run)[-1]["grade"] == "correct"


def test_quitting_mid_batch_stops_the_judge_and_keeps_what_is_judged(tmp_path):
    """q while the judge runs: the app closes, the batch ends with it (its lock is
    free at once), and the judgments written are whole lines a next batch builds on."""
    from tui_ft.fsio import try_lock
    from tui_ft.grade.judge import JUDGE_LOCK
    from tui_ft.ui.screens.grading_judge import JudgeDialog

    run = make_run(tmp_path, responses=RECORDS)
    slow = lambda a, n, b: Reply('{"verdict": "correct", "reason": "ok"}', delay=0.4)  # noqa

    async def quit_mid_batch(url: str) -> None:
        app = create_app(run=run.path, start_mode="grading")
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog))
            fill_dialog(app, base_url=url, model="m", prompt="correct-wrong", concurrency="1")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "1 of 6 answers judged" in message(screen),
                           timeout=10)
            await pilot.press("q")

    with JudgeServer(slow) as server:
        asyncio.run(quit_mid_batch(server.url))
        fd = None
        for _ in range(50):  # the worker thread ends within a tick of the stop
            fd = try_lock(run.path / JUDGE_LOCK)
            if fd is not None:
                break
            time.sleep(0.1)
        assert fd is not None, "the judge went on after the app closed"
        os.close(fd)
        judged = JudgmentStore(run).entries()
        assert 1 <= len(judged) < 6 and all(e.get("verdict") == "correct" for e in judged)
        summary = judge(run, server.url, model="m")
        assert summary["judged"] == 6 and summary["skipped"] == len(judged)
