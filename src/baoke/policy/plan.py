"""The day's plan: arbitrate the open candidates, then write touches, decisions and the outbox.

One transaction per plan: the touches' new statuses, one ``policy_decisions`` row per
candidate and the outbox entries of the scheduled touches are committed together, so a plan
killed half-way leaves the candidates open and planning again decides them exactly once. A
touch once decided is no longer a candidate (a deferred one comes back on the day of its new
slot), which is what makes ``baoke plan`` and ``baoke run`` safe to repeat.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine

from baoke.config import Settings
from baoke.ingest.store_io import allocate_ids, bulk_insert, bulk_update, query_frame
from baoke.journeys.catalog import Catalog, load_catalog
from baoke.policy.arbiter import DECISION_SCHEMA, UTC, Plan, arbitrate
from baoke.policy.inputs import load_inputs
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["PlanResult", "plan_day", "summarise"]


@dataclass
class PlanResult:
    """What one plan decided, with its timings in seconds."""

    day: dt.date
    candidates: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "day": self.day.isoformat(),
            "candidates": self.candidates,
            "outcomes": self.outcomes,
            "rounds": self.rounds,
            "timings": self.timings,
        }


def plan_day(
    settings: Settings,
    engine: Engine,
    day: dt.date,
    *,
    not_before: dt.datetime | None = None,
    catalog: Catalog | None = None,
    dry_run: bool = False,
) -> tuple[PlanResult, Plan]:
    """Decide the open candidates due by the end of ``day`` and (unless ``dry_run``) write.

    ``not_before``: nothing is scheduled earlier (a plan made during the day, at that moment).
    """
    started = time.perf_counter()
    result = PlanResult(day=day)
    with engine.connect() as conn:
        books = catalog or load_catalog(conn, settings, record=False)
        inputs = load_inputs(
            conn, books, settings.policy, day, settings.zone, not_before=not_before
        )
    result.timings["read"] = round(time.perf_counter() - started, 3)
    lap = time.perf_counter()
    plan = arbitrate(inputs, settings.policy)
    result.timings["arbitrate"] = round(time.perf_counter() - lap, 3)
    result.candidates = inputs.candidates.height
    result.rounds = plan.rounds
    result.outcomes = dict(sorted(plan.decisions["outcome"].value_counts().iter_rows()))
    if not dry_run and plan.decisions.height:
        lap = time.perf_counter()
        with engine.begin() as conn:
            write_plan(conn, plan, inputs.candidates)
        result.timings["write"] = round(time.perf_counter() - lap, 3)
    return result, plan


def write_plan(conn: Connection, plan: Plan, candidates: pl.DataFrame) -> None:
    """Store a plan: touch and call statuses, the decision records, the outbox entries."""
    now = dt.datetime.now(dt.UTC)
    decided = plan.decisions.join(
        candidates.select(
            "candidate_id", "moment", "proposed_at", pl.col("channels").list.first().alias("first")
        ),
        on="candidate_id",
        how="left",
    )
    _write_touches(conn, decided.filter(~pl.col("is_task")), now)
    _write_calls(conn, decided.filter(pl.col("is_task")), now)
    task = pl.col("is_task")
    rows = plan.decisions.select(
        pl.when(task).then(None).otherwise(pl.col("candidate_id")).alias("touch_id"),
        pl.when(task).then(-pl.col("candidate_id")).otherwise(None).alias("task_id"),
        pl.exclude("candidate_id", "is_task", "tier"),
        pl.col("tier").fill_null("none"),
        pl.lit(plan.day).alias("plan_date"),
        pl.lit(now, UTC).alias("decided_at"),
    )
    rows = rows.with_columns(allocate_ids(conn, table(m.PolicyDecision), rows.height).alias("id"))
    bulk_insert(conn, table(m.PolicyDecision), rows)
    outbox = (
        plan.outcome("scheduled")
        .filter(~task)
        .select(
            pl.col("candidate_id").alias("touch_id"),
            "channel",
            pl.col("send_at").alias("due_at"),
            pl.lit("pending").alias("status"),
            pl.lit(0).alias("attempts"),
            pl.lit(now, UTC).alias("created_at"),
            # The send batch the emergency monitor watches: the plan day and the playbook.
            pl.format("{}/{}", pl.lit(plan.day.isoformat()), pl.col("playbook")).alias("batch"),
        )
    )
    ids = allocate_ids(conn, table(m.OutboxEntry), outbox.height)
    bulk_insert(conn, table(m.OutboxEntry), outbox.with_columns(ids.alias("id")))


def _write_touches(conn: Connection, decided: pl.DataFrame, now: dt.datetime) -> None:
    touches = decided.select(
        pl.col("candidate_id").alias("id"),
        # The touch's status is the outcome's name (scheduled, deferred, rerouted, suppressed).
        pl.col("outcome").alias("status"),
        # Where no channel was chosen, the touch keeps its first proposed one (never null).
        pl.coalesce("channel", "first").alias("channel"),
        # A scheduled or deferred touch carries its (new) slot; a dropped one keeps its moment.
        pl.coalesce("send_at", "moment").alias("scheduled_at"),
        pl.col("cost_fen"),
        pl.col("proposed_at"),
        pl.lit(now, UTC).alias("updated_at"),
    )
    bulk_update(conn, table(m.Touch), touches.sort("id"))


def _write_calls(conn: Connection, decided: pl.DataFrame, now: dt.datetime) -> None:
    """Reviewed calls are marked; the ones the policy stopped are cancelled (never done)."""
    calls = decided.select(
        (-pl.col("candidate_id")).alias("id"),
        pl.lit(now, UTC).alias("planned_at"),
        pl.lit(now, UTC).alias("updated_at"),
    ).sort("id")
    bulk_update(conn, table(m.Task), calls)
    stopped = decided.filter(pl.col("outcome") == "suppressed").select(
        (-pl.col("candidate_id")).alias("id"), pl.lit("cancelled").alias("status")
    )
    bulk_update(conn, table(m.Task), stopped.sort("id"))


_SUMMARY_SCHEMA = {k: v for k, v in DECISION_SCHEMA.items() if k not in ("reason", "send_at")}


def summarise(conn: Connection, day: dt.date) -> dict[str, Any]:
    """The stored plan of ``day``: touches and cost by channel, tier and playbook; the rest
    by rule."""
    rows = query_frame(
        conn,
        "SELECT COALESCE(touch_id, -task_id) AS candidate_id, task_id IS NOT NULL AS is_task, "
        "customer_id, playbook, step, template, priority, tier, outcome, rule, channel, "
        "cost_fen FROM policy_decisions WHERE plan_date = ?",
        [day],
        _SUMMARY_SCHEMA,
    )
    return summary_of(rows, day)


def summary_of(rows: pl.DataFrame, day: dt.date) -> dict[str, Any]:
    """The summary of decision rows (stored or just made)."""
    sent = rows.filter(pl.col("outcome") == "scheduled")

    def by(column: str) -> list[dict[str, Any]]:
        return (
            sent.group_by(column)
            .agg(pl.len().alias("touches"), pl.col("cost_fen").sum().alias("cost_fen"))
            .sort(["touches", column], descending=[True, False])
            .to_dicts()
        )

    held = rows.filter(pl.col("outcome") != "scheduled")
    return {
        "day": day.isoformat(),
        "candidates": rows.height,
        "customers": rows["customer_id"].n_unique(),
        "outcomes": dict(sorted(rows["outcome"].value_counts().iter_rows())),
        "touches": sent.height,
        "cost_fen": int(sent["cost_fen"].sum() or 0),
        "by_channel": by("channel"),
        "by_tier": by("tier"),
        "by_playbook": by("playbook"),
        "not_sent_by_rule": held.group_by("outcome", "rule")
        .agg(pl.len().alias("n"))
        .sort(["n", "rule"], descending=[True, False])
        .to_dicts(),
    }
