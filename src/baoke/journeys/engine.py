"""Advancing journeys: every due journey moves, in waves, until each one waits or ends.

A wave takes every active journey whose ``wake_at`` is before ``until``, groups them by
(playbook, version, step) and lets :mod:`baoke.journeys.steps` move each group at once. A
journey that did not have to wait (a send, a branch) is due again at the same moment and moves
on in the next wave; the playbook parser refuses loops without a wait, so the waves end.

The waves of an advance are written together, in one transaction (or one per few hundred
thousand decisions): the new journey states, their decisions and the candidate touches and
tasks are committed at once, each journey's state once however many steps it took. A killed
advance leaves the store as it was before it, and running it again decides the same. Touch
and task keys (``j<id>:<seq>``) are unique, so a second evaluation of the same journey state
cannot produce a second touch.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
from sqlalchemy import Connection, Engine

from baoke.ingest.store_io import (
    allocate_ids,
    bulk_insert,
    bulk_update,
    collect_small,
    fetch_by_keys,
    query_frame,
)
from baoke.journeys.catalog import Catalog
from baoke.journeys.steps import JOURNEY_SCHEMA, Moves, apply_step, unknown_step
from baoke.playbooks.definitions import SendStep, Step, TaskStep
from baoke.segments.rules import Condition, compile_condition
from baoke.store import models as m
from baoke.store.models import table

__all__ = [
    "AdvanceResult",
    "StoreLookups",
    "advance",
    "journey_schema",
    "load_journeys",
    "open_profiles",
    "persist",
    "profiles_of",
    "still_open",
]

JOURNEY_COLUMNS = ["id", *(c for c in JOURNEY_SCHEMA if c != "id")]
_STATE_COLUMNS = [
    "id",
    "status",
    "step",
    "step_since",
    "wake_at",
    "seq",
    "finished_at",
    "end_reason",
    "goal_met",
]
# A runaway guard only: the parser already refuses loops without a wait.
_MAX_WAVES = 1000
# An advance writes its waves together, up to this many decisions at a time (memory bound).
_FLUSH_DECISIONS = 400_000
_UNWRITTEN = 1 << 60
_DELIVERED = ("delivered", "opened", "clicked", "replied")
_NOT_DELIVERED = ("failed", "suppressed", "dropped", "cancelled", "expired")
_CONNECTED = ("connected", "booked", "refused")
_NOT_CONNECTED = ("not_connected", "wrong_number")


@dataclass
class AdvanceResult:
    """What one advance did."""

    waves: int = 0
    evaluations: int = 0
    touches: int = 0
    tasks: int = 0
    completed: int = 0
    seconds: float = 0.0
    by_action: dict[str, int] = field(default_factory=dict)

    def merge(self, other: AdvanceResult) -> None:
        """Add another advance's counts (a run advances in several steps)."""
        self.waves += other.waves
        self.evaluations += other.evaluations
        self.touches += other.touches
        self.tasks += other.tasks
        self.completed += other.completed
        self.seconds += other.seconds
        for action, n in other.by_action.items():
            self.by_action[action] = self.by_action.get(action, 0) + n


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def still_open() -> pl.Expr:
    """True for a journey that can still change: active, paused, or an unfinished holdout."""
    return pl.col("status").is_in(["active", "paused"]) | (
        (pl.col("status") == "holdout") & pl.col("finished_at").is_null()
    )


def journey_schema() -> dict[str, pl.DataType]:
    """The dtypes of :data:`JOURNEY_COLUMNS`, in that order."""
    return {name: JOURNEY_SCHEMA.get(name, pl.Int64()) for name in JOURNEY_COLUMNS}


def load_journeys(conn: Connection, where: str, params: list[object]) -> pl.DataFrame:
    """Journeys matching ``where`` (SQL over the ``journeys`` table, ``?`` placeholders)."""
    sql = f"SELECT {', '.join(JOURNEY_COLUMNS)} FROM journeys WHERE {where}"
    return query_frame(conn, sql, params, journey_schema())


def _due(conn: Connection, until: dt.datetime) -> pl.DataFrame:
    return load_journeys(conn, "status = 'active' AND wake_at < ?", [until])


# Per open snapshot, the customers each profile condition holds for. The snapshot is read for
# one run and no refresh happens while the run reads it, so a condition's answer stands until
# the run ends: the enrolment, the branches of every wave and the events all ask the same few
# conditions (lost, open complaint, an audience) of different customers.
_MATCHES: WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[Condition, pl.Series]] = (
    WeakKeyDictionary()
)


@contextmanager
def open_profiles(path: Path) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The analytical snapshot's profiles, read-only; None before the first profile refresh."""
    if not path.exists():
        yield None
        return
    db = duckdb.connect(str(path), read_only=True)
    try:
        db.execute("SET enable_progress_bar = false")
        with profiles_of(db) as profiles:
            yield profiles
    finally:
        db.close()


@contextmanager
def profiles_of(db: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """An open snapshot's profiles for one run (None before the first profile refresh).

    For a snapshot connection kept open across runs: what the conditions answered is
    forgotten when the run ends, as the next refresh changes the profiles.
    """
    found = db.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'profiles' "
        "AND database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    _MATCHES[db] = {}
    try:
        yield db if found[0][0] else None
    finally:
        _MATCHES.pop(db, None)


class StoreLookups:
    """Profile conditions from the snapshot, step outcomes from the store."""

    def __init__(
        self,
        conn: Connection,
        profiles: duckdb.DuckDBPyConnection | None,
        zone: ZoneInfo,
        pending: Moves | None = None,
    ) -> None:
        self.conn = conn
        self.profiles = profiles
        self.zone = zone
        # Touches and tasks made by this advance and not written yet: outcomes look at them
        # too, so an advance may write several waves at once and still decide the same.
        self.pending = pending or Moves()

    def holds(self, cond: Condition, customer_ids: pl.Series) -> pl.Series:
        """Ids whose latest profile satisfies ``cond`` (none before the first refresh)."""
        if self.profiles is None or customer_ids.len() == 0:
            return pl.Series("customer_id", [], dtype=pl.Int64)
        known = _MATCHES.get(self.profiles)
        if known is None:  # a snapshot not opened by open_profiles: ask for these ids only
            return self._ask(cond, customer_ids.unique())
        if cond not in known:
            # One scan of the whole table costs what a semi-join on a few ids does.
            known[cond] = self._ask(cond, None)
        ids = customer_ids.unique().cast(pl.Int64).rename("customer_id")
        return ids.filter(ids.is_in(known[cond].implode()))

    def _ask(self, cond: Condition, customer_ids: pl.Series | None) -> pl.Series:
        """The customers (among ``customer_ids``, or all) whose profile satisfies ``cond``."""
        assert self.profiles is not None
        # Relative dates refer to the profile's own as_of date: the data and the "today" it
        # was computed for stay together.
        where = compile_condition(cond, "duckdb", None, tz=str(self.zone))
        if customer_ids is None:
            everyone: pl.DataFrame = self.profiles.sql(
                f"SELECT customer_id FROM profiles p WHERE {where}"
            ).pl()
            return everyone["customer_id"].cast(pl.Int64)
        wanted = pl.DataFrame({"customer_id": customer_ids})
        self.profiles.register("_wanted", wanted.to_arrow())
        try:
            found: pl.DataFrame = self.profiles.sql(
                "SELECT p.customer_id FROM profiles p SEMI JOIN _wanted w "
                f"ON p.customer_id = w.customer_id WHERE {where}"
            ).pl()
        finally:
            self.profiles.unregister("_wanted")
        return found["customer_id"].cast(pl.Int64)

    def outcomes(self, journeys: pl.DataFrame, source: Step) -> pl.DataFrame:
        """Outcome labels of each journey's latest ``source`` touch or task (see steps)."""
        if isinstance(source, SendStep):
            return self._touch_outcomes(journeys, source.id)
        assert isinstance(source, TaskStep)
        return self._task_outcomes(journeys, source.id)

    def _of_journeys(
        self, record: type[m.Base], journeys: pl.DataFrame, step: str, columns: list[str]
    ) -> pl.DataFrame:
        """The rows ``step`` made for these journeys (chunked lookups: any number of ids)."""
        keys = journeys.select(pl.col("id").alias("journey_id"))
        rows = fetch_by_keys(
            self.conn, table(record), ["journey_id"], keys, ["id", "step", *columns]
        )
        unwritten = self.pending.touches if record is m.Touch else self.pending.tasks
        if unwritten:
            fresh = pl.concat(unwritten, how="diagonal_relaxed").join(keys, on="journey_id")
            # Not written yet, so no id: numbered after every stored row, in order of making.
            fresh = fresh.with_columns(
                (pl.int_range(pl.len(), dtype=pl.Int64) + _UNWRITTEN).alias("id"),
                *(pl.lit(None, rows.schema[c]).alias(c) for c in columns if c not in fresh.columns),
            ).select(rows.columns)
            rows = pl.concat([rows, fresh.cast(rows.schema)])
        return collect_small(rows.lazy().filter(pl.col("step") == step).drop("step"))

    def _touch_outcomes(self, journeys: pl.DataFrame, step: str) -> pl.DataFrame:
        touches = self._of_journeys(
            m.Touch, journeys, step, ["customer_id", "status", "scheduled_at"]
        )
        latest = collect_small(touches.lazy().sort("id").group_by("journey_id").last())
        replies = self._replies(latest["customer_id"])
        # One lazy chain: on a few hundred rows each eager step's fixed cost would dominate.
        at = journeys.lazy().select(pl.col("id").alias("journey_id"), pl.col("wake_at").alias("at"))
        answered = (
            latest.lazy()
            .join(at, on="journey_id")
            .join(replies.lazy(), on="customer_id", how="left")
            .with_columns(
                (
                    pl.col("replied_at").is_not_null()
                    & (pl.col("replied_at") >= pl.col("scheduled_at"))
                    & (pl.col("replied_at") <= pl.col("at"))
                ).alias("reply")
            )
            .group_by("journey_id")
            .agg(pl.col("status").first(), pl.col("reply").any())
        )
        status = pl.col("status")
        reply = pl.col("reply") | status.is_in(["replied", "clicked"])
        labelled = answered.select(
            "journey_id",
            pl.concat_list(
                pl.when(status.is_in(_DELIVERED) | reply).then(pl.lit("delivered")),
                pl.when(status.is_in(_NOT_DELIVERED)).then(pl.lit("not_delivered")),
                pl.when(reply).then(pl.lit("answered")),
            )
            .list.drop_nulls()
            .alias("labels"),
            # A reply settles it; a failure too (nothing more will come of that touch).
            (reply | status.is_in(_NOT_DELIVERED)).alias("final"),
        )
        return collect_small(labelled)

    def _replies(self, customers: pl.Series) -> pl.DataFrame:
        found = fetch_by_keys(
            self.conn,
            table(m.Event),
            ["customer_id"],
            pl.DataFrame({"customer_id": customers}),
            ["type", "occurred_at"],
            # Only the replies cross over: the customers' other events are most of their rows.
            where="type = 'reply_keyword'",
        )
        return collect_small(
            found.lazy()
            .filter(pl.col("type") == "reply_keyword")
            .select("customer_id", pl.col("occurred_at").alias("replied_at"))
        )

    def _task_outcomes(self, journeys: pl.DataFrame, step: str) -> pl.DataFrame:
        tasks = self._of_journeys(m.Task, journeys, step, ["outcome"])
        latest = tasks.lazy().sort("id").group_by("journey_id").last()
        outcome = pl.col("outcome")
        labelled = latest.select(
            "journey_id",
            pl.concat_list(
                pl.when(outcome.is_in(_CONNECTED)).then(pl.lit("connected")),
                pl.when(outcome.is_in(_CONNECTED)).then(pl.lit("answered")),
                pl.when(outcome.is_in(_NOT_CONNECTED)).then(pl.lit("not_connected")),
                pl.when(outcome.is_in(_NOT_CONNECTED)).then(pl.lit("not_answered")),
            )
            .list.drop_nulls()
            .alias("labels"),
            outcome.is_not_null().alias("final"),
        )
        return collect_small(labelled)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _frames(parts: list[pl.DataFrame]) -> pl.DataFrame | None:
    parts = [p for p in parts if p.height]
    return pl.concat(parts, how="diagonal_relaxed") if parts else None


def persist(conn: Connection, moves: Moves) -> None:
    """Write moves: candidate touches and tasks, the decisions (linked to them), and the
    journeys' new states (one row per journey)."""
    journeys = _frames(moves.journeys)
    decisions = _frames(moves.decisions)
    if journeys is None:
        return
    links: list[pl.DataFrame] = []
    for model, parts, column in (
        (m.Touch, moves.touches, "touch_id"),
        (m.Task, moves.tasks, "task_id"),
    ):
        frame = _frames(parts)
        if frame is None:
            continue
        seq = pl.col("idempotency_key").str.split(":").list.get(1).cast(pl.Int64)
        # In (journey, seq) order: the indexes fill page by page rather than at random, and
        # ids follow each journey's order of making.
        frame = frame.sort(pl.col("journey_id"), seq)
        frame = frame.with_columns(allocate_ids(conn, table(model), frame.height).alias("id"))
        bulk_insert(conn, table(model), frame)
        links.append(frame.select("journey_id", seq.alias("seq"), pl.col("id").alias(column)))
    if decisions is not None:
        for link in links:
            decisions = decisions.join(link, on=["journey_id", "seq"], how="left")
        for column in ("touch_id", "task_id"):
            if column not in decisions.columns:
                decisions = decisions.with_columns(pl.lit(None, pl.Int64).alias(column))
        decisions = decisions.sort("journey_id", "seq").with_columns(
            allocate_ids(conn, table(m.JourneyDecision), decisions.height).alias("id")
        )
        bulk_insert(conn, table(m.JourneyDecision), decisions)
    bulk_update(conn, table(m.Journey), journeys.select(_STATE_COLUMNS).sort("id"))


# --------------------------------------------------------------------------------------------
# Advancing
# --------------------------------------------------------------------------------------------


def _wave(due: pl.DataFrame, catalog: Catalog, lookups: StoreLookups, zone: ZoneInfo) -> Moves:
    moves = Moves()
    for (name, version, step_id), group in due.group_by(
        ["playbook", "version", "step"], maintain_order=True
    ):
        book = catalog.get(str(name), str(version))
        try:
            step = book.step(str(step_id))
        except KeyError:
            moves.add(unknown_step(group, str(step_id)))
            continue
        moves.add(apply_step(book, step, group, lookups, zone))
    return moves


def advance(
    engine: Engine,
    catalog: Catalog,
    until: dt.datetime,
    zone: ZoneInfo,
    profiles: duckdb.DuckDBPyConnection | None,
    *,
    progress: Callable[[int, int], None] | None = None,
    customers: pl.Series | None = None,
) -> AdvanceResult:
    """Move every active journey due before ``until`` until it waits or ends; with
    ``customers``, only the journeys of those customers.

    Waves are computed in memory and written together (one transaction, or one per
    ``_FLUSH_DECISIONS`` decisions): each journey's state is written once however many steps it
    took, and a crash leaves the store as it was before the batch, to be advanced again.
    """
    result = AdvanceResult()
    started = time.perf_counter()
    with engine.connect() as conn:
        due = _due(conn, until)
    if customers is not None:
        due = due.filter(pl.col("customer_id").is_in(customers.implode()))
    batch = Moves()
    while due.height:
        if result.waves >= _MAX_WAVES:
            raise RuntimeError("journeys did not settle: a playbook loops without waiting")
        with engine.connect() as conn:
            moves = _wave(due, catalog, StoreLookups(conn, profiles, zone, batch), zone)
        states = _frames(moves.journeys)
        states = states if states is not None else pl.DataFrame(schema=JOURNEY_SCHEMA)
        _count(result, due, states, moves)
        batch.add(moves)
        if progress is not None:
            progress(result.waves, due.height)
        due = states.filter((pl.col("status") == "active") & (pl.col("wake_at") < until))
        if due.height == 0 or sum(d.height for d in batch.decisions) >= _FLUSH_DECISIONS:
            with engine.begin() as conn:
                persist(conn, _last_states(batch))
            batch = Moves()
    result.seconds = time.perf_counter() - started
    return result


def _last_states(batch: Moves) -> Moves:
    """The batch with one row per journey: its last state (waves are in order)."""
    states = _frames(batch.journeys)
    if states is None:
        return batch
    final = states.unique("id", keep="last", maintain_order=True)
    return Moves([final], batch.decisions, batch.touches, batch.tasks)


def _count(result: AdvanceResult, due: pl.DataFrame, states: pl.DataFrame, moves: Moves) -> None:
    result.waves += 1
    result.evaluations += due.height
    result.touches += sum(t.height for t in moves.touches)
    result.tasks += sum(t.height for t in moves.tasks)
    result.completed += states.filter(pl.col("status") != "active").height
    for part in moves.decisions:
        for action, n in part["action"].value_counts().iter_rows():
            result.by_action[action] = result.by_action.get(action, 0) + n
