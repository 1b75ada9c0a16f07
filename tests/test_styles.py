"""Prompt styles: exact built-in renderings, prompts and answer spans, literal data,
user style files and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui_ft.data.dataset import load_records
from tui_ft.data.records import parse_record
from tui_ft.data.styles import Rendered, get_style, load_style_file, load_styles
from tui_ft.errors import StyleError

PREAMBLE = ("Below is an instruction that describes a task. Write a response that "
            "appropriately completes the request.")


def alpaca_record(instruction="Add 2 and 3.", input="", output="5"):
    return parse_record({"instruction": instruction, "input": input, "output": output})


CHAT = parse_record({"messages": [
    {"role": "user", "content": "u1"},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "u2"},
    {"role": "assistant", "content": "a2"},
]})
CHAT_WITH_SYSTEM = parse_record({"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "u1"},
    {"role": "assistant", "content": "a1"},
]})


# Built-ins only: an empty user folder, so this catalog depends on no test's config dir.
BUILTIN = load_styles(Path(__file__).resolve().parent / "no-such-styles-folder")


@pytest.fixture(scope="module")
def styles():
    return BUILTIN


def check_consistent(r: Rendered) -> None:
    """prompt is the text up to the (last) answer; spans are ordered and inside the text."""
    assert r.text.startswith(r.prompt)
    assert r.answer_spans
    assert r.answer_spans[-1][0] == len(r.prompt) == r.answer_start
    previous_end = 0
    for start, end in r.answer_spans:
        assert previous_end <= start <= end <= len(r.text)
        previous_end = end


def answers(r: Rendered) -> list[str]:
    return [r.text[a:b] for a, b in r.answer_spans]


def test_builtin_styles_present(styles):
    assert {"alpaca", "phi3", "chatml"} <= set(styles.names())
    assert styles.errors == []
    assert all(styles.get(n).source == "built-in" for n in ("alpaca", "phi3", "chatml"))


def test_alpaca_with_input_exact(styles):
    r = styles.get("alpaca").render(alpaca_record("Translate to French.", "cat", "chat"))
    assert r.text == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nTranslate to French.\n\n### Input:\ncat"
        "\n\n### Response:\nchat")
    assert r.prompt == r.text[:-len("chat")]
    assert r.prompt.endswith("### Response:\n")
    assert r.answer_spans == ((len(r.text) - 4, len(r.text)),)
    check_consistent(r)


def test_alpaca_without_input_exact(styles):
    r = styles.get("alpaca").render(alpaca_record("Add 2 and 3.", "", "5"))
    assert r.text == (f"{PREAMBLE}\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n5")
    assert "### Input:" not in r.text
    assert r.prompt == f"{PREAMBLE}\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n"
    assert answers(r) == ["5"]
    assert styles.get("alpaca").prompt(alpaca_record("Add 2 and 3.", "", "5")) == r.prompt


def test_phi3_exact(styles):
    phi3 = styles.get("phi3")
    r = phi3.render(alpaca_record("Translate to French.", "cat", "chat"))
    assert r.text == "<|user|>\nTranslate to French.\ncat\n<|assistant|>\nchat"
    assert r.prompt == "<|user|>\nTranslate to French.\ncat\n<|assistant|>\n"
    assert answers(r) == ["chat"]
    r = phi3.render(alpaca_record("Add 2 and 3.", "", "5"))
    assert r.text == "<|user|>\nAdd 2 and 3.\n<|assistant|>\n5"
    assert r.prompt == "<|user|>\nAdd 2 and 3.\n<|assistant|>\n"
    check_consistent(r)


def test_chatml_exact(styles):
    r = styles.get("chatml").render(alpaca_record("Add 2 and 3.", "", "5"))
    assert r.text == ("<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n"
                      "5<|im_end|>")
    assert r.prompt == "<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n"
    # The closing marker is part of what the model learns to produce.
    assert answers(r) == ["5<|im_end|>"]
    check_consistent(r)


def test_alpaca_multi_turn_chat(styles):
    r = styles.get("alpaca").render(CHAT)
    assert r.text == (f"{PREAMBLE}\n\n### Instruction:\nu1\n\n### Response:\na1"
                      "\n\n### Instruction:\nu2\n\n### Response:\na2")
    assert answers(r) == ["a1", "a2"]
    assert r.prompt == r.text[:-2]
    check_consistent(r)


def test_phi3_multi_turn_chat(styles):
    r = styles.get("phi3").render(CHAT)
    assert r.text == "<|user|>\nu1\n<|assistant|>\na1\n<|user|>\nu2\n<|assistant|>\na2"
    assert answers(r) == ["a1", "a2"]
    check_consistent(r)


def test_chatml_multi_turn_chat(styles):
    r = styles.get("chatml").render(CHAT)
    assert answers(r) == ["a1<|im_end|>", "a2<|im_end|>"]
    assert r.text == ("<|im_start|>user\nu1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
                      "<|im_start|>user\nu2<|im_end|>\n<|im_start|>assistant\na2<|im_end|>")
    check_consistent(r)


def test_chat_system_message_replaces_the_style_system(styles):
    r = styles.get("alpaca").render(CHAT_WITH_SYSTEM)
    assert r.text == "Be brief.\n\n### Instruction:\nu1\n\n### Response:\na1"
    assert PREAMBLE not in r.text
    r = styles.get("phi3").render(CHAT_WITH_SYSTEM)
    assert r.text == "<|system|>\nBe brief.\n<|user|>\nu1\n<|assistant|>\na1"
    assert answers(r) == ["a1"]


@pytest.mark.parametrize("name", ["alpaca", "phi3", "chatml"])
def test_braces_in_data_are_literal(styles, name):
    record = alpaca_record("Fill {content} and {input} and {0} and {}", "x {instruction} {1}",
                           "{content} {output} {0}")
    r = styles.get(name).render(record)
    assert "Fill {content} and {input} and {0} and {}" in r.text
    assert "x {instruction} {1}" in r.text
    assert answers(r)[0].startswith("{content} {output} {0}")
    check_consistent(r)
    if name == "alpaca":
        assert r.text == (f"{PREAMBLE}\n\n### Instruction:\nFill {{content}} and {{input}} and "
                          "{0} and {}\n\n### Input:\nx {instruction} {1}\n\n### Response:\n"
                          "{content} {output} {0}")


@settings(max_examples=150, deadline=None, database=None)
@given(instruction=st.text(min_size=1, max_size=30).filter(lambda s: s.strip()),
       input=st.text(max_size=20), output=st.text(max_size=30),
       name=st.sampled_from(["alpaca", "phi3", "chatml"]))
def test_any_record_renders_consistently(instruction, input, output, name):
    style = BUILTIN.get(name)
    r = style.render(alpaca_record(instruction, input, output))
    check_consistent(r)
    assert instruction in r.prompt
    if input:
        assert input in r.prompt
    got = answers(r)
    assert len(got) == 1 and got[0].startswith(output)
    if name == "alpaca":
        expected = f"{PREAMBLE}\n\n### Instruction:\n{instruction}"
        if input:
            expected += f"\n\n### Input:\n{input}"
        assert r.text == expected + f"\n\n### Response:\n{output}"
    if name == "phi3":
        middle = f"\n{input}" if input else ""
        assert r.text == f"<|user|>\n{instruction}{middle}\n<|assistant|>\n{output}"


def test_sample_chat_data_spans_cover_every_assistant_turn(styles, sample_data_dir):
    records = load_records(sample_data_dir / "chat.jsonl").records
    assert any(sum(m.role == "assistant" for m in r.messages) > 1 for r in records)
    for record in records:
        turns = [m.content for m in record.messages if m.role == "assistant"]
        for name in ("alpaca", "phi3"):
            r = styles.get(name).render(record)
            check_consistent(r)
            assert answers(r) == turns


# -- user styles -------------------------------------------------------------------

GOOD_USER_STYLE = """\
name: mine
description: A test style.
system: "SYS"
templates:
  system: "[{content}]\\n"
  user: "Q: {content}"
  input: " ({input})"
  assistant: "\\nA: {content}"
  separator: "\\n--\\n"
stop: ["\\nQ:"]
"""


def write_style(config_dir, filename, text):
    folder = config_dir / "styles"
    folder.mkdir(exist_ok=True)
    path = folder / filename
    path.write_text(text, encoding="utf-8")
    return path


def test_user_style_is_loaded_from_config_dir(config_dir):
    path = write_style(config_dir, "mine.yaml", GOOD_USER_STYLE)
    catalog = load_styles()
    assert catalog.errors == []
    style = catalog.get("mine")
    assert style.source == str(path)
    assert style.stop == ("\nQ:",)
    r = style.render(alpaca_record("Add 2 and 3.", "now", "5"))
    assert r.text == "[SYS]\nQ: Add 2 and 3. (now)\nA: 5"
    assert r.prompt == "[SYS]\nQ: Add 2 and 3. (now)\nA: "
    assert answers(r) == ["5"]
    r = style.render(CHAT)
    assert r.text == "[SYS]\nQ: u1\nA: a1\n--\nQ: u2\nA: a2"
    assert answers(r) == ["a1", "a2"]
    assert get_style("mine").name == "mine"


def test_user_style_name_defaults_to_file_stem(config_dir):
    write_style(config_dir, "plain.yaml", 'templates:\n  user: "U {content}"\n'
                                          '  assistant: " A {content}"\n')
    catalog = load_styles()
    assert catalog.errors == []
    assert catalog.get("plain").render(alpaca_record("x", "", "y")).text == "U x A y"


BROKEN = {
    "badyaml.yaml": ("name: [unclosed\n", []),
    "nocontent.yaml": ('name: nocontent\ntemplates:\n  user: "U:"\n  assistant: "A: {content}"\n',
                       ["templates.user", "{content}"]),
    "twice.yaml": ('name: twice\ntemplates:\n  user: "{content} {content}"\n'
                   '  assistant: "A: {content}"\n', ["templates.user"]),
    "unknownkey.yaml": ('name: unk\ncolour: red\ntemplates:\n  user: "{content}"\n'
                        '  assistant: "A: {content}"\n', ["colour"]),
    "unknowntemplate.yaml": ('name: unkt\ntemplates:\n  user: "{content}"\n'
                             '  assistant: "A: {content}"\n  tool: "{content}"\n', ["tool"]),
    "pyobject.yaml": ("name: evil\ntemplates: !!python/object/apply:os.system ['echo hi']\n",
                      ["python/object"]),
    "pyobject2.yaml": ("!!python/object:collections.OrderedDict\nname: evil2\n",
                       ["python/object"]),
    "clash.yaml": ('name: alpaca\ntemplates:\n  user: "{content}"\n  assistant: "A: {content}"\n',
                   ["alpaca", "already"]),
    "notmapping.yaml": ("- a\n- b\n", ["mapping"]),
    "notemplates.yaml": ("name: nt\n", ["templates"]),
    "badname.yaml": ('name: "bad name!"\ntemplates:\n  user: "{content}"\n'
                     '  assistant: "A: {content}"\n', ["name"]),
}


def test_broken_user_styles_are_reported_and_do_not_stop_others(config_dir):
    paths = {name: write_style(config_dir, name, text) for name, (text, _) in BROKEN.items()}
    write_style(config_dir, "mine.yaml", GOOD_USER_STYLE)
    write_style(config_dir, "zz-last.yaml", 'name: last\ntemplates:\n  user: "{content}"\n'
                                            '  assistant: "A: {content}"\n')
    catalog = load_styles()
    # Every good style still loads, and the built-in alpaca is not replaced.
    assert {"alpaca", "phi3", "chatml", "mine", "last"} <= set(catalog.names())
    assert catalog.get("alpaca").source == "built-in"
    assert catalog.get("alpaca").render(alpaca_record()).text.startswith(PREAMBLE)
    assert not {"nocontent", "twice", "unk", "unkt", "evil", "evil2", "nt"} & set(catalog.names())
    assert len(catalog.errors) == len(BROKEN)
    for name, (_, words) in BROKEN.items():
        matching = [e for e in catalog.errors if str(paths[name]) in e]
        assert len(matching) == 1, (name, catalog.errors)
        for word in words:
            assert word in matching[0], (name, matching[0])


def test_python_tags_are_never_executed(config_dir, tmp_path):
    marker = tmp_path / "executed"
    write_style(config_dir, "evil.yaml",
                f"name: evil\ntemplates: !!python/object/apply:os.system ['touch {marker}']\n")
    catalog = load_styles()
    assert "evil" not in catalog.names()
    assert not marker.exists()


def test_two_user_styles_with_one_name(config_dir):
    text = 'name: same\ntemplates:\n  user: "{content}"\n  assistant: "A: {content}"\n'
    first = write_style(config_dir, "a.yaml", text)
    second = write_style(config_dir, "b.yaml", text)
    catalog = load_styles()
    assert catalog.get("same").source == str(first)
    assert len(catalog.errors) == 1 and str(second) in catalog.errors[0]


def test_load_style_file_raises_style_error(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: [\n")
    with pytest.raises(StyleError) as info:
        load_style_file(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(StyleError):
        load_style_file(path)


def test_unknown_style_lists_available(config_dir):
    write_style(config_dir, "mine.yaml", GOOD_USER_STYLE)
    with pytest.raises(StyleError) as info:
        load_styles().get("alpaka")
    message = str(info.value)
    assert "alpaka" in message
    for name in ("alpaca", "phi3", "chatml", "mine"):
        assert name in message
    with pytest.raises(StyleError):
        get_style("nope")


def test_missing_user_styles_folder_is_fine(config_dir):
    assert not (config_dir / "styles").exists()
    catalog = load_styles()
    assert catalog.errors == []
    assert set(catalog.names()) == {"alpaca", "phi3", "chatml"}
