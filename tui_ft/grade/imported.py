"""Answers made elsewhere (another tool's outputs, the book's gpt2-medium responses)
as a run folder that the Grading screen, `grades summary` and `grades export` accept
like any other: config.yaml, responses.jsonl in the format `tui-ft responses` writes,
and status.json with the state `imported`. It has no checkpoint; the label stands
where a checkpoint's name would, so grades and exports are tied to it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..config import TrainConfig, resolve_data_path, short_data_path
from ..data.dataset import Dataset
from ..data.records import InvalidRecord, RecordError, string_field
from ..errors import TuiFtError
from ..fsio import write_atomic
from ..paths import runs_dir
from ..runfolder import IMPORTED, Run, now_iso
from ..text import exact_match

SPLIT = "imported"  # the responses' split: they answer no split of ours
MAX_ERRORS_SHOWN = 20
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class ImportAnswersError(TuiFtError):
    """Answers that cannot be imported; nothing was created."""


def _check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise ImportAnswersError(
            f"--run {name!r}: a run name is 1 to 100 letters, digits, '-', '_' or '.', "
            "not starting with '.' or '-' (the folder is made under the runs directory)")


def read_answers(path: Path, response_key: str, config: TrainConfig) -> tuple[list[dict], dict]:
    """The records of `path`, each with its answer under `response_key`, and the keys
    nothing read. Every bad record is a located error; any of them refuses the whole
    file (a run that silently lacks some answers would be graded as if complete)."""
    fields = config.record_fields()
    if response_key in (fields.instruction, fields.input, fields.output, "id", "messages"):
        raise ImportAnswersError(f"--response-key {response_key!r} names a key the record "
                                 "itself is read from; the answer needs its own key")
    rows: list[dict] = []
    with Dataset(path, fields) as ds:
        scan = ds.scan()
        if scan.records and not any(response_key in ds.value(ds.entry_at(location))
                                    for location in scan.locations):
            # One message, not one per record, for the usual slip: the wrong key.
            keys = ", ".join(f"'{k}'" for k in scan.ignored_keys) or "none besides the record's"
            raise ImportAnswersError(
                f"{path}: no record has the key {response_key!r} for its answer (keys not "
                f"read: {keys}); name the answer's key with --response-key; nothing was "
                "imported")
        location_key = "source_line" if ds.format == "jsonl" else "source_index"
        errors: list[RecordError] = list(scan.errors)
        for record, location in zip(scan.records, scan.locations):
            i = ds.entry_at(location)
            value = ds.value(i)
            try:
                response = string_field(value, response_key, required=True)
            except InvalidRecord as exc:
                message = str(exc)
                if response_key not in value:
                    message += " (the key of the answer, --response-key)"
                errors.append(ds.error_at(i, message))
                continue
            rows.append({"record": record, "response": response, location_key: location})
    if errors:
        errors.sort(key=lambda e: e.line if e.line is not None else e.index)
        lines = [f"  {e}" for e in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            lines.append(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more")
        raise ImportAnswersError(
            f"{path}: {len(errors)} of {len(errors) + len(rows)} records cannot be imported; "
            "nothing was imported (fix or remove them):\n" + "\n".join(lines))
    ignored = {k: n for k, n in scan.ignored_keys.items() if k != response_key}
    return rows, ignored


def import_answers(source: str, name: str, *, response_key: str = "response",
                   label: str | None = None, fields: dict | None = None) -> dict:
    """Make the run folder NAME under the runs directory from the answers in `source`
    and return a summary. An existing folder is never touched."""
    _check_name(name)
    target = runs_dir() / name
    if target.exists():
        raise ImportAnswersError(f"{target} already exists; choose another --run name "
                                 "(nothing was changed)")
    path = resolve_data_path(source)
    label = label if label is not None else path.name
    if not label.strip():
        raise ImportAnswersError("--label must not be empty")
    # The mapping is checked as a configuration's would be, and kept in the run's
    # config.yaml: the file is its dataset, read the way it was imported.
    config = TrainConfig.from_dict({"dataset": short_data_path(path.resolve()),
                                    **(fields or {})}, source="command line")
    rows, ignored = read_answers(path, response_key, config)

    run = Run(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.mkdir()  # claims the name: another import or run of it fails here
    except FileExistsError:
        raise ImportAnswersError(f"{target} already exists; choose another --run name "
                                 "(nothing was changed)") from None
    try:
        correct = 0
        lines = []
        for row in rows:
            record = row["record"]
            match = exact_match(row["response"], record.output)
            correct += match
            lines.append(json.dumps({
                "id": record.id, "instruction": record.instruction, "input": record.input,
                "expected": record.output, "response": row["response"], "run": name,
                "checkpoint": label, "split": SPLIT, "finish_reason": None,
                "exact_match": match, "generation": None, "generated_at": None,
                "source": str(path),
                **{k: v for k, v in row.items() if k.startswith("source_")},
            }, ensure_ascii=False) + "\n")
        config.save(run.config_path)
        write_atomic(run.responses_path, "".join(lines))
        summary = {"path": str(run.responses_path), "checkpoint": label, "split": SPLIT,
                   "count": len(rows), "exact_match": correct / len(rows),
                   "correct": correct}
        # Last: with status.json the folder is a complete imported run.
        run.write_status(state=IMPORTED, imported_from=str(path), imported_at=now_iso(),
                         response_key=response_key, label=label, responses=summary)
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)  # only what this call made
        if isinstance(exc, OSError):
            raise ImportAnswersError(f"{target}: cannot write the run "
                                     f"({exc.strerror or exc}); nothing was imported") from None
        raise
    return {"run": name, "run_path": str(target), "source": str(path), "label": label,
            "count": len(rows), "correct": correct, "exact_match": correct / len(rows),
            "ignored_keys": ignored}
