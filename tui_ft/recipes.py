"""Named sets of training parameters (recipes): the Parameters screen applies them in one
key press. Plain data: a recipe is the defaults plus its overrides, and it never touches
the fields that name the user's own files (dataset, output and checkpoint paths)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import TrainConfig

# Where the user's data and results live: a preset or a reset keeps them, so choosing
# a recipe never loses the dataset picked on the Datasets screen or the run folder.
KEPT_FIELDS = ("dataset", "val_dataset", "test_dataset", "output_dir", "logging_dir",
               "resume_from_checkpoint")

_BOOK_RECIPE = {
    "model": "gpt2",
    "learning_rate": 5e-5,
    "weight_decay": 0.1,
    "per_device_train_batch_size": 8,
    "num_train_epochs": 2.0,
    "max_length": 1024,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
}


@dataclass(frozen=True)
class ParamPreset:
    name: str
    overrides: dict = field(default_factory=dict)

    def apply(self, current: TrainConfig) -> TrainConfig:
        """The defaults with this preset's overrides, keeping `current`'s file fields."""
        kept = {name: getattr(current, name) for name in KEPT_FIELDS}
        return TrainConfig.from_dict({**self.overrides, **kept})


PARAM_PRESETS: tuple[ParamPreset, ...] = (
    ParamPreset("tiny from scratch (CPU demo)", {}),
    ParamPreset("gpt2 fine-tune (book recipe)", dict(_BOOK_RECIPE)),
    ParamPreset("gpt2-medium bf16 GPU", {**_BOOK_RECIPE, "model": "gpt2-medium",
                                         "bf16": True, "per_device_train_batch_size": 8}),
)


def defaults_keeping_files(current: TrainConfig) -> TrainConfig:
    """What a reset gives: every parameter at its default except the file fields."""
    return PARAM_PRESETS[0].apply(current)


def matching_preset(config: TrainConfig) -> int | None:
    """The index of the preset `config` is exactly (file fields aside), else None."""
    for index, preset in enumerate(PARAM_PRESETS):
        if preset.apply(config) == config:
            return index
    return None
