"""The Parameters screen driven through Textual's Pilot: a widget per parameter,
validation as you type (per field and across fields), YAML save and load, presets,
the memory estimate, and the look at 80x24 (one snapshot)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from textual.screen import Screen
from textual.widgets import Checkbox, Input, Select

from tui_ft.config import TrainConfig
from tui_ft.text import visible
from tui_ft.ui.app import create_app
from tui_ft.ui.screens.params import ParamsScreen
from tui_ft.recipes import RECIPES

from helpers import pilot_wait_for as wait_for


async def params_screen(pilot) -> ParamsScreen:
    """The Parameters screen in front, its first estimate shown."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ParamsScreen))
    screen = app.screen
    await wait_for(pilot, lambda: screen.estimate.ready)
    return screen


async def type_into(pilot, screen: ParamsScreen, name: str, text: str) -> None:
    """Focus the field and type `text` over what it held, as a person would: focus
    selects the whole value, so the first key replaces it."""
    editor = screen.form.editor(name)
    if editor.has_focus:
        editor.select_all()
    else:
        editor.focus()
        await pilot.pause()
    assert editor.selected_text == editor.value
    await pilot.press(*(text or ["backspace"]))


def summary(screen) -> str:
    return str(screen.query_one("#problems-summary").content)


def estimate_text(screen) -> str:
    return screen.estimate.plain()


async def estimate_settled(pilot, screen) -> str:
    await pilot.pause()
    await wait_for(pilot, lambda: screen.estimate.ready)
    return estimate_text(screen)


async def submit_path(pilot, screen, key: str, path) -> None:
    """Open the path bar with `key` (ctrl+s or ctrl+o), type `path`, press enter."""
    await pilot.press(key)
    field = screen.query_one("#path-input", Input)
    assert field.has_focus
    field.value = str(path)
    await pilot.press("enter")


def app_on_params(**kwargs):
    return create_app(start_mode="params", **kwargs)


# -- the form ---------------------------------------------------------------------------


async def test_every_parameter_has_a_widget_of_its_kind_with_help():
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        editors = screen.form.query(".param-field")
        ids = [w.id.removeprefix("param-") for w in editors]
        assert ids == TrainConfig.field_names()
        for name in TrainConfig.field_names():
            meta = TrainConfig.meta(name)
            editor = screen.form.editor(name)
            if meta["kind"] is bool:
                assert isinstance(editor, Checkbox)
            elif meta["choices"]:
                assert isinstance(editor, Select)
                assert editor.value == getattr(TrainConfig(), name)
            else:
                assert isinstance(editor, Input)
            note = screen.form.note(name)
            assert str(note.content).startswith(meta["help"])
        for group in ("model", "data", "optimisation", "evaluation and checkpoints",
                      "precision", "generation"):
            assert screen.query_one(f"#group-{group.replace(' ', '-')}")
        assert screen.form.editor("split_ratios").value == "0.85 / 0.05 / 0.1"
        assert screen.form.editor("learning_rate").value == "0.002"
        assert screen.form.editor("max_length").value == ""
        assert "valid" in summary(screen)


async def test_bad_values_show_the_reason_and_leave_the_config_alone():
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        before = app.state.config
        await type_into(pilot, screen, "num_train_epochs", "-1")
        assert screen.form.problem_text("num_train_epochs") == "\u2717 must be greater than 0 and at most 1000000"
        await type_into(pilot, screen, "per_device_train_batch_size", "eight")
        assert "must be a whole number" in screen.form.problem_text(
            "per_device_train_batch_size")
        assert app.state.config is before
        assert "2 problems: num_train_epochs, per_device_train_batch_size" in summary(screen)
        assert screen.form.is_invalid("num_train_epochs")

        await type_into(pilot, screen, "num_train_epochs", "2")
        assert screen.form.problem_text("num_train_epochs") == ""
        assert app.state.config is before  # the batch size is still wrong
        await type_into(pilot, screen, "per_device_train_batch_size", "16")
        assert screen.form.problem_text("per_device_train_batch_size") == ""
        assert app.state.config.num_train_epochs == 2.0
        assert app.state.config.per_device_train_batch_size == 16
        assert app.state.config == TrainConfig(num_train_epochs=2.0,
                                               per_device_train_batch_size=16)
        assert "valid" in summary(screen) and "problem" not in summary(screen)
        # Optional fields take empty; required ones do not.
        await type_into(pilot, screen, "save_total_limit", "")
        assert app.state.config.save_total_limit is None
        await type_into(pilot, screen, "learning_rate", "")
        assert screen.form.problem_text("learning_rate") == "\u2717 must be a number"


async def test_cross_field_problems_are_shown_beside_the_field():
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        assert screen.form.editor("eval_steps").value == "50"
        assert screen.form.editor("load_best_model_at_end").value is True
        await type_into(pilot, screen, "save_steps", "75")
        assert ("must be a multiple of eval_steps (50) when load_best_model_at_end is on"
                in screen.form.problem_text("save_steps"))
        assert "1 problem: save_steps" in summary(screen)
        assert app.state.config.save_steps == 100

        # Turning load_best_model_at_end off resolves it: the draft is applied.
        screen.form.editor("load_best_model_at_end").focus()
        await pilot.press("space")
        assert screen.form.problem_text("save_steps") == ""
        assert app.state.config.save_steps == 75
        assert app.state.config.load_best_model_at_end is False

        # Both half precisions: the reason sits beside fp16.
        for name in ("bf16", "fp16"):
            screen.form.editor(name).focus()
            await pilot.press("space")
        assert "bf16 and fp16 cannot both be on" in screen.form.problem_text("fp16")
        assert app.state.config.bf16 is True and app.state.config.fp16 is False


async def test_a_key_checks_the_draft_once_and_reads_no_style_file(monkeypatch, tmp_path):
    """Validation as you type: one check per change, with the style names the screen
    read when it came to the front; no style file is read per key."""
    import tui_ft.config
    import tui_ft.data.styles as styles_module
    import tui_ft.ui.screens.params as params_module

    user_styles = tmp_path / "styles"
    user_styles.mkdir()
    alpaca = (styles_module.BUILTIN_DIR / "alpaca.yaml").read_text(encoding="utf-8")
    (user_styles / "mine.yaml").write_text(alpaca.replace("name: alpaca", "name: mine"),
                                           encoding="utf-8")
    reads: list[str] = []
    real_read = styles_module.load_style_file

    def counted_read(path):
        reads.append(str(path))
        return real_read(path)

    checks = []
    real_check = tui_ft.config.check

    def counted_check(*args, **kwargs):
        checks.append(kwargs.get("styles"))
        return real_check(*args, **kwargs)

    monkeypatch.setattr(styles_module, "user_styles_dir", lambda: user_styles)
    monkeypatch.setattr(styles_module, "load_style_file", counted_read)
    monkeypatch.setattr(params_module, "check", counted_check)
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        assert any(r.endswith("mine.yaml") for r in reads)  # the screen did read them
        await type_into(pilot, screen, "seed", "7")
        reads.clear(), checks.clear()
        for key in "123":
            await pilot.press(key)
            await pilot.pause()
        assert screen.form.editor("seed").value == "7123"
        assert app.state.config.seed == 7123
        assert len(checks) == 3 and reads == []
        assert all(names is not None and "mine" in names for names in checks)
        # The names passed in are the ones checked against: a user style is valid.
        await type_into(pilot, screen, "prompt_style", "mine")
        assert screen.form.problem_text("prompt_style") == ""
        assert app.state.config.prompt_style == "mine"
        await type_into(pilot, screen, "prompt_style", "nosuch")
        assert "unknown style" in screen.form.problem_text("prompt_style")
        assert reads == []


# -- YAML ---------------------------------------------------------------------------------


async def test_ctrl_s_writes_yaml_that_loads_back_equal(tmp_path):
    target = tmp_path / "cfg.yaml"
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        await type_into(pilot, screen, "learning_rate", "3e-4")
        await type_into(pilot, screen, "split_ratios", "80/10/10")
        await pilot.press("escape")
        await pilot.press("ctrl+s")
        assert screen.query_one("#path-input", Input).value == "train.yaml"
        await pilot.press("escape")
        await submit_path(pilot, screen, "ctrl+s", target)
        assert target.is_file()
        loaded = TrainConfig.load(target)
        assert loaded == app.state.config
        assert loaded.learning_rate == 3e-4 and loaded.split_ratios == [0.8, 0.1, 0.1]
        assert app.state.config_path == target
        assert f"saved to {target}" in screen.message_text()
        assert str(screen.query_one("#config-file").content) == "cfg.yaml"

        # A change marks the file modified; ctrl+s offers the same file and replaces it.
        await type_into(pilot, screen, "seed", "7")
        assert "modified" in str(screen.query_one("#config-file").content)
        await pilot.press("escape", "ctrl+s")
        assert screen.query_one("#path-input", Input).value == str(target)
        await pilot.press("enter")
        assert TrainConfig.load(target).seed == 7

        # Another existing file is replaced only after a second enter.
        other = tmp_path / "notes.yaml"
        other.write_text("keep me\n")
        await submit_path(pilot, screen, "ctrl+s", other)
        assert "already exists" in screen.message_text()
        assert other.read_text() == "keep me\n"
        await pilot.press("enter")
        assert TrainConfig.load(other) == app.state.config

        # With a problem in the draft nothing is written.
        await type_into(pilot, screen, "seed", "x")
        await pilot.press("escape", "ctrl+s")
        assert "not saved" in screen.message_text()
        assert not screen.query_one("#path-bar").has_class("shown")
        assert TrainConfig.load(target).seed == 7


BAD_YAML = [
    ("unknown-key", "num_train_epoch: 3\n",
     ["1 problem", "num_train_epoch = 3: unknown parameter; did you mean 'num_train_epochs'?"]),
    ("python-tag", "model: !!python/object/apply:os.system ['echo hi']\n",
     [":1:8: could not determine a constructor for the tag"]),
    ("not-a-mapping", "- gpt2\n- tiny\n", ["expected a mapping of parameters"]),
    # Markup and an escape sequence in the name: shown as they are, ESC made visible.
    ("[bold red]x[/] \x1b]0;PWNED\x07", None,
     ["[bold red]x[/] \u241b]0;PWNED\u2407.yaml: no such file"]),
]


async def test_loading_a_bad_yaml_says_where_and_changes_nothing(tmp_path):
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        await type_into(pilot, screen, "seed", "5")
        await pilot.press("escape")
        before = app.state.config
        await pilot.press("ctrl+o")
        field = screen.query_one("#path-input", Input)
        for name, text, expected in BAD_YAML:
            path = tmp_path / f"{name}.yaml"
            if text is not None:
                path.write_text(text, encoding="utf-8")
            field.value = str(path)
            await pilot.press("enter")
            message = screen.message_text()
            assert message.startswith(visible(str(path))), name
            for part in expected:
                assert part in message, name
            assert "\x1b" not in message
            assert screen.query_one("#params-message").has_class("-error")
            assert app.state.config is before and app.state.config_path is None
            assert screen.form.editor("seed").value == "5"
            assert screen.form.editor("model").value == "tiny"
            # The path stays open to be corrected.
            assert screen.query_one("#path-bar").has_class("shown") and field.has_focus
        await pilot.press("escape")
        assert not screen.query_one("#path-bar").has_class("shown")


async def test_loading_a_good_yaml_fills_the_form(tmp_path):
    path = tmp_path / "good.yaml"
    wanted = TrainConfig(model="gpt2", learning_rate=1e-4, bf16=True, eval_strategy="epoch",
                         save_strategy="epoch", max_length=512, top_p=0.9)
    wanted.save(path)
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        await submit_path(pilot, screen, "ctrl+o", path)
        assert app.state.config == wanted and app.state.config_path == path
        form = screen.form
        assert form.editor("model").value == "gpt2"
        assert form.editor("learning_rate").value == "0.0001"
        assert form.editor("bf16").value is True
        assert form.editor("eval_strategy").value == "epoch"
        assert form.editor("max_length").value == "512"
        assert form.editor("top_p").value == "0.9"
        assert f"loaded {path}" in screen.message_text()
        text = await estimate_settled(pilot, screen)
        assert "gpt2 \u00b7 bf16 \u00b7 batch 8\u00d7512" in text
        # The next ctrl+o offers the file the configuration came from.
        await pilot.press("ctrl+o")
        assert screen.query_one("#path-input", Input).value == str(path)


# -- presets, reset, other screens -------------------------------------------------------


async def test_presets_cycle_and_reset_keeps_the_dataset(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"instruction": "Hi?", "output": "hi"}) + "\n")
    app = app_on_params(dataset_path=data)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        await pilot.press("p")
        c = app.state.config
        assert (c.model, c.learning_rate, c.weight_decay, c.per_device_train_batch_size,
                c.num_train_epochs, c.max_length, c.eval_strategy, c.save_strategy) == (
            "gpt2", 5e-5, 0.1, 8, 2.0, 1024, "epoch", "epoch")
        assert c.dataset == str(data)
        assert screen.form.editor("model").value == "gpt2"
        assert screen.form.editor("weight_decay").value == "0.1"
        assert RECIPES[1].name in screen.message_text()
        await pilot.press("p")
        c = app.state.config
        assert c.model == "gpt2-medium" and c.bf16 is True and c.per_device_train_batch_size == 8
        assert screen.form.editor("bf16").value is True
        await pilot.press("p")
        assert app.state.config == TrainConfig(dataset=str(data))

        await type_into(pilot, screen, "seed", "99")
        await type_into(pilot, screen, "warmup_steps", "-3")
        await pilot.press("escape", "r")
        assert app.state.config == TrainConfig(dataset=str(data))
        assert screen.form.editor("warmup_steps").value == "0"
        assert screen.form.problem_text("warmup_steps") == ""
        assert "reset to defaults (kept dataset)" in screen.message_text()


async def test_changes_from_other_screens_merge_into_the_draft():
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        await type_into(pilot, screen, "num_train_epochs", "-1")
        # Another screen in front changes the configuration; ours comes back.
        await app.push_screen(Screen())
        app.set_config(TrainConfig(dataset="/data/other.jsonl", mask_prompt=True))
        await app.pop_screen()
        await wait_for(pilot, lambda: screen.form.editor("dataset").value == "/data/other.jsonl")
        assert screen.form.editor("mask_prompt").value is True
        # The person's unfinished edit is still there, and still holds the config back.
        assert screen.form.editor("num_train_epochs").value == "-1"
        assert "num_train_epochs" in summary(screen)
        assert app.state.config.dataset == "/data/other.jsonl"


# -- memory estimate ---------------------------------------------------------------------


def _mib(shown: str) -> float:
    number, unit = shown.split()
    return float(number) * {"B": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 1024}[unit]


async def test_memory_estimate_follows_batch_size_model_and_length(tmp_path):
    app = app_on_params()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await params_screen(pilot)
        text = estimate_text(screen)
        assert "tiny \u00b7 fp32 \u00b7 batch 8\u00d7256" in text
        tiny8 = screen.estimate.result.estimate.total
        # The total, in the unit that fits it (MiB under 1 GiB: the chunked loss keeps
        # the tiny model's estimate there), and the number is the estimate's.
        shown = re.search(r"total \u2248 (\d+(?:\.\d+)?) (MiB|GiB)\b", text)
        assert shown, text
        unit = "GiB" if tiny8 >= 1 << 30 else "MiB"
        assert shown[2] == unit
        assert _mib(f"{shown[1]} {unit}") == pytest.approx(tiny8 / 2**20, rel=5e-3)
        # The parts, and the transient on top of them at the peak (the loss's chunk).
        e = screen.estimate.result.estimate
        parts = re.search(r"weights\+Adam (\S+ \S+), grads (\S+ \S+), activations "
                          r"(\S+ \S+), loss \+(\S+ \S+)$", text)
        assert parts, text
        assert e.peak_at == "loss forward"
        # (Shown to 3 significant figures.)
        for shown_part, value in zip(parts.groups(), (
                e.weights + e.optimizer, e.gradients, e.activations + e.weight_copies,
                e.workspace)):
            assert _mib(shown_part) == pytest.approx(value / 2**20, rel=5e-3), shown_part

        await type_into(pilot, screen, "per_device_train_batch_size", "16")
        text = await estimate_settled(pilot, screen)
        assert "batch 16\u00d7256" in text
        assert screen.estimate.result.estimate.total > tiny8

        await type_into(pilot, screen, "model", "gpt2")
        text = await estimate_settled(pilot, screen)
        assert "gpt2 \u00b7 fp32 \u00b7 batch 16\u00d71024" in text
        assert "(124M params)" in text

        # A bad batch size: the estimate waits for it.
        await type_into(pilot, screen, "per_device_train_batch_size", "0")
        text = await estimate_settled(pilot, screen)
        assert "waiting for a valid per_device_train_batch_size" in text

        # A Hugging Face folder: its config.json gives the shape.
        folder = tmp_path / "hf-model"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({
            "model_type": "gpt2", "vocab_size": 50257, "n_positions": 512, "n_embd": 256,
            "n_layer": 2, "n_head": 4, "layer_norm_epsilon": 1e-5}))
        await type_into(pilot, screen, "per_device_train_batch_size", "4")
        screen.form.editor("model").value = str(folder)  # pasted
        text = await estimate_settled(pilot, screen)
        assert "hf-model \u00b7 fp32 \u00b7 batch 4\u00d7512" in text

        # A name with markup and an escape character (a paste can bring one): literal.
        screen.form.editor("model").value = "[b]m[/b]\x1b"
        text = await estimate_settled(pilot, screen)
        # Control characters are refused by the configuration, beside the field.
        assert "waiting for a valid model" in text
        assert "control characters" in screen.form.problem_text("model")
        screen.form.editor("model").value = "[b]m[/b]"
        text = await estimate_settled(pilot, screen)
        assert "'[b]m[/b]' is not a preset and not a file" in text

        # Longer than the model's context: a problem of the configuration, not estimated.
        await type_into(pilot, screen, "model", "tiny")
        await type_into(pilot, screen, "max_length", "1024")
        text = await estimate_settled(pilot, screen)
        # The configuration itself refuses it now, beside the field.
        assert "waiting for a valid max_length" in text
        assert "longer than tiny's context (256)" in screen.form.problem_text("max_length")


def test_the_screen_and_its_estimate_import_no_torch():
    probe = (
        "import asyncio, sys\n"
        "from tui_ft.ui.app import create_app\n"
        "async def main():\n"
        "    app = create_app(start_mode='params')\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        for _ in range(200):\n"
        "            await pilot.pause(0.02)\n"
        "            if getattr(app.screen, 'estimate', None) and app.screen.estimate.ready:\n"
        "                break\n"
        "        assert 'total' in app.screen.estimate.plain()\n"
        "asyncio.run(main())\n"
        "print('TORCH', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout


# -- 80x24 --------------------------------------------------------------------------------


async def test_usable_at_80x24():
    app = app_on_params()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await params_screen(pilot)
        nav = screen.query_one("#group-nav")
        assert nav.has_focus
        await pilot.press("end", "enter")  # the last group: generation
        assert screen.focused is screen.form.editor("max_new_tokens")
        await type_into(pilot, screen, "top_p", "2")
        form = screen.form
        assert form.scroll_y > 0
        region = screen.region
        for widget in (screen.form.editor("top_p"), screen.form.note("top_p"),
                       screen.query_one("#problems-summary"), screen.estimate):
            assert region.contains_region(widget.region), widget
            assert widget.region.height >= 1
        assert "1 problem: top_p" in summary(screen)
        # Tab and shift+tab walk the fields; escape goes back to the group list.
        await pilot.press("shift+tab")
        assert screen.focused is form.editor("top_k")
        await pilot.press("escape")
        assert nav.has_focus and nav.highlighted == 5


def test_snapshot_80x24(snap_compare):
    async def settle(pilot):
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ParamsScreen)
                       and pilot.app.screen.estimate.ready)

    assert snap_compare(app_on_params(), terminal_size=(80, 24), run_before=settle)
