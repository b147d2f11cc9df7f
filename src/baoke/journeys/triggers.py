"""Trigger occurrences: who could enter which playbook, today or on these events.

Each function returns enrolment candidates (:data:`baoke.journeys.enrol.CANDIDATE_SCHEMA`):
the playbook, the trigger id (what a ``branch: {trigger: …}`` tests), an occurrence reference
that makes the enrolment key unique (the day, the festival year, the event key), the customer,
the moment and a readable reason. Entry rules are applied later, by :func:`enrol`.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
from sqlalchemy import Connection

from baoke.ingest.store_io import query_frame
from baoke.journeys.catalog import Catalog
from baoke.journeys.enrol import CANDIDATE_SCHEMA, enrol_time
from baoke.journeys.steps import duration_text
from baoke.playbooks.definitions import (
    DateTrigger,
    Duration,
    EventTrigger,
    FestivalTrigger,
    SegmentTrigger,
)
from baoke.playbooks.festivals import FESTIVALS, festival_date

__all__ = [
    "date_candidates",
    "event_candidates",
    "festival_candidates",
    "segment_candidates",
]


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=CANDIDATE_SCHEMA)


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    parts = [p for p in parts if p.height]
    return pl.concat(parts, how="vertical_relaxed") if parts else _empty()


def _shape(
    ids: pl.Series, playbook: str, trigger: str, ref: str, at: dt.datetime, reason: str
) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": ids.cast(pl.Int64)}).select(
        pl.lit(playbook).alias("playbook"),
        pl.lit(trigger).alias("trigger"),
        pl.lit(ref).alias("trigger_ref"),
        "customer_id",
        pl.lit(at).cast(CANDIDATE_SCHEMA["at"]).alias("at"),
        pl.lit(reason).alias("reason"),
    )


def segment_candidates(
    conn: Connection, catalog: Catalog, day: dt.date, zone: ZoneInfo
) -> pl.DataFrame:
    """Customers who entered a trigger segment on ``day`` (from the membership history)."""
    wanted = {
        (book.name, trig.id, trig.segment)
        for book in catalog.enabled()
        for trig in book.triggers
        if isinstance(trig, SegmentTrigger)
    }
    segments = sorted({seg for _, _, seg in wanted})
    if not segments:
        return _empty()
    marks = ",".join("?" * len(segments))
    entered = query_frame(
        conn,
        f"SELECT segment, customer_id FROM segment_memberships "
        f"WHERE entered_on = ? AND segment IN ({marks})",
        [day, *segments],
        {"segment": pl.String(), "customer_id": pl.Int64()},
    )
    at = enrol_time(day, zone)
    parts = [
        _shape(
            entered.filter(pl.col("segment") == seg)["customer_id"],
            name,
            trigger,
            day.isoformat(),
            at,
            f"entered segment {seg} on {day}",
        )
        for name, trigger, seg in sorted(wanted)
    ]
    return _concat(parts)


def _signed(span: Duration) -> str:
    """An offset as the playbook writes it, sign included: ``+30d``, ``-15d``."""
    return ("+" if span.amount > 0 else "") + duration_text(span)


def _minus(day: dt.date, span: Duration) -> dt.date:
    """``day - span`` on the calendar (a trigger at due - 15d fires when due = day + 15d)."""
    unit = {"d": "d", "w": "w", "m": "mo", "y": "y"}.get(span.unit)
    if unit is None:  # hours or minutes: a date trigger works in whole days
        return day
    shifted = pl.Series([day]).dt.offset_by(f"{-span.amount}{unit}")
    value = shifted.item()
    assert isinstance(value, dt.date)
    return value


def _annual_sql(column: str, target: dt.date) -> str:
    """Rows whose ``column`` falls on ``target``'s month and day (29 Feb on 28 Feb otherwise)."""
    same = f"(month({column}) = {target.month} AND day({column}) = {target.day})"
    leap = target.year % 4 == 0 and (target.year % 100 != 0 or target.year % 400 == 0)
    if target.month == 2 and target.day == 28 and not leap:
        same = f"({same} OR (month({column}) = 2 AND day({column}) = 29))"
    return f"{same} AND year({column}) < {target.year}"


def date_candidates(
    profiles: duckdb.DuckDBPyConnection | None, catalog: Catalog, day: dt.date, zone: ZoneInfo
) -> pl.DataFrame:
    """Customers whose record date plus the trigger's offset is ``day``."""
    if profiles is None:
        return _empty()
    at = enrol_time(day, zone)
    triggers = [
        (book, trig)
        for book in catalog.enabled()
        for trig in book.triggers
        if isinstance(trig, DateTrigger)
    ]
    if not triggers:
        return _empty()
    # One statement for every trigger: each part costs less than a statement's fixed cost.
    sql = " UNION ALL ".join(
        f"SELECT {number} AS part, customer_id FROM "
        f"({_date_sql(trig.field, _minus(day, trig.offset))})"
        for number, (_, trig) in enumerate(triggers)
    )
    found: pl.DataFrame = profiles.sql(sql).pl()
    by_part = found.partition_by("part", as_dict=True, include_key=False)
    parts: list[pl.DataFrame] = []
    for number, (book, trig) in enumerate(triggers):
        hit = by_part.get((number,))
        if hit is None:
            continue
        when = f"{trig.field} {_signed(trig.offset)}" if trig.offset.amount else trig.field
        reason = f"{when} falls on {day}"
        parts.append(_shape(hit["customer_id"], book.name, trig.id, day.isoformat(), at, reason))
    return _concat(parts)


def _date_sql(field: str, target: dt.date) -> str:
    """The customers whose ``field`` (a profile date, or the birthday) falls on ``target``."""
    if field == "birthday":
        return f"SELECT id AS customer_id FROM customers WHERE {_annual_sql('birthday', target)}"
    if field == "purchase_anniversary":
        return "SELECT customer_id FROM profiles WHERE " + _annual_sql("delivery_date", target)
    return f"SELECT customer_id FROM profiles WHERE {field} = DATE '{target}'"


def festival_candidates(
    profiles: duckdb.DuckDBPyConnection | None, catalog: Catalog, day: dt.date, zone: ZoneInfo
) -> pl.DataFrame:
    """Every profiled customer, on the day of a festival trigger (plus its offset)."""
    if profiles is None:
        return _empty()
    at = enrol_time(day, zone)
    parts: list[pl.DataFrame] = []
    everyone: pl.Series | None = None
    for book in catalog.enabled():
        for trig in book.triggers:
            if not isinstance(trig, FestivalTrigger):
                continue
            year = _festival_year(trig.festival, trig.offset, day)
            if year is None:
                continue
            if everyone is None:
                everyone = profiles.sql("SELECT customer_id FROM profiles").pl()["customer_id"]
            shift = f" {_signed(trig.offset)}" if trig.offset.amount else ""
            parts.append(
                _shape(
                    everyone,
                    book.name,
                    trig.id,
                    f"{trig.festival}:{year}",
                    at,
                    f"{FESTIVALS[trig.festival]} {year}{shift}",
                )
            )
    return _concat(parts)


def _festival_year(festival: str, span: Duration, day: dt.date) -> int | None:
    """The year whose festival (plus offset) is ``day``, if any."""
    for year in (day.year - 1, day.year, day.year + 1):
        try:
            date = festival_date(festival, year)
        except ValueError:  # outside the lunar table: no festival known that year
            continue
        if _minus(day, span) == date:
            return year
    return None


def event_candidates(
    profiles: duckdb.DuckDBPyConnection | None, catalog: Catalog, events: pl.DataFrame
) -> pl.DataFrame:
    """Enrolment candidates for event triggers among ``events`` (an events-table frame).

    An event about a car model (price change, stock arrival, launch) reaches the customers
    whose lead is for that model or series.
    """
    parts: list[pl.DataFrame] = []
    # Most triggers' events are not among a run's: skip them without a query each.
    present = set(events.get_column("type").unique().to_list()) if events.height else set()
    for book in catalog.enabled():
        for trig in book.triggers:
            if not isinstance(trig, EventTrigger) or trig.event not in present:
                continue
            hits = events.filter(pl.col("type") == trig.event)
            for key, values in trig.where:
                value = pl.col("attributes").str.json_path_match(f"$.{key}")
                hits = hits.filter(value.is_in(list(values)))
            if hits.height == 0:
                continue
            hits = _fan_out(profiles, hits)
            parts.append(
                hits.select(
                    pl.lit(book.name).alias("playbook"),
                    pl.lit(trig.id).alias("trigger"),
                    pl.col("event_key").alias("trigger_ref"),
                    pl.col("customer_id"),
                    pl.col("occurred_at").alias("at"),
                    pl.format(
                        "event {} {} at {}",
                        pl.col("type"),
                        pl.col("attributes").fill_null("{}"),
                        pl.col("occurred_at").dt.strftime("%Y-%m-%d %H:%M UTC"),
                    ).alias("reason"),
                )
            )
    return _concat(parts)


def _fan_out(profiles: duckdb.DuckDBPyConnection | None, hits: pl.DataFrame) -> pl.DataFrame:
    """Events with a customer as they are; model events, one row per interested customer."""
    personal = hits.filter(pl.col("customer_id").is_not_null())
    about_models = hits.filter(pl.col("customer_id").is_null())
    if about_models.height == 0 or profiles is None:
        return personal
    models = about_models.with_columns(
        pl.col("attributes").str.json_path_match("$.model").alias("_model"),
        pl.col("attributes").str.json_path_match("$.series").alias("_series"),
    ).drop("customer_id")
    profiles.register("_models", models.select("event_key", "_model", "_series").to_arrow())
    try:
        matched: pl.DataFrame = profiles.sql(
            "SELECT m.event_key, p.customer_id FROM _models m JOIN profiles p ON "
            "p.lead_model_of_interest = m._model OR (m._series IS NOT NULL AND "
            "contains(p.lead_model_of_interest, m._series))"
        ).pl()
    finally:
        profiles.unregister("_models")
    fanned = models.join(
        matched.with_columns(pl.col("customer_id").cast(pl.Int64)), on="event_key"
    ).drop("_model", "_series")
    return pl.concat([personal, fanned.select(personal.columns)], how="vertical_relaxed")
