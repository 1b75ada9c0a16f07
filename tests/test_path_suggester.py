"""Path completion in the Datasets path field and the Parameters save/load bar: the
first entry on disk that continues what was typed, folders with a slash, '@sample/'
in the shipped sample folder, hidden files and missing folders never offered."""

from __future__ import annotations

from tui_ft.ui.widgets.path_suggester import PathSuggester


async def test_completes_from_disk(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "runs").mkdir()
    (tmp_path / ".hidden.jsonl").write_text("")
    suggest = PathSuggester().get_suggestion
    assert await suggest(f"{tmp_path}/tr") == f"{tmp_path}/train.jsonl"
    assert await suggest(f"{tmp_path}/ru") == f"{tmp_path}/runs/"
    assert await suggest(f"{tmp_path}/.hid") is None
    assert await suggest(f"{tmp_path}/train.jsonl") is None  # complete already
    assert await suggest(f"{tmp_path}/nosuch/x") is None
    assert await suggest("") is None


async def test_sample_paths_complete_in_the_sample_folder():
    assert await PathSuggester().get_suggestion("@sample/instr") == \
        "@sample/instructions.jsonl"
