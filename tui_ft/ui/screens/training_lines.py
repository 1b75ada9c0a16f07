"""What the Training screen says about a run, built from its state: the progress
line fitted to the width, the problem line of a run that died or failed, and the
overfitting banner. Plain strings (no widget), so the screen module holds the
polling, the keys and the layout; the screen makes each one safe to show."""

from __future__ import annotations

from rich.cells import cell_len

from ...runs.progress import format_duration

SEPARATOR = " \u00b7 "

# What goes first when the progress line does not fit: the epoch (the step says as
# much), then the bar (it repeats the step as a percentage), then the losses (the
# chart shows them). The step, the speed and the ETA stay. Pieces are known by how
# progress_parts begins them.
_DROP_ORDER = ("epoch ", "bar", "val ", "loss ")


def fit_progress(parts: list[str], width: int, bar_width: int | None = None
                 ) -> tuple[list[str], bool]:
    """(the parts that fit in `width` cells, whether the bar of `bar_width` is shown
    beside them), dropping the least useful first. What is left when nothing more can
    go (step, speed, ETA) is kept whole, to be wrapped rather than cut."""
    kept, bar = list(parts), bar_width is not None
    for drop in (None, *_DROP_ORDER):
        if drop == "bar":
            bar = False
        elif drop is not None:
            kept = [p for p in kept if not p.startswith(drop)]
        if cell_len(SEPARATOR.join(kept)) <= width - (bar_width if bar else 0):
            break
    return kept, bar


# A rank of a distributed run whose heartbeat is older than this is named. Ranks
# beat every couple of seconds while they step; a checkpoint or an evaluation of a
# big model holds every rank for a while, so the bar is high.
RANK_SILENT_AFTER = 300.0


def silent_ranks(beats: list[dict], threshold: float = RANK_SILENT_AFTER) -> str:
    """The ranks (runfolder.Run.read_heartbeats) silent for longer than `threshold`
    seconds, in one line; "" when every rank is heard."""
    silent = [b for b in beats if b["age"] > threshold]
    if not silent:
        return ""
    named = ", ".join(f"rank {b['rank']} (pid {b.get('pid')}, last step {b['step']})"
                      for b in silent)
    return (f"silent for {format_duration(max(b['age'] for b in silent))}: {named}; "
            "x stops the run (the others wait for it at every step)")


def problem_line(state: str, status: dict, beats: list[dict] | None = None) -> str:
    """What went wrong with a run that died or failed, and what to do; "" otherwise.
    `beats`: the ranks' heartbeats of a distributed run that is running."""
    if state == "running" and beats:
        return silent_ranks(beats)
    if state == "died":
        return ("the worker ended without a word (killed, or the machine restarted); "
                "u resumes from the last checkpoint, s starts a new run")
    if state == "failed":
        return (str(status.get("error") or "the run failed (see the log)")
                + SEPARATOR + "s starts a new run in a new folder")
    return ""


def overfit_banner(m: dict, running: bool, width: int) -> tuple[str, str]:
    """(the banner's one line, the whole story for its tooltip) for the overfitting
    event `m`."""
    best_step = m.get("best_step")
    best_val = m.get("best_val_loss")
    best = m.get("best_checkpoint")
    metric = m.get("best_checkpoint_metric")
    val = f" {float(best_val):.4f}" if isinstance(best_val, (int, float)) else ""
    # One line: the step it began at, the best evaluation, the best checkpoint with
    # its own loss when it is another step's; the longest that fits the width.
    # The whole story is in the tooltip and the log.
    if best and best == f"checkpoint-{best_step}":
        bests = [f"best val{val} at {best}", f"best {best}"]
    elif best:
        own = f" ({float(metric):.4f})" if isinstance(metric, (int, float)) else ""
        bests = [f"best val{val} at step {best_step}; best {best}{own}", f"best {best}"]
    else:
        bests = [f"best val{val} at step {best_step} (not saved)",
                 f"best step {best_step} (not saved)"]
    head = f"\u26a0 Overfitting since step {m.get('began_at_step')}"
    tail = f"{SEPARATOR}x stops" if running else ""
    choices = [head + SEPARATOR + b + tail for b in bests] + [
        "\u26a0 Overfitting" + SEPARATOR + bests[-1] + tail, head + tail]
    text = next((c for c in choices if cell_len(c) <= width), choices[-1])
    long = (f"Validation loss has not improved since step {best_step} (best{val}) while "
            f"training loss kept falling; it began at step {m.get('began_at_step')}. "
            f"Best checkpoint: {best or 'not saved yet'}.")
    return text, long
