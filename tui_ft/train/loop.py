"""The training loop. It owns no UI: everything it has to say goes to the run
folder (metrics.jsonl, status.json, checkpoints/) and to an optional callback.
Losses are token-weighted over each optimizer step (padding and masked prompt
tokens count for nothing), and steps that log nothing never wait for the device."""

from __future__ import annotations

import math
import time
from functools import partial
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..config import TrainConfig
from ..data.batches import Example, Pack, batch_order, encode_records
from ..data.styles import load_styles
from ..errors import TrainingError
from ..model.loss import lm_eval_sums, lm_loss_sum
from ..model.weights import load_model
from . import checkpoints as ckpt
from .batching import Collator, item_length, pack
from .compiled import HiddenStates
from .distributed import (ShardedState, World, any_rank, finish, gather, gradient_sync, init,
                          reduce_sum, shard_fsdp, wrap_ddp)
from .evaluation import Evaluation
from .hostmem import keep_freed_memory, release_free_memory
from .monitor import EarlyStopping, OverfitMonitor, load_monitor_state, monitor_state
from .optim import build_optimization
from .splits import config_splits
from .stopping import StopRequests
from .state import best_fields, better, new_state, resumed_state
from ..runfolder import Run, now_iso
from .scalars import ScalarLog


# Seconds between a rank's heartbeats (runfolder.Run.write_heartbeat).
HEARTBEAT_EVERY = 2.0


class _StopRequested(Exception):
    pass


def set_dropout(model: torch.nn.Module, p: float) -> None:
    for name, module in model.named_modules():
        if name.endswith("lora_dropout"):
            continue  # a LoRA adapter's own (lora_dropout), set with the adapter
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        if hasattr(module, "dropout") and isinstance(module.dropout, float):
            module.dropout = p


class _LossModule(torch.nn.Module):
    """The whole forward pass and loss of a batch as one module, for DDP to wrap: its
    gradient hooks then see every use of a weight (the tied output layer too)."""

    def __init__(self, model: torch.nn.Module, loss_sum: Callable[[dict], torch.Tensor],
                 eval_sums: Callable[[dict], torch.Tensor]):
        super().__init__()
        self.model = model
        self._loss_sum, self._eval_sums = loss_sum, eval_sums

    def forward(self, batch: dict, evaluate: bool = False) -> torch.Tensor:
        return self._eval_sums(batch) if evaluate else self._loss_sum(batch)


class Trainer:
    """Runs one training run into `run`. `stop_at_step` stops as a stop request
    would, right after that step (tests use it to cut a run at a known place).
    `world`: this process's rank among several (distributed.py); only rank 0 writes
    the run folder, which the others are given read-only (runfolder.ReadOnlyRun)."""

    def __init__(self, config: TrainConfig, run: Run, *, resume_from: Path | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 stop_at_step: int | None = None,
                 model_runs: Callable[[str], Path | None],
                 graded_checkpoints: Callable[[], dict[str, int]],
                 world: World = World()) -> None:
        # From the run layer above (runs/worker.py): `model_runs` finds the checkpoint
        # a run named as the model stands for (load_model's `runs`), and
        # `graded_checkpoints` reads which checkpoints hold grades (rotation keeps them).
        self.model_runs = model_runs
        self.graded_checkpoints = graded_checkpoints
        self.world = world
        self.config = config
        self.run_dir = run
        self.resume_from = resume_from
        self.on_event = on_event
        self.stop_at_step = stop_at_step
        self.stops = StopRequests(run.stop_path)
        self.announced_pins: set[str] = set()
        self.scalars: ScalarLog | None = None

    # -- events ----------------------------------------------------------------------

    def emit(self, record: dict) -> None:
        if not self.world.is_main:
            return
        # Wall time lets a reader that attaches later work out speed and ETA.
        record.setdefault("time", round(time.time(), 3))
        self.run_dir.append_metrics(record)
        if self.scalars is not None:
            self.scalars.log(record)
        if self.on_event is not None:
            self.on_event(record)

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
        self.val_records, self.style = splits.val, style
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
        c = self.config
        with self.stops.signals_handled():
            if self.world.is_main:
                self.scalars = ScalarLog(Path(c.logging_dir).expanduser() if c.logging_dir
                                         else self.run_dir.path / "logs")
            try:
                return self._train()
            finally:
                if self.scalars is not None:
                    self.scalars.close()
                self.scalars = None
                finish(self.world)

    def _train(self) -> str:
        c = self.config
        run = self.run_dir
        world = self.world
        device = init(world, c.device)
        if c.fp16 and device.type != "cuda":
            raise TrainingError("fp16 needs a CUDA device; use bf16 or fp32 on "
                                f"{device.type}")
        torch.manual_seed(c.seed)
        if world.is_main:
            ckpt.remove_partial(run)
        # Big tensors freed and made again every step: keep their pages (hostmem.py).
        host_memory = "kept" if device.type == "cpu" and keep_freed_memory() else "default"

        if self.resume_from is not None:
            # The steps after the checkpoint are run again: their old lines go.
            run.truncate_metrics_after(ckpt.read_trainer_state(self.resume_from)["global_step"])
        source = str(self.resume_from) if self.resume_from is not None else c.model
        # FSDP: the whole model only on the CPU; sharding moves each rank's share to
        # its device (a model too big for one device is never whole on one).
        fsdp = world.distributed and c.distributed == "fsdp"
        if fsdp:
            from ..config import fsdp_problems

            problems = fsdp_problems(c.to_dict())
            if problems:
                raise TrainingError("distributed: fsdp: " + "; ".join(p.reason
                                                                       for p in problems))
        # An int8 LoRA base likewise: its layers are quantized on their way to the
        # device, which never holds the fp32 base (quant.bnb_int8_base).
        on_cpu_first = fsdp or (c.load_in_8bit and c.lora_r)
        model, info = load_model(source, device=torch.device("cpu") if on_cpu_first
                                 else device, runs=self.model_runs)
        if c.gradient_checkpointing:
            model.config = replace(model.config, activation_checkpointing=True)
        set_dropout(model, c.dropout)
        lora = self._lora(model, device) if c.lora_r else None
        if world.rank:
            # The same weights on every rank (the same seed above); each rank its own
            # dropout masks from here on. Rank 0 keeps the one-process stream.
            torch.manual_seed(c.seed + world.rank)
        train, val = self._load_data(model.config.context_length)
        if c.packing:
            train, packing = pack(train, self.max_length, seed=c.seed)
            self.emit({"step": 0, "epoch": 0.0, "event": "packing", **packing})
        lengths = [item_length(item) for item in train]
        # Global micro-batches: per-device batch x ranks (HF's meaning).
        self.global_batch = c.per_device_train_batch_size * world.world_size
        micro_per_epoch = math.ceil(len(train) / self.global_batch)
        steps_per_epoch = math.ceil(micro_per_epoch / c.gradient_accumulation_steps)
        total_steps = (c.max_steps if c.max_steps > 0
                       else math.ceil(steps_per_epoch * c.num_train_epochs))
        # Several ranks: the forward pass and loss run inside DDP (which averages the
        # gradients over ranks as they are made) or FSDP2 (sharded before the
        # optimizer is made: it must hold the shards). distributed.py says more.
        self.parallel = None
        if fsdp:
            self.parallel = shard_fsdp(_LossModule(model, self._loss_sum, self._eval_sums), model.h, world,
                                       device)
        optimizer, scheduler, scaler = build_optimization(model, c, total_steps)
        self.sharded = ShardedState(self.parallel, optimizer, world) if fsdp else None
        if world.distributed and not fsdp:
            self.parallel = wrap_ddp(_LossModule(model, self._loss_sum, self._eval_sums), device)

        monitor = OverfitMonitor(c.overfit_patience, c.overfit_min_delta)
        stopper = (EarlyStopping(c.early_stopping_patience, c.early_stopping_threshold,
                                 c.greater_is_better)
                   if c.early_stopping_patience else None)
        state = new_state()
        if self.resume_from is not None:
            saved = ckpt.load_training_state(self.resume_from, optimizer=optimizer,
                                             scheduler=scheduler, scaler=scaler, device=device,
                                             rank=world.rank, sharded=self.sharded)
            if saved.get("world_size", 1) != world.world_size:
                raise TrainingError(
                    f"{self.resume_from.name} was saved by {saved.get('world_size', 1)} "
                    f"process(es) and this resume has {world.world_size}: its place in the "
                    f"data is counted in global batches of that many ranks; resume with "
                    f"--nproc-per-node {saved.get('world_size', 1)}")
            state = resumed_state(saved)
            if not world.is_main:
                # The loss sums saved are over all ranks: counted once, on rank 0.
                state["log_loss_sum"] = state["eval_loss_sum"] = 0.0
            load_monitor_state(monitor, saved.get("monitor", {}))
            if stopper is not None:
                stopper.load_state_dict(saved.get("early_stopping") or {})
            self.emit({"step": state["global_step"], "epoch": state["global_step"] /
                       steps_per_epoch, "event": "resumed",
                       "checkpoint": self.resume_from.name})

        self.state = state
        effective = self.global_batch * c.gradient_accumulation_steps
        run.write_status(state="running", step=state["global_step"], total_steps=total_steps,
                         steps_per_epoch=steps_per_epoch, model=info.describe(),
                         device=str(device), precision=c.precision, error=None,
                         stopped_by=None, started_at=now_iso(), world_size=world.world_size,
                         metric_for_best_model=c.metric_for_best_model,
                         effective_batch_size=effective, **best_fields(state))
        self.emit({"step": state["global_step"], "epoch": state["global_step"] /
                   steps_per_epoch, "event": "start", "total_steps": total_steps,
                   "steps_per_epoch": steps_per_epoch, "device": str(device),
                   "precision": c.precision, "parameters": model.num_parameters(),
                   "host_memory": host_memory, "world_size": world.world_size,
                   "per_device_train_batch_size": c.per_device_train_batch_size,
                   "trainable_parameters": sum(p.numel() for p in model.parameters()
                                               if p.requires_grad), "lora": lora,
                   "gradient_accumulation_steps": c.gradient_accumulation_steps,
                   "effective_batch_size": effective})

        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.collate = Collator(c, device, self.max_length)
        self.hidden = HiddenStates(model, c, device, self.emit,
                                   step=lambda: self.state["global_step"])
        self.monitor, self.stopper, self.state = monitor, stopper, state
        self.device, self.steps_per_epoch, self.total_steps = device, steps_per_epoch, total_steps
        self.micro_per_epoch = micro_per_epoch
        # FSDP's weights are whole only inside the sharded module's forward, which
        # every rank must run together: evaluation goes through it, in lockstep.
        self.evaluate = Evaluation(c, run, val, monitor=monitor, stopper=stopper,
                                   eval_sums=(partial(self.parallel, evaluate=True)
                                              if fsdp else self._eval_sums),
                                   collate=self.collate, emit=self.emit, device=device,
                                   world=world, lockstep=fsdp, answers=self._answers())
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

    def _lora(self, model, device) -> dict:
        """Adapters on the base (frozen), unless the model came with them (a resume
        from a LoRA checkpoint). The base is named so that a checkpoint, which holds
        only the adapter, can load it again: a preset by name, a file by its path."""
        from ..model.lora import LoraSettings, add_lora, expand_targets, has_lora
        from ..model.sources import resolve_source

        c = self.config
        if c.load_in_8bit:
            from ..model.quant import bnb_int8_base

            bnb_int8_base(model, device)
        if not has_lora(model):
            source = resolve_source(c.model, runs=self.model_runs)
            base = source.text if source.kind == "preset" else str(source.path.resolve())
            add_lora(model, LoraSettings(r=c.lora_r, alpha=c.lora_alpha,
                                         dropout=c.lora_dropout,
                                         targets=expand_targets(c.lora_target_modules),
                                         base=base))
        settings = model.lora
        return {"r": settings.r, "alpha": settings.alpha, "targets": list(settings.targets),
                "base": settings.base}

    def _answers(self):
        """Greedy answers of the validation split at each evaluation, when the config
        asks for their metrics (eval_exact_match, compute_metrics)."""
        c = self.config
        if not (c.eval_exact_match or c.compute_metrics) or not self.val_records:
            return None
        from .eval_answers import EvalAnswers

        return EvalAnswers(c, self.val_records, self.style,
                           context=self.model.config.context_length, world=self.world,
                           emit=self.emit, batch_size=c.per_device_eval_batch_size)

    def _eval_sums(self, batch: dict) -> torch.Tensor:
        """[summed cross-entropy, correctly predicted tokens] of a batch (evaluation)."""
        with self._autocast(self.device):
            hidden = self.hidden(batch)
            return lm_eval_sums(hidden, self.model.lm_head.weight, batch["labels"],
                                positions=batch.get("target_positions"))

    def _loss_sum(self, batch: dict) -> torch.Tensor:
        """Summed cross-entropy of a batch over its learned tokens (fp32 scalar)."""
        with self._autocast(self.device):
            hidden = self.hidden(batch)
            return lm_loss_sum(hidden, self.model.lm_head.weight, batch["labels"],
                               positions=batch.get("target_positions"))

    def _loop(self, train: list[Example | Pack], lengths: list[int],
              micro_per_epoch: int) -> str:
        c, s = self.config, self.state
        model, optimizer, scheduler, scaler = self.model, self.optimizer, self.scheduler, self.scaler
        device, world = self.device, self.world
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
        self.beat = -math.inf
        if world.distributed:
            self.run_dir.write_heartbeat(world.rank, s["global_step"])
        model.train()
        epoch = s["epoch_index"]
        while s["global_step"] < self.total_steps:
            order = batch_order(lengths, self.global_batch, seed=c.seed,
                                epoch=epoch, shuffle=True, group_by_length=c.group_by_length)
            micro = s["micro_in_epoch"]
            while micro < len(order) and s["global_step"] < self.total_steps:
                window = [[train[j] for j in b] for b in order[micro:micro + ga]]
                micro += len(window)
                # Learned tokens of the whole step, over all ranks: each rank knows them.
                targets = sum(e.n_targets for b in window for e in b)
                for i, global_examples in enumerate(window):
                    examples, weight = world.shard(global_examples), 1.0
                    if not examples:
                        # A last global batch with fewer examples than ranks: this rank
                        # runs one with no weight, as every rank must run the step.
                        examples, weight = global_examples[:1], 0.0
                    with gradient_sync(self.parallel, i == len(window) - 1):
                        batch = self.collate(examples, pin=pin)
                        loss_sum = (self.parallel(batch) if self.parallel is not None
                                    else self._loss_sum(batch))
                        if weight != 1.0:
                            loss_sum = loss_sum * weight
                        # DDP and FSDP average the ranks' gradients: times the world
                        # size, the sum over ranks of loss sums over the global tokens.
                        loss = loss_sum * (world.world_size / max(1, targets))
                        (scaler.scale(loss) if scaler is not None else loss).backward()
                    detached = loss_sum.detach()
                    nonfinite |= ~torch.isfinite(detached)
                    log_loss += detached
                    eval_loss += detached
                    if weight:
                        seen_tokens += sum(item_length(e) for e in examples)
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
                if world.distributed and time.monotonic() - self.beat >= HEARTBEAT_EVERY:
                    self.beat = time.monotonic()
                    self.run_dir.write_heartbeat(world.rank, s["global_step"])
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
                    summed, tokens = reduce_sum([log_loss, seen_tokens], world, device).tolist()
                    train_loss = summed / max(1, log_tokens)
                    self.emit({"step": step, "epoch": round(epoch_f, 4),
                               "train_loss": train_loss,
                               "lr": scheduler.get_last_lr()[0],
                               "tokens_per_s": round(tokens / max(1e-9, now - t_log), 1)})
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
                    window_train = (reduce_sum([eval_loss], world, device)[0].item()
                                    / max(1, s["eval_tokens"]))
                    eval_loss.zero_()
                    s["eval_tokens"] = 0
                    stop_early = self.evaluate(model, s, step, epoch_f, window_train)
                    release_free_memory()
                save = (c.save_strategy == "steps" and step % c.save_steps == 0) or \
                       (c.save_strategy == "epoch" and end_of_epoch) or last or stop_early
                asked = self.stops.requested()
                # Every rank stops at the same step: a stop asked of one (SIGTERM to
                # rank 0 from 'tui-ft stop', Ctrl-C) is heard by all.
                stopping = any_rank(asked, world, device) or step == self.stop_at_step
                if stopping and self.stops.by is None:
                    self.stops.by = ("stop_at_step" if step == self.stop_at_step
                                     else "another rank")
                if save or stopping:
                    self._check_finite(nonfinite, step)
                    s["log_loss_sum"], s["eval_loss_sum"] = reduce_sum(
                        [log_loss, eval_loss], world, device).tolist()
                    self._save(step, epoch_f, evaluated=evaluate)
                    release_free_memory()
                if stop_early:
                    self.emit({"step": step, "epoch": round(epoch_f, 4),
                               "event": "early_stopping",
                               "patience": c.early_stopping_patience})
                    return "finished"
                if stopping:
                    self.emit({"step": step, "epoch": round(epoch_f, 4), "event": "stopped",
                               "by": self.stops.by})
                    raise _StopRequested
            if micro >= len(order):
                epoch += 1
                s["micro_in_epoch"] = 0
                s["epoch_index"] = epoch
        return "finished"

    def _check_finite(self, flag: torch.Tensor, step: int) -> None:
        if any_rank(bool(flag.item()), self.world, self.device):
            last = self.run_dir.checkpoints()
            keep = f"; the last good checkpoint is {last[-1].name}" if last else ""
            raise TrainingError(
                f"the loss became NaN or infinite by step {step}: lower learning_rate, "
                f"check the data, or use bf16 instead of fp16{keep}")

    def _save(self, step: int, epoch_f: float, *, evaluated: bool) -> None:
        c, s = self.config, self.state
        evaluated = evaluated and s["last_eval_step"] == step  # no validation split: none
        if evaluated and better(s["last_metric"], s["best_metric"], c.greater_is_better):
            # An evaluation at this very step: the checkpoint holds the weights it judged.
            s["best_checkpoint"], s["best_checkpoint_step"] = f"checkpoint-{step}", step
            s["best_metric"] = s["last_metric"]
        s["last_save_step"] = step
        trainer_state = dict(s)
        # Every rank's random state (dropout), gathered to rank 0 which writes them.
        rngs = gather(ckpt.rng_state(), self.world)
        if not self.world.is_main:
            if self.sharded is not None:  # a collective: every rank takes part
                ckpt.save_checkpoint(self.run_dir, step, model=self.model,
                                     optimizer=self.optimizer, scheduler=self.scheduler,
                                     scaler=self.scaler, trainer_state={},
                                     sharded=self.sharded)
            return
        trainer_state.update({"epoch": epoch_f, "total_steps": self.total_steps,
                              "world_size": self.world.world_size,
                              "monitor": monitor_state(self.monitor),
                              "early_stopping": (self.stopper.state_dict()
                                                 if self.stopper else None),
                              "saved_at": now_iso()})
        info = ckpt.save_checkpoint(self.run_dir, step, model=self.model,
                                    optimizer=self.optimizer, scheduler=self.scheduler,
                                    scaler=self.scaler, trainer_state=trainer_state,
                                    rng=ckpt.ranks_rng_state(rngs), sharded=self.sharded)
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
        self.run_dir.write_status(step=step, last_checkpoint=info.name, **best_fields(s))

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
                  "stopped_by": self.stops.by if final == "stopped" else None,
                  **best_fields(s)}
        if c.load_best_model_at_end and s["best_checkpoint"] and final == "finished":
            # Every later use of the run (responses, export) takes this checkpoint.
            status["final_checkpoint"] = s["best_checkpoint"]
            self.emit({"step": s["global_step"], "epoch": epoch, "event": "best_model_loaded",
                       "checkpoint": s["best_checkpoint"],
                       "checkpoint_step": s["best_checkpoint_step"],
                       "metric": s["best_metric"], "metric_name": c.metric_for_best_model})
        else:
            last = self.run_dir.checkpoints()
            status["final_checkpoint"] = last[-1].name if last else None
        self.emit({"step": s["global_step"], "epoch": epoch, "event": "end", "state": final})
        self.run_dir.write_status(**status)

