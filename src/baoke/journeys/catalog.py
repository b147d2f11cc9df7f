"""The playbooks the journeys run: current definitions, operator switches and old versions.

The current set is the built-in library replaced or extended by ``<data dir>/playbooks``.
Every version that enrols someone is stored with its text in ``playbook_versions``, and a
journey always runs on the version it enrolled in: changing a playbook changes who enters next
and what they receive, never the path of a customer already on the way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Connection, insert, select

from baoke.config import Settings
from baoke.errors import InputError
from baoke.playbooks.definitions import Playbook, parse_playbook
from baoke.playbooks.library import load_library
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["Catalog", "load_catalog", "set_enabled"]


@dataclass
class Catalog:
    """Current playbooks (enabled or not) and every stored version, parsed on demand."""

    current: dict[str, Playbook]
    texts: dict[tuple[str, str], str]  # (name, version) -> YAML
    disabled: dict[str, str] = field(default_factory=dict)  # name -> why
    _parsed: dict[tuple[str, str], Playbook] = field(default_factory=dict)

    def enabled(self) -> list[Playbook]:
        """Playbooks that may enrol: enabled in their file and not switched off by an operator."""
        return [
            book
            for book in self.current.values()
            if book.enabled and book.name not in self.disabled
        ]

    def get(self, name: str, version: str) -> Playbook:
        """The playbook ``name`` as it was at ``version`` (KeyError if never stored)."""
        book = self.current.get(name)
        if book is not None and book.version == version:
            return book
        key = (name, version)
        if key not in self._parsed:
            self._parsed[key] = parse_playbook(self.texts[key], f"{name}@{version}")
        return self._parsed[key]


def load_catalog(conn: Connection, settings: Settings, *, record: bool = True) -> Catalog:
    """Load the current playbooks, store any new version, and read the operator switches.

    ``record=False`` for readers (listing candidates) that must not write to the store.
    """
    current: dict[str, Playbook] = {}
    texts: dict[tuple[str, str], str] = {}
    fresh: list[dict[str, str]] = []
    versions = table(m.PlaybookVersion)
    stored = {
        (row.name, row.version): row.definition
        for row in conn.execute(select(versions.c.name, versions.c.version, versions.c.definition))
    }
    for name, entry in load_library(settings).items():
        book = entry.book
        current[name] = book
        if (name, book.version) not in stored:
            fresh.append(
                {
                    "name": name,
                    "version": book.version,
                    "source": entry.source,
                    "definition": entry.text,
                }
            )
        texts[(name, book.version)] = entry.text
    if fresh and record:
        conn.execute(insert(versions), fresh)
    texts = stored | texts
    states = table(m.PlaybookState)
    disabled = {
        row.name: row.reason or "disabled"
        for row in conn.execute(select(states).where(states.c.enabled.is_(False)))
    }
    return Catalog(current, texts, disabled)


def set_enabled(
    conn: Connection, settings: Settings, name: str, enabled: bool, *, actor: str, reason: str
) -> None:
    """Switch a playbook on or off for enrolment, with an audit entry.

    Journeys already running are left to finish: stopping a complaint recovery half-way
    because someone disabled the playbook would hurt the customer it exists for.
    """
    if name not in load_library(settings):
        raise InputError(f"unknown playbook {name!r}; see `baoke playbooks list`")
    states = table(m.PlaybookState)
    now = dt.datetime.now(dt.UTC)
    values = {"enabled": enabled, "changed_at": now, "changed_by": actor, "reason": reason}
    done = conn.execute(states.update().where(states.c.name == name).values(values))
    if done.rowcount == 0:
        conn.execute(insert(states).values(name=name, **values))
    conn.execute(
        insert(table(m.AuditEntry)).values(
            at=now,
            actor=actor,
            action="playbook.enable" if enabled else "playbook.disable",
            entity="playbook",
            entity_id=name,
            detail={"reason": reason},
        )
    )
