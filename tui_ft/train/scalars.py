"""logging_dir: the logged scalars as JSONL (always) and as TensorBoard event files
(when the tensorboard package is installed), for tools outside tui-ft."""

from __future__ import annotations

import json
from pathlib import Path

TAGS = {"train_loss": "train/loss", "val_loss": "eval/loss", "lr": "train/learning_rate",
        "tokens_per_s": "train/tokens_per_second"}


class ScalarLog:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._jsonl = open(folder / "scalars.jsonl", "a", encoding="utf-8")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tensorboard = SummaryWriter(log_dir=str(folder))

    def log(self, record: dict) -> None:
        step = int(record.get("step", 0))
        wrote = False
        for key, tag in TAGS.items():
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._jsonl.write(json.dumps({"tag": tag, "step": step, "value": value,
                                              "time": record.get("time")}) + "\n")
                if self.tensorboard is not None:
                    self.tensorboard.add_scalar(tag, value, step)
                wrote = True
        if wrote:
            self._jsonl.flush()

    def close(self) -> None:
        self._jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
