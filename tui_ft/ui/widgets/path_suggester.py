"""Completion of a typed file path (the Datasets screen's path, the Parameters
screen's save and load bar)."""

from __future__ import annotations

import os

from textual.suggester import Suggester

from ...config import resolve_data_path


class PathSuggester(Suggester):
    """Completes a file path from what is on disk: the first entry of the folder
    that starts with what was typed (folders get a trailing slash)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        # '@sample/' and '~' complete in the folders they stand for.
        expanded = str(resolve_data_path(value)) + ("/" if value.endswith("/") else "")
        folder, prefix = os.path.split(expanded)
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if name.startswith(prefix) and name != prefix and not name.startswith("."):
                full = os.path.join(folder, name)
                suffix = "/" if os.path.isdir(full) else ""
                return value + name[len(prefix):] + suffix
        return None
