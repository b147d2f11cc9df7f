"""A store with a dealer, staff on WeCom and owners, and touches scheduled straight into the
outbox, so each dispatch test says exactly what is due, on which channel, for whom."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from tests.journeys.world import World, local

from baoke.channels.dispatcher import Dispatcher, DispatchResult
from baoke.channels.registry import Providers
from baoke.config import Settings
from baoke.journeys.catalog import load_catalog
from baoke.store import models as m

D = dt.date(2026, 11, 2)  # a Monday
NINE = local(D, 9)  # inside the sending hours
_keys = count(1)


class Outbox:
    """The world plus helpers to schedule touches and dispatch them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.engine = world.engine
        with world.engine.begin() as conn:
            conn.execute(text("UPDATE staff SET wecom_userid = 'wx_' || staff_no"))
            catalog = load_catalog(conn, world.settings)
        self.versions = {name: book.version for name, book in catalog.current.items()}

    def owner(self, **kw: Any) -> int:
        """An owner with consent on every channel and an e-mail, a WeCom friend of staff 1."""
        cid = self.world.owner(**kw)
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE customers SET email = :e WHERE id = :c"),
                {"e": f"owner{cid}@example.cn", "c": cid},
            )
        return cid

    def schedule(
        self,
        customer: int,
        channel: str = "sms",
        *,
        template: str = "maintenance_booking",
        playbook: str = "service_calendar",
        priority: str = "service",
        due: dt.datetime | None = None,
        proposed: dt.datetime | None = None,
        batch: str | None = None,
    ) -> int:
        """A touch the contact policy scheduled, with its outbox row; returns the touch id."""
        due = due or local(D, 8)
        key = f"t:{next(_keys)}"
        touch = self.world.insert(
            m.Touch,
            idempotency_key=key,
            customer_id=customer,
            dealer_id=1,
            channel=channel,
            channels=channel,
            template=template,
            playbook=playbook,
            version=self.versions[playbook],
            step="step",
            priority=priority,
            status="scheduled",
            scheduled_at=due,
            proposed_at=proposed or due,
            cost_fen=5,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(m.OutboxEntry.__table__).values(
                    touch_id=touch,
                    channel=channel,
                    due_at=due,
                    status="pending",
                    attempts=0,
                    batch=batch or f"{D}/{playbook}",
                )
            )
        return touch

    def settings(self, **changes: Any) -> Settings:
        """The world's settings with ``channels`` / ``dispatch`` tables replaced."""
        data = self.world.settings.model_dump()
        data.update(changes)
        return Settings(**data)

    def dispatch(
        self, settings: Settings | None = None, at: dt.datetime = NINE, **kw: Any
    ) -> DispatchResult:
        """One dispatch run until nothing is due, at business time ``at``."""
        chosen = settings or self.world.settings
        dispatcher = Dispatcher(
            chosen, self.engine, providers=Providers(chosen, self.engine), clock=lambda: at, **kw
        )
        try:
            return dispatcher.run()
        finally:
            dispatcher.close()

    def row(self, touch: int) -> dict[str, Any]:
        """The touch's outbox row and status."""
        frame = self.world.frame(
            "SELECT o.status, o.attempts, o.due_at, o.provider, o.send_ref, o.last_error, "
            "t.status AS touch_status, t.provider_message_id, t.sent_at FROM outbox o "
            "JOIN touches t ON t.id = o.touch_id WHERE o.touch_id = :t",
            t=touch,
        )
        row = frame.to_dicts()[0]
        for name in ("due_at", "sent_at"):
            value = row[name]
            if isinstance(value, str):  # SQLite's stored text
                value = dt.datetime.fromisoformat(value)
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            row[name] = value
        return row

    def history(self, touch: int) -> list[str]:
        """The touch's status history, in order."""
        frame = self.world.frame(
            "SELECT status FROM touch_status_history WHERE touch_id = :t ORDER BY id", t=touch
        )
        return [] if frame.is_empty() else frame["status"].to_list()


@pytest.fixture
def outbox(engine: Engine, tmp_path: Path) -> Iterator[Outbox]:
    """A dealer with staff on WeCom and no customers yet."""
    yield Outbox(World(engine, tmp_path / "data"))


def sandbox_lines(settings: Settings, channel: str) -> list[dict[str, Any]]:
    """What the sandbox provider wrote for one channel."""
    import json

    path = Path(settings.data_dir) / "sandbox" / f"{channel}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
