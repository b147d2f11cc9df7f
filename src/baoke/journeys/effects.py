"""What events and the day's profiles do to journeys already under way.

* Outcomes: a provider receipt updates its touch, a logged call updates its task, and a
  journey waiting on an outcome (a ``fallback``) wakes at once instead of at its deadline.
* Unsubscribes (a ``TD`` reply, a link, a hotline request) withdraw the consent, are audited,
  and end every journey whose playbook exits on ``unsubscribed``: a customer who said stop is
  not chased on another channel instead.
* Goals: a visit, booking, purchase or test drive after enrolment ends the journeys whose
  goal it is, holdout records included (that is what makes the holdout comparison possible).
* Exits and pauses: an opened complaint ends or pauses journeys (``exit_on`` / ``pause_on``);
  a resolved complaint resumes the paused ones; a WeCom deletion and re-add likewise.
* Daily: a customer who became ``lost`` or left the segment that enrolled them leaves the
  journeys that say so; complaint pauses whose complaint is closed resume.

All of it is set-based: each effect is one frame operation over the journeys concerned, and
each changed journey leaves a decision naming the event that changed it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Connection

from baoke.ingest.store_io import (
    allocate_ids,
    bulk_insert,
    bulk_update,
    collect_small,
    fetch_by_keys,
    query_frame,
)
from baoke.journeys.catalog import Catalog
from baoke.journeys.engine import JOURNEY_COLUMNS, journey_schema, persist, still_open
from baoke.journeys.steps import UTC, Moves, offset
from baoke.journeys.vocabulary import GOAL_OF_EVENT, MESSAGE_CHANNELS, UNSUBSCRIBE_KEYWORDS
from baoke.playbooks.definitions import FallbackStep, Playbook, SegmentTrigger
from baoke.store import models as m
from baoke.store.models import table

__all__ = [
    "EffectResult",
    "apply_events",
    "complaints_open_by_events",
    "concerned_customers",
    "daily_checks",
    "open_journeys",
]

_STATUS_RANK = {"sent": 1, "failed": 2, "delivered": 2, "opened": 3, "clicked": 4, "replied": 5}
_OUTCOME_EVENTS = ("reply_keyword", "touch_status", "call_outcome")
_HIT_SCHEMA = {"customer_id": pl.Int64(), "at": UTC, "why": pl.String()}


@dataclass
class EffectResult:
    """Counts of what the events or the daily checks changed."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int) -> None:
        """Add ``n`` to ``key``."""
        if n:
            self.counts[key] = self.counts.get(key, 0) + n


def _attr(name: str) -> pl.Expr:
    return pl.col("attributes").str.json_path_match(f"$.{name}")


def open_journeys(conn: Connection, customers: pl.Series) -> pl.DataFrame:
    """Journeys of these customers that can still change: active, paused, open holdouts."""
    rows = fetch_by_keys(
        conn,
        table(m.Journey),
        ["customer_id"],
        pl.DataFrame({"customer_id": customers.unique()}),
        JOURNEY_COLUMNS,
    )
    return rows.select(JOURNEY_COLUMNS).filter(still_open())


# --------------------------------------------------------------------------------------------
# Changing journeys
# --------------------------------------------------------------------------------------------


class _Changes:
    """Journey changes of one batch: each journey changes at most once per batch."""

    def __init__(self, journeys: pl.DataFrame, catalog: Catalog) -> None:
        self.journeys = journeys
        self.catalog = catalog
        self.moves = Moves()
        self.done: set[int] = set()
        self.result = EffectResult()

    def books(self, test: str) -> pl.DataFrame:
        """The (playbook, version) pairs among the journeys whose definition passes ``test``."""
        pairs = self.journeys.select("playbook", "version").unique()
        keep = []
        for name, version in pairs.iter_rows():
            book = self.catalog.get(str(name), str(version))
            if _passes(book, test):
                keep.append((name, version))
        return pl.DataFrame(
            keep, schema={"playbook": pl.String(), "version": pl.String()}, orient="row"
        )

    def candidates(self, hits: pl.DataFrame, test: str) -> pl.DataFrame:
        """Open journeys of ``hits``' customers (at or after enrolment) whose playbook passes."""
        # One lazy chain: on a few hundred rows each eager step's fixed cost would dominate.
        return collect_small(
            self.journeys.lazy()
            .filter(~pl.col("id").is_in(list(self.done)))
            .join(self.books(test).lazy(), on=["playbook", "version"], how="semi")
            .join(hits.lazy(), on="customer_id")
            .filter(pl.col("at") >= pl.col("enrolled_at"))
            .sort("at")
            .unique("id", keep="first", maintain_order=True)
        )

    def log(self, hit: pl.DataFrame, action: str) -> None:
        """One decision per journey of ``hit`` (its ``why`` at its ``at``)."""
        self.moves.decisions.append(
            hit.select(
                pl.col("id").alias("journey_id"),
                "seq",
                "step",
                pl.lit(action).alias("action"),
                "at",
                pl.col("why").alias("reason"),
            )
        )
        self.done.update(hit["id"].to_list())

    def end(self, hit: pl.DataFrame, action: str, status: str, end_reason: pl.Expr) -> None:
        """Finish ``hit``: goal met or exited; an open holdout record closes but stays holdout."""
        if hit.height == 0:
            return
        self.log(hit, action)
        self.moves.journeys.append(
            hit.with_columns(
                pl.when(pl.col("status") == "holdout")
                .then(pl.lit("holdout"))
                .otherwise(pl.lit(status))
                .alias("status"),
                pl.lit(None, pl.String).alias("step"),
                pl.col("at").alias("finished_at"),
                pl.lit(None, UTC).alias("wake_at"),
                end_reason.alias("end_reason"),
                (pl.col("goal_met") | pl.lit(action == "goal")).alias("goal_met"),
                pl.col("seq") + 1,
            ).select(JOURNEY_COLUMNS)
        )

    def set_state(self, hit: pl.DataFrame, action: str, *changes: pl.Expr) -> None:
        """Log and apply ``changes`` (pause, resume, wake) to ``hit``."""
        if hit.height == 0:
            return
        self.log(hit, action)
        self.moves.journeys.append(
            hit.with_columns(*changes, pl.col("seq") + 1).select(JOURNEY_COLUMNS)
        )

    def exit_or_pause(self, hits: pl.DataFrame, why: str) -> None:
        """End journeys that exit on ``why``; pause active ones that pause on it."""
        if hits.height == 0:
            return  # most batches hold no such event: nothing to look up
        leaving = self.candidates(hits, f"exit:{why}").with_columns(
            pl.format("exit: {} ({})", pl.lit(why), "why").alias("why")
        )
        self.end(leaving.filter(pl.col("status") != "holdout"), "exit", "exited", pl.lit(why))
        self.result.add(f"exited ({why})", leaving.filter(pl.col("status") != "holdout").height)
        pausing = self.candidates(hits, f"pause:{why}").filter(pl.col("status") == "active")
        pausing = pausing.with_columns(
            pl.format("paused: {} ({})", pl.lit(why), "why").alias("why")
        )
        self.set_state(
            pausing,
            "pause",
            pl.lit("paused").alias("status"),
            pl.lit(f"paused:{why}").alias("end_reason"),
        )
        self.result.add(f"paused ({why})", pausing.height)

    def resume(self, hits: pl.DataFrame, why: str) -> None:
        """Resume journeys paused for ``why`` whose cause went away."""
        if hits.height == 0:
            return
        pending = self.journeys.filter(
            (pl.col("status") == "paused")
            & (pl.col("end_reason") == f"paused:{why}")
            & ~pl.col("id").is_in(list(self.done))
        )
        back = (
            pending.join(hits, on="customer_id")
            .sort("at")
            .unique("id", keep="first", maintain_order=True)
            .with_columns(pl.format("resumed: {} cleared ({})", pl.lit(why), "why").alias("why"))
        )
        self.set_state(
            back,
            "resume",
            pl.lit("active").alias("status"),
            pl.lit(None, pl.String).alias("end_reason"),
            # A wait that ran out during the pause continues now, not in the past.
            pl.max_horizontal("wake_at", "at").alias("wake_at"),
        )
        self.result.add(f"resumed ({why})", back.height)


def _passes(book: Playbook, test: str) -> bool:
    kind, _, what = test.partition(":")
    if kind == "exit":
        return what in book.exit_on
    if kind == "pause":
        return what in book.pause_on and what not in book.exit_on
    return book.goal is not None and what in book.goal.events


# --------------------------------------------------------------------------------------------
# Store updates from events
# --------------------------------------------------------------------------------------------


def _receipts(events: pl.DataFrame) -> pl.DataFrame:
    """The batch's ``touch_status`` events: the touch they name, its new status, when."""
    return events.filter(pl.col("type") == "touch_status").select(
        _attr("touch").alias("touch"), _attr("status").alias("status"), pl.col("occurred_at")
    )


def _known_touches(conn: Connection, receipts: pl.DataFrame) -> pl.DataFrame:
    """The stored touches the receipts name, by idempotency key or by id (``touch``, ``id``,
    ``status``, ``customer_id``)."""
    columns = ["status", "customer_id"]
    by_key = fetch_by_keys(
        conn,
        table(m.Touch),
        ["idempotency_key"],
        receipts.select(pl.col("touch").alias("idempotency_key")),
        ["id", *columns],
    )
    numeric = receipts.filter(pl.col("touch").str.contains(r"^\d+$"))
    by_id = fetch_by_keys(
        conn,
        table(m.Touch),
        ["id"],
        numeric.select(pl.col("touch").cast(pl.Int64).alias("id")),
        ["idempotency_key", *columns],
    )
    return pl.concat(
        [
            by_key.select(pl.col("idempotency_key").alias("touch"), "id", *columns),
            by_id.select(pl.col("id").cast(pl.String).alias("touch"), "id", *columns),
        ]
    )


def _touch_statuses(conn: Connection, events: pl.DataFrame, result: EffectResult) -> None:
    receipts = _receipts(events)
    if receipts.height == 0:
        return
    known = _known_touches(conn, receipts).drop("customer_id")
    matched = receipts.join(known.rename({"status": "current"}), on="touch")
    result.add("receipts for unknown touches", receipts.height - matched.height)
    history = matched.select(
        pl.col("id").alias("touch_id"),
        "status",
        pl.col("occurred_at").alias("at"),
        pl.lit("receipt").alias("detail"),
    )
    history = history.with_columns(
        allocate_ids(conn, table(m.TouchStatus), history.height).alias("id")
    )
    bulk_insert(conn, table(m.TouchStatus), history)
    # The touch keeps its furthest status: a late "delivered" must not undo "replied".
    rank = pl.col("status").replace_strict(_STATUS_RANK, default=0)
    best = (
        matched.with_columns(rank.alias("_rank"))
        .sort("_rank", "occurred_at")
        .group_by("id")
        .last()
        .filter(pl.col("_rank") > pl.col("current").replace_strict(_STATUS_RANK, default=0))
    )
    bulk_update(conn, table(m.Touch), best.select("id", "status"))
    result.add("touch statuses", matched.height)


def _call_outcomes(conn: Connection, events: pl.DataFrame, result: EffectResult) -> None:
    calls = events.filter(pl.col("type") == "call_outcome").select(
        "customer_id",
        _attr("task_id").cast(pl.Int64, strict=False).alias("task_id"),
        _attr("outcome").alias("outcome"),
        "occurred_at",
    )
    if calls.height == 0:
        return
    # A call logged without its task closes the customer's latest open task.
    open_tasks = fetch_by_keys(
        conn,
        table(m.Task),
        ["customer_id"],
        calls.filter(pl.col("task_id").is_null()).select("customer_id"),
        ["id", "status"],
    )
    latest = (
        open_tasks.filter(pl.col("status") == "open")
        .group_by("customer_id")
        .agg(pl.col("id").max().alias("latest"))
    )
    resolved = calls.join(latest, on="customer_id", how="left").with_columns(
        pl.coalesce("task_id", "latest").alias("id")
    )
    usable = resolved.filter(pl.col("id").is_not_null()).unique("id", keep="last")
    result.add("call outcomes without a task", calls.height - usable.height)
    bulk_update(
        conn,
        table(m.Task),
        usable.select(
            "id",
            "outcome",
            pl.lit("done").alias("status"),
            pl.col("occurred_at").alias("completed_at"),
        ),
    )
    result.add("call outcomes", usable.height)


def _unsubscribes(conn: Connection, events: pl.DataFrame, result: EffectResult) -> pl.DataFrame:
    """Withdraw consent for TD replies and unsubscribe events; the customers, for the exits."""
    keyword = _attr("keyword").str.strip_chars().str.to_uppercase()
    td = (pl.col("type") == "reply_keyword") & keyword.is_in(list(UNSUBSCRIBE_KEYWORDS))
    stop = events.filter(td | (pl.col("type") == "unsubscribe")).with_columns(
        pl.when(pl.col("type") == "reply_keyword")
        .then(pl.coalesce(_attr("channel"), pl.lit("sms")))
        .otherwise(_attr("channel"))
        .alias("channel")
    )
    if stop.height == 0:
        return pl.DataFrame(schema=_HIT_SCHEMA)
    everywhere = pl.DataFrame({"all_channels": list(MESSAGE_CHANNELS)})
    rows = pl.concat(
        [
            stop.filter(pl.col("channel").is_not_null()),
            stop.filter(pl.col("channel").is_null())
            .drop("channel")
            .join(everywhere.rename({"all_channels": "channel"}), how="cross")
            .select(stop.columns),
        ]
    ).sort("occurred_at")
    _withdraw(conn, rows.unique(["customer_id", "channel"], keep="first"))
    result.add("unsubscribes", stop.height)
    return stop.select(
        "customer_id",
        pl.col("occurred_at").alias("at"),
        pl.format("{} via {}", pl.col("type"), pl.coalesce("channel", pl.lit("all"))).alias("why"),
    )


def _withdraw(conn: Connection, rows: pl.DataFrame) -> None:
    consents = table(m.Consent)
    # Only the event's own columns: its ``id`` (the event's) must not pass for a consent id.
    rows = rows.select("customer_id", "channel", "type", "event_key", "occurred_at")
    keyed = rows.with_columns(pl.lit("marketing").alias("purpose"))
    existing = fetch_by_keys(
        conn,
        consents,
        ["customer_id", "channel", "purpose"],
        keyed,
        ["id", "granted", "withdrawn_at"],
    )
    both = keyed.join(
        existing.rename({"withdrawn_at": "was_withdrawn_at"}),
        on=["customer_id", "channel", "purpose"],
        how="left",
    )
    # A consent already withdrawn keeps its first withdrawal (and what made it).
    already = ~pl.col("granted").fill_null(True) & pl.col("was_withdrawn_at").is_not_null()
    bulk_update(
        conn,
        consents,
        # The source names what withdrew it (a TD reply …): the explanation of a dropped
        # message says so, and the daily run does not take it for an imported withdrawal.
        both.filter(pl.col("id").is_not_null() & ~already).select(
            "id",
            pl.lit(False).alias("granted"),
            pl.col("occurred_at").alias("withdrawn_at"),
            pl.col("type").alias("source"),
        ),
    )
    new = both.filter(pl.col("id").is_null())
    bulk_insert(
        conn,
        consents,
        new.select(
            allocate_ids(conn, consents, new.height).alias("id"),
            "customer_id",
            "channel",
            "purpose",
            pl.lit(False).alias("granted"),
            pl.col("occurred_at").alias("withdrawn_at"),
            pl.col("type").alias("source"),
        ),
    )
    audit = rows.select(
        pl.col("occurred_at").alias("at"),
        pl.lit("customer").alias("actor"),
        pl.lit("consent.withdraw").alias("action"),
        pl.lit("customer").alias("entity"),
        pl.col("customer_id").cast(pl.String).alias("entity_id"),
        pl.struct("channel", pl.col("type").alias("via"), "event_key")
        .struct.json_encode()
        .alias("detail"),
    )
    audit_table = table(m.AuditEntry)
    bulk_insert(
        conn,
        audit_table,
        audit.with_columns(allocate_ids(conn, audit_table, audit.height).alias("id")),
    )


def _hits(events: pl.DataFrame, condition: pl.Expr, why: pl.Expr) -> pl.DataFrame:
    return events.filter(condition & pl.col("customer_id").is_not_null()).select(
        "customer_id", pl.col("occurred_at").alias("at"), why.alias("why")
    )


def _describe() -> pl.Expr:
    """An event as its reason text: ``complaint_opened {"severity":"severe"}``."""
    return pl.format("{} {}", pl.col("type"), pl.col("attributes").fill_null("{}"))


def _goal_hits(changes: _Changes, events: pl.DataFrame, zone: ZoneInfo) -> None:
    goals = events.filter(pl.col("type").is_in(list(GOAL_OF_EVENT))).with_columns(
        pl.col("type").replace_strict(GOAL_OF_EVENT).alias("goal")
    )
    for goal in goals["goal"].unique().to_list():
        hits = _hits(goals, pl.col("goal") == goal, _describe())
        found = changes.candidates(hits, f"goal:{goal}")
        if found.height == 0:
            continue
        within = {
            (b.name, b.version): b.goal.within
            for b in (
                changes.catalog.get(n, v)
                for n, v in found.select("playbook", "version").unique().iter_rows()
            )
            if b.goal is not None and b.goal.within is not None
        }
        for (name, version), span in within.items():
            late = (
                (pl.col("playbook") == name)
                & (pl.col("version") == version)
                & (pl.col("at") > offset(pl.col("enrolled_at"), span, zone))
            )
            found = found.filter(~late)
        found = found.with_columns(pl.format("goal met: {} ({})", pl.lit(goal), "why").alias("why"))
        changes.end(found, "goal", "completed", pl.lit(f"goal:{goal}"))
        changes.result.add(f"goal ({goal})", found.height)


def _wake_waiting(changes: _Changes, events: pl.DataFrame) -> None:
    """Journeys parked on a fallback look again as soon as news about their customer comes."""
    news = _hits(events, pl.col("type").is_in(list(_OUTCOME_EVENTS)), _describe())
    if news.height == 0:
        return
    parked = changes.journeys.filter(
        (pl.col("status") == "active") & ~pl.col("id").is_in(list(changes.done))
    )
    fallback_steps = [
        (name, version, step)
        for name, version, step in parked.select("playbook", "version", "step").unique().iter_rows()
        if step is not None
        and _is_fallback(changes.catalog.get(str(name), str(version)), str(step))
    ]
    if not fallback_steps:
        return
    keys = pl.DataFrame(
        fallback_steps,
        schema={"playbook": pl.String(), "version": pl.String(), "step": pl.String()},
        orient="row",
    )
    waiting = parked.join(keys, on=["playbook", "version", "step"], how="semi")
    woken = (
        waiting.join(news, on="customer_id")
        .filter((pl.col("at") >= pl.col("step_since")) & (pl.col("at") < pl.col("wake_at")))
        .sort("at")
        .unique("id", keep="first", maintain_order=True)
        .with_columns(pl.format("woken by {}", "why").alias("why"))
    )
    changes.set_state(woken, "wake", pl.col("at").alias("wake_at"))
    changes.result.add("woken by news", woken.height)


def _is_fallback(book: Playbook, step: str) -> bool:
    try:
        return isinstance(book.step(step), FallbackStep)
    except KeyError:
        return False


def concerned_customers(conn: Connection, events: pl.DataFrame) -> pl.Series | None:
    """The customers whose journeys a batch of events can change or is judged against: the
    events' own and those of the touches and tasks they report on. None when an event is
    about no one customer (a model's price change enrols whoever is interested in it).

    Only these customers' journeys need to have reached the moment of the batch before it
    applies: no event changes what another customer's journey decides.
    """
    if events["customer_id"].null_count():
        return None
    receipts = _receipts(events)
    tasks = events.filter(pl.col("type") == "call_outcome").select(
        _attr("task_id").cast(pl.Int64, strict=False).alias("id")
    )
    parts = [events["customer_id"]]
    if receipts.height:
        parts.append(_known_touches(conn, receipts)["customer_id"])
    if tasks.height:
        parts.append(
            fetch_by_keys(conn, table(m.Task), ["id"], tasks, ["customer_id"])["customer_id"]
        )
    return pl.concat(parts).drop_nulls().unique()


def apply_events(
    conn: Connection, catalog: Catalog, events: pl.DataFrame, zone: ZoneInfo
) -> EffectResult:
    """Apply a batch of stored events (an events-table frame) to the store and the journeys.

    Enrolment on event triggers is not done here (see :func:`baoke.journeys.run`).
    """
    result = EffectResult()
    _touch_statuses(conn, events, result)
    _call_outcomes(conn, events, result)
    stops = _unsubscribes(conn, events, result)
    people = events["customer_id"].drop_nulls()
    journeys = open_journeys(conn, people)
    changes = _Changes(journeys, catalog)
    changes.result = result
    _goal_hits(changes, events, zone)
    changes.exit_or_pause(stops, "unsubscribed")
    described = _describe()
    opened = _hits(events, pl.col("type") == "complaint_opened", described)
    changes.exit_or_pause(opened, "complaint_opened")
    deleted = _hits(
        events,
        (pl.col("type") == "wecom_friend_deleted") & (_attr("deleted_by") != "staff"),
        described,
    )
    changes.exit_or_pause(deleted, "wecom_deleted")
    changes.resume(
        _hits(events, pl.col("type") == "complaint_resolved", described), "complaint_opened"
    )
    changes.resume(
        _hits(events, pl.col("type") == "wecom_friend_added", described), "wecom_deleted"
    )
    _wake_waiting(changes, events)
    persist(conn, changes.moves)
    return result


# --------------------------------------------------------------------------------------------
# Daily checks
# --------------------------------------------------------------------------------------------


def daily_checks(
    conn: Connection, catalog: Catalog, at: dt.datetime, since: dt.date
) -> EffectResult:
    """Lost customers and segment leavers exit; closed complaints resume paused journeys.

    Only what changed on or after ``since`` (the day after the last run) can need a decision:
    a customer lost for months left their journeys then, and a lost customer is not enrolled.
    Each check asks the store for just those journeys (the stored profiles and memberships
    are today's after the refresh), so the work follows the day's changes, not the number of
    journeys under way.
    """
    # ``status || ''`` keeps SQLite from walking every open journey by the status index
    # when the day's few changed profiles are the better way in.
    lost = _journeys_where(
        conn,
        "JOIN customer_profiles p ON p.customer_id = j.customer_id "
        "WHERE p.as_of >= ? AND p.lifecycle_stage = ? AND j.status || '' IN ('active', 'paused')",
        [since, "lost"],
    )
    left = _segment_leavers(conn, catalog, since)
    paused = _journeys_where(
        conn,
        "JOIN customer_profiles p ON p.customer_id = j.customer_id "
        "WHERE j.status = 'paused' AND j.end_reason = ? AND p.open_complaint = ?",
        ["paused:complaint_opened", False],
    )
    journeys = pl.concat([lost, left.drop("segment"), paused]).unique("id", maintain_order=True)
    changes = _Changes(journeys, catalog)
    moment = pl.lit(at).cast(UTC).alias("at")
    changes.exit_or_pause(
        lost.select("customer_id", moment, pl.lit("lifecycle lost").alias("why")).unique(), "lost"
    )
    _left_segment(changes, left, at)
    closed = paused.select("customer_id", moment, pl.lit("no open complaint").alias("why"))
    closed = closed.join(
        complaints_open_by_events(conn, paused["customer_id"]), on="customer_id", how="anti"
    )
    changes.resume(closed.unique(), "complaint_opened")
    persist(conn, changes.moves)
    return changes.result


def _journeys_where(conn: Connection, tail: str, params: list[object]) -> pl.DataFrame:
    """Journeys (``j``) selected by a join/where ``tail``, with the journey columns."""
    columns = ", ".join(f"j.{c}" for c in JOURNEY_COLUMNS)
    return query_frame(conn, f"SELECT {columns} FROM journeys j {tail}", params, journey_schema())


def _segment_leavers(conn: Connection, catalog: Catalog, since: dt.date) -> pl.DataFrame:
    """Open journeys enrolled by a segment their customer left since ``since`` and is not back
    in, for playbooks that exit on ``left_segment`` (with a ``segment`` column)."""
    wanted = sorted(
        {
            (book.name, book.version, trig.id, trig.segment)
            for book in _all_versions(catalog)
            if "left_segment" in book.exit_on
            for trig in book.triggers
            if isinstance(trig, SegmentTrigger)
        }
    )
    parts = []
    for name, version, trigger, segment in wanted:
        found = _journeys_where(
            conn,
            "WHERE j.customer_id IN (SELECT customer_id FROM segment_memberships "
            "WHERE exited_on >= ? AND segment = ?) "
            "AND j.playbook = ? AND j.version = ? AND j.trigger = ? "
            "AND j.status || '' IN ('active', 'paused') AND NOT EXISTS (SELECT 1 FROM "
            "segment_memberships o WHERE o.segment = ? AND o.customer_id = j.customer_id "
            "AND o.exited_on IS NULL)",
            [since, segment, name, version, trigger, segment],
        )
        parts.append(found.with_columns(pl.lit(segment).alias("segment")))
    if not parts:
        return pl.DataFrame(schema={**journey_schema(), "segment": pl.String()})
    return pl.concat(parts)


def _all_versions(catalog: Catalog) -> list[Playbook]:
    """Every stored version of every playbook (journeys run on the version they began)."""
    return [catalog.get(name, version) for name, version in sorted(catalog.texts)]


def complaints_open_by_events(conn: Connection, customers: pl.Series) -> pl.DataFrame:
    """Customers with a complaint opened by an event the profile cannot see, and since when.

    The profile knows complaint records only. A ``complaint_opened`` event whose complaint is
    not on record, and that no later ``complaint_resolved`` event answers, is still open: only
    its resolution resumes the journeys it paused, not the profile's silence.
    """
    keys = pl.DataFrame({"customer_id": customers.unique()})
    events = fetch_by_keys(
        conn,
        table(m.Event),
        ["customer_id"],
        keys,
        ["type", "occurred_at", "attributes"],
        where="type IN ('complaint_opened', 'complaint_resolved')",
    )
    resolved = (
        events.filter(pl.col("type") == "complaint_resolved")
        .group_by("customer_id")
        .agg(pl.col("occurred_at").max().alias("resolved_at"))
    )
    on_record = fetch_by_keys(conn, table(m.Complaint), ["customer_id"], keys, ["complaint_no"])
    return (
        events.filter(pl.col("type") == "complaint_opened")
        .with_columns(_attr("complaint_no").alias("complaint_no"))
        .join(resolved, on="customer_id", how="left")
        .filter(pl.col("resolved_at").is_null() | (pl.col("occurred_at") > pl.col("resolved_at")))
        .join(on_record, on=["customer_id", "complaint_no"], how="anti")
        .group_by("customer_id")
        .agg(pl.col("occurred_at").min().alias("opened_at"))
    )


def _left_segment(changes: _Changes, gone: pl.DataFrame, at: dt.datetime) -> None:
    """End the journeys in ``gone`` (segment-enrolled, the customer left the segment)."""
    hits = gone.select(
        "customer_id",
        pl.lit(at).cast(UTC).alias("at"),
        pl.format("left segment {}", "segment").alias("why"),
    ).unique("customer_id")
    # Only journeys enrolled by that segment: filter by id after the generic match.
    leaving = (
        changes.candidates(hits, "exit:left_segment")
        .join(gone.select("id"), on="id", how="semi")
        .with_columns(pl.format("exit: left_segment ({})", "why").alias("why"))
    )
    changes.end(leaving, "exit", "exited", pl.lit("left_segment"))
    changes.result.add("exited (left_segment)", leaving.height)
