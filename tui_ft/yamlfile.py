"""Reading a YAML file a user wrote: `yaml.safe_load` only (Python object tags fail),
and every problem as one message with the file, line and column."""

from __future__ import annotations

from pathlib import Path

from .errors import TuiFtError


def read_yaml_file(path: str | Path, error: type[TuiFtError] = TuiFtError) -> object:
    """The value in `path`; raises `error` naming the place of any problem."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"{where}: {problem}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
