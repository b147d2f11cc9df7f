"""The daily run and the event path: profiles, events, enrolment, advance — in that order.

``run_day`` is what ``baoke run --date D`` does:

1. refresh the profiles for D (optional: the benchmark skips it);
2. turn records imported since the last run into events (deliveries, visits, complaints,
   lost leads, referral stages, points, WeCom adds and deletions, withdrawn consents);
3. apply the events that happened before D, and move every journey due before D's start
   (nothing, on a normal day; the catch-up after a missed one);
4. apply D's events in their order: the journeys of the customers they concern first reach
   the earliest event, then the events update touches, tasks and consents, meet goals, exit
   or pause journeys, and enrol;
5. the daily checks (lost customers, segment leavers, closed complaints);
6. enrol from segment entries, record dates and festivals of D;
7. advance every journey due before the end of D (or now, for today);
8. the contact policy plans D: every open candidate is scheduled (into the outbox), moved,
   rerouted or dropped, each with its reason (:mod:`baoke.policy`).

``ingest_events`` is the fast path for events that cannot wait for tomorrow (a TD reply, a
call logged not connected, a complaint): steps 4, 7 and 8 at once, up to now.

Each step commits on its own, and everything it writes is keyed, so a run killed anywhere can
simply be run again: what was done is not done twice, and what was not is done.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
from sqlalchemy import Connection, Engine, insert, update

from baoke.config import Settings
from baoke.ingest.store_io import query_frame
from baoke.journeys.catalog import Catalog, load_catalog
from baoke.journeys.effects import apply_events, concerned_customers, daily_checks
from baoke.journeys.engine import (
    AdvanceResult,
    StoreLookups,
    advance,
    open_profiles,
    profiles_of,
)
from baoke.journeys.enrol import EnrolResult, enrol, enrol_time
from baoke.journeys.event_files import derive_record_events, read_event_file, store_events
from baoke.journeys.steps import UTC
from baoke.journeys.triggers import (
    date_candidates,
    event_candidates,
    festival_candidates,
    segment_candidates,
)
from baoke.policy.plan import plan_day
from baoke.profiles.engine import refresh_profiles, snapshot_path
from baoke.profiles.snapshot import Snapshot
from baoke.store import models as m
from baoke.store.models import table

__all__ = [
    "EventsResult",
    "RunResult",
    "ingest_events",
    "process_events",
    "react",
    "run_day",
]

_INSTANT = dt.timedelta(microseconds=1)

# Records dated D (deliveries, settled orders, lost leads) happen at D 00:00, the very end of
# the window of the run before D's; they are imported during D or later. Every run looks this
# far back, so a record imported by the end of the day after its date still becomes an event
# (whenever the runs happen). Events are keyed: what was derived before is not derived again.
_LATE_RECORDS = dt.timedelta(days=2)

_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "event_key": pl.String(),
    "type": pl.String(),
    "customer_id": pl.Int64(),
    "occurred_at": UTC,
    "attributes": pl.String(),
}


@dataclass
class EventsResult:
    """What one batch of events did."""

    processed: int = 0
    effects: dict[str, int] = field(default_factory=dict)
    enrolment: EnrolResult = field(default_factory=EnrolResult)

    def add(self, other: EventsResult) -> None:
        """Add another batch's counts."""
        self.processed += other.processed
        for key, n in other.effects.items():
            self.effects[key] = self.effects.get(key, 0) + n
        self.enrolment.merge(other.enrolment)


@dataclass
class RunResult:
    """What a daily run did, phase by phase, with timings in seconds."""

    day: dt.date
    until: dt.datetime
    profiles_refreshed: bool = False
    events_derived: int = 0
    events: EventsResult = field(default_factory=EventsResult)
    checks: dict[str, int] = field(default_factory=dict)
    enrolment: EnrolResult = field(default_factory=EnrolResult)
    advance: AdvanceResult = field(default_factory=AdvanceResult)
    plan: dict[str, Any] = field(default_factory=dict)  # PlanResult.as_dict()
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["day"] = self.day.isoformat()
        data["until"] = self.until.isoformat()
        return data


class _Laps:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.start, 3)
        self.start = now


def day_end(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The first moment after ``day`` (local), in UTC."""
    return enrol_time(day + dt.timedelta(days=1), zone)


def _until(day: dt.date, zone: ZoneInfo, until: dt.datetime | None) -> dt.datetime:
    if until is not None:
        return until.astimezone(dt.UTC)
    # Today only up to now: a deadline later today must not be judged before it passes.
    return min(day_end(day, zone), dt.datetime.now(dt.UTC))


# --------------------------------------------------------------------------------------------
# Run log
# --------------------------------------------------------------------------------------------


def _start_run(engine: Engine, kind: str, day: dt.date | None, until: dt.datetime) -> int:
    runs = table(m.JourneyRun)
    with engine.begin() as conn:
        row = conn.execute(
            insert(runs)
            .values(
                kind=kind,
                run_date=day,
                until=until,
                status="running",
                started_at=dt.datetime.now(dt.UTC),
            )
            .returning(runs.c.id)
        ).one()
    return int(row[0])


def _finish_run(engine: Engine, run_id: int, counts: dict[str, Any], error: str | None) -> None:
    runs = table(m.JourneyRun)
    with engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(
                status="failed" if error else "done",
                finished_at=dt.datetime.now(dt.UTC),
                counts=counts,
                error=error,
            )
        )


def _last_until(conn: Connection) -> dt.datetime | None:
    found = query_frame(
        conn,
        "SELECT max(until) AS until FROM journey_runs WHERE kind = 'daily' AND status = 'done'",
        [],
        {"until": UTC},
    )
    value = found["until"][0] if found.height else None
    return value if isinstance(value, dt.datetime) else None


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def _pending(conn: Connection, until: dt.datetime) -> pl.DataFrame:
    return query_frame(
        conn,
        "SELECT id, event_key, type, customer_id, occurred_at, attributes FROM events "
        "WHERE processed_at IS NULL AND occurred_at < ? ORDER BY occurred_at, id",
        [until],
        _EVENT_SCHEMA,
    )


def _mark_processed(conn: Connection, ids: pl.Series) -> None:
    events = table(m.Event)
    now = dt.datetime.now(dt.UTC)
    for start in range(0, ids.len(), 5000):
        chunk = ids.slice(start, 5000).to_list()
        conn.execute(update(events).where(events.c.id.in_(chunk)).values(processed_at=now))


def process_events(
    engine: Engine,
    catalog: Catalog,
    profiles: duckdb.DuckDBPyConnection | None,
    until: dt.datetime,
    zone: ZoneInfo,
    moved: AdvanceResult | None = None,
) -> EventsResult:
    """Process every stored event not processed yet that happened before ``until``.

    The advances it makes on the way are added to ``moved`` when given.
    """
    result = EventsResult()
    moved = moved if moved is not None else AdvanceResult()
    with engine.connect() as conn:
        pending = _pending(conn, until)
    if pending.height == 0:
        return result
    # Journeys first reach the moment of the earliest event, so that (say) a fallback whose
    # deadline passed before the call outcome arrived has already moved on. Only those the
    # events concern: everyone else's move on later to the same decisions.
    first = pending["occurred_at"].min()
    assert isinstance(first, dt.datetime)
    with engine.connect() as conn:
        concerned = concerned_customers(conn, pending)
    moved.merge(advance(engine, catalog, first, zone, profiles, customers=concerned))
    with engine.begin() as conn:
        effects = apply_events(conn, catalog, pending, zone)
        candidates = event_candidates(profiles, catalog, pending)
        result.enrolment, later = enrol(
            conn, catalog, candidates, StoreLookups(conn, profiles, zone)
        )
        _mark_processed(conn, pending["id"])
    _enrol_later(engine, catalog, profiles, later, zone, result.enrolment, moved)
    result.processed = pending.height
    result.effects = effects.counts
    return result


def _enrol_later(
    engine: Engine,
    catalog: Catalog,
    profiles: duckdb.DuckDBPyConnection | None,
    later: pl.DataFrame,
    zone: ZoneInfo,
    result: EnrolResult,
    moved: AdvanceResult,
) -> None:
    """Enrol deferred occurrences (a customer's second of a batch) pass by pass.

    Each pass first lets the journeys move up to the moment of the occurrences it decides, so
    a journey begun by an earlier occurrence has ended (or not) when the later one is judged
    against it. Every pass takes at least the earliest remaining occurrence per customer and
    playbook, so the passes end.
    """
    while later.height:
        moment = later["at"].max()
        assert isinstance(moment, dt.datetime)
        # The occurrences judge their own customers' journeys only.
        customers = later["customer_id"].unique()
        moved.merge(
            advance(engine, catalog, moment + _INSTANT, zone, profiles, customers=customers)
        )
        with engine.begin() as conn:
            done, later = enrol(conn, catalog, later, StoreLookups(conn, profiles, zone))
        result.merge(done)


def _derive_events(engine: Engine, since: dt.datetime, until: dt.datetime, zone: ZoneInfo) -> int:
    with engine.begin() as conn:
        derived = derive_record_events(conn, since, until, zone=zone)
        derived = pl.concat(
            [derived, _withdrawn_consents(conn, since, until)], how="diagonal_relaxed"
        )
        return store_events(conn, derived)


def _withdrawn_consents(conn: Connection, since: dt.datetime, until: dt.datetime) -> pl.DataFrame:
    """Consents withdrawn through an import (not through an event) become unsubscribe events."""
    rows = query_frame(
        conn,
        "SELECT id, customer_id, channel, withdrawn_at FROM consents "
        "WHERE granted = ? AND withdrawn_at > ? AND withdrawn_at <= ? "
        "AND (source IS NULL OR source NOT IN ('reply_keyword', 'unsubscribe'))",
        [False, since, until],
        {"id": pl.Int64(), "customer_id": pl.Int64(), "channel": pl.String(), "withdrawn_at": UTC},
    )
    return rows.select(
        pl.format("rec:unsubscribe:{}", "id").alias("event_key"),
        pl.lit("unsubscribe").alias("type"),
        "customer_id",
        pl.col("withdrawn_at").alias("occurred_at"),
        pl.struct("channel").struct.json_encode().alias("attributes"),
        pl.lit("records").alias("source"),
    )


# --------------------------------------------------------------------------------------------
# The daily run
# --------------------------------------------------------------------------------------------


def _daily_enrolment(
    engine: Engine,
    catalog: Catalog,
    profiles: duckdb.DuckDBPyConnection | None,
    day: dt.date,
    zone: ZoneInfo,
    moved: AdvanceResult,
) -> EnrolResult:
    with engine.begin() as conn:
        candidates = pl.concat(
            [
                segment_candidates(conn, catalog, day, zone),
                date_candidates(profiles, catalog, day, zone),
                festival_candidates(profiles, catalog, day, zone),
            ],
            how="vertical_relaxed",
        )
        result, later = enrol(conn, catalog, candidates, StoreLookups(conn, profiles, zone))
    _enrol_later(engine, catalog, profiles, later, zone, result, moved)
    return result


def _profiles(
    settings: Settings, snapshot: Snapshot | None
) -> AbstractContextManager[duckdb.DuckDBPyConnection | None]:
    return open_profiles(snapshot_path(settings)) if snapshot is None else profiles_of(snapshot.db)


def run_day(
    settings: Settings,
    engine: Engine,
    day: dt.date,
    *,
    refresh: bool = True,
    until: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
    snapshot: Snapshot | None = None,
) -> RunResult:
    """Run the journeys for ``day`` (see the module doc); one error line on failure.

    ``snapshot``: the settings' analytical snapshot, already open, for a process that runs
    day after day (the simulation); it is refreshed and read in place and left open.
    Without it the run opens the snapshot for the refresh and again, read-only, to read it.
    """
    zone = settings.zone
    end = _until(day, zone, until)
    result = RunResult(day=day, until=end)
    laps = _Laps(result.timings)
    run_id = _start_run(engine, "daily", day, end)
    note = progress or (lambda _phase: None)
    try:
        if refresh:
            note("profiles")
            refresh_profiles(settings, engine, day, snapshot=snapshot)
            result.profiles_refreshed = True
            laps.lap("profiles")
        with engine.begin() as conn:
            catalog = load_catalog(conn, settings)
            last = _last_until(conn)
            since = last or enrol_time(day, zone)
        # The daily checks look at what changed since the last run (today, normally).
        changed_since = min(day, last.astimezone(zone).date()) if last else day
        note("events")
        result.events_derived = _derive_events(engine, since - _LATE_RECORDS, end, zone)
        start = enrol_time(day, zone)
        moved = result.advance
        with _profiles(settings, snapshot) as profiles:
            # What happened before the day (late records, events of the night) and every wait
            # that ran out before it come first: the day starts from that state, so a rerun
            # of the day decides exactly as the first run did.
            result.events = process_events(engine, catalog, profiles, start, zone, moved)
            moved.merge(advance(engine, catalog, start, zone, profiles))
            # The day's events, in their order (a resolution at 09:00 resumes at 09:00).
            result.events.add(process_events(engine, catalog, profiles, end, zone, moved))
            laps.lap("events")
            note("enrolment")
            with engine.begin() as conn:
                result.checks = daily_checks(conn, catalog, start, changed_since).counts
            result.enrolment = _daily_enrolment(engine, catalog, profiles, day, zone, moved)
            laps.lap("enrolment")
            note("advance")
            moved.merge(advance(engine, catalog, end, zone, profiles))
            laps.lap("advance")
        note("policy")
        # A run for today plans from now on: nothing is scheduled into the past.
        planned, _ = plan_day(
            settings,
            engine,
            day,
            not_before=end if end < day_end(day, zone) else None,
            catalog=catalog,
        )
        result.plan = planned.as_dict()
        laps.lap("policy")
    except BaseException as exc:
        _finish_run(engine, run_id, {}, f"{type(exc).__name__}: {exc}")
        raise
    _finish_run(engine, run_id, _counts(result), None)
    return result


def _counts(result: RunResult) -> dict[str, Any]:
    data = result.as_dict()
    keys = ("events_derived", "events", "checks", "enrolment", "advance", "plan")
    return {k: data[k] for k in keys}


def react(
    settings: Settings, engine: Engine, events: pl.DataFrame, *, until: dt.datetime | None = None
) -> tuple[int, EventsResult, AdvanceResult]:
    """Store checked events and let the journeys react up to ``until`` (default now).

    Returns (events newly stored, what the pending events did, the advance).
    """
    zone = settings.zone
    # Everything up to and including this moment: an event at exactly ``until`` counts.
    now = (until or dt.datetime.now(dt.UTC)).astimezone(dt.UTC) + dt.timedelta(microseconds=1)
    with engine.begin() as conn:
        stored = store_events(conn, events)
        catalog = load_catalog(conn, settings)
    run_id = _start_run(engine, "events", None, now)
    try:
        moved = AdvanceResult()
        with open_profiles(snapshot_path(settings)) as profiles:
            done = process_events(engine, catalog, profiles, now, zone, moved)
            moved.merge(advance(engine, catalog, now, zone, profiles))
        # What the events proposed (a fallback SMS) is planned at once, from now on.
        planned, _ = plan_day(
            settings, engine, now.astimezone(zone).date(), not_before=now, catalog=catalog
        )
    except BaseException as exc:
        _finish_run(engine, run_id, {}, f"{type(exc).__name__}: {exc}")
        raise
    counts = {"stored": stored, "events": asdict(done), "plan": planned.as_dict()}
    _finish_run(engine, run_id, counts, None)
    return stored, done, moved


def ingest_events(
    settings: Settings, engine: Engine, path: Path, *, until: dt.datetime | None = None
) -> tuple[int, int, Path | None, EventsResult, AdvanceResult]:
    """Read an event file, store its events and react now.

    Returns (rows read, events stored, quarantine file, what the events did, the advance).
    """
    with engine.connect() as conn:
        batch = read_event_file(path, conn, zone=settings.zone)
    stored, done, moved = react(settings, engine, batch.events, until=until)
    return batch.rows_read, stored, batch.quarantine_file, done, moved
