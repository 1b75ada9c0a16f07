"""One run in a line: what `tui-ft runs` (and `--json`) lists and what a screen that
compares runs shows. The one home of that summary, above the run folder, the config
and the grades."""

from __future__ import annotations

from ..config import read_yaml
from ..errors import TuiFtError
from ..grade.responses import read_responses
from ..grade.store import GradeStore
from ..runfolder import Run, RunError


def _config(run: Run) -> dict:
    try:
        return read_yaml(run.config_path)
    except (TuiFtError, OSError):
        return {}  # a run without (or with a damaged) config.yaml: shown all the same


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def run_summary(run: Run) -> dict:
    """A run's line. best_val_loss is the best evaluation overall (at best_eval_step,
    which may have no checkpoint); best_checkpoint_val_loss is the best checkpoint's
    own. best_metric is the best checkpoint's metric_for_best_model (a loss or an
    accuracy); exact_match is of its last generated answers; graded_share and
    correct_share are of those answers: marked by a person, and marked correct among
    the marked."""
    status = run.read_status()
    metrics = run.read_metrics()
    evals = [m for m in metrics if m.get("val_loss") is not None and "event" not in m]
    best_eval = min(evals, key=lambda m: m["val_loss"]) if evals else None
    try:
        best = run.best_checkpoint()
    except RunError:  # no checkpoint yet
        best = None
    evaluated = best is not None and best.evaluated
    config = _config(run)
    responses_status = status.get("responses") or {}
    exact = responses_status.get("exact_match")
    answers = graded = correct = 0
    if run.responses_path.is_file():
        try:
            responses = read_responses(run.responses_path)
            counts = GradeStore(run).counts(responses)
        except (TuiFtError, OSError):
            responses, counts = [], None
        if counts is not None:
            answers, correct = counts["total"], counts["correct"]
            graded = counts["correct"] + counts["wrong"]
    return {"run": run.name, "path": str(run.path), "state": run.state(),
            "step": status.get("step"), "total_steps": status.get("total_steps"),
            "best_val_loss": best_eval["val_loss"] if best_eval else None,
            "best_eval_step": best_eval["step"] if best_eval else None,
            "best_checkpoint": best.checkpoint.name if evaluated else None,
            "best_checkpoint_val_loss": best.metric if evaluated else None,
            "updated_at": status.get("updated_at"), "error": status.get("error"),
            "model": _text(config.get("model")), "dataset": _text(config.get("dataset")),
            "metric_for_best_model": status.get("metric_for_best_model")
            or _text(config.get("metric_for_best_model")) or "eval_loss",
            "best_metric": status.get("best_checkpoint_metric"),
            "world_size": status.get("world_size") or 1,
            "exact_match": exact if isinstance(exact, (int, float)) else None,
            "answers": answers, "graded": graded, "correct": correct,
            "graded_share": graded / answers if answers else None,
            "correct_share": correct / graded if graded else None}


def config_diff(runs: list[Run]) -> list[tuple[str, list]]:
    """The parameters that differ between `runs` (key, one value per run, in order);
    a key a run's config lacks counts as its default. Keys all runs agree on are left
    out, output_dir always (every run has its own)."""
    from ..config import TrainConfig

    defaults = TrainConfig.__dataclass_fields__
    configs = [_config(run) for run in runs]
    keys = sorted({k for c in configs for k in c} - {"output_dir"})
    out = []
    for key in keys:
        field = defaults.get(key)
        default = field.default if field is not None and not callable(
            getattr(field, "default_factory", None)) else None
        values = [c.get(key, default) for c in configs]
        if any(v != values[0] for v in values[1:]):
            out.append((key, values))
    return out


def val_curve(run: Run, metric: str = "val_loss") -> list[tuple[int, float]]:
    """(step, value) of every evaluation of `run` (the last one of a step a resume
    evaluated again)."""
    points: dict[int, float] = {}
    for m in run.read_metrics():
        value = m.get(metric)
        if "event" not in m and isinstance(value, (int, float)) and not isinstance(value, bool):
            points[int(m["step"])] = float(value)
    return sorted(points.items())
