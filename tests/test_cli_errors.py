"""A mistake on the command line, in a real `tui-ft` process: exit 2, nothing on
stdout, and exactly two lines on stderr: the command's own usage on one line (its
required arguments named) and `tui-ft COMMAND: error: WHAT`. Unknown options after
a sub-command are reported by that sub-command, not with the top-level usage."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

# argv, the command's prog, words its usage line shows, words the error shows.
CASES = {
    "unknown_option": (("train", "--bogus"), "tui-ft train", ["[config]"], ["--bogus"]),
    "missing_run": (("responses",), "tui-ft responses", ["run"], ["required", "run"]),
    "extra_positional": (("runs", "x"), "tui-ft runs", ["[options]"], ["unrecognized", "x"]),
    "missing_prompt": (("generate",), "tui-ft generate", ["--prompt PROMPT"],
                       ["required", "--prompt"]),
    "bad_choice": (("generate", "-p", "x", "--dtype", "nope"), "tui-ft generate",
                   ["--prompt PROMPT"], ["--dtype", "nope"]),
    "bad_number": (("stop", "--wait", "soon", "r"), "tui-ft stop", ["run"],
                   ["--wait", "soon"]),
    "nested_missing_path": (("data", "inspect"), "tui-ft data inspect", ["path"],
                            ["required", "path"]),
    "nested_unknown_option": (("data", "preview", "f.jsonl", "-i", "0", "--bogus"),
                              "tui-ft data preview", ["path", "--index N"], ["--bogus"]),
    "missing_subcommand": (("data",), "tui-ft data", ["{inspect,preview}"], ["required"]),
    "bad_subcommand": (("grades", "nope"), "tui-ft grades", ["{"], ["invalid choice", "nope"]),
    "grades_export_missing": (("grades", "export", "r"), "tui-ft grades export",
                              ["run out"], ["required", "out"]),
}


@pytest.fixture(scope="module")
def results():
    from conftest import _run_cli

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run_cli, *case[0]) for name, case in CASES.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_error_is_one_line_after_the_commands_usage(results, name):
    _, prog, usage_words, error_words = CASES[name]
    proc = results[name]
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    usage, error = lines
    assert usage.startswith(f"usage: {prog} ") and f"'{prog} --help'" in usage, usage
    assert all(w in usage for w in usage_words), usage
    assert error.startswith(f"{prog}: error: "), error
    assert all(w in error for w in error_words), error


def test_top_level_mistake_keeps_the_top_level_usage(run_cli):
    proc = run_cli("--bogus")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["usage: tui-ft [options] [RUN | COMMAND ...]",
                                        "tui-ft: error: unrecognized arguments: --bogus"]


def test_sub_command_help_names_the_command(run_cli):
    proc = run_cli("generate", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: tui-ft generate [-h]")
    assert "--prompt PROMPT" in proc.stdout
