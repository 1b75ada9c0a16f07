"""The trainer's resumable state (saved in every checkpoint's trainer_state): the
step counters, the loss windows, and the best checkpoint beside the best evaluation.
The best checkpoint (best_checkpoint, its step and its own metric, which is Hugging
Face's best_metric) is the best among evaluations that have a checkpoint; the best
evaluation overall may have none (best_eval_*)."""

from __future__ import annotations


def new_state() -> dict:
    """The state of a run at step 0."""
    return {"global_step": 0, "epoch_index": 0, "micro_in_epoch": 0, "best_metric": None,
            "best_checkpoint": None, "best_checkpoint_step": None,
            "best_eval_metric": None, "best_eval_step": None, "log_loss_sum": 0.0,
            "log_tokens": 0, "log_steps": 0, "eval_loss_sum": 0.0, "eval_tokens": 0,
            "last_eval_step": None, "last_metric": None, "last_save_step": None}


def resumed_state(saved: dict) -> dict:
    """The state a checkpoint's trainer_state continues with."""
    state = new_state()
    state.update({k: v for k, v in saved.items() if k in state})
    if "best_eval_step" not in saved:
        _upgrade_best(state, saved)
    return state


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


def better(metric: float, than: float | None, greater_is_better: bool) -> bool:
    """Whether `metric` beats `than` (None: nothing to beat yet)."""
    if than is None:
        return True
    return metric > than if greater_is_better else metric < than


def best_fields(state: dict) -> dict:
    """The best checkpoint and the best evaluation, as status.json says them
    (best_metric, Hugging Face's name, is the best checkpoint's own metric)."""
    return {"best_checkpoint": state["best_checkpoint"],
            "best_checkpoint_step": state["best_checkpoint_step"],
            "best_checkpoint_metric": state["best_metric"], "best_metric": state["best_metric"],
            "best_eval_step": state["best_eval_step"],
            "best_eval_metric": state["best_eval_metric"]}
