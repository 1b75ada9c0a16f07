"""Many processes, one run (issue 15): real torchrun, real gloo process groups on the
CPU, 2 ranks. Each rank is its own process; nothing is mocked.

Why the tolerance of 1e-5 on losses near 10: a 2-rank step adds the same per-token
losses as one process, but in another order (two partial sums, then an all-reduce),
so float32 rounding differs in the last bits (about 1e-7 relative); AdamW then
carries those differences through a few steps. Measured: equal to 1e-6 after 6
steps. A wrong split of the data, a wrong normalisation (mean of rank means instead
of the token-weighted mean) or a missing gradient average all move the losses by
1e-2 or more."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_ft.config import TrainConfig
from tui_ft.runfolder import Run
from tui_ft.fsio import try_lock
from tui_ft.runs.jobs import RUN_LOCK, prepare_run

from helpers import wait_for, word_task_config

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5


def sample_config(tmp_path: Path, name: str, **changes) -> dict:
    data = {"max_steps": 6, "logging_steps": 1, "eval_steps": 3, "save_steps": 3,
            "max_length": 48, "per_device_train_batch_size": 8, "device": "cpu",
            "split_ratios": [0.9, 0.02, 0.08], "output_dir": str(tmp_path / name)}
    data.update(changes)
    return data


def env() -> dict:
    out = dict(os.environ)
    out.pop("PYTHONWARNINGS", None)
    out["OMP_NUM_THREADS"] = "1"
    return out


def one_process(config: dict) -> Run:
    run, _ = prepare_run(TrainConfig.from_dict(config))
    proc = subprocess.run([sys.executable, "-m", "tui_ft.runs.worker", str(run.path)],
                          capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


@pytest.fixture(scope="module")
def one_process_once(tmp_path_factory):
    """one_process, trained once per configuration in this module: the batch-8 run is
    the reference of three tests, and the uneven-batch and packing runs are the same
    for DDP and for FSDP. Each takes a python, a torch import and a training (5-10 s
    on 2 cores). The key is the configuration less output_dir, with each data file it
    names read for its content (the tests write their own copies)."""
    done: dict[str, Run] = {}

    def key_part(value):
        if isinstance(value, str) and os.path.isfile(value):
            return ("file", Path(value).read_text(encoding="utf-8"))
        return value

    def run(config: dict) -> Run:
        key = json.dumps({k: key_part(v) for k, v in config.items() if k != "output_dir"},
                         sort_keys=True)
        if key not in done:
            folder = tmp_path_factory.mktemp("one-process")
            done[key] = one_process({**config, "output_dir": str(folder / "one")})
        return done[key]

    return run


def torchrun(config: dict, nproc: int = 2) -> Run:
    """Launched by a plain torchrun, as Hugging Face users do: the worker reads RANK,
    WORLD_SIZE and LOCAL_RANK itself."""
    run, _ = prepare_run(TrainConfig.from_dict(config))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", "-m", "tui_ft.runs.worker",
                           str(run.path)], capture_output=True, text=True, env=env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


def losses(run: Run) -> dict:
    """{(kind, step): loss} of every logged training and validation loss."""
    out = {}
    for m in run.read_metrics():
        if "event" in m:
            continue
        for kind in ("train_loss", "val_loss"):
            if isinstance(m.get(kind), float):
                out[(kind, m["step"])] = m[kind]
    return out


def assert_same_losses(a: Run, b: Run) -> None:
    la, lb = losses(a), losses(b)
    assert la.keys() == lb.keys() and la
    far = {k: (la[k], lb[k]) for k in la if abs(la[k] - lb[k]) > TOLERANCE}
    assert not far, far


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_of_batch_4_train_as_one_process_of_batch_8(tmp_path, strategy,
                                                              one_process_once):
    one = one_process_once(sample_config(tmp_path, "one"))
    two = torchrun(sample_config(tmp_path, "two", per_device_train_batch_size=4,
                                 distributed=strategy))
    assert_same_losses(one, two)
    status = two.read_status()
    assert status["state"] == "finished" and status["world_size"] == 2
    assert status["effective_batch_size"] == 8
    start = next(m for m in two.read_metrics() if m.get("event") == "start")
    assert (start["world_size"], start["per_device_train_batch_size"],
            start["effective_batch_size"]) == (2, 4, 8)
    # Rank 0 alone wrote the run: one line per step, one checkpoint per save.
    steps = [m["step"] for m in two.read_metrics() if "train_loss" in m and "event" not in m]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [c.name for c in two.checkpoints()] == ["checkpoint-3", "checkpoint-6"]
    assert [h["rank"] for h in two.read_heartbeats()] == [0, 1]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_an_uneven_last_batch_and_accumulation_keep_the_one_process_losses(
        tmp_path, strategy, one_process_once):
    """9 records in global batches of 4 (2 per rank): the last batch of each epoch has
    one record, so rank 1 runs a zero-weight batch there; 2 accumulation steps run the
    first micro-batch without DDP's gradient sync (no_sync). Evaluation over 5
    validation records in batches of 2 is split 2 / 1 batches between the ranks."""
    common = {"n_train": 9, "gradient_accumulation_steps": 2, "max_steps": -1,
              "num_train_epochs": 3, "eval_strategy": "epoch",
              "per_device_eval_batch_size": 2}
    one = one_process_once(word_task_config(tmp_path, "one", per_device_train_batch_size=4,
                                            **common))
    two = torchrun(word_task_config(tmp_path, "two", per_device_train_batch_size=2,
                                    distributed=strategy, **common))
    assert_same_losses(one, two)
    assert sum(1 for k in losses(two) if k[0] == "val_loss") == 3


def held(run: Run) -> bool:
    fd = try_lock(run.path / RUN_LOCK)
    if fd is None:
        return True
    os.close(fd)
    return False


def _start_detached(run_cli, config: Path) -> Run:
    proc = run_cli("train", config, "--nproc-per-node", "2", "--detach")
    assert proc.returncode == 0, proc.stderr
    return Run(proc.stdout.strip())


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_killed_rank_ends_the_run_and_a_resume_continues_exactly(tmp_path, run_cli,
                                                                   strategy):
    config = sample_config(tmp_path, "kill", max_steps=24, save_steps=4, eval_steps=4,
                           per_device_train_batch_size=4, distributed=strategy)
    reference = torchrun({**config, "output_dir": str(tmp_path / "reference")})
    path = tmp_path / "kill.yaml"
    TrainConfig.from_dict(config).save(path)
    run = _start_detached(run_cli, path)
    wait_for(lambda: len(run.checkpoints()) >= 2, timeout=240, what="two checkpoints")
    beats = {h["rank"]: h for h in run.read_heartbeats()}
    assert set(beats) == {0, 1} and beats[1]["pid"] != beats[0]["pid"]
    os.kill(beats[1]["pid"], signal.SIGKILL)
    # Rank 0 fails first (its peer is gone); the launcher, which holds the run lock
    # to the end, then names the rank that caused it.
    wait_for(lambda: not held(run), timeout=120, what="the launcher to end")
    status = run.read_status()
    assert status["state"] == "failed" and status["failed_rank"] == 1
    assert "rank 1" in status["error"] and "SIGKILL" in status["error"]
    assert f"tui-ft train --resume {run.path}" in status["error"]
    assert status["step"] < 24
    # Every listed checkpoint is whole; the resume takes the last one, on 2 ranks again.
    proc = run_cli("train", "--resume", run.path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert run.read_status()["state"] == "finished"
    assert_same_losses(reference, run)
    if strategy == "fsdp":
        # The optimizer state sharded by rank, the weights whole: they load alone.
        last = run.checkpoints()[-1].path
        assert sorted(p.name for p in (last / "optimizer").iterdir() if
                      p.suffix == ".distcp") == ["__0_0.distcp", "__1_0.distcp"]
        assert not (last / "optimizer.pt").exists()
        proc = run_cli("generate", "--model", last, "--max-new-tokens", "4", "--prompt", "Hi")
        assert proc.returncode == 0, proc.stderr


def test_tui_ft_train_launches_torchrun_and_stop_reaches_every_rank(tmp_path, run_cli):
    config = sample_config(tmp_path, "stop", max_steps=2000, save_steps=1000,
                           eval_steps=1000, per_device_train_batch_size=4)
    path = tmp_path / "stop.yaml"
    TrainConfig.from_dict(config).save(path)
    run = _start_detached(run_cli, path)
    wait_for(lambda: run.read_status().get("step", 0) >= 3, timeout=240, what="step 3")
    assert run.read_status()["world_size"] == 2
    proc = run_cli("stop", run.path, "--wait", "120")
    assert proc.returncode == 0, proc.stderr
    status = run.read_status()
    assert status["state"] == "stopped" and status["step"] < 2000
    # The stop's checkpoint is there and every rank ended (no process left behind).
    assert run.checkpoints()[-1].step == status["step"]
    pids = [h["pid"] for h in run.read_heartbeats()]
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), timeout=60,
             what="every rank to exit")
    log = run.log_path.read_text()
    assert "torchrun with 2 process(es) per node" in log


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_packing_and_bf16_under_several_processes(tmp_path, strategy, one_process_once):
    """Packed rows are what the global batch shares out; bf16 autocast runs inside
    DDP's and FSDP's forward. bf16 keeps 8 bits of mantissa and a batch of 2 rows
    is not computed as the same rows inside a batch of 4 (other kernels), so the
    tolerance is bf16's: 2e-2 on losses near 10 (measured: 7e-4)."""
    common = {"n_train": 16, "packing": True, "bf16": True, "max_steps": 4}
    one = one_process_once(word_task_config(tmp_path, "one", per_device_train_batch_size=2,
                                            **common))
    two = torchrun(word_task_config(tmp_path, "two", per_device_train_batch_size=1,
                                    distributed=strategy, **common))
    la, lb = losses(one), losses(two)
    assert la.keys() == lb.keys() and len(la) == 4
    assert all(abs(la[k] - lb[k]) < 2e-2 for k in la), (la, lb)
    packing = next(m for m in two.read_metrics() if m.get("event") == "packing")
    assert packing["rows"] >= 4


def test_two_nodes_meet_at_a_rendezvous_and_train_as_one_run(tmp_path, run_cli,
                                                              one_process_once):
    """Two 'nodes' on this machine, each `tui-ft train ... --nnodes 2 --node-rank R
    --rdzv-endpoint localhost:PORT` with one process: node 1 waits for node 0's run
    folder, joins it, and the two ranks train as one process of the global batch."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    reference = one_process_once(sample_config(tmp_path, "one"))
    config = sample_config(tmp_path, "nodes", per_device_train_batch_size=4)
    path = tmp_path / "nodes.yaml"
    TrainConfig.from_dict(config).save(path)
    flags = ["--nproc-per-node", "1", "--nnodes", "2", "--rdzv-endpoint",
             f"localhost:{port}"]
    node1 = subprocess.Popen([sys.executable, "-m", "tui_ft.cli", "train", str(path),
                              *flags, "--node-rank", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env())
    try:
        node0 = run_cli("train", path, *flags, "--node-rank", "0", timeout=300)
        out1, err1 = node1.communicate(timeout=120)
    finally:
        node1.kill()
    assert node0.returncode == 0, node0.stderr
    assert node1.returncode == 0, err1
    assert "waiting for node 0's run" in err1
    run = Run(config["output_dir"])
    status = run.read_status()
    assert status["state"] == "finished" and status["world_size"] == 2
    assert_same_losses(reference, run)
    assert (run.path / "worker-node1.log").is_file()


def test_generated_answer_metrics_are_shared_out_and_gathered(tmp_path):
    """eval_exact_match and compute_metrics under 2 DDP ranks: each rank answers its
    share of the validation records; the means over all of them equal one process's."""
    hook = tmp_path / "hook.py"
    hook.write_text("def compute_metrics(p, e, a):\n    return {'chars': float(len(a))}\n")
    common = {"n_train": 8, "max_steps": 4, "eval_strategy": "steps", "eval_steps": 2,
              "max_new_tokens": 4, "eval_exact_match": True, "compute_metrics": str(hook),
              "per_device_eval_batch_size": 2}
    one = one_process(word_task_config(tmp_path, "one", per_device_train_batch_size=4,
                                       **common))
    two = torchrun(word_task_config(tmp_path, "two", per_device_train_batch_size=2,
                                    **common))
    assert_same_losses(one, two)

    def answers(run):
        return {m["step"]: (m["val_exact_match"], m["val_chars"]) for m in run.read_metrics()
                if "val_chars" in m}

    assert answers(one) == answers(two) and sorted(answers(one)) == [2, 4]


def test_lora_trains_the_same_on_two_ranks(tmp_path):
    """LoRA under DDP (issue 18): only the adapters are trainable, DDP averages their
    gradients, and 2 ranks of 4 give one process's losses of 8; the checkpoint holds
    the adapter only."""
    lora = {"lora_r": 4, "lora_target_modules": ["attention"], "learning_rate": 1e-2}
    one = one_process(sample_config(tmp_path, "one", **lora))
    two = torchrun(sample_config(tmp_path, "two", per_device_train_batch_size=4, **lora))
    assert_same_losses(one, two)
    last = two.checkpoints()[-1].path
    assert (last / "adapter.safetensors").is_file() and not (last / "model.safetensors").exists()


def test_the_rank_killed_by_a_signal_is_named_even_when_noticed_after_its_peer():
    """torchrun's 'first failure' is the first it noticed; a peer of a killed rank
    fails in its next collective and can be noticed first (seen once in a full suite:
    the run named rank 0). The rank killed by a signal is the cause."""
    from torch.distributed.elastic.multiprocessing.errors import (ChildFailedError,
                                                                  ProcessFailure)

    from tui_ft.runs.launch import _cause

    peer = ProcessFailure(local_rank=0, pid=100, exitcode=1, error_file="<N/A>")
    killed = ProcessFailure(local_rank=1, pid=101, exitcode=-signal.SIGKILL,
                            error_file="<N/A>")
    peer.timestamp, killed.timestamp = 1000, 1001
    rank, failure = _cause(ChildFailedError("worker", {0: peer, 1: killed}))
    assert (rank, failure.pid) == (1, 101)
    # No rank was killed: torchrun's first failure.
    other = ProcessFailure(local_rank=1, pid=101, exitcode=2, error_file="<N/A>")
    other.timestamp = 1001
    assert _cause(ChildFailedError("worker", {0: peer, 1: other}))[0] == 0
