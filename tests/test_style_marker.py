"""A prompt style must mark where an answer starts (issue 13). A style file whose
templates.assistant was just "{content}" loaded, and the answer then ran straight on
from the prompt: "Say hello" + "world" tokenizes as "hell" "oworld", so the prompt's
"o" was learned as answer even with mask_prompt. Such a file is now refused, naming
the file and what is missing, everywhere a style is used."""

from __future__ import annotations

import pytest
import yaml

from tui_ft.data.batches import IGNORE_INDEX, encode_rendered, loss_segments
from tui_ft.data.records import Record
from tui_ft.data.styles import Style, load_style_file, load_styles
from tui_ft.errors import StyleError

RECORD = Record(id="r", instruction="Say hello", input="", output="world")


def learned_text(style: Style, record: Record = RECORD) -> str:
    example = encode_rendered(style.render(record), mask_prompt=True)
    assert any(label != IGNORE_INDEX for label in example.labels)
    return "".join(t for t, learned in loss_segments(example.input_ids, example.labels)
                   if learned)


def bare_style(assistant: str) -> Style:
    return Style("bare", "", "", {"system": "{content}", "user": "Q: {content}",
                                  "input": "{input}", "assistant": assistant,
                                  "separator": ""})


def test_without_a_marker_the_prompt_leaks_into_the_loss_and_with_one_it_does_not():
    # Why the rule exists: built by hand (no file check), the bare style learns "o".
    assert learned_text(bare_style("{content}")) == "oworld<|endoftext|>"
    assert learned_text(bare_style("\nA: {content}")) == " world<|endoftext|>"


@pytest.mark.parametrize("assistant", ["{content}", " {content}", "\n\n{content}",
                                       "{content}\n### End"])
def test_a_style_file_without_an_answer_marker_is_refused(tmp_path, assistant):
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump({"templates": {"user": "Q: {content}",
                                                  "assistant": assistant}}))
    with pytest.raises(StyleError) as info:
        load_style_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: templates.assistant has no answer marker before "
                              "{content}")
    assert repr(assistant) in message and "### Response:" in message


def test_every_built_in_style_marks_its_answers_and_learns_only_the_answer():
    catalog = load_styles()
    assert {"alpaca", "chatml", "phi3"} <= set(catalog.names()) and not catalog.errors
    for name in ("alpaca", "chatml", "phi3"):
        style = catalog.get(name)
        suffix = style.templates["assistant"].partition("{content}")[2]
        assert learned_text(style).strip() == f"world{suffix}<|endoftext|>".strip(), name


@pytest.fixture
def bare_file(config_dir):
    folder = config_dir / "styles"
    folder.mkdir()
    path = folder / "bare.yaml"
    path.write_text('templates:\n  user: "Q: {content}"\n  assistant: "{content}"\n')
    return path


def test_the_catalog_lists_it_as_an_error_and_asking_for_it_says_why(bare_file):
    catalog = load_styles()
    assert "bare" not in catalog.names()
    assert len(catalog.errors) == 1 and catalog.errors[0].startswith(str(bare_file))
    with pytest.raises(StyleError, match="prompt style 'bare' cannot be used: .*bare.yaml: "
                                         "templates.assistant has no answer marker"):
        catalog.get("bare")


def test_the_cli_refuses_it_naming_the_file(bare_file, run_cli, tmp_path, isolated_dirs,
                                            sample_data_dir):
    proc = run_cli("styles")
    assert proc.returncode == 0
    assert f"{bare_file}: templates.assistant has no answer marker" in proc.stderr
    assert "bare" not in proc.stdout.split()

    proc = run_cli("data", "preview", sample_data_dir / "instructions.jsonl", "-i", "0",
                   "--style", "bare", "--mask-prompt")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bare_file}: templates.assistant has no answer marker" in proc.stderr

    config = tmp_path / "config.yaml"
    config.write_text("prompt_style: bare\nmax_steps: 2\nmask_prompt: true\n")
    proc = run_cli("train", config)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"tui-ft: error: {config}: 1 problem")
    assert f"prompt_style = 'bare': {bare_file}: templates.assistant has no answer " \
           "marker" in proc.stderr
    assert list(isolated_dirs["runs"].iterdir()) == []
