"""Checkpoints: atomic (a temporary folder never counts and is cleaned up), rotation
that keeps the best and the newest, the best recorded as the final checkpoint, and
resume that continues exactly as if the run had never stopped."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tui_ft.config import TrainConfig
from tui_ft.model.weights import load_model
from tui_ft.runs.run_source import run_checkpoint
from tui_ft.train.checkpoints import read_trainer_state, remove_partial, rotate
from tui_ft.runfolder import CHECKPOINT_MARKER, Run, RunError
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import (code_word_records, fake_checkpoint, one_token_words, word_task_config,
                     write_jsonl)

# -- helpers ---------------------------------------------------------------------------------


def make_run(tmp_path, name: str, *, n_train: int = 8, **overrides) -> Run:
    config = word_task_config(tmp_path, name, n_train=n_train, **overrides)
    run, _ = prepare_run(TrainConfig.from_dict(config))
    return run


def per_step(run: Run, key: str) -> dict[int, float]:
    return {m["step"]: m[key] for m in run.read_metrics() if key in m and "event" not in m}


def fake_checkpoints(run: Run, steps) -> None:
    for step in steps:
        fake_checkpoint(run, step)


# -- atomic checkpoints ----------------------------------------------------------------------


def test_a_leftover_temporary_folder_is_ignored_and_removed_at_the_next_start(tmp_path):
    run = make_run(tmp_path, "tmp", max_steps=2, save_strategy="steps", save_steps=2)
    # What a worker killed in the middle of a save leaves behind.
    partial = run.checkpoints_dir / ".tmp-checkpoint-2-4242"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    old = run.checkpoints_dir / ".tmp-old-checkpoint-1-4242"
    old.mkdir()
    assert run.checkpoints() == []
    with pytest.raises(RunError, match="no checkpoint"):
        run.checkpoint("last")
    assert run_in_process(run) == "finished"
    assert not partial.exists() and not old.exists()
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-2"]
    model, _ = load_model(str(run.checkpoints()[0].path), device="cpu")
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_remove_partial_and_listing_ignore_what_is_not_a_checkpoint(tmp_path):
    run = Run(tmp_path)
    fake_checkpoints(run, [3, 10, 7])
    (run.checkpoints_dir / ".tmp-checkpoint-11-1").mkdir()
    (run.checkpoints_dir / "checkpoint-x").mkdir()
    (run.checkpoints_dir / "notes.txt").write_text("hi")
    assert [c.step for c in run.checkpoints()] == [3, 7, 10]  # by step, not by name
    assert remove_partial(run) == [".tmp-checkpoint-11-1"]
    assert run.checkpoint("last").name == "checkpoint-10"
    assert run.checkpoint("7").name == run.checkpoint("checkpoint-7").name == "checkpoint-7"
    with pytest.raises(RunError, match="checkpoint-3, checkpoint-7, checkpoint-10"):
        run.checkpoint("5")
    with pytest.raises(RunError, match="not a resumable checkpoint"):
        read_trainer_state(tmp_path)


def test_a_checkpoint_is_listed_only_when_its_marker_matches_what_is_there(tmp_path):
    """The completion marker is written last: a folder that lost a file (a delete cut
    short, by hand or by a tool) or whose file is shorter than recorded (a copy cut
    short) is not offered; the last whole one is. Checkpoints from before markers are
    offered when their weights and model config are there."""
    run = make_run(tmp_path, "marker", max_steps=4, save_strategy="steps", save_steps=2)
    assert run_in_process(run) == "finished"
    two, four = (run.checkpoints_dir / f"checkpoint-{s}" for s in (2, 4))
    marker = json.loads((four / CHECKPOINT_MARKER).read_text())
    assert set(marker["files"]) == {"model.safetensors", "model_config.json", "optimizer.pt",
                                    "scheduler.pt", "rng.pt", "trainer_state.json"}
    assert marker["step"] == 4
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]

    (four / "optimizer.pt").unlink()
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert run.checkpoint("last").name == "checkpoint-2"

    weights = two / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    assert run.checkpoints() == []
    weights.write_bytes(data)
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]

    # From before markers: listed when its weights load, not when they are missing.
    (two / CHECKPOINT_MARKER).unlink()
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    (two / "model_config.json").unlink()
    assert run.checkpoints() == []
    # A marker that is not one (hand-edited, cut short) is not trusted.
    (four / CHECKPOINT_MARKER).write_text('{"files": ')
    assert run.checkpoints() == []


def test_rotate_keeps_the_best_and_the_newest(tmp_path):
    run = Run(tmp_path)
    fake_checkpoints(run, [2, 4, 6, 8, 10])
    removed = rotate(run, 2, keep={"checkpoint-2"}).removed
    assert removed == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-10"]
    # A limit of 1 with a best that is not the newest: both stay (as Hugging Face).
    fake_checkpoints(run, [12])
    assert rotate(run, 1, keep={"checkpoint-2"}).removed == ["checkpoint-10"]
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-12"]
    assert rotate(run, None, keep=set()) == ([], [])


def test_a_worker_killed_while_rotating_leaves_no_half_deleted_checkpoint(tmp_path,
                                                                         monkeypatch):
    """The kill is simulated where it hurts: after the first file of the folder went.
    The checkpoint is out of the listing before anything is deleted, and the leftover
    is a temporary folder that the next start removes."""
    import shutil

    from tui_ft.train import checkpoints

    run = Run(tmp_path)
    fake_checkpoints(run, [2, 4, 6])
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        next(p for p in sorted(path.iterdir())).unlink()  # one file gone, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        rotate(run, 2, keep=set())
    monkeypatch.setattr(checkpoints.shutil, "rmtree", real_rmtree)
    assert [c.name for c in run.checkpoints()] == ["checkpoint-4", "checkpoint-6"]
    leftovers = remove_partial(run)
    assert len(leftovers) == 1 and "checkpoint-2" in leftovers[0]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-4",
                                                                     "checkpoint-6"]


# -- the best checkpoint survives rotation ---------------------------------------------------


def test_save_total_limit_never_deletes_the_best_or_the_last(tmp_path):
    """Arbitrary word -> word pairs with a high learning rate: validation loss falls
    while the format is learned, then rises as the pairs are memorised, so the best
    checkpoint is an early one."""
    words = one_token_words()
    config = {
        "output_dir": str(tmp_path / "rotation"),
        "dataset": write_jsonl(tmp_path / "train.jsonl", code_word_records(words[:16], 1, "t")),
        "val_dataset": write_jsonl(tmp_path / "val.jsonl",
                                   code_word_records(words[16:24], 2, "v")),
        "prompt_style": "phi3", "max_length": 24, "device": "cpu",
        "per_device_train_batch_size": 8, "learning_rate": 1e-2,
        "lr_scheduler_type": "constant", "max_steps": 14, "logging_steps": 2,
        "eval_strategy": "steps", "eval_steps": 2, "save_steps": 2, "save_total_limit": 1,
        "load_best_model_at_end": True}
    run, _ = prepare_run(TrainConfig.from_dict(config))
    assert run_in_process(run) == "finished"
    vals = per_step(run, "val_loss")
    best_step = min(vals, key=vals.get)
    assert best_step < 12, vals  # the best is early: rotation had to step around it
    status = run.read_status()
    assert status["best_checkpoint"] == f"checkpoint-{best_step}"
    assert status["best_metric"] == pytest.approx(vals[best_step])
    assert [c.step for c in run.checkpoints()] == [best_step, 14]
    removed = [name for m in run.read_metrics() if m.get("event") == "checkpoint"
               for name in m["removed"]]
    assert f"checkpoint-{best_step}" not in removed and len(removed) >= 4
    # load_best_model_at_end: the best is what the run hands on.
    assert status["final_checkpoint"] == f"checkpoint-{best_step}"
    assert run.checkpoint("best").step == best_step
    ends = [m for m in run.read_metrics() if m.get("event") == "best_model_loaded"]
    assert ends and ends[0]["checkpoint"] == f"checkpoint-{best_step}"
    model, _ = load_model(str(run.path), device="cpu",  # a run loads as its best
                          runs=run_checkpoint)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    # Resumed from the best (an earlier checkpoint) and stopped one step later: the
    # checkpoint of the stop survives rotation too, beside the later one left behind.
    best = run.checkpoint("best")
    assert run_in_process(run, resume=best.path, stop_at_step=best_step + 1) == "stopped"
    assert f"checkpoint-{best_step + 1}" in [c.name for c in run.checkpoints()]
    assert run.read_status()["last_checkpoint"] == f"checkpoint-{best_step + 1}"


# -- resume continues exactly ----------------------------------------------------------------


def resume_case(tmp_path, name: str, stop_at: int, **config):
    reference = make_run(tmp_path, f"{name}-whole", **config)
    assert run_in_process(reference) == "finished"
    cut = make_run(tmp_path, f"{name}-cut", **config)
    assert run_in_process(cut, stop_at_step=stop_at) == "stopped"
    status = cut.read_status()
    assert status["state"] == "stopped" and status["step"] == stop_at
    assert cut.checkpoint("last").step == stop_at
    assert read_trainer_state(cut.checkpoint("last").path)["global_step"] == stop_at
    assert run_in_process(cut, resume=cut.checkpoint("last").path) == "finished"
    return reference, cut


def assert_same_history(reference: Run, resumed: Run, total: int) -> None:
    a, b = per_step(reference, "train_loss"), per_step(resumed, "train_loss")
    assert sorted(a) == sorted(b) == list(range(1, total + 1))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-6, rel=0), step
    for key in ("val_loss", "train_loss_window"):
        va, vb = per_step(reference, key), per_step(resumed, key)
        assert sorted(va) == sorted(vb) and va
        for step in va:
            assert vb[step] == pytest.approx(va[step], abs=1e-6, rel=0), (key, step)
    lr_a, lr_b = per_step(reference, "lr"), per_step(resumed, "lr")
    assert lr_b == pytest.approx(lr_a)
    events = [m.get("event") for m in resumed.read_metrics() if m.get("event")]
    assert events.count("stopped") == 1 and events.count("resumed") == 1
    assert events[-1] == "end"
    assert resumed.read_status()["state"] == "finished"
    assert resumed.read_status()["step"] == total
    # The final weights are the same as well.
    wa, _ = load_model(str(reference.checkpoint("last").path), device="cpu")
    wb, _ = load_model(str(resumed.checkpoint("last").path), device="cpu")
    for (name, ta), tb in zip(wa.state_dict().items(), wb.state_dict().values()):
        torch.testing.assert_close(tb, ta, rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_resume_mid_epoch_gives_the_same_losses(tmp_path):
    # 12 records, batch 4: 3 steps an epoch; stop after step 10 (epoch 4, step 1 of 3),
    # which is neither an evaluation nor a save step; dropout makes the RNG matter.
    reference, resumed = resume_case(
        tmp_path, "mid-epoch", stop_at=10, n_train=12, max_steps=18, dropout=0.1,
        eval_strategy="steps", eval_steps=6, save_strategy="steps", save_steps=6,
        load_best_model_at_end=True, lr_scheduler_type="cosine", warmup_steps=3)
    assert_same_history(reference, resumed, 18)
    assert [c.step for c in resumed.checkpoints()] == [6, 10, 12, 18]


def test_resume_between_accumulation_windows_gives_the_same_losses(tmp_path):
    # 10 records, batch 2, accumulation 2: 5 micro-batches an epoch, windows of 2, 2, 1.
    # Stop after step 7: the first window of epoch 3; the next one is full, then the
    # short one at the epoch's end.
    reference, resumed = resume_case(
        tmp_path, "accumulation", stop_at=7, n_train=10, max_steps=15, dropout=0.1,
        per_device_train_batch_size=2, gradient_accumulation_steps=2,
        eval_strategy="steps", eval_steps=4, save_strategy="no", weight_decay=0.1)
    assert_same_history(reference, resumed, 15)
    epochs = {m["step"]: m["epoch"] for m in resumed.read_metrics() if "train_loss" in m}
    assert epochs[3] == 1.0 and epochs[6] == 2.0 and epochs[8] == pytest.approx(2.8)
    # load_best_model_at_end is off: the run hands on its last checkpoint.
    assert resumed.read_status()["final_checkpoint"] == "checkpoint-15"


def test_resume_of_a_packed_run_gives_the_same_losses(tmp_path):
    # 12 records of 19 tokens packed 3 to a row of 64: 4 rows, batch 2, so 2 steps an
    # epoch; stop after step 5, the first step of epoch 3.
    reference, resumed = resume_case(
        tmp_path, "packed", stop_at=5, n_train=12, max_steps=8, dropout=0.1, packing=True,
        max_length=64, per_device_train_batch_size=2, eval_strategy="steps", eval_steps=4,
        save_strategy="no")
    assert_same_history(reference, resumed, 8)
    packing = [m for m in resumed.read_metrics() if m.get("event") == "packing"]
    assert len(packing) == 2 and packing[0]["rows"] == packing[1]["rows"] == 4


def test_resume_inside_a_logging_window_averages_the_same(tmp_path):
    # logging_steps 4, stopped after step 6: steps 5 and 6 were trained before the stop
    # and are averaged with 7 and 8 after it.
    reference, resumed = resume_case(
        tmp_path, "log-window", stop_at=6, max_steps=8, logging_steps=4, dropout=0.1,
        eval_strategy="steps", eval_steps=8, save_strategy="no")
    a, b = per_step(reference, "train_loss"), per_step(resumed, "train_loss")
    assert sorted(a) == sorted(b) == [4, 8]
    assert b[8] == pytest.approx(a[8], abs=1e-6, rel=0)
    assert per_step(resumed, "val_loss")[8] == pytest.approx(
        per_step(reference, "val_loss")[8], abs=1e-6, rel=0)


def test_resume_from_a_missing_or_broken_checkpoint_fails_cleanly(tmp_path):
    run = make_run(tmp_path, "broken", max_steps=2, save_strategy="steps", save_steps=1)
    assert run_in_process(run, stop_at_step=1) == "stopped"
    checkpoint = run.checkpoint("last").path
    (checkpoint / "optimizer.pt").unlink()
    with pytest.raises(RunError, match="optimizer.pt"):
        run_in_process(run, resume=checkpoint)
    assert run.read_status()["state"] == "failed"
    assert "optimizer.pt" in run.read_status()["error"]
    (checkpoint / "trainer_state.json").write_text("{not json")
    with pytest.raises(RunError, match="trainer_state.json"):
        run_in_process(run, resume=checkpoint)
    assert math.isfinite(per_step(run, "train_loss")[1])  # the history is still there
