"""`tui-ft generate` for real: in subprocesses, greedy output is deterministic and equals
the engine in-process, sampling with a seed repeats, bad values exit 2 with a message,
the prompt is put in the run's (or the asked, or alpaca) prompt style unless --raw, and
an unknown model is refused before torch is imported; through `tui_ft.cli.main` in this
process, the cases that need no fresh interpreter. Also the precision and device names
the command takes."""

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
from tui_ft.config import TrainConfig
from tui_ft.data.records import Record
from tui_ft.data.styles import get_style
from tui_ft.data.tokenizer import EOT_ID, decode, encode
from tui_ft.errors import TuiFtError
from tui_ft.model.generate import GenerationConfig, generate
from tui_ft.model.precision import (DeviceError, PrecisionError, parse_precision,
                                    pick_device, resolve_precision)

PROMPT = "Hello, world. The capital of France is"
HAS_CUDA = torch.cuda.is_available()

BASE = ("generate", "--model", "tiny", "--prompt", PROMPT, "--device", "cpu", "--json",
        "--raw")
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
    run = _chatml_run(home / "tui_ft_runs_dir" / "chatml-run")
    styled = ("--prompt", PROMPT, "--device", "cpu", "--json", "--max-new-tokens", "4")
    jobs["styled_preset"] = ("generate", "--model", "tiny", *styled)
    jobs["styled_run"] = ("generate", "--model", run.name, *styled)
    jobs["styled_checkpoint"] = ("generate", "--model", str(run / "checkpoints" /
                                                             "checkpoint-3"), *styled)
    jobs["styled_run_override"] = ("generate", "--model", str(run), "--style", "phi3",
                                   *styled)
    jobs["raw_run"] = ("generate", "--model", str(run), "--raw", *styled)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, args, env) for name, args in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def _chatml_run(folder):
    """A run folder as training leaves it, trained in the chatml style: its config and
    a checkpoint holding the tiny model."""
    from tui_ft.model.weights import load_model, save_checkpoint_weights

    folder.mkdir(parents=True)
    TrainConfig.from_dict({**TrainConfig().to_dict(), "prompt_style": "chatml"}).save(
        folder / "config.yaml")
    model, _ = load_model("tiny")
    save_checkpoint_weights(model, folder / "checkpoints" / "checkpoint-3")
    return folder


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
                                   "--max-new-tokens", "5", "--raw")
    assert code == 0
    first_five = ok_json(results["greedy_a"])["output_ids"][:5]
    expected = decode(first_five[:-1] if first_five[-1] == EOT_ID else first_five)
    assert out == expected + "\n"


def styled(name: str) -> str:
    """PROMPT as an instruction in style `name`, ready for the answer."""
    return get_style(name).prompt(Record(id="x", instruction=PROMPT, input="", output=""))


@pytest.mark.parametrize("job, style, ending", [
    ("styled_preset", "alpaca", "\n\n### Response:\n"),
    ("styled_run", "chatml", "<|im_end|>\n<|im_start|>assistant\n"),
    ("styled_checkpoint", "chatml", "<|im_end|>\n<|im_start|>assistant\n"),
    ("styled_run_override", "phi3", "\n<|assistant|>\n"),
])
def test_the_prompt_is_put_in_the_models_style(results, job, style, ending):
    out = ok_json(results[job])
    assert out["style"] == style
    assert out["prompt_ids"] == encode(styled(style))
    text = decode(out["prompt_ids"])
    assert text.endswith(ending) and PROMPT in text and len(text) > len(PROMPT) + 10
    assert 1 <= len(out["output_ids"]) <= 4


def test_raw_continues_the_prompt_as_is(results):
    raw = ok_json(results["raw_run"])
    assert raw["style"] is None
    assert raw["prompt_ids"] == encode(PROMPT)
    assert raw["output_ids"] == ok_json(results["greedy_a"])["output_ids"][:4]


def test_the_styles_stop_strings_end_the_answer(config_dir, capsys):
    """Two user styles alike but for `stop`: the answer without a stop string, cut
    into a stop string, ends there in the other."""
    import yaml

    def write_style(name, stop):
        (config_dir / "styles").mkdir(exist_ok=True)
        (config_dir / "styles" / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "templates": {"user": "Q: {content}",
                                        "assistant": "\nA: {content}"}, "stop": stop}))

    write_style("nostop", [])
    args = ("generate", "-m", "tiny", "-p", PROMPT, "--json", "--max-new-tokens", "24")
    code, out, err = main_in_process(capsys, *args, "--style", "nostop")
    assert code == 0, err
    free = json.loads(out)
    assert free["finish_reason"] == "length" and len(free["output_ids"]) == 24
    text = free["text"]
    stop = text[len(text) // 2:len(text) // 2 + 2]
    assert len(stop) == 2, f"the tiny model's answer {text!r} is too short to cut"
    write_style("stopper", [stop])
    code, out, err = main_in_process(capsys, *args, "--style", "stopper")
    assert code == 0, err
    stopped = json.loads(out)
    assert stopped["prompt_ids"] == free["prompt_ids"]
    assert stopped["finish_reason"] == "stop_string"
    assert stopped["text"] == text[:text.find(stop)]
    assert len(stopped["output_ids"]) < 24


NO_TORCH = """\
import sys
from tui_ft.cli import main
code = main(sys.argv[1:])
print("torch imported" if "torch" in sys.modules else "no torch", code)
"""


@pytest.mark.parametrize("args, words", [
    (("-m", "nosuch-model", "-p", "hi"), ["unknown model 'nosuch-model'", "preset"]),
    (("-m", "tiny", "-p", "hi", "--style", "nosuch-style"),
     ["unknown prompt style 'nosuch-style'", "alpaca"]),
])
def test_unknown_model_or_style_fails_before_torch_is_imported(args, words):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "generate", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout == "no torch 1\n", (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("tui-ft: error: ") and "Traceback" not in proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


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
