"""One generation job per run (issue 13): two `tui-ft responses RUN` at once
interleaved responses.jsonl and crashed the second. The second is now refused at once,
told who holds the run, and the first one's answers are whole. Real processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui_ft.grade.responses import generation_holder, read_responses

from helpers import wait_for
from test_generation_settings import SHORT, tiny_run


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui_ft.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_second_generation_of_a_run_is_refused_while_the_first_writes(tmp_path):
    many = [{"id": f"m{i}", "instruction": f"Count to {i}.", "input": "", "output": str(i)}
            for i in range(40)]
    run = tiny_run(tmp_path, SHORT + many, max_new_tokens=64)
    first = cli("responses", str(run.path), "--batch-size", "1")
    try:
        # The first holds the lock once its pid is in the lock file.
        holder = wait_for(lambda: (generation_holder(run) or 0) > 0 and generation_holder(run),
                          timeout=120, what="the first job's lock")
        assert holder == first.pid
        second = cli("responses", str(run.path))
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1 and "Traceback" not in err
        assert f"pid {first.pid}" in err and "another 'tui-ft responses'" in err, err
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    lines = read_responses(run.responses_path)
    assert sorted(line["id"] for line in lines) == sorted(r["id"] for r in SHORT + many)
    assert len({json.dumps(line, sort_keys=True) for line in lines}) == len(lines)
    assert generation_holder(run) is None  # released when the job ends
