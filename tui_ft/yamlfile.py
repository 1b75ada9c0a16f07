"""Reading a YAML file a user wrote: `yaml.safe_load` only (Python object tags fail),
without aliases, and every problem as one message with the file, line and column.

Aliases (`*name`) are refused: nine lines of them (the "billion laughs") expand into
billions of nodes, and a config or style file did hang the CLI and the app with memory
growing. No tui-ft file needs them; anchors alone are harmless and stay allowed."""

from __future__ import annotations

import functools
from pathlib import Path

from .errors import TuiFtError
from .fsio import special_kind
from .text import format_bytes

# Configs, styles, themes and settings are a few kB: a larger file is not one of
# them, and reading it whole (on the app's screen thread for ctrl+o) is not bounded.
MAX_YAML_BYTES = 1 << 20


@functools.cache
def _loader():
    """The loader class, built on first use so that yaml stays off start-up."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not accepted here: write the value "
                    "out", self.peek_event().start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def load_user_yaml(text: str) -> object:
    """`yaml.safe_load` of text a user wrote, refusing aliases; raises yaml.YAMLError."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 -- a SafeLoader subclass


def read_yaml_file(path: str | Path, error: type[TuiFtError] = TuiFtError) -> object:
    """The value in `path`; raises `error` naming the place of any problem."""
    import yaml

    path = Path(path)
    try:
        # Looked at before it is opened: a FIFO would wait for a writer for ever, a
        # device never end (ctrl+o on one froze the app, `--config FIFO` the CLI).
        info = path.stat()
        kind = special_kind(info.st_mode)
        if kind is not None:
            raise error(f"{path}: is {kind}, not a YAML file")
        if info.st_size > MAX_YAML_BYTES:
            raise error(f"{path}: {format_bytes(info.st_size)} is too large for a YAML "
                        f"file of tui-ft (at most {format_bytes(MAX_YAML_BYTES)})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return load_user_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"{where}: {problem}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
    except ValueError as exc:
        # A scalar the constructors cannot build: a date like 2026-13-45, an integer
        # past Python's 4300-digit limit. The advice after ';' is about Python, not YAML.
        raise error(f"{path}: a value YAML cannot read "
                    f"({str(exc).split(';')[0]})") from None
