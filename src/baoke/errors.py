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


class LocatedError(BaokeError):
    """A problem at a place in a file; ``str()`` is ``path:line:column: pointer: message``.

    ``line`` and ``column`` are 1-based; ``pointer`` is the place in the document
    (``rule.all[1].field``, ``steps[2].branch.then``; empty for the document as a whole);
    ``detail`` is the bare message; ``errors`` holds every error found in the file, in file
    order, this one first.
    """

    def __init__(
        self,
        message: str,
        path: str = "<string>",
        line: int = 1,
        column: int = 1,
        pointer: str = "",
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.pointer = pointer
        self.errors: tuple[LocatedError, ...] = (self,)
        where = f"{path}:{line}:{column}: "
        super().__init__(where + (f"{pointer}: {message}" if pointer else message))
        # BaokeError.message is the line the CLI prints; keep the bare text apart.
        self.detail = message

    def __str__(self) -> str:
        return self.message
