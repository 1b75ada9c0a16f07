"""Errors a user can cause. Each carries a message that names the place and the fix;
the CLI and the TUI show the message, never a traceback."""

from __future__ import annotations


class TuiFtError(Exception):
    """Base for every error caused by user input (files, values, missing weights)."""


class DatasetError(TuiFtError):
    """A dataset file cannot be used at all (missing, empty, wrong top-level type)."""


class StyleError(TuiFtError):
    """A prompt style is unknown or its file is invalid."""


class TokenizerError(TuiFtError):
    """The tokenizer's rank file is missing or corrupted."""


class TrainingError(TuiFtError):
    """Training cannot start or cannot go on (bad data, non-finite loss, out of memory)."""


class DiskFull(TuiFtError):
    """A write met a full disk or an exhausted quota (ENOSPC, EDQUOT). Raised with the
    one message fsio.disk_full_error builds, wherever the write was."""
