"""The splits a configuration names: seeded from one file, or given as files."""

from __future__ import annotations

from ..config import TrainConfig
from ..data.records import RecordError, load_records
from ..data.split import Splits, split_records, splits_from_files


def config_splits(config: TrainConfig) -> tuple[Splits, list[RecordError]]:
    """The train / val / test records of `config` and the bad records found."""
    if config.val_dataset or config.test_dataset:
        return splits_from_files(
            str(config.dataset_path()),
            str(config.dataset_path(config.val_dataset)) if config.val_dataset else None,
            str(config.dataset_path(config.test_dataset)) if config.test_dataset else None)
    result = load_records(config.dataset_path())
    splits = split_records(result.records, seed=config.split_seed, ratios=config.split_ratios)
    return splits, result.errors
