"""TrainConfig: defaults for every parameter, YAML in and out with `yaml.safe_load`
only, and validation that reports every problem at once, each with its key, value
and reason."""

from __future__ import annotations

import math
from dataclasses import MISSING, fields

import pytest
import yaml

from tui_ft.config import GROUPS, ConfigError, TrainConfig, check, field_problem, read_yaml
from tui_ft.errors import TuiFtError


def problems_of(data: dict) -> dict:
    """{key: Problem} of a mapping (one problem per key in these tests)."""
    _, problems = check(data)
    return {p.key: p for p in problems}


def load_error(tmp_path, text: str, name: str = "config.yaml") -> ConfigError:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TuiFtError) as info:
        TrainConfig.load(path)
    return info.value


# -- defaults ---------------------------------------------------------------------------


def test_every_parameter_has_a_default_group_and_help():
    for f in fields(TrainConfig):
        assert f.default is not MISSING or f.default_factory is not MISSING, f.name
        assert f.metadata["group"] in GROUPS, f.name
        assert f.metadata["help"].strip(), f.name
    config = TrainConfig()  # no argument needed
    values, problems = check({})
    assert problems == []
    assert values == config.to_dict()


def test_the_default_configuration_is_the_tiny_model_on_the_sample_data():
    from tui_ft.model.presets import PRESETS
    from tui_ft.train.splits import config_splits

    config = TrainConfig()
    assert config.model == "tiny" and not PRESETS["tiny"].pretrained  # nothing to download
    assert config.device == "auto" and config.precision == "fp32"  # runs on a CPU
    assert config.dataset_path().is_file()
    splits, errors = config_splits(config)
    assert errors == []
    assert len(splits.train) > 1000 and len(splits.val) > 10 and len(splits.test) > 10


def test_best_model_metric_defaults_to_eval_loss_lower_is_better():
    config = TrainConfig()
    assert config.metric_for_best_model == "eval_loss"
    assert config.greater_is_better is False
    assert config.load_best_model_at_end is True
    # The defaults satisfy their own cross-checks.
    assert config.eval_strategy == config.save_strategy
    assert config.save_steps % config.eval_steps == 0


# -- YAML in and out --------------------------------------------------------------------


def test_yaml_round_trip_keeps_every_value(tmp_path):
    config = TrainConfig.from_dict({
        "learning_rate": 3e-4, "num_train_epochs": 1.5, "max_steps": 40,
        "lr_scheduler_type": "cosine", "warmup_steps": 5, "split_ratios": [80, 10, 10],
        "save_total_limit": None, "early_stopping_patience": 2, "max_length": 128,
        "top_p": 0.9, "output_dir": str(tmp_path / "out"), "bf16": True})
    path = tmp_path / "c.yaml"
    config.save(path)
    text = path.read_text(encoding="utf-8")
    assert "!!python" not in text
    assert yaml.safe_load(text) == config.to_dict()
    again = TrainConfig.load(path)
    assert again == config
    assert again.split_ratios == pytest.approx([0.8, 0.1, 0.1])
    assert TrainConfig.from_dict(yaml.safe_load(TrainConfig().to_yaml())) == TrainConfig()


def test_yaml_spellings_people_write(tmp_path):
    path = tmp_path / "c.yaml"
    # YAML 1.1 reads 5e-5 (no dot) as a string; it means the number.
    path.write_text("learning_rate: 5e-5\nbf16: yes\nsave_total_limit: null\n"
                    "max_steps: 1_000\nsplit_ratios: 90/5/5\nnum_train_epochs: 2\n")
    config = TrainConfig.load(path)
    assert config.learning_rate == 5e-5 and isinstance(config.learning_rate, float)
    assert config.bf16 is True
    assert config.save_total_limit is None
    assert config.max_steps == 1000
    assert config.split_ratios == pytest.approx([0.9, 0.05, 0.05])
    assert config.num_train_epochs == 2.0


def test_an_empty_file_is_the_default_configuration(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert TrainConfig.load(path) == TrainConfig()


@pytest.mark.parametrize("text, words", [
    ("- learning_rate\n- 1e-4\n", ["expected a mapping", "list"]),
    ("learning_rate: [1e-4\n", ["c.yaml:"]),
    ("just text\n", ["expected a mapping", "str"]),
])
def test_a_file_that_is_not_a_mapping_says_where(tmp_path, text, words):
    error = load_error(tmp_path, text, "c.yaml")
    assert str(tmp_path / "c.yaml") in str(error)
    for word in words:
        assert word in str(error)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TuiFtError, match="no such file"):
        TrainConfig.load(tmp_path / "absent.yaml")


# -- Python object tags never run -------------------------------------------------------


@pytest.mark.parametrize("template", [
    "learning_rate: !!python/object/apply:os.system ['touch {marker}']\n",
    "!!python/object/apply:os.system ['touch {marker}']\n",
    "model: !!python/object/apply:subprocess.check_call [['touch', '{marker}']]\n",
    "output_dir: !!python/object/new:os.system ['touch {marker}']\n",
    "max_steps: !!python/name:os.system\n",
])
def test_python_object_tags_fail_without_running_anything(tmp_path, template):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(template.format(marker=marker), encoding="utf-8")
    with pytest.raises(TuiFtError) as info:
        TrainConfig.load(path)
    assert not marker.exists()
    assert str(path) in str(info.value)
    # read_yaml is the one reader: it refuses the tag too.
    with pytest.raises(TuiFtError):
        read_yaml(path)
    assert not marker.exists()


# -- validation -------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_key_value_and_reason(tmp_path):
    text = ("num_train_epochs: -2\n"
            "per_device_train_batch_size: eight\n"
            "learnig_rate: 1.0e-4\n"
            "lr_scheduler_type: cosinus\n"
            "eval_steps: 0\n"
            "warmup_ratio: 1.5\n"
            "bf16: maybe\n"
            "max_length: 64\n")  # a good value among the bad ones
    error = load_error(tmp_path, text)
    assert isinstance(error, ConfigError)
    by_key = {p.key: p for p in error.problems}
    assert set(by_key) == {"num_train_epochs", "per_device_train_batch_size", "learnig_rate",
                           "lr_scheduler_type", "eval_steps", "warmup_ratio", "bf16"}
    assert by_key["num_train_epochs"].value == -2
    assert "greater than 0" in by_key["num_train_epochs"].reason
    assert by_key["per_device_train_batch_size"].value == "eight"
    assert "whole number" in by_key["per_device_train_batch_size"].reason
    assert "unknown" in by_key["learnig_rate"].reason
    assert "did you mean 'learning_rate'" in by_key["learnig_rate"].reason
    assert "cosine" in by_key["lr_scheduler_type"].reason
    assert "at least 1" in by_key["eval_steps"].reason
    assert "at most 1" in by_key["warmup_ratio"].reason
    assert "true or false" in by_key["bf16"].reason
    message = str(error)
    assert str(tmp_path / "config.yaml") in message
    assert "7 problems" in message
    for p in error.problems:
        line = next(l for l in message.splitlines() if l.strip().startswith(f"- {p.key} ="))
        assert repr(p.value) in line and p.reason in line


@pytest.mark.parametrize("key, value, reason", [
    ("num_train_epochs", 0, "greater than 0"),
    ("num_train_epochs", "three", "must be a number"),
    ("per_device_train_batch_size", 2.5, "whole number"),
    ("per_device_train_batch_size", True, "whole number"),
    ("per_device_train_batch_size", 0, "at least 1"),
    ("gradient_accumulation_steps", -1, "at least 1"),
    ("learning_rate", float("nan"), "finite"),
    ("learning_rate", float("inf"), "finite"),
    ("learning_rate", 0, "greater than 0"),
    ("learning_rate", "fast", "must be a number"),
    ("max_grad_norm", -1.0, "at least 0"),
    ("weight_decay", 2, "at most 1"),
    ("dropout", 1.5, "at most 1"),
    ("max_steps", -2, "at least -1"),
    ("max_steps", 0, "-1"),
    ("eval_strategy", "sometimes", "no, steps, epoch"),
    ("save_strategy", 3, "text"),
    ("split_ratios", [1, 2], "three"),
    ("split_ratios", "a/b/c", "85/5/10"),
    ("save_total_limit", 0, "at least 1"),
    ("top_p", 0, "greater than 0"),
    ("max_length", 1, "at least 2"),
    ("model", None, "must be set"),
    # AdamW divides by 1 - beta ** step: a beta of 1 is a division by zero.
    ("adam_beta1", 1.0, "less than 1"),
    ("adam_beta2", 1, "less than 1"),
    ("adam_beta2", -0.1, "at least 0"),
])
def test_a_bad_value_names_key_value_and_reason(key, value, reason):
    problems = problems_of({key: value})
    assert key in problems, problems
    assert reason in problems[key].reason
    if not (isinstance(value, float) and math.isnan(value)):
        assert problems[key].value == value
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({key: value})


def test_every_value_validation_accepts_can_build_the_optimizer():
    """The edges of every optimiser range that validation lets through are values
    torch.optim.AdamW accepts (a config that validates must not crash at step 0)."""
    import torch

    edges = {"adam_beta1": [0.0, 0.999999], "adam_beta2": [0.0, 0.999999],
             "adam_epsilon": [1e-30, 1.0], "learning_rate": [1e-12, 1.0],
             "weight_decay": [0.0, 1.0]}
    for key, values in edges.items():
        for value in values:
            config = TrainConfig.from_dict({key: value})
            torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=config.learning_rate,
                              betas=(config.adam_beta1, config.adam_beta2),
                              eps=config.adam_epsilon, weight_decay=config.weight_decay)


def test_unknown_keys_get_a_suggestion_or_none():
    problems = problems_of({"num_train_epoch": 4, "warmup_step": 3, "colour": "red", 7: 1})
    assert "did you mean 'num_train_epochs'" in problems["num_train_epoch"].reason
    assert "did you mean 'warmup_steps'" in problems["warmup_step"].reason
    assert problems["colour"].reason == "unknown parameter"
    assert "unknown parameter" in problems["7"].reason


def test_load_best_model_at_end_needs_matching_strategies():
    mismatch = problems_of({"eval_strategy": "steps", "save_strategy": "epoch"})
    assert "save_strategy" in mismatch
    assert "eval_strategy" in mismatch["save_strategy"].reason
    assert mismatch["save_strategy"].value == "epoch"

    not_multiple = problems_of({"eval_steps": 50, "save_steps": 75})
    assert not_multiple["save_steps"].value == 75
    assert "multiple of eval_steps (50)" in not_multiple["save_steps"].reason

    no_eval = problems_of({"eval_strategy": "no", "save_strategy": "no"})
    assert "load_best_model_at_end" in no_eval

    # Without load_best_model_at_end the same choices are fine.
    for data in ({"eval_strategy": "steps", "save_strategy": "epoch"},
                 {"eval_steps": 50, "save_steps": 75},
                 {"eval_strategy": "no", "save_strategy": "no"}):
        assert problems_of({**data, "load_best_model_at_end": False}) == {}
    assert problems_of({"eval_steps": 25, "save_steps": 75}) == {}
    assert problems_of({"eval_strategy": "epoch", "save_strategy": "epoch"}) == {}


def test_cross_checks_between_keys():
    assert "fp16" in problems_of({"bf16": True, "fp16": True})
    assert "needs a CUDA device" in problems_of({"fp16": True, "device": "cpu"})["fp16"].reason
    assert problems_of({"fp16": True, "device": "auto"}) == {}  # a GPU box decides at start
    assert problems_of({"bf16": True, "device": "cpu"}) == {}
    assert "greater_is_better" in problems_of({"greater_is_better": True})
    assert "metric_for_best_model" in problems_of({"metric_for_best_model": "eval_f1"})
    # An accuracy is computed (issue 17), and must be greater-is-better.
    assert "greater_is_better" in problems_of({"metric_for_best_model": "accuracy"})
    assert problems_of({"metric_for_best_model": "accuracy", "greater_is_better": True}) == {}
    stopping = problems_of({"early_stopping_patience": 2, "eval_strategy": "no",
                            "load_best_model_at_end": False})
    assert "needs evaluation" in stopping["early_stopping_patience"].reason
    no_val = problems_of({"split_ratios": [90, 0, 10]})
    assert "validation share is 0" in no_val["split_ratios"].reason
    # A separate validation file supplies what the split does not.
    assert problems_of({"split_ratios": [90, 0, 10], "val_dataset": "v.jsonl"}) == {}


def test_values_typed_into_a_field_are_checked_one_by_one():
    assert field_problem("learning_rate", "3e-4") is None
    assert field_problem("learning_rate", "abc") == "must be a number"
    assert field_problem("per_device_train_batch_size", "4") is None
    assert field_problem("per_device_train_batch_size", "4.5") == "must be a whole number"
    assert field_problem("save_total_limit", "") is None  # optional: empty means none
    assert field_problem("max_steps", "") is not None  # required
    assert field_problem("lr_scheduler_type", "cosine") is None
    assert field_problem("bf16", "on") is None
