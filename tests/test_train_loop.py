"""The training loop on the tiny model, for real on the CPU: learning-rate schedules,
token-weighted gradient accumulation, clipping, autocast, evaluation strategies,
averaged logging, the run folder it writes, and a loss that becomes NaN."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tui_ft.config import TrainConfig
from tui_ft.data.batches import batch_order, encode_records
from tui_ft.data.dataset import load_records
from tui_ft.data.styles import load_styles
from tui_ft.errors import TrainingError
from tui_ft.model.weights import load_model, save_checkpoint_weights
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process
from tui_ft.train.optim import lr_lambda

from helpers import code_word_records, one_token_words, word_task_config, write_jsonl

# -- helpers ---------------------------------------------------------------------------------


def make_run(tmp_path, name: str, *, train=None, val=None, **overrides) -> Run:
    """The small code-word run (helpers.word_task_config), with these training or
    validation records in place of the default ones when given."""
    data = word_task_config(tmp_path, name, **overrides)
    if train is not None:
        write_jsonl(tmp_path / f"{name}-train.jsonl", train)
    if val is not None:
        write_jsonl(tmp_path / f"{name}-val.jsonl", val)
    run, _ = prepare_run(TrainConfig.from_dict(data))
    return run


def weights(run: Run, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run.checkpoints_dir / f"checkpoint-{step}" / "model.safetensors"))


def token_lengths(tmp_path, records) -> list[int]:
    """Token counts of records as the loop sees them (phi3 style)."""
    path = tmp_path / "lengths-probe.jsonl"
    write_jsonl(path, records)
    return [len(e.input_ids) for e in encode_records(load_records(path).records,
                                                     load_styles().get("phi3"), max_length=64)]


def lines(run: Run, key: str) -> dict[int, dict]:
    return {m["step"]: m for m in run.read_metrics() if key in m and "event" not in m}


# -- learning-rate schedules -----------------------------------------------------------------


def test_constant_schedule():
    f = lr_lambda("constant", 0, 100)
    assert [f(s) for s in (0, 1, 50, 100, 150)] == [1.0] * 5


def test_constant_with_warmup():
    f = lr_lambda("constant_with_warmup", 4, 100)
    assert [f(s) for s in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert f(100) == 1.0


def test_linear_with_warmup():
    f = lr_lambda("linear", 2, 10)
    expected = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]
    assert [f(s) for s in range(11)] == pytest.approx(expected)
    assert f(12) == 0.0  # never negative past the end


def test_cosine_with_warmup():
    f = lr_lambda("cosine", 2, 10)
    assert f(0) == 0.0 and f(1) == pytest.approx(0.5)
    assert f(2) == pytest.approx(1.0)
    assert f(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))  # 0.8536
    assert f(6) == pytest.approx(0.5)
    assert f(8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))  # 0.1464
    assert f(10) == pytest.approx(0.0, abs=1e-12)
    assert f(11) == pytest.approx(0.0, abs=1e-12)
    values = [f(s) for s in range(2, 11)]
    assert values == sorted(values, reverse=True)


def test_the_logged_learning_rate_follows_the_schedule(tmp_path):
    run = make_run(tmp_path, "lr", max_steps=6, warmup_steps=2, lr_scheduler_type="linear",
                   learning_rate=2e-3)
    assert run_in_process(run) == "finished"
    f = lr_lambda("linear", 2, 6)
    logged = {s: m["lr"] for s, m in lines(run, "train_loss").items()}
    # Logged after step s: the rate the next step uses.
    assert logged == pytest.approx({s: 2e-3 * f(s) for s in range(1, 7)})


# -- one optimizer step, three ways ----------------------------------------------------------

# Adam's first step is lr * g / (|g| + eps): with the usual tiny eps it is lr * sign(g),
# blind to the gradient's scale and amplifying float noise where g is near 0. With
# eps = 1 and lr = 1 it is g / (|g| + 1), close to the gradient itself, so the saved
# weights show the gradient each way produced.
LINEAR_ADAM = {"adam_epsilon": 1.0, "learning_rate": 1.0, "max_steps": 1,
               "save_strategy": "steps", "save_steps": 1}


@pytest.fixture(scope="module")
def initial_weights():
    model, _ = load_model("tiny", device="cpu")
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}


def update(run: Run, initial: dict) -> dict[str, torch.Tensor]:
    return {k: w - initial[k] for k, w in weights(run, 1).items()}


def assert_same_update(a: dict, b: dict) -> None:
    scale = max(t.abs().max().item() for t in b.values())
    assert scale > 1e-4  # the step did move the weights
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5 * scale,
                                   msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def first_steps(tmp_path_factory):
    """One step each: batch 8; batch 4 x accumulation 2; batch 8 clipped to 1e-3."""
    tmp = tmp_path_factory.mktemp("first-steps")
    runs = {
        "batch8": make_run(tmp, "batch8", per_device_train_batch_size=8, max_grad_norm=0.0,
                           **LINEAR_ADAM),
        "accum": make_run(tmp, "accum", per_device_train_batch_size=4, max_grad_norm=0.0,
                          gradient_accumulation_steps=2, **LINEAR_ADAM),
        "clipped": make_run(tmp, "clipped", per_device_train_batch_size=8,
                            max_grad_norm=1e-3, **LINEAR_ADAM),
    }
    for run in runs.values():
        assert run_in_process(run) == "finished"
    return runs


def test_gradient_accumulation_matches_the_large_batch(first_steps, initial_weights):
    big, accum = first_steps["batch8"], first_steps["accum"]
    loss_big = lines(big, "train_loss")[1]["train_loss"]
    loss_accum = lines(accum, "train_loss")[1]["train_loss"]
    assert loss_accum == pytest.approx(loss_big, rel=1e-6)
    assert_same_update(update(accum, initial_weights), update(big, initial_weights))


def test_gradient_accumulation_is_token_weighted(tmp_path, initial_weights):
    """Micro-batches with different numbers of targets: the step's gradient is that of
    the mean over all target tokens, not the mean of the micro-batch means."""
    words = one_token_words()
    short = code_word_records(words[:4], 3, "s")
    long = [dict(r, id=f"l-{i}", output=" ".join([r["output"]] * 12))
            for i, r in enumerate(code_word_records(words[4:8], 4, "l"))]
    records = short + long
    lengths = token_lengths(tmp_path, records)
    assert len(set(lengths[:4])) == 1 and min(lengths[4:]) > lengths[0] and max(lengths) <= 32
    # A seed whose first batch of 4 holds short and long records unevenly.
    seed = next(s for s in range(1000)
                if sum(j >= 4 for j in batch_order(lengths, 4, seed=s)[0]) in (1, 3))
    big = make_run(tmp_path, "big", train=records, per_device_train_batch_size=8, seed=seed,
                   max_grad_norm=0.0, **LINEAR_ADAM)
    accum = make_run(tmp_path, "accum", train=records, per_device_train_batch_size=4,
                     gradient_accumulation_steps=2, seed=seed, max_grad_norm=0.0,
                     **LINEAR_ADAM)
    for run in (big, accum):
        assert run_in_process(run) == "finished"
    assert lines(accum, "train_loss")[1]["train_loss"] == pytest.approx(
        lines(big, "train_loss")[1]["train_loss"], rel=1e-6)
    assert_same_update(update(accum, initial_weights), update(big, initial_weights))


def test_gradient_clipping_limits_the_step(first_steps, initial_weights):
    def norm(delta: dict) -> float:
        return math.sqrt(sum(float((t.double() ** 2).sum()) for t in delta.values()))

    unclipped = update(first_steps["batch8"], initial_weights)
    clipped = update(first_steps["clipped"], initial_weights)
    # With eps = 1 the step is about the gradient: its norm is the clipped norm.
    assert norm(unclipped) > 0.1
    assert norm(clipped) == pytest.approx(1e-3, rel=0.01)
    # Clipping scales the gradient: the direction stays (up to Adam's g / (|g| + 1)).
    a = torch.cat([clipped[k].flatten() for k in sorted(clipped)]).double()
    b = torch.cat([unclipped[k].flatten() for k in sorted(clipped)]).double()
    assert float(a @ b / (a.norm() * b.norm())) > 0.9


# -- evaluation and logging ------------------------------------------------------------------


def test_eval_strategy_steps(tmp_path):
    run = make_run(tmp_path, "steps", max_steps=7, eval_strategy="steps", eval_steps=3)
    assert run_in_process(run) == "finished"
    evals = lines(run, "val_loss")
    assert sorted(evals) == [3, 6, 7]  # every 3 steps, and at the end
    assert all(math.isfinite(m["val_loss"]) for m in evals.values())
    assert evals[7]["val_loss"] < evals[3]["val_loss"]


def test_eval_strategy_epoch(tmp_path):
    # 8 records, batch 4: 2 steps an epoch.
    run = make_run(tmp_path, "epoch", max_steps=-1, num_train_epochs=3,
                   eval_strategy="epoch", save_strategy="epoch",
                   load_best_model_at_end=True)
    assert run_in_process(run) == "finished"
    evals = lines(run, "val_loss")
    assert sorted(evals) == [2, 4, 6]
    assert [evals[s]["epoch"] for s in (2, 4, 6)] == [1.0, 2.0, 3.0]
    assert [c.step for c in run.checkpoints()] == [2, 4, 6]
    status = run.read_status()
    assert status["state"] == "finished" and status["step"] == 6
    assert status["final_checkpoint"] == status["best_checkpoint"]


def test_train_loss_is_averaged_over_logging_steps(tmp_path):
    every = make_run(tmp_path, "every", max_steps=7, logging_steps=1)
    averaged = make_run(tmp_path, "avg", max_steps=7, logging_steps=3)
    for run in (every, averaged):
        assert run_in_process(run) == "finished"
    per_step = {s: m["train_loss"] for s, m in lines(every, "train_loss").items()}
    logged = lines(averaged, "train_loss")
    assert sorted(logged) == [3, 6, 7]
    # Every step has 8 records of 18 targets: the token-weighted mean is the plain one.
    for step, window in ((3, [1, 2, 3]), (6, [4, 5, 6]), (7, [7])):
        expected = sum(per_step[s] for s in window) / len(window)
        assert logged[step]["train_loss"] == pytest.approx(expected, rel=1e-5)
    for m in logged.values():
        assert m["tokens_per_s"] > 0 and m["lr"] > 0 or m["step"] == 7
        assert m["epoch"] == pytest.approx(m["step"] / 2)


def test_the_run_folder_holds_config_metrics_status_and_checkpoints(tmp_path):
    run = make_run(tmp_path, "folder", max_steps=4, eval_strategy="steps", eval_steps=2,
                   save_strategy="steps", save_steps=2, load_best_model_at_end=True)
    assert run_in_process(run) == "finished"
    config = TrainConfig.load(run.config_path)
    assert config.output_dir == str(run.path.resolve()) and config.max_steps == 4
    raw = run.metrics_path.read_text(encoding="utf-8")
    assert raw.endswith("\n")
    records = [json.loads(line) for line in raw.splitlines()]
    for m in records:
        assert isinstance(m, dict)
        assert isinstance(m["step"], int), m
        assert isinstance(m["epoch"], (int, float)), m
    assert {"train_loss", "lr", "tokens_per_s"} <= set(lines(run, "train_loss")[4])
    events = [m["event"] for m in records if "event" in m]
    assert events[:2] == ["data", "start"] and events[-1] == "end"
    assert events.count("checkpoint") == 2
    status = run.read_status()
    assert {"pid", "state", "step", "best_checkpoint", "error"} <= set(status)
    assert status["state"] == "finished" and status["step"] == 4 and status["error"] is None
    assert status["best_checkpoint"] in ("checkpoint-2", "checkpoint-4")
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]
    folder = run.checkpoints_dir / "checkpoint-4"
    assert {"model.safetensors", "model_config.json", "optimizer.pt", "scheduler.pt", "rng.pt",
            "trainer_state.json"} <= {p.name for p in folder.iterdir()}
    state = json.loads((folder / "trainer_state.json").read_text())
    # The data position: 4 steps of batch 4 over 8 records is the end of epoch 2.
    assert state["global_step"] == 4 and state["epoch"] == 2.0
    assert (state["epoch_index"], state["micro_in_epoch"]) in ((1, 2), (2, 0))


def test_the_default_configuration_trains_offline_on_the_cpu(tmp_path, monkeypatch):
    """TrainConfig() as shipped (tiny, sample data): only the length of the run and
    where it goes are changed."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run, config = prepare_run(TrainConfig.from_dict({"output_dir": str(tmp_path / "default"),
                                                     "max_steps": 2}))
    assert config.model == "tiny" and config.dataset == TrainConfig().dataset
    assert run_in_process(run) == "finished"
    status = run.read_status()
    assert status["device"] == "cpu" and status["precision"] == "fp32"
    assert status["final_checkpoint"] == "checkpoint-2"
    data = next(m for m in run.read_metrics() if m.get("event") == "data")
    assert data["train"] > 1000 and data["val"] > 10 and data["bad_records"] == 0
    assert math.isfinite(lines(run, "val_loss")[2]["val_loss"])


# -- precision -------------------------------------------------------------------------------


def test_bf16_autocast_trains_with_fp32_weights(tmp_path):
    fp32 = make_run(tmp_path, "fp32", max_steps=2, save_strategy="steps", save_steps=2)
    bf16 = make_run(tmp_path, "bf16", max_steps=2, save_strategy="steps", save_steps=2,
                    bf16=True)
    for run in (fp32, bf16):
        assert run_in_process(run) == "finished"
    assert bf16.read_status()["precision"] == "bf16"
    a, b = lines(fp32, "train_loss"), lines(bf16, "train_loss")
    for step in (1, 2):
        assert math.isfinite(b[step]["train_loss"])
        assert b[step]["train_loss"] == pytest.approx(a[step]["train_loss"], abs=0.05)
    assert a[1]["train_loss"] != b[1]["train_loss"]  # autocast really was on
    assert all(t.dtype == torch.float32 for t in weights(bf16, 2).values())


def test_fp16_without_cuda_fails_with_a_clear_message(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    # device auto: the config cannot know there is no GPU (with device cpu it refuses
    # fp16 itself, see test_config); the trainer finds out when it starts.
    run = make_run(tmp_path, "fp16", fp16=True, device="auto")
    with pytest.raises(TrainingError, match="fp16 needs a CUDA device"):
        run_in_process(run)
    status = run.read_status()
    assert status["state"] == "failed" and "fp16 needs a CUDA device" in status["error"]
    assert Run(run.path).state() == "failed"


# -- a loss that becomes NaN -----------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """A model whose position embeddings past position 24 are +-3e38 (finite, but
    LayerNorm overflows on them): records shorter than that train normally; the
    first step that reaches a long record makes the loss NaN."""
    model, _ = load_model("tiny", device="cpu")
    with torch.no_grad():
        model.wpe.weight[24:] = torch.tensor([3e38, -3e38]).repeat(model.config.n_embd // 2)
    save_checkpoint_weights(model, tmp_path / "fragile-model")

    words = one_token_words()
    records = code_word_records(words[:8], 5, "t") + [
        {"id": "long", "instruction": "Code word " + " ".join(words[20:40]), "input": "",
         "output": "cat"}]
    lengths = token_lengths(tmp_path, records)
    assert max(lengths[:8]) <= 24 < lengths[8]
    # A seed whose first epoch reaches the long record at step 4 (batch 2).
    seed = next(s for s in range(1000)
                if 8 in batch_order(lengths, 2, seed=s, epoch=0)[3])
    run = make_run(tmp_path, "nan", train=records, model=str(tmp_path / "fragile-model"),
                   seed=seed, per_device_train_batch_size=2, max_length=64, max_steps=10,
                   save_strategy="steps", save_steps=1)
    with pytest.raises(TrainingError) as info:
        run_in_process(run)
    message = str(info.value)
    assert "NaN or infinite" in message and "step 4" in message
    assert "checkpoint-3" in message  # the last good one, named
    status = Run(run.path).read_status()
    assert status["state"] == "failed" and "NaN or infinite" in status["error"]
    assert Run(run.path).state() == "failed"
    metrics = run.read_metrics()
    assert metrics[-1]["event"] == "failed" and "NaN" in metrics[-1]["error"]
    assert all(math.isfinite(m["train_loss"]) for m in metrics if "train_loss" in m)
    # Nothing past the last finite step was saved; what was saved is intact.
    assert [c.step for c in run.checkpoints()] == [1, 2, 3]
    for checkpoint in run.checkpoints():
        loaded, _ = load_model(str(checkpoint.path), device="cpu")
        for name, tensor in loaded.state_dict().items():
            assert torch.isfinite(tensor).all(), (checkpoint.name, name)
    # The run still gives its last good model to whoever asks for it.
    assert Run(run.path).checkpoint("last").name == "checkpoint-3"
