"""Every numeric training parameter has a lower and an upper bound, and the config check
refuses a value outside them, or a value that is not finite, naming the key, the value
and the range (issue 13). Before, `num_train_epochs: 1e308` passed the check and
`tui-ft train` crashed with "OverflowError: cannot convert float infinity to integer";
`seed: 1.0e+29` crashed in torch.manual_seed ("Overflow when unpacking long long")."""

from __future__ import annotations

import math

import pytest

from tui_ft.config import ConfigError, TrainConfig, check, coerce, range_text

NUMERIC = [name for name in TrainConfig.field_names()
           if TrainConfig.meta(name)["kind"] in (int, float)]


def test_the_numeric_fields_are_found():
    # Found from the field kinds, so a new numeric field is held to its bounds below.
    assert len(NUMERIC) >= 30
    assert {"num_train_epochs", "seed", "split_seed", "learning_rate", "max_steps",
            "per_device_train_batch_size", "max_length", "top_k"} <= set(NUMERIC)


def _beyond(name: str) -> tuple:
    """A value just above the field's maximum and one just below its minimum."""
    meta = TrainConfig.meta(name)
    step = 1 if meta["kind"] is int else max(abs(meta["max"]) * 1e-6, 1e-9)
    return meta["max"] + step, meta["min"] - step


@pytest.mark.parametrize("name", NUMERIC)
def test_every_numeric_field_is_bounded_on_both_sides(name):
    meta = TrainConfig.meta(name)
    assert meta["min"] is not None and meta["max"] is not None, name
    assert math.isfinite(meta["min"]) and math.isfinite(meta["max"])
    # The default is inside its own range.
    default = TrainConfig().to_dict()[name]
    _, problems = check({name: default} if default is not None else {})
    assert not [p for p in problems if p.key == name]


@pytest.mark.parametrize("name", NUMERIC)
def test_a_value_past_either_bound_is_refused_naming_the_range(name):
    meta = TrainConfig.meta(name)
    for value in _beyond(name):
        _, problems = check({name: value})
        mine = [p for p in problems if p.key == name]
        assert len(mine) == 1, (name, value, problems)
        assert mine[0].value == value
        assert mine[0].reason == f"must be {range_text(meta)}"
    # The bounds themselves are taken unless they are exclusive (the field alone:
    # max_length's bound is past tiny's context, which the cross-checks refuse).
    for bound, exclusive in ((meta["min"], meta["exclusive_min"]),
                             (meta["max"], meta["exclusive_max"])):
        assert (coerce(name, bound)[1] is not None) == exclusive, (name, bound)


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e308,
                                   10**400, "1e400", ".inf"],
                         ids=["inf", "-inf", "nan", "1e308", "10**400", "'1e400'", "'.inf'"])
def test_huge_and_non_finite_values_are_refused(name, value):
    _, problems = check({name: value})
    assert [p for p in problems if p.key == name], (name, value)


def test_range_text_reads_as_a_person_would_type_it():
    assert range_text(TrainConfig.meta("seed")) == "at least 0 and at most 4294967295"
    assert range_text(TrainConfig.meta("num_train_epochs")) == \
        "greater than 0 and at most 1000000"
    assert range_text(TrainConfig.meta("adam_beta1")) == "at least 0 and less than 1"
    assert range_text(TrainConfig.meta("max_grad_norm")) == "at least 0 and at most 1000000"
    assert range_text(TrainConfig.meta("adam_epsilon")) == "greater than 0 and at most 1"


def test_a_config_file_with_values_out_of_range_names_file_key_and_range(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("num_train_epochs: 1e308\nseed: 1.0e+29\nsplit_seed: -1\n")
    with pytest.raises(ConfigError) as info:
        TrainConfig.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 3 problems")
    assert "num_train_epochs = '1e308': must be greater than 0 and at most 1000000" in message
    assert "seed = 1e+29: must be at least 0 and at most 4294967295" in message
    assert "split_seed = -1: must be at least 0 and at most 4294967295" in message


# Each of these crashed `tui-ft train` (or would have trained with nonsense) before.
CLI_CASES = [
    ("num_train_epochs: 1e308", "num_train_epochs = '1e308'", "at most 1000000"),
    ("seed: 1.0e+29", "seed = 1e+29", "at most 4294967295"),
    ("seed: 100000000000000000000000000000", "seed = 100000000000000000000000000000",
     "at most 4294967295"),
    ("split_seed: 100000000000000000000000", "split_seed = 100000000000000000000000",
     "at most 4294967295"),
    ("max_steps: 1.0e+30", "max_steps = 1e+30", "at most 1000000000"),
    ("per_device_train_batch_size: 100000000000000000000",
     "per_device_train_batch_size = 100000000000000000000", "at most 65536"),
    ("warmup_steps: 100000000000000000000000", "warmup_steps = 100000000000000000000000",
     "at most 1000000000"),
    ("learning_rate: .inf", "learning_rate = inf", "finite"),
    ("num_train_epochs: .nan", "num_train_epochs = nan", "finite"),
    ("temperature: -.inf", "temperature = -inf", "finite"),
    ("split_ratios: [" + "1" * 400 + ", 0, 0]", "split_ratios = [1111", "must be numbers"),
    ("seed: " + "1" * 5000, "4300 digits", "YAML cannot read"),
]


@pytest.mark.parametrize("line, value, reason", CLI_CASES, ids=[c[0][:30] for c in CLI_CASES])
def test_tui_ft_train_refuses_out_of_range_values_without_a_traceback(
        tmp_path, run_cli, isolated_dirs, line, value, reason):
    config = tmp_path / "bounds.yaml"
    config.write_text(f"model: tiny\nmax_steps: 2\n{line}\n"
                      if not line.startswith("max_steps") else f"model: tiny\n{line}\n")
    proc = run_cli("train", config, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"tui-ft: error: {config}"), proc.stderr
    assert value in proc.stderr and reason in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # Refused before anything was made.
    assert list(isolated_dirs["runs"].iterdir()) == []


async def test_the_params_form_refuses_the_same_values_as_it_is_typed():
    """The form checks with the same check(): the range is shown under the field, and the
    refused values never reach the config in use (a valid prefix typed on the way, like
    "1e3", does: the form applies a valid draft as it is typed)."""
    from test_ui_params import app_on_params, params_screen, summary, type_into

    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        await type_into(pilot, screen, "num_train_epochs", "1e308")
        assert screen.form.problem_text("num_train_epochs") == \
            "\u2717 must be greater than 0 and at most 1000000"
        await type_into(pilot, screen, "seed", "100000000000000000000000000000")
        assert screen.form.problem_text("seed") == \
            "\u2717 must be at least 0 and at most 4294967295"
        await type_into(pilot, screen, "learning_rate", "inf")
        assert screen.form.problem_text("learning_rate") == "\u2717 must be a finite number"
        assert "3 problems" in summary(screen)
        config = app.state.config
        assert config.num_train_epochs <= 1e6 and config.seed <= 2**32 - 1
        assert config.learning_rate == 2e-3
