"""Recipes: named sets of training parameters the Parameters screen applies in one key
press. ("Preset" means a model size: tui_ft/model/presets.py.) Plain data: a recipe is
the defaults plus its overrides, and it never touches the fields that name the user's
own files (dataset, output and checkpoint paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection

from .config import TrainConfig

# Where the user's data and results live: a recipe or a reset keeps them, so choosing
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
class Recipe:
    name: str
    overrides: dict = field(default_factory=dict)

    def apply(self, current: TrainConfig, *,
              styles: Collection[str] | None = None) -> TrainConfig:
        """The defaults with this recipe's overrides, keeping `current`'s file fields.
        `styles`: the style names, when the caller has them (see config.check)."""
        kept = {name: getattr(current, name) for name in KEPT_FIELDS}
        return TrainConfig.from_dict({**self.overrides, **kept}, styles=styles)


RECIPES: tuple[Recipe, ...] = (
    Recipe("tiny from scratch (CPU demo)", {}),
    Recipe("gpt2 fine-tune (book recipe)", dict(_BOOK_RECIPE)),
    Recipe("gpt2-medium bf16 GPU", {**_BOOK_RECIPE, "model": "gpt2-medium",
                                    "bf16": True, "per_device_train_batch_size": 8}),
)


def defaults_keeping_files(current: TrainConfig, *,
                           styles: Collection[str] | None = None) -> TrainConfig:
    """What a reset gives: every parameter at its default except the file fields."""
    return RECIPES[0].apply(current, styles=styles)


def matching_recipe(config: TrainConfig, *,
                    styles: Collection[str] | None = None) -> int | None:
    """The index of the recipe `config` is exactly (file fields aside), else None."""
    for index, recipe in enumerate(RECIPES):
        if recipe.apply(config, styles=styles) == config:
            return index
    return None
