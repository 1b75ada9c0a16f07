"""`tui-ft generate` for real: in subprocesses, greedy output is deterministic and equals
the engine in-process, sampling with a seed repeats, bad values exit 2 with a message;
through `tui_ft.cli.main` in this process, the cases that need no fresh interpreter.
Also the precision and device names the command takes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tui_ft.commands.generate import _write_text
from tui_ft.data.tokenizer import EOT_ID, decode, encode
from tui_ft.errors import TuiFtError
from tui_ft.model.generate import GenerationConfig, generate
from tui_ft.model.precision import (DeviceError, PrecisionError, parse_precision,
                                    pick_device, resolve_precision)

PROMPT = "Hello, world. The capital of France is"
HAS_CUDA = torch.cuda.is_available()

BASE = ("generate", "--model", "tiny", "--prompt", PROMPT, "--device", "cpu", "--json")
SAMPLE = ("--max-new-tokens", "10", "--temperature", "1.0", "--top-k", "40", "--top-p", "0.95")
RUNS = {
    "greedy_a": (*BASE, "--max-new-tokens", "12"),
    "greedy_b": (*BASE, "--max-new-tokens", "12"),
    "sample_a": (*BASE, *SAMPLE, "--seed", "11"),
    "sample_b": (*BASE, *SAMPLE, "--seed", "11"),
}
BAD = {
    "negative_max_new_tokens": (("--max-new-tokens", "-1"), "--max-new-tokens"),
    "top_p_zero": (("--top-p", "0"), "--top-p"),
    "top_p_above_one": (("--top-p", "1.5"), "--top-p"),
    "top_k_zero": (("--top-k", "0"), "--top-k"),
    "negative_temperature": (("--temperature", "-0.1"), "--temperature"),
    "nan_temperature": (("--temperature", "nan"), "--temperature"),
    "unknown_device": (("--device", "tpu"), "device"),
}


def _run(args, env):
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", *args], capture_output=True,
                          text=True, encoding="utf-8", env=env, timeout=120)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every command of this file, run once and side by side (each starts torch)."""
    home = tmp_path_factory.mktemp("cli-generate-home")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.pop("PYTHONWARNINGS", None)
    for var in ("TUI_FT_CONFIG_DIR", "TUI_FT_CACHE_DIR", "TUI_FT_RUNS_DIR"):
        env[var] = str(home / var.lower())
    jobs = dict(RUNS)
    for name, (extra, _) in BAD.items():
        jobs[name] = ("generate", "-m", "tiny", "-p", PROMPT, *extra)
    jobs["empty_prompt"] = ("generate", "-m", "tiny", "-p", "")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, args, env) for name, args in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def ok_json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_greedy_json_is_deterministic_and_equals_the_engine(results):
    a, b = ok_json(results["greedy_a"]), ok_json(results["greedy_b"])
    assert a == b
    assert set(a) >= {"prompt_ids", "output_ids", "text"}
    assert a["prompt_ids"] == encode(PROMPT)
    assert 1 <= len(a["output_ids"]) <= 12
    assert a["finish_reason"] in ("eos", "length")
    assert a["model"] == "tiny" and a["dtype"] == "fp32"

    from tui_ft.model.weights import load_model

    model, _ = load_model("tiny")
    ours = generate(model, [encode(PROMPT)], GenerationConfig(max_new_tokens=12))[0]
    assert a["output_ids"] == ours.output_ids
    assert a["text"] == ours.text
    ids = a["output_ids"]
    assert a["text"] == decode(ids[:-1] if ids and ids[-1] == EOT_ID else ids)


def main_in_process(capsys, *args):
    """`tui-ft ARGS` through the real entry point, in this process: (code, out, err)."""
    from tui_ft.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sampling_with_a_seed_repeats_and_another_seed_differs(results, capsys):
    a, b = ok_json(results["sample_a"]), ok_json(results["sample_b"])
    assert a["output_ids"] == b["output_ids"]
    assert 1 <= len(a["output_ids"]) <= 10
    code, out, _ = main_in_process(capsys, *BASE, *SAMPLE, "--seed", "11")
    assert code == 0 and json.loads(out)["output_ids"] == a["output_ids"]
    code, out, _ = main_in_process(capsys, *BASE, *SAMPLE, "--seed", "12")
    assert code == 0 and json.loads(out)["output_ids"] != a["output_ids"]
    greedy = ok_json(results["greedy_a"])
    assert a["output_ids"] != greedy["output_ids"][:len(a["output_ids"])]


def test_plain_output_is_the_generated_text(results, capsys):
    code, out, _ = main_in_process(capsys, "generate", "-m", "tiny", "-p", PROMPT,
                                   "--max-new-tokens", "5")
    assert code == 0
    first_five = ok_json(results["greedy_a"])["output_ids"][:5]
    expected = decode(first_five[:-1] if first_five[-1] == EOT_ID else first_five)
    assert out == expected + "\n"


@pytest.mark.parametrize("name", list(BAD) + ["empty_prompt"])
def test_bad_values_exit_2_with_a_message(results, name):
    proc = results[name]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    word = BAD[name][1] if name in BAD else "prompt"
    assert "error" in proc.stderr and word in proc.stderr


def test_more_new_tokens_than_the_context_is_a_usage_error(capsys):
    code, out, err = main_in_process(capsys, "generate", "-m", "tiny", "-p", "x",
                                     "--max-new-tokens", "256")
    assert code == 2 and out == ""
    assert "context" in err and "256" in err


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_cuda_and_fp16_on_a_cpu_machine_are_refused_clearly(capsys):
    for extra, words in ((("--device", "cuda"), ("cuda", "--device cpu")),
                         (("--dtype", "fp16"), ("fp16", "fp32"))):
        code, out, err = main_in_process(capsys, "generate", "-m", "tiny", "-p", "x", *extra)
        assert code == 2 and out == ""
        assert all(w in err for w in words), err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_to_a_terminal_has_its_control_characters_made_visible(monkeypatch):
    evil = "ok \x1b[2J\x1b]0;title\x07 \x9b31m done"
    terminal, pipe = _Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    _write_text(evil)
    monkeypatch.setattr(sys, "stdout", pipe)
    _write_text(evil)
    shown = terminal.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "\u241b[2J" in shown and shown.startswith("ok ")
    assert pipe.getvalue() == evil + "\n"  # a pipe gets the text as generated


# ---------------------------------------------------------- precision and device names


def test_precision_names():
    assert [parse_precision(n) for n in ("FP32", "bfloat16", "half", "int8", "auto")] == \
        ["fp32", "bf16", "fp16", "int8", "auto"]
    with pytest.raises(PrecisionError, match="fp8.*fp32, bf16"):
        parse_precision("fp8")
    assert issubclass(PrecisionError, TuiFtError) and issubclass(DeviceError, TuiFtError)


def test_resolving_precisions_on_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).dtype == torch.float32
    assert resolve_precision("auto", cpu).name == "fp32"
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    int8 = resolve_precision("int8", cpu)
    assert int8.int8 and int8.dtype == torch.float32
    with pytest.raises(PrecisionError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", cpu)


def test_device_names():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    for bad in ("tpu", "cuda:x", "gpu0"):
        with pytest.raises(DeviceError):
            pick_device(bad)
    if not HAS_CUDA:
        for name in ("cuda", "cuda:0"):
            with pytest.raises(DeviceError, match="no usable CUDA"):
                pick_device(name)
