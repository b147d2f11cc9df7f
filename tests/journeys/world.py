"""A small dealer world on a fake clock, for walking playbooks through their timelines.

Records go in with SQLAlchemy Core (as an import would leave them), days pass with the real
daily run (``run_day`` with profiles refreshed), and events arrive through the real event file
path (``ingest_events`` at the event's moment). Nothing of the engine is replaced.
"""

from __future__ import annotations

import datetime as dt
import json
from itertools import count
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, insert, select

from baoke.config import Settings
from baoke.journeys.run import RunResult, ingest_events, run_day
from baoke.store import models as m

ZONE = Settings().zone


def local(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A business-time moment, in UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), ZONE).astimezone(dt.UTC)


class World:
    """One dealer, its staff, and whatever customers a test adds."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self.settings = Settings(
            data_dir=data_dir, database_url=engine.url.render_as_string(hide_password=False)
        )
        self._ids = count(1)
        self._files = count(1)
        with engine.begin() as conn:
            conn.execute(
                insert(m.Dealer.__table__).values(
                    id=1, code="D001", name="杭州西湖店", brand="星途", phone="0571-88886666"
                )
            )
            conn.execute(
                insert(m.Staff.__table__),
                [
                    {"id": 1, "staff_no": "S1", "dealer_id": 1, "name": "王磊", "role": "advisor"},
                    {
                        "id": 2,
                        "staff_no": "S2",
                        "dealer_id": 1,
                        "name": "李强",
                        "role": "service_manager",
                    },
                ],
            )

    def _id(self) -> int:
        return next(self._ids)

    def insert(self, record: type[m.Base], /, **values: Any) -> int:
        """Insert one record; returns its id."""
        values.setdefault("id", self._id())
        with self.engine.begin() as conn:
            conn.execute(insert(record.__table__).values(**values))
        return int(values["id"])

    def owner(
        self,
        name: str = "张伟",
        title: str = "先生",
        delivered: dt.date = dt.date(2024, 5, 10),
        visits: tuple[tuple[dt.date, int], ...] = (),
        birthday: dt.date | None = None,
        wecom: bool = True,
        series: str = "远峰",
        customer_id: int | None = None,
    ) -> int:
        """A car owner with consents on every channel, service visits (day, yuan).

        ``customer_id`` picks the id (say, one that falls into a playbook's holdout); it must
        not collide with the world's own ids, which count up from 1.
        """
        cid = customer_id if customer_id is not None else self._id()
        self.insert(
            m.Customer,
            id=cid,
            mobile=f"+86138{cid:08d}",
            name=name,
            title=title,
            home_dealer_id=1,
            birthday=birthday,
        )
        vid = self.insert(
            m.Vehicle,
            vin=f"LVVDB11B{cid:09d}"[:17],
            customer_id=cid,
            dealer_id=1,
            brand="星途",
            series=series,
            model=f"{series} 2.0T",
            purchase_date=delivered,
            delivery_date=delivered,
        )
        for day, yuan in visits:
            self.visit(cid, vid, day, yuan)
        for channel in ("sms", "wecom", "push", "email", "phone"):
            self.insert(
                m.Consent,
                customer_id=cid,
                channel=channel,
                purpose="marketing",
                granted=True,
                basis="written",
                granted_at=local(delivered),
            )
        if wecom:
            self.insert(
                m.WecomRelation,
                customer_id=cid,
                staff_id=1,
                external_userid=f"wm{cid}",
                added_at=local(delivered, 12),
            )
        return cid

    def vehicle_of(self, customer: int) -> int:
        """The customer's (first) vehicle id."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(m.Vehicle.id).where(m.Vehicle.customer_id == customer)
                ).scalar_one()
            )

    def visit(self, customer: int, vehicle: int, day: dt.date, yuan: int = 600) -> int:
        """A settled maintenance order."""
        oid = self._id()
        return self.insert(
            m.ServiceOrder,
            id=oid,
            order_no=f"WO{oid}",
            dealer_id=1,
            vehicle_id=vehicle,
            customer_id=customer,
            advisor_id=1,
            order_type="maintenance",
            settled_on=day,
            amount_fen=yuan * 100,
            mileage_km=10_000,
        )

    # ---- time ------------------------------------------------------------------------------

    def run(self, day: dt.date, *, until: dt.datetime | None = None) -> RunResult:
        """The daily run for ``day`` (profiles refreshed), up to its end."""
        return run_day(self.settings, self.engine, day, until=until)

    def run_days(self, first: dt.date, last: dt.date) -> None:
        """Every daily run from ``first`` to ``last``."""
        day = first
        while day <= last:
            self.run(day)
            day += dt.timedelta(days=1)

    def event(self, kind: str, customer: int | None, at: dt.datetime, **attributes: Any) -> None:
        """An event arriving at ``at`` through an event file, processed at once."""
        row: dict[str, Any] = {"type": kind, "occurred_at": at.isoformat(), **attributes}
        if customer is not None:
            row["customer_id"] = customer
        path = self.data_dir / f"events{next(self._files)}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        ingest_events(self.settings, self.engine, path, until=at)

    # ---- what happened -----------------------------------------------------------------------

    def frame(self, sql: str, **params: Any) -> pl.DataFrame:
        """A query's rows as a frame (ordered as the query says)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            result = conn.execute(text(sql), params)
            rows = [dict(r._mapping) for r in result]
        return pl.DataFrame(rows, infer_schema_length=None)

    def counts(self) -> tuple[int, ...]:
        """Rows of touches, tasks, journeys and decisions in the whole store (for reruns)."""
        with self.engine.connect() as conn:
            return tuple(
                len(conn.execute(select(model.id)).all())
                for model in (m.Touch, m.Task, m.Journey, m.JourneyDecision)
            )

    def touches(self, customer: int, playbook: str) -> list[tuple[str, str, dt.datetime]]:
        """(step, channels, proposed_at local) of the customer's touches, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m.Touch.step, m.Touch.channels, m.Touch.proposed_at)
                .where(m.Touch.customer_id == customer, m.Touch.playbook == playbook)
                .order_by(m.Touch.id)
            ).all()
        return [(s, c, _local(at)) for s, c, at in rows]

    def tasks(self, customer: int, playbook: str) -> list[tuple[str, str, dt.datetime, int]]:
        """(step, role, due_at local, id) of the customer's tasks, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m.Task.step, m.Task.role, m.Task.due_at, m.Task.id)
                .where(m.Task.customer_id == customer, m.Task.playbook == playbook)
                .order_by(m.Task.id)
            ).all()
        return [(s, r, _local(due), i) for s, r, due, i in rows]

    def journeys(self, customer: int, playbook: str) -> list[dict[str, Any]]:
        """The customer's journeys on ``playbook``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m.Journey.__table__)
                .where(m.Journey.customer_id == customer, m.Journey.playbook == playbook)
                .order_by(m.Journey.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def decisions(self, journey: int) -> list[tuple[str, str | None, str]]:
        """(action, step, reason) of a journey's decisions, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m.JourneyDecision.action, m.JourneyDecision.step, m.JourneyDecision.reason)
                .where(m.JourneyDecision.journey_id == journey)
                .order_by(m.JourneyDecision.seq)
            ).all()
        return [(a, s, r) for a, s, r in rows]


def _local(value: dt.datetime) -> dt.datetime:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(ZONE).replace(tzinfo=None)
