"""Runs: everything above a single run folder that the CLI and the TUI share.

- `registry`: every run (the runs directory plus the registry of runs made
  elsewhere), a run by name or path.
- `run_source`: a run given where a model is expected (its best checkpoint), the
  `runs` argument of model loading.
- `progress`: the metrics event vocabulary (one line per event) and the progress
  state a reader builds from metrics.jsonl, with the one ETA formula; the CLI's
  progress line and the Training screen both render from it.
- `jobs`: starting a detached process (one function), preparing, starting and
  stopping the training worker, and the generation job the Grading screen runs.
- `worker`: the training job's body (run_in_process) and the detached worker's
  entry point, `python -m tui_ft.runs.worker RUN`. It hands the trainer
  (train/loop.py) what only the layers above train know: how a run named as the
  model is found (run_source) and which checkpoints hold grades (grade/store.py),
  so train imports neither.

The run folder's *format* (file names, the Run object, status.json and
metrics.jsonl reading and writing, the best checkpoint) is not in this package but
in `tui_ft/runfolder.py`, a stdlib-only module below every layer, beside
`tui_ft/tail.py` (the one reader of a growing file) and `tui_ft/fsio.py` (atomic
writes, synced appends, locks).
The trainer (train/loop, train/checkpoints) and grading (grade/store,
grade/responses, grade/imported) write and read run folders, and they sit below
this package (data < model < train < grade < runs < commands/ui). Passing them a
Run and type-hinting it only would not do: they create runs, raise RunError and
build CheckpointInfo at run time. So the format is the shared low module, and
what only readers and launchers need lives here.
"""
