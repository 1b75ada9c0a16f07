"""The judge on a really full disk (a small tmpfs, root only; see test_disk_full.py):
the batch stops at the first judgment it cannot save, with the one message, every
judgment before it intact, and the same command resumes once there is space."""

from __future__ import annotations

import json

import pytest

from judge_server import JudgeServer, Reply
from test_disk_full import fill, small_disk  # noqa: F401 -- the fixture
from test_judge import make_run
from tui_ft.grade.judge import JudgmentStore

pytestmark = pytest.mark.slow


def test_a_full_disk_stops_the_batch_and_resume_sends_the_rest(run_cli, tmp_path, small_disk,
                                                              monkeypatch):
    disk, _ = small_disk
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(disk / "runs"))
    run = make_run(tmp_path, 12)
    filler = []

    def behave(answer, attempt, body):
        if not filler and answer == "ANS-2":
            filler.append(fill(disk))
        # A long reply, so the journal's last page fills after a few.
        return Reply(json.dumps({"score": 50}) + " " * 1500)

    with JudgeServer(behave) as server:
        proc = run_cli("judge", run.path, "--base-url", server.url, "--model", "m",
                       "--concurrency", "1")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr.startswith("tui-ft: error: disk full: cannot save the judgment")
        assert "the judgments before it are on disk" in proc.stderr
        assert "Traceback" not in proc.stderr
        first_sent = server.sent()
        assert first_sent < 12  # stopped at the first judgment it could not save

        # As every reader sees the journal: a line the disk took only part of is no
        # judgment.
        kept = JudgmentStore(run).entries()
        assert 2 <= len(kept) < first_sent
        assert all(line["score"] == 50 for line in kept)

        filler[0].unlink()
        proc = run_cli("judge", run.path, "--base-url", server.url, "--model", "m", "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["judged"] == 12 and summary["errors"] == 0
        # Only what was not on disk went out again.
        assert server.sent() - first_sent == 12 - len(kept)
