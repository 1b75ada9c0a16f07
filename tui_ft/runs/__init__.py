"""Runs: everything above a single run folder that the CLI and the TUI share.

- `registry`: every run (the runs directory plus the registry of runs made
  elsewhere), a run by name or path.
- `progress`: the metrics event vocabulary (one line per event) and the progress
  state a reader builds from metrics.jsonl, with the one ETA formula; the CLI's
  progress line and the Training screen both render from it.
- `jobs`: starting a detached process (one function), the training worker's
  launch and stop, and the generation job the Grading screen runs.

The run folder's *format* (file names, the Run object, status.json and
metrics.jsonl reading and writing, the best checkpoint, the JSONL tail) is not in
this package but in `tui_ft/runfolder.py`, a stdlib-only module below every layer:
the trainer (train/loop, train/checkpoints, train/worker) and grading
(grade/store, grade/responses, grade/imported) write and read run folders, and
they sit below this package (data < model < train < grade < runs < commands/ui).
Passing them a Run and type-hinting it only would not do: they create runs,
raise RunError and build CheckpointInfo at run time. So the format is the shared
low module, and what only readers and launchers need lives here.

The detached worker's entry point stays `python -m tui_ft.train.worker RUN`
(train/worker.py runs the training in that process); `jobs.start_worker` starts
it.
"""
