"""The one-line descriptions of run events that the Training screen's log and
`tui-ft train`'s progress messages share (tui_ft/commands/progress.py)."""

from tui_ft.commands.progress import ProgressLine
from tui_ft.runs.progress import describe_event, format_duration


def test_run_log_lines_say_what_happened():
    assert describe_event({"event": "best_model_loaded", "checkpoint": "checkpoint-30",
                           "metric": 4.93241}) == (
        "the run hands on its best checkpoint, checkpoint-30 (val loss 4.9324)")
    assert describe_event({"event": "end", "state": "finished"}) == "ended: finished"
    assert describe_event({"event": "resumed", "checkpoint": "checkpoint-6"}) == (
        "resumed from checkpoint-6")
    assert describe_event({"event": "early_stopping", "patience": 3}) == (
        "early stopping: no improvement in 3 evaluations")


def test_durations_read_as_a_person_would():
    assert format_duration(None) == "--"
    assert format_duration(float("nan")) == "--"
    assert format_duration(-1) == "--"
    assert [format_duration(x) for x in (0, 59, 61, 3600, 3661)] == [
        "0s", "59s", "1m01s", "1h00m", "1h01m"]


def test_a_piped_progress_line_is_written_once_while_it_does_not_change():
    """`tui-ft train | tee log`: the last step's line is forced out by its log, its
    evaluation and its checkpoint; the log gets it once."""
    import io

    out = io.StringIO()
    line = ProgressLine(out)
    for text in ("step 1/2 | loss 2.0", "step 2/2 | loss 1.0", "step 2/2 | loss 1.0",
                 "step 2/2 | loss 1.0"):
        line.update(text, force=True)
    line.message("finished")
    line.update("step 2/2 | loss 1.0", force=True)
    assert out.getvalue().splitlines() == ["step 1/2 | loss 2.0", "step 2/2 | loss 1.0",
                                           "finished"]
