"""The splits a configuration names: one file split by the configuration's method, or
separate files. Training, responses and the Grading screen's count all read them here,
with the configuration's field mapping."""

from __future__ import annotations

from ..config import TrainConfig
from ..data.dataset import load_records
from ..data.records import RecordError
from ..data.split import Splits, split_records, splits_from_files


def config_splits(config: TrainConfig) -> tuple[Splits, list[RecordError]]:
    """The train / val / test records of `config` and the bad records found."""
    fields = config.record_fields()
    if config.val_dataset or config.test_dataset:
        return splits_from_files(
            str(config.dataset_path()),
            str(config.dataset_path(config.val_dataset)) if config.val_dataset else None,
            str(config.dataset_path(config.test_dataset)) if config.test_dataset else None,
            fields=fields)
    result = load_records(config.dataset_path(), fields)
    splits = split_records(result.records, seed=config.split_seed, ratios=config.split_ratios,
                           method=config.split_method)
    return splits, result.errors
