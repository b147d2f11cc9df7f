"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit."""

from __future__ import annotations


class BaokeError(Exception):
    """A problem the user can fix (bad file, bad option, bad config); never a bug."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BaokeError):
    """The configuration (environment or baoke.toml) is invalid."""


class InputError(BaokeError):
    """An input file cannot be read or understood as a whole."""
