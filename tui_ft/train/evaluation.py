"""Evaluation during training: the validation loss over the whole validation split,
the best evaluation, the overfitting alert and early stopping."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import TrainConfig
from ..data.batches import Example
from ..errors import TrainingError
from ..runfolder import Run
from .distributed import World, reduce_sum
from .monitor import EarlyStopping, OverfitMonitor
from .state import better


def metric_name(config: TrainConfig) -> str:
    """metric_for_best_model without Hugging Face's optional eval_ prefix."""
    return config.metric_for_best_model.removeprefix("eval_")


class Evaluation:
    """Evaluates a run's model on `val`. `eval_sums` gives a batch's summed loss and
    correctly predicted tokens (Trainer._eval_sums) and
    `collate` makes one (the Trainer's); `emit` receives the evaluation's records."""

    def __init__(self, config: TrainConfig, run: Run, val: list[Example], *,
                 monitor: OverfitMonitor, stopper: EarlyStopping | None,
                 eval_sums: Callable[[dict], torch.Tensor], collate: Callable[[list], dict],
                 emit: Callable[[dict], None], device: torch.device,
                 world: World = World(), lockstep: bool = False,
                 answers: Callable | None = None) -> None:
        # `lockstep`: every rank runs as many batches (FSDP gathers weights in each
        # forward, a collective); a rank short of one runs a batch weighted zero.
        self.config, self.run, self.val, self.world = config, run, val, world
        self.lockstep = lockstep
        # Generated answers' metrics (eval_answers.EvalAnswers), when the config asks.
        self.answers = answers
        self.monitor, self.stopper = monitor, stopper
        self.eval_sums, self.collate, self.emit, self.device = eval_sums, collate, emit, device

    @torch.no_grad()
    def __call__(self, model, state: dict, step: int, epoch_f: float,
                 window_train: float) -> bool:
        """Evaluates at `step`, recording it in `state` and the run; returns True when
        early stopping says stop."""
        c, s = self.config, state
        if not self.val:
            return False
        model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss, correct
        targets = 0
        # Sorted by length so each batch pads little; the order does not change the sum.
        order = sorted(range(len(self.val)), key=lambda i: len(self.val[i].input_ids))
        size = c.per_device_eval_batch_size
        # Several ranks: batch b is rank (b mod world size)'s; the sums are reduced.
        every = list(range(0, len(order), size))
        starts = every[self.world.rank::self.world.world_size]
        rounds = math.ceil(len(every) / self.world.world_size)
        if self.lockstep and len(starts) < rounds:
            starts.append(None)
        for start in starts:
            if start is None:
                total += 0.0 * self.eval_sums(self.collate(self.val[:1]))
                continue
            examples = [self.val[i] for i in order[start:start + size]]
            total += self.eval_sums(self.collate(examples))
            targets += sum(e.n_targets for e in examples)
        extra = self.answers(model) if self.answers is not None else {}
        model.train()
        summed, correct, targets = reduce_sum([total[0], total[1], targets], self.world,
                                              self.device).tolist()
        val_loss = summed / max(1, targets)
        accuracy = correct / max(1, targets)
        if not math.isfinite(val_loss):
            raise TrainingError(f"the validation loss is NaN or infinite at step {step}")
        # The metric that picks the best checkpoint, keeps it, loads it at the end and
        # stops early: the validation loss, or next-token accuracy (metric_for_best_model).
        values = {"loss": val_loss, "accuracy": accuracy, **extra}
        name = metric_name(c)
        if name not in values:
            raise TrainingError(f"metric_for_best_model {c.metric_for_best_model}: the "
                                f"evaluation gave no {name!r} (it gave "
                                f"{', '.join(sorted(values))}); check compute_metrics")
        metric = values[name]
        s["last_eval_step"] = step
        s["last_metric"] = metric
        self.emit({"step": step, "epoch": round(epoch_f, 4), "val_loss": val_loss,
                   "val_accuracy": accuracy, **{f"val_{k}": v for k, v in extra.items()},
                   "train_loss_window": window_train})
        if better(metric, s["best_eval_metric"], c.greater_is_better):
            s["best_eval_metric"], s["best_eval_step"] = metric, step
        self.run.write_status(best_eval_step=s["best_eval_step"],
                              best_eval_metric=s["best_eval_metric"], durable=False)
        event = self.monitor.update(step, val_loss, window_train)
        if event is not None:
            if event["event"] == "overfitting":
                name, metric = self._overfit_checkpoint(state)
                event["best_checkpoint"] = name
                # Its own loss: it may not be the checkpoint of best_step.
                event["best_checkpoint_metric"] = metric
            event.setdefault("epoch", round(epoch_f, 4))
            self.emit(event)
            self.run.write_status(overfitting=event if event["event"] == "overfitting"
                                  else None)
        return self.stopper is not None and self.stopper.update(metric)

    def _overfit_checkpoint(self, state: dict) -> tuple[str | None, float | None]:
        """The checkpoint to go back to when overfitting: the one saved at the alert's
        best evaluation if there is one, else the best checkpoint; with its own loss."""
        monitor = self.monitor
        for c in self.run.checkpoints():
            if c.step == monitor.best_step:
                return c.name, monitor.best_val
        return state["best_checkpoint"], state["best_metric"]
