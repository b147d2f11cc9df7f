"""The playbooks in force: the built-in library, replaced or extended by the data directory's.

A file in ``<data dir>/playbooks/`` replaces the built-in of the same *name* (read from the
file, whatever the file is called) or adds a new playbook. The commands that show playbooks
and the journey engine that runs them read the library through this one function, so they
never disagree on which playbook is in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from baoke.config import Settings
from baoke.errors import InputError
from baoke.playbooks.definitions import Playbook, PlaybookError, builtin_texts, parse_playbook

__all__ = ["LibraryEntry", "load_library"]


@dataclass(frozen=True)
class LibraryEntry:
    """One playbook in force: where it comes from, its text as written, and its definition."""

    source: str  # builtin/<file> or playbooks/<file>
    text: str
    book: Playbook


def load_library(settings: Settings) -> dict[str, LibraryEntry]:
    """Name -> entry for every playbook in force; a bad custom file is one InputError."""
    texts = builtin_texts()
    custom = settings.data_dir / "playbooks"
    if custom.is_dir():
        texts += [
            (str(Path("playbooks") / path.name), path.read_text(encoding="utf-8-sig"))
            for path in sorted(custom.glob("*.y*ml"))
        ]
    out: dict[str, LibraryEntry] = {}
    for source, text in texts:
        try:
            book = parse_playbook(text, source)
        except PlaybookError as exc:
            raise InputError(str(exc)) from exc
        out[book.name] = LibraryEntry(source, text, book)
    return out
