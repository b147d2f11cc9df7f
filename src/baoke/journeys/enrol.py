"""Enrolment: turning trigger occurrences into journeys, by the playbooks' entry rules.

Candidates come from :mod:`baoke.journeys.triggers` as a frame (playbook, trigger,
trigger_ref, customer_id, at, reason). They pass, set-based and in this order: the playbook is
enabled; one occurrence per customer and playbook in the batch (the earliest); the occurrence
was not enrolled before (``enrolment_key``); the customer exists and is in the dealer scope;
the audience condition; no open journey of the same playbook; re-entry and cool-down. What
remains becomes a journey, or, for the holdout share, a holdout record that receives nothing
but whose goals are still recorded, so the playbook's effect can be measured.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from sqlalchemy import Connection

from baoke.ingest.store_io import allocate_ids, bulk_insert, fetch_by_keys
from baoke.journeys.catalog import Catalog
from baoke.journeys.engine import StoreLookups, still_open
from baoke.journeys.steps import UTC, Moves, offset
from baoke.playbooks.definitions import Duration, Playbook
from baoke.profiles.schema import Kind
from baoke.segments.rules import Field
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["CANDIDATE_SCHEMA", "EnrolResult", "enrol", "stable_share"]

CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "playbook": pl.String(),
    "trigger": pl.String(),
    "trigger_ref": pl.String(),
    "customer_id": pl.Int64(),
    "at": UTC,
    "reason": pl.String(),
}
"""Columns of an enrolment candidate frame."""

_LOST = Field("lifecycle_stage", Kind.TEXT, "=", "lost")
_OPEN_COMPLAINT = Field("open_complaint", Kind.BOOL, "=", True)
# A holdout customer is watched this long for the goal when the playbook sets no goal window.
_HOLDOUT_WINDOW = Duration(90, "d")


@dataclass
class EnrolResult:
    """Counts of one enrolment batch; ``skipped`` by reason."""

    candidates: int = 0
    enrolled: int = 0
    holdout: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_playbook: dict[str, int] = field(default_factory=dict)

    def merge(self, other: EnrolResult) -> None:
        """Add another batch's counts (a later pass over deferred occurrences)."""
        self.enrolled += other.enrolled
        self.holdout += other.holdout
        for reason, n in other.skipped.items():
            self.skip(reason, n)
        for name, n in other.by_playbook.items():
            self.by_playbook[name] = self.by_playbook.get(name, 0) + n

    def skip(self, reason: str, n: int) -> None:
        """Count ``n`` candidates left out for ``reason``."""
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n


def stable_share(customer_ids: pl.Series, salt: str) -> pl.Series:
    """A number in [0, 1) per customer, fixed for (customer, salt), spread evenly.

    SplitMix64 over the id mixed with a CRC of the salt: the same customer lands on the same
    side of a holdout line on every run and every machine, and different playbooks (salts)
    draw independent lines, so one customer is not held out of everything.
    """
    with np.errstate(over="ignore"):
        x = customer_ids.to_numpy().astype(np.uint64) ^ np.uint64(zlib.crc32(salt.encode()))
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return pl.Series("share", (x >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def _first_per_customer(
    candidates: pl.DataFrame, books: dict[str, Playbook]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The earliest occurrence per (playbook, customer), and the later ones (deferred).

    Occurrences at the same moment go in the order the playbook lists its triggers (the
    service calendar's maintenance reminder before its insurance quote, both due one day).
    """
    listed = pl.DataFrame(
        [
            (name, trig.id, position)
            for name, book in books.items()
            for position, trig in enumerate(book.triggers)
        ],
        schema={"playbook": pl.String(), "trigger": pl.String(), "_listed": pl.Int64()},
        orient="row",
    )
    # The order is total, so journeys take their ids in one order whatever order the
    # candidates' sources returned their rows in.
    ordered = (
        candidates.join(listed, on=["playbook", "trigger"], how="left")
        .sort(["at", "trigger_ref", "playbook", "customer_id", "_listed", "trigger"])
        .with_columns(pl.int_range(pl.len()).over(["playbook", "customer_id"]).alias("_nth"))
        .drop("_listed")
    )
    first = ordered.filter(pl.col("_nth") == 0).drop("_nth")
    return first, ordered.filter(pl.col("_nth") > 0).drop("_nth")


def _with_keys(candidates: pl.DataFrame) -> pl.DataFrame:
    return candidates.with_columns(
        pl.format("{}:{}:{}:{}", "playbook", "customer_id", "trigger", pl.col("trigger_ref")).alias(
            "enrolment_key"
        )
    )


def _history(conn: Connection, customers: pl.Series, cooling: list[str]) -> pl.DataFrame:
    """Per (customer, playbook): any open journey, any journey at all, and the last finish
    that starts a cool-down (``cooling``: the playbooks that have one).

    A cool-down runs from a journey that reached the customer, or would have (a holdout
    record). One that ended at a branch without proposing anything (a price-lost lead enrolled
    by a stock arrival) must not keep the customer from the next occasion that fits them.
    """
    rows = fetch_by_keys(
        conn,
        table(m.Journey),
        ["customer_id"],
        pl.DataFrame({"customer_id": customers}),
        ["id", "playbook", "status", "finished_at"],
    )
    ended = rows.filter(
        pl.col("playbook").is_in(cooling)
        & pl.col("finished_at").is_not_null()
        & (pl.col("status") != "holdout")
    ).select(pl.col("id").alias("journey_id"))
    made = [fetch_by_keys(conn, table(rec), ["journey_id"], ended, []) for rec in (m.Touch, m.Task)]
    proposed = pl.concat(made)["journey_id"].unique()
    # Flagged before grouping: inside the aggregation the id list would be matched per group
    # (on a festival, with everyone a candidate, that took tens of GB and most of a minute).
    counts = (pl.col("status") == "holdout") | pl.col("id").is_in(proposed.implode())
    return (
        rows.with_columns(counts.alias("_counts"))
        .group_by(["customer_id", "playbook"])
        .agg(
            still_open().any().alias("has_open"),
            pl.col("finished_at").filter("_counts").max().alias("last_finished"),
            pl.col("finished_at").max().alias("last_end"),
        )
    )


def _entry_filter(
    group: pl.DataFrame, book: Playbook, lookups: StoreLookups, result: EnrolResult
) -> pl.DataFrame:
    """Audience, dealer scope, open journeys, re-entry and cool-down for one playbook."""
    if book.entry.dealers:
        inside = group.filter(pl.col("dealer_id").is_in(list(book.entry.dealers)))
        result.skip("outside the playbook's dealer scope", group.height - inside.height)
        group = inside
    if book.audience is not None and group.height:
        members = lookups.holds(book.audience, group["customer_id"])
        inside = group.filter(pl.col("customer_id").is_in(members.implode()))
        result.skip("not in the playbook's audience", group.height - inside.height)
        group = inside
    if "lost" in book.exit_on and group.height:
        # Entering only to be taken out by the next daily check would leave a false trail.
        lost = lookups.holds(_LOST, group["customer_id"])
        inside = group.filter(~pl.col("customer_id").is_in(lost.implode()))
        result.skip("customer is lost (the playbook exits on lost)", group.height - inside.height)
        group = inside
    # A journey that ended after this occurrence was still open at its moment: judged as of
    # the occurrence, a rerun of the same day decides exactly as the first run did.
    open_now = group.select(
        pl.col("has_open").fill_null(False) | (pl.col("last_end") > pl.col("at")).fill_null(False)
    ).to_series()
    result.skip("already on this playbook", int(open_now.sum()))
    group = group.filter(~open_now)
    seen = group["last_finished"].is_not_null()
    if not book.entry.re_entry:
        # "has_open" is null only when the customer never had this playbook.
        before = group["has_open"].is_not_null()
        result.skip("re-entry not allowed", int(before.sum()))
        group = group.filter(~before)
    elif book.entry.cooldown is not None and seen.any():
        wait = book.entry.cooldown
        cooling = group.select(
            pl.col("last_finished").is_not_null()
            & (offset(pl.col("last_finished"), wait, lookups.zone) > pl.col("at"))
        ).to_series()
        result.skip("in cool-down after an earlier journey", int(cooling.sum()))
        group = group.filter(~cooling)
    return group


def _complaint_open(group: pl.DataFrame, book: Playbook, lookups: StoreLookups) -> pl.Series:
    """Per candidate: the playbook pauses on complaints and the customer has one open.

    Such a journey starts paused (and resumes when the complaint is closed), as one running
    when the complaint came in would be: marketing stays quiet while a complaint is open.
    """
    if "complaint_opened" not in book.pause_on or "complaint_opened" in book.exit_on:
        return pl.Series("_paused", [False] * group.height, dtype=pl.Boolean)
    complaining = lookups.holds(_OPEN_COMPLAINT, group["customer_id"])
    return group["customer_id"].is_in(complaining.implode()).alias("_paused")


def _journey_rows(
    group: pl.DataFrame, book: Playbook, zone: ZoneInfo, paused: pl.Series
) -> pl.DataFrame:
    held = stable_share(group["customer_id"], book.name) < book.entry.holdout
    window = book.goal.within if book.goal and book.goal.within else _HOLDOUT_WINDOW
    return group.with_columns(held.alias("_held"), paused.alias("_paused")).select(
        "enrolment_key",
        pl.lit(book.name).alias("playbook"),
        pl.lit(book.version).alias("version"),
        "customer_id",
        "dealer_id",
        "trigger",
        "trigger_ref",
        pl.when("_held")
        .then(pl.lit("holdout"))
        .when("_paused")
        .then(pl.lit("paused"))
        .otherwise(pl.lit("active"))
        .alias("status"),
        pl.when(~pl.col("_held") & pl.col("_paused"))
        .then(pl.lit("paused:complaint_opened"))
        .otherwise(pl.lit(None, pl.String))
        .alias("end_reason"),
        pl.when("_held").then(None).otherwise(pl.lit(book.steps[0].id)).alias("step"),
        pl.col("at").alias("step_since"),
        pl.when("_held")
        .then(offset(pl.col("at"), window, zone))
        .otherwise(pl.col("at"))
        .alias("wake_at"),
        pl.lit(1, pl.Int64).alias("seq"),
        pl.col("at").alias("enrolled_at"),
        pl.lit(False).alias("goal_met"),
        pl.format(
            "{}{}",
            pl.col("reason"),
            pl.when("_held")
            .then(pl.lit(f"; held out for measurement ({book.entry.holdout:.0%} of entrants)"))
            .when("_paused")
            .then(pl.lit("; paused: the customer has an open complaint"))
            .otherwise(pl.lit("")),
        ).alias("_reason"),
    )


def enrol(
    conn: Connection, catalog: Catalog, candidates: pl.DataFrame, lookups: StoreLookups
) -> tuple[EnrolResult, pl.DataFrame]:
    """Enrol the candidates that pass the entry rules; journeys and decisions are inserted.

    Only the earliest occurrence per customer and playbook is decided here; the later ones
    come back, to be enrolled once the journeys have moved past their moment (the caller
    advances and calls again: points earned at 10:00 and redeemed at 15:00 make two notices).
    """
    result = EnrolResult(candidates=candidates.height)
    books = {book.name: book for book in catalog.enabled()}
    usable = candidates.filter(pl.col("playbook").is_in(list(books)))
    result.skip("playbook disabled", candidates.height - usable.height)
    if usable.height == 0:
        return result, usable
    usable, later = _first_per_customer(usable, books)
    usable = _with_keys(usable)
    known = fetch_by_keys(conn, table(m.Journey), ["enrolment_key"], usable, [])
    fresh = usable.join(known, on="enrolment_key", how="anti")
    result.skip("already enrolled for this occurrence", usable.height - fresh.height)
    customers = fetch_by_keys(
        conn,
        table(m.Customer),
        ["id"],
        fresh.select(pl.col("customer_id").alias("id")),
        ["home_dealer_id"],
    ).rename({"id": "customer_id", "home_dealer_id": "dealer_id"})
    known_customers = fresh.join(customers, on="customer_id", how="inner")
    result.skip("unknown customer", fresh.height - known_customers.height)
    fresh = known_customers
    cooling = [book.name for book in books.values() if book.entry.cooldown is not None]
    history = _history(conn, fresh["customer_id"], cooling)
    fresh = fresh.join(history, on=["customer_id", "playbook"], how="left")
    rows: list[pl.DataFrame] = []
    for (name,), group in fresh.group_by(["playbook"], maintain_order=True):
        book = books[str(name)]
        kept = _entry_filter(group, book, lookups, result)
        if kept.height:
            paused = _complaint_open(kept, book, lookups)
            rows.append(_journey_rows(kept, book, lookups.zone, paused))
            result.by_playbook[book.name] = kept.height
    moves = _insert(conn, rows)
    for part in moves.journeys:
        held = int((part["status"] == "holdout").sum())
        result.holdout += held
        result.enrolled += part.height - held
    return result, later


def _insert(conn: Connection, rows: list[pl.DataFrame]) -> Moves:
    moves = Moves()
    frame = pl.concat(rows, how="vertical_relaxed") if rows else None
    if frame is None or frame.height == 0:
        return moves
    frame = frame.with_columns(allocate_ids(conn, table(m.Journey), frame.height).alias("id"))
    bulk_insert(conn, table(m.Journey), frame.drop("_reason"))
    decisions = frame.select(
        pl.col("id").alias("journey_id"),
        pl.lit(0, pl.Int64).alias("seq"),
        pl.lit(None, pl.String).alias("step"),
        pl.when(pl.col("status") == "holdout")
        .then(pl.lit("holdout"))
        .otherwise(pl.lit("enrol"))
        .alias("action"),
        pl.col("enrolled_at").alias("at"),
        pl.col("_reason").alias("reason"),
    )
    decisions = decisions.with_columns(
        allocate_ids(conn, table(m.JourneyDecision), decisions.height).alias("id")
    )
    bulk_insert(conn, table(m.JourneyDecision), decisions)
    moves.journeys.append(frame.drop("_reason"))
    return moves


def enrol_time(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """When a daily trigger (segment entry, date, festival) enrols: the day's start, local."""
    return dt.datetime.combine(day, dt.time(0), zone).astimezone(dt.UTC)
