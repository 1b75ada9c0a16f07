"""The training loop. It owns no UI: everything it has to say goes to the run
folder (metrics.jsonl, status.json, checkpoints/) and to an optional callback.
Losses are token-weighted over each optimizer step (padding and masked prompt
tokens count for nothing), and steps that log nothing never wait for the device."""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..config import TrainConfig
from ..data.batches import (Example, Pack, batch_order, collate, collate_packed,
                            encode_records, pack_examples)
from ..data.styles import load_styles
from ..errors import TuiFtError
from ..model.gpt import flex_attention_available, flex_document_mask
from ..model.loss import lm_loss_sum
from ..model.precision import pick_device
from ..model.weights import load_model
from . import checkpoints as ckpt
from .splits import config_splits
from .hostmem import keep_freed_memory, release_free_memory
from .monitor import EarlyStopping, OverfitMonitor, load_monitor_state, monitor_state
from ..runfolder import Run, now_iso
from .scalars import ScalarLog


# torch.compile modes that capture CUDA graphs (on a CUDA device).
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
# bf16 on the CPU: batch widths and the loss's rows rounded up to these (_collate).
CPU_BF16_WIDTH_MULTIPLE = 16
CPU_BF16_TARGETS_MULTIPLE = 64


class TrainingError(TuiFtError):
    """Training cannot start or cannot go on (bad data, non-finite loss, out of memory)."""


class _StopRequested(Exception):
    pass


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a step, as Hugging Face's schedules."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if kind in ("constant", "constant_with_warmup"):
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))
        return max(0.0, 1.0 - progress)  # linear

    return factor


def set_dropout(model: torch.nn.Module, p: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        if hasattr(module, "dropout") and isinstance(module.dropout, float):
            module.dropout = p


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and embeddings, not on biases and LayerNorm (as HF)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Runs one training run into `run`. `stop_at_step` stops as a stop request
    would, right after that step (tests use it to cut a run at a known place)."""

    def __init__(self, config: TrainConfig, run: Run, *, resume_from: Path | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 stop_at_step: int | None = None,
                 model_runs: Callable[[str], Path | None],
                 graded_checkpoints: Callable[[], dict[str, int]]) -> None:
        # From the run layer above (runs/worker.py): `model_runs` finds the checkpoint
        # a run named as the model stands for (load_model's `runs`), and
        # `graded_checkpoints` reads which checkpoints hold grades (rotation keeps them).
        self.model_runs = model_runs
        self.graded_checkpoints = graded_checkpoints
        self.config = config
        self.run_dir = run
        self.resume_from = resume_from
        self.on_event = on_event
        self.stop_at_step = stop_at_step
        self.stop_signalled = False
        # Why the run stops early: "SIGINT" (Ctrl-C), "SIGTERM" ('tui-ft stop', the
        # app's x), "STOP file" or "stop_at_step"; status.json's stopped_by.
        self.stopped_by: str | None = None
        self.announced_pins: set[str] = set()
        self.scalars: ScalarLog | None = None

    # -- events ----------------------------------------------------------------------

    def emit(self, record: dict) -> None:
        # Wall time lets a reader that attaches later work out speed and ETA.
        record.setdefault("time", round(time.time(), 3))
        self.run_dir.append_metrics(record)
        if self.scalars is not None:
            self.scalars.log(record)
        if self.on_event is not None:
            self.on_event(record)

    def _stop_requested(self) -> bool:
        if self.stop_signalled:
            return True
        if self.run_dir.stop_path.exists():
            self.stopped_by = self.stopped_by or "STOP file"
            return True
        return False

    # -- set-up ----------------------------------------------------------------------

    def _load_data(self, context: int):
        c = self.config
        splits, errors = config_splits(c)
        if not splits.train:
            raise TrainingError(f"{c.dataset}: no training record (check the file and "
                                "split_ratios)")
        max_length = c.max_length or context
        if max_length > context:
            raise TrainingError(f"max_length {max_length} exceeds the model's context "
                                f"({context}); set max_length to {context} or less")
        self.max_length = max_length
        style = load_styles().get(c.prompt_style)
        train = encode_records(splits.train, style, mask_prompt=c.mask_prompt,
                               max_length=max_length)
        val = encode_records(splits.val, style, mask_prompt=c.mask_prompt,
                             max_length=max_length)
        self.emit({"step": 0, "epoch": 0.0, "event": "data", "train": len(train),
                   "val": len(val), "test": len(splits.test), "bad_records": len(errors),
                   "truncated": sum(e.truncated for e in train + val),
                   "max_length": max_length})
        return train, val

    def _autocast(self, device: torch.device):
        c = self.config
        if c.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        if c.fp16:
            return torch.autocast(device.type, dtype=torch.float16)
        return torch.autocast(device.type, enabled=False)

    # -- the run -------------------------------------------------------------------------

    def train(self) -> str:
        """Train to the end (or to a stop request). Returns the final state.

        SIGTERM ('tui-ft stop', the app's x) and SIGINT (Ctrl-C) both ask for a stop
        after the current step, with a checkpoint. A second Ctrl-C quits at once
        (KeyboardInterrupt): the last checkpoint written stays the resume point."""
        previous = {}

        def on_signal(signum, frame):
            name = signal.Signals(signum).name
            if self.stop_signalled and signum == signal.SIGINT:
                raise KeyboardInterrupt
            if not self.stop_signalled:
                self.stop_signalled, self.stopped_by = True, name
                again = "; Ctrl-C again quits at once, without it" \
                    if signum == signal.SIGINT else ""
                # Said now: a step of a big model can take a while.
                os.write(2, f"\n{name}: stopping after the current step, with a "
                            f"checkpoint{again}\n".encode())

        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, on_signal)
            except ValueError:  # not the main thread: the STOP file still works
                break
        c = self.config
        self.scalars = ScalarLog(Path(c.logging_dir).expanduser() if c.logging_dir
                                 else self.run_dir.path / "logs")
        try:
            return self._train()
        finally:
            self.scalars.close()
            self.scalars = None
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _train(self) -> str:
        c = self.config
        run = self.run_dir
        device = pick_device(c.device)
        if c.fp16 and device.type != "cuda":
            raise TrainingError("fp16 needs a CUDA device; use bf16 or fp32 on "
                                f"{device.type}")
        torch.manual_seed(c.seed)
        ckpt.remove_partial(run)
        # Big tensors freed and made again every step: keep their pages (hostmem.py).
        host_memory = "kept" if device.type == "cpu" and keep_freed_memory() else "default"

        if self.resume_from is not None:
            # The steps after the checkpoint are run again: their old lines go.
            run.truncate_metrics_after(ckpt.read_trainer_state(self.resume_from)["global_step"])
        source = str(self.resume_from) if self.resume_from is not None else c.model
        model, info = load_model(source, device=device, runs=self.model_runs)
        if c.gradient_checkpointing:
            model.config = replace(model.config, activation_checkpointing=True)
        set_dropout(model, c.dropout)
        train, val = self._load_data(model.config.context_length)
        if c.packing:
            train = self._pack(train)
        lengths = [_length(item) for item in train]
        micro_per_epoch = math.ceil(len(train) / c.per_device_train_batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / c.gradient_accumulation_steps)
        total_steps = (c.max_steps if c.max_steps > 0
                       else math.ceil(steps_per_epoch * c.num_train_epochs))
        warmup = c.warmup_steps or math.ceil(c.warmup_ratio * total_steps)

        optimizer = _adamw(param_groups(model, c.weight_decay), c)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(c.lr_scheduler_type, warmup, total_steps))
        scaler = torch.amp.GradScaler("cuda") if c.fp16 else None

        monitor = OverfitMonitor(c.overfit_patience, c.overfit_min_delta)
        stopper = (EarlyStopping(c.early_stopping_patience, c.early_stopping_threshold,
                                 c.greater_is_better)
                   if c.early_stopping_patience else None)
        # The best checkpoint (best_checkpoint, its step and its own metric, which is
        # Hugging Face's best_metric) is the best among evaluations that have a
        # checkpoint; the best evaluation overall may have none (best_eval_*).
        state = {"global_step": 0, "epoch_index": 0, "micro_in_epoch": 0, "best_metric": None,
                 "best_checkpoint": None, "best_checkpoint_step": None,
                 "best_eval_metric": None, "best_eval_step": None, "log_loss_sum": 0.0,
                 "log_tokens": 0, "log_steps": 0, "eval_loss_sum": 0.0, "eval_tokens": 0,
                 "last_eval_step": None, "last_metric": None, "last_save_step": None}
        if self.resume_from is not None:
            saved = ckpt.load_training_state(self.resume_from, optimizer=optimizer,
                                             scheduler=scheduler, scaler=scaler, device=device)
            state.update({k: v for k, v in saved.items() if k in state})
            if "best_eval_step" not in saved:
                _upgrade_best(state, saved)
            load_monitor_state(monitor, saved.get("monitor", {}))
            if stopper is not None:
                stopper.load_state_dict(saved.get("early_stopping") or {})
            self.emit({"step": state["global_step"], "epoch": state["global_step"] /
                       steps_per_epoch, "event": "resumed",
                       "checkpoint": self.resume_from.name})

        self.state = state
        run.write_status(state="running", step=state["global_step"], total_steps=total_steps,
                         steps_per_epoch=steps_per_epoch, model=info.describe(),
                         device=str(device), precision=c.precision, error=None,
                         stopped_by=None, started_at=now_iso(), **self._best_fields())
        self.emit({"step": state["global_step"], "epoch": state["global_step"] /
                   steps_per_epoch, "event": "start", "total_steps": total_steps,
                   "steps_per_epoch": steps_per_epoch, "device": str(device),
                   "precision": c.precision, "parameters": model.num_parameters(),
                   "host_memory": host_memory})

        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.compiled = None
        self.cudagraphs = False
        # Packed rows in compiled code on CUDA: block-sparse flex attention.
        self.flex = (c.packing and c.torch_compile and c.dropout == 0
                     and flex_attention_available(device))
        if c.torch_compile:
            mode = c.torch_compile_mode
            if mode in CUDAGRAPH_MODES and c.gradient_accumulation_steps > 1:
                # CUDA graph trees hand the first micro-batch's gradients out of their
                # memory pool and overwrite them on the next replay: accumulated
                # gradients come out wrong, silently (pytorch/pytorch#169545 and
                # #96693). The same compilation without CUDA graphs is safe.
                mode = ("max-autotune-no-cudagraphs" if mode == "max-autotune"
                        else "default")
                self.emit({"step": 0, "epoch": 0.0, "event": "compile_mode_changed",
                           "from": c.torch_compile_mode, "to": mode,
                           "reason": "CUDA graphs corrupt accumulated gradients; "
                                     "gradient_accumulation_steps is "
                                     f"{c.gradient_accumulation_steps}"})
            try:
                # Batches of examples vary in width (and the last in size): compiled
                # with symbolic shapes from the start, one graph serves them all
                # (automatic dynamic shapes would compile a static graph first, then
                # again: W1 on the CPU compiled 3 graphs instead of 4, 41 s instead of
                # 56 s). Packed rows always have the same width: static is best.
                self.compiled = torch.compile(model.hidden_states,
                                              mode=None if mode == "default" else mode,
                                              dynamic=None if c.packing else True)
                self.cudagraphs = device.type == "cuda" and mode in CUDAGRAPH_MODES
            except Exception as exc:  # an unsupported platform: train eagerly
                self._compile_fell_back(exc)
        self.monitor, self.stopper, self.state = monitor, stopper, state
        self.device, self.steps_per_epoch, self.total_steps = device, steps_per_epoch, total_steps
        self.micro_per_epoch = micro_per_epoch
        self.val = val
        try:
            final = self._loop(train, lengths, micro_per_epoch)
        except _StopRequested:
            final = "stopped"
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"out of GPU memory at per_device_train_batch_size "
                f"{c.per_device_train_batch_size} and max_length {c.max_length or 'context'}: "
                "halve the batch size (raise gradient_accumulation_steps to keep the same "
                "effective batch), shorten max_length, use bf16, or turn on "
                "gradient_checkpointing") from None
        self._finish(final)
        return final

    def _pack(self, train: list[Example]) -> list[Pack]:
        packs = pack_examples(train, self.max_length, seed=self.config.seed)
        tokens = sum(p.length for p in packs)
        self.emit({"step": 0, "epoch": 0.0, "event": "packing", "rows": len(packs),
                   "examples": len(train), "row_length": self.max_length,
                   "fill": round(tokens / max(1, len(packs) * self.max_length), 4)})
        return packs

    def _collate(self, items: list, *, pin: bool = False) -> dict:
        c = self.config
        # bf16 on the CPU runs its matmuls through oneDNN, which builds and caches a
        # kernel (with buffers) for every new shape: with a shape per batch width and
        # per count of learned tokens, its cache grew the process by 20-65 MB a step
        # (100 steps of W1: tiny 0.65 to 2.5 GB, gpt2 2.4 to 9 GB). Widths rounded to
        # 16 (the rows of an AMX tile) and the loss's rows to 64 keep the shapes few:
        # the same runs stay flat (0.9 and 3.2 GB) and are faster, kernels reused.
        cpu_bf16 = self.device.type == "cpu" and c.bf16
        targets_multiple = CPU_BF16_TARGETS_MULTIPLE if cpu_bf16 else None
        if items and isinstance(items[0], Pack):
            return collate_packed(items, width=self.max_length, device=self.device,
                                  pin_memory=pin, targets_multiple=targets_multiple)
        # Compiled code specialises on shapes: a few bucketed widths, not one per batch.
        multiple = c.pad_to_multiple_of or (64 if c.torch_compile else
                                            CPU_BF16_WIDTH_MULTIPLE if cpu_bf16 else None)
        return collate(items, device=self.device, pin_memory=pin,
                       pad_to_multiple_of=multiple, max_width=self.max_length,
                       targets_multiple=targets_multiple)

    def _loss_sum(self, batch: dict) -> torch.Tensor:
        """Summed cross-entropy of a batch over its learned tokens (fp32 scalar)."""
        with self._autocast(self.device):
            hidden = self._hidden(batch)
            return lm_loss_sum(hidden, self.model.lm_head.weight, batch["labels"],
                               positions=batch.get("target_positions"))

    def _loop(self, train: list[Example | Pack], lengths: list[int],
              micro_per_epoch: int) -> str:
        c, s = self.config, self.state
        model, optimizer, scheduler, scaler = self.model, self.optimizer, self.scheduler, self.scaler
        device = self.device
        ga = c.gradient_accumulation_steps
        pin = device.type == "cuda"
        log_loss = torch.zeros((), device=device)
        eval_loss = torch.zeros((), device=device)
        nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        log_tokens = s["log_tokens"]
        # Losses accumulated before a resume continue in the same windows.
        log_loss += s["log_loss_sum"]
        eval_loss += s["eval_loss_sum"]
        seen_tokens = 0
        t_log = time.perf_counter()
        model.train()
        epoch = s["epoch_index"]
        while s["global_step"] < self.total_steps:
            order = batch_order(lengths, c.per_device_train_batch_size, seed=c.seed,
                                epoch=epoch, shuffle=True, group_by_length=c.group_by_length)
            micro = s["micro_in_epoch"]
            while micro < len(order) and s["global_step"] < self.total_steps:
                window = [[train[j] for j in b] for b in order[micro:micro + ga]]
                micro += len(window)
                targets = sum(e.n_targets for b in window for e in b)
                for examples in window:
                    loss_sum = self._loss_sum(self._collate(examples, pin=pin))
                    loss = loss_sum / max(1, targets)
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                    detached = loss_sum.detach()
                    nonfinite |= ~torch.isfinite(detached)
                    log_loss += detached
                    eval_loss += detached
                    seen_tokens += sum(_length(e) for e in examples)
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if c.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                s["global_step"] += 1
                s["epoch_index"], s["micro_in_epoch"] = epoch, micro
                log_tokens += targets
                s["eval_tokens"] += targets
                s["log_steps"] += 1
                step = s["global_step"]
                epoch_f = epoch + micro / max(1, micro_per_epoch)
                end_of_epoch = micro >= len(order)
                last = step >= self.total_steps

                if step % c.logging_steps == 0 or last:
                    now = time.perf_counter()
                    self._check_finite(nonfinite, step)
                    train_loss = (log_loss / max(1, log_tokens)).item()
                    self.emit({"step": step, "epoch": round(epoch_f, 4),
                               "train_loss": train_loss,
                               "lr": scheduler.get_last_lr()[0],
                               "tokens_per_s": round(seen_tokens / max(1e-9, now - t_log), 1)})
                    self.run_dir.write_status(step=step, epoch=round(epoch_f, 4),
                                              train_loss=train_loss, durable=False)
                    log_loss.zero_()
                    log_tokens, s["log_steps"], seen_tokens, t_log = 0, 0, 0, now
                s["log_tokens"] = log_tokens

                evaluate = (c.eval_strategy == "steps" and step % c.eval_steps == 0) or \
                           (c.eval_strategy == "epoch" and end_of_epoch) or \
                           (c.eval_strategy != "no" and last)
                stop_early = False
                if evaluate:
                    self._check_finite(nonfinite, step)
                    window_train = (eval_loss / max(1, s["eval_tokens"])).item()
                    eval_loss.zero_()
                    s["eval_tokens"] = 0
                    stop_early = self._evaluate(step, epoch_f, window_train)
                    release_free_memory()
                save = (c.save_strategy == "steps" and step % c.save_steps == 0) or \
                       (c.save_strategy == "epoch" and end_of_epoch) or last or stop_early
                stopping = self._stop_requested() or step == self.stop_at_step
                if stopping and self.stopped_by is None:
                    self.stopped_by = "stop_at_step"
                if save or stopping:
                    self._check_finite(nonfinite, step)
                    s["log_loss_sum"] = float(log_loss.item())
                    s["eval_loss_sum"] = float(eval_loss.item())
                    self._save(step, epoch_f, evaluated=evaluate)
                    release_free_memory()
                if stop_early:
                    self.emit({"step": step, "epoch": round(epoch_f, 4),
                               "event": "early_stopping",
                               "patience": c.early_stopping_patience})
                    return "finished"
                if stopping:
                    self.emit({"step": step, "epoch": round(epoch_f, 4), "event": "stopped",
                               "by": self.stopped_by})
                    raise _StopRequested
            if micro >= len(order):
                epoch += 1
                s["micro_in_epoch"] = 0
                s["epoch_index"] = epoch
        return "finished"

    def _hidden(self, batch: dict) -> torch.Tensor:
        """The model's final hidden states, through torch.compile when asked; a
        compilation that fails (it happens lazily, at the first call) falls back to
        eager mode once, with an event saying why, instead of ending the run."""
        args = (batch["input_ids"], batch.get("position_ids"))
        kwargs = {"document_ids": batch["document_ids"]} if "document_ids" in batch else {}
        if self.compiled is None:
            return self.model.hidden_states(*args, **kwargs)
        compiled_kwargs = kwargs
        if kwargs and self.flex:
            compiled_kwargs = {"attn_mask": flex_document_mask(batch["document_ids"])}
        if self.cudagraphs:
            # The previous step's outputs are dead: CUDA graphs may reuse their memory.
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return self.compiled(*args, **compiled_kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            self._compile_fell_back(exc)
            return self.model.hidden_states(*args, **kwargs)

    def _compile_fell_back(self, exc: Exception) -> None:
        self.compiled = None
        self.cudagraphs = False
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        self.emit({"step": self.state["global_step"] if hasattr(self, "state") else 0,
                   "event": "compile_fallback", "reason": reason})

    def _check_finite(self, flag: torch.Tensor, step: int) -> None:
        if bool(flag.item()):
            last = self.run_dir.checkpoints()
            keep = f"; the last good checkpoint is {last[-1].name}" if last else ""
            raise TrainingError(
                f"the loss became NaN or infinite by step {step}: lower learning_rate, "
                f"check the data, or use bf16 instead of fp16{keep}")

    @torch.no_grad()
    def _evaluate(self, step: int, epoch_f: float, window_train: float) -> bool:
        """Validation loss over the whole validation split; returns True when early
        stopping says stop."""
        c, s, model = self.config, self.state, self.model
        if not self.val:
            return False
        model.eval()
        total = torch.zeros((), device=self.device)
        targets = 0
        # Sorted by length so each batch pads little; the order does not change the sum.
        order = sorted(range(len(self.val)), key=lambda i: len(self.val[i].input_ids))
        for start in range(0, len(order), c.per_device_eval_batch_size):
            examples = [self.val[i] for i in order[start:start + c.per_device_eval_batch_size]]
            total += self._loss_sum(self._collate(examples))
            targets += sum(e.n_targets for e in examples)
        model.train()
        val_loss = (total / max(1, targets)).item()
        if not math.isfinite(val_loss):
            raise TrainingError(f"the validation loss is NaN or infinite at step {step}")
        s["last_eval_step"] = step
        s["last_metric"] = val_loss
        self.emit({"step": step, "epoch": round(epoch_f, 4), "val_loss": val_loss,
                   "train_loss_window": window_train})
        if self._better(val_loss, s["best_eval_metric"]):
            s["best_eval_metric"], s["best_eval_step"] = val_loss, step
        self.run_dir.write_status(best_eval_step=s["best_eval_step"],
                                  best_eval_metric=s["best_eval_metric"], durable=False)
        event = self.monitor.update(step, val_loss, window_train)
        if event is not None:
            if event["event"] == "overfitting":
                name, metric = self._overfit_checkpoint()
                event["best_checkpoint"] = name
                # Its own loss: it may not be the checkpoint of best_step.
                event["best_checkpoint_metric"] = metric
            event.setdefault("epoch", round(epoch_f, 4))
            self.emit(event)
            self.run_dir.write_status(overfitting=event if event["event"] == "overfitting"
                                      else None)
        return self.stopper is not None and self.stopper.update(val_loss)

    def _better(self, metric: float, than: float | None) -> bool:
        if than is None:
            return True
        return metric > than if self.config.greater_is_better else metric < than

    def _best_fields(self) -> dict:
        """The best checkpoint and the best evaluation, as status.json says them
        (best_metric, Hugging Face's name, is the best checkpoint's own metric)."""
        s = self.state
        return {"best_checkpoint": s["best_checkpoint"],
                "best_checkpoint_step": s["best_checkpoint_step"],
                "best_checkpoint_metric": s["best_metric"], "best_metric": s["best_metric"],
                "best_eval_step": s["best_eval_step"],
                "best_eval_metric": s["best_eval_metric"]}

    def _overfit_checkpoint(self) -> tuple[str | None, float | None]:
        """The checkpoint to go back to when overfitting: the one saved at the alert's
        best evaluation if there is one, else the best checkpoint; with its own loss."""
        monitor = self.monitor
        for c in self.run_dir.checkpoints():
            if c.step == monitor.best_step:
                return c.name, monitor.best_val
        return self.state["best_checkpoint"], self.state["best_metric"]

    def _save(self, step: int, epoch_f: float, *, evaluated: bool) -> None:
        c, s = self.config, self.state
        evaluated = evaluated and s["last_eval_step"] == step  # no validation split: none
        if evaluated and self._better(s["last_metric"], s["best_metric"]):
            # An evaluation at this very step: the checkpoint holds the weights it judged.
            s["best_checkpoint"], s["best_checkpoint_step"] = f"checkpoint-{step}", step
            s["best_metric"] = s["last_metric"]
        s["last_save_step"] = step
        trainer_state = dict(s)
        trainer_state.update({"epoch": epoch_f, "total_steps": self.total_steps,
                              "monitor": monitor_state(self.monitor),
                              "early_stopping": (self.stopper.state_dict()
                                                 if self.stopper else None),
                              "saved_at": now_iso()})
        info = ckpt.save_checkpoint(self.run_dir, step, model=self.model,
                                    optimizer=self.optimizer, scheduler=self.scheduler,
                                    scaler=self.scaler, trainer_state=trainer_state)
        # The one just saved stays too (it is the newest, unless a resume from an
        # earlier checkpoint left later ones behind).
        keep = {info.name} | ({s["best_checkpoint"]} if s["best_checkpoint"] else set())
        graded = self._graded_checkpoints() if c.save_total_limit else {}
        rotation = ckpt.rotate(self.run_dir, c.save_total_limit, keep, pinned=set(graded))
        self.emit({"step": step, "epoch": round(epoch_f, 4), "event": "checkpoint",
                   "checkpoint": info.name, "best_checkpoint": s["best_checkpoint"],
                   "removed": rotation.removed})
        for name in rotation.spared:
            if name not in self.announced_pins:
                # Said once: the run keeps more than save_total_limit checkpoints.
                self.announced_pins.add(name)
                self.emit({"step": step, "epoch": round(epoch_f, 4),
                           "event": "checkpoint_kept", "checkpoint": name,
                           "reason": "graded", "graded": graded[name],
                           "save_total_limit": c.save_total_limit})
        self.run_dir.write_status(step=step, last_checkpoint=info.name, **self._best_fields())

    def _graded_checkpoints(self) -> dict[str, int]:
        """Checkpoints whose responses hold grades or notes: rotation keeps them."""
        try:
            return self.graded_checkpoints()
        except OSError:
            # The journal cannot be read: every checkpoint might be graded.
            return {cp.name: 0 for cp in self.run_dir.checkpoints()}

    def _finish(self, final: str) -> None:
        c, s = self.config, self.state
        # Every metrics line has step and epoch, the closing ones too.
        epoch = round(s["epoch_index"] + s["micro_in_epoch"] / max(1, self.micro_per_epoch), 4)
        status = {"state": final, "step": s["global_step"], "finished_at": now_iso(),
                  "stopped_by": self.stopped_by if final == "stopped" else None,
                  **self._best_fields()}
        if c.load_best_model_at_end and s["best_checkpoint"] and final == "finished":
            # Every later use of the run (responses, export) takes this checkpoint.
            status["final_checkpoint"] = s["best_checkpoint"]
            self.emit({"step": s["global_step"], "epoch": epoch, "event": "best_model_loaded",
                       "checkpoint": s["best_checkpoint"],
                       "checkpoint_step": s["best_checkpoint_step"],
                       "metric": s["best_metric"]})
        else:
            last = self.run_dir.checkpoints()
            status["final_checkpoint"] = last[-1].name if last else None
        self.emit({"step": s["global_step"], "epoch": epoch, "event": "end", "state": final})
        self.run_dir.write_status(**status)


def _upgrade_best(state: dict, saved: dict) -> None:
    """A checkpoint written before best_eval_*: its best_metric and best_step were the
    best evaluation overall, not its best_checkpoint's; that one's own loss is in the
    overfitting monitor's history of evaluations."""
    state["best_eval_metric"] = saved.get("best_metric")
    state["best_eval_step"] = saved.get("best_step")
    name = state.get("best_checkpoint")
    step = int(name.rsplit("-", 1)[1]) if isinstance(name, str) and name[-1:].isdigit() else None
    history = {h[0]: h[1] for h in (saved.get("monitor") or {}).get("history", [])}
    state["best_checkpoint_step"] = step
    state["best_metric"] = history.get(step)
    if state["best_metric"] is None:
        state["best_checkpoint"] = state["best_checkpoint_step"] = None


def _adamw(groups: list[dict], c: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one pass over each parameter, no temporaries) where this torch
    has the fused kernel for the device (CUDA; the CPU from torch 2.4 on), else the
    per-tensor implementation; the results are the same to rounding."""
    kwargs = {"lr": c.learning_rate, "betas": (c.adam_beta1, c.adam_beta2),
              "eps": c.adam_epsilon}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def _length(item: Example | Pack) -> int:
    """Tokens of an example or of a packed row (padding not counted)."""
    return item.length if isinstance(item, Pack) else len(item.input_ids)
