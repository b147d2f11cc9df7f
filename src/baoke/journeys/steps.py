"""What each kind of step does, for all the journeys standing on it at once.

Every function here takes the journeys that are due at one step of one playbook version (a
polars frame, one row per journey, ``wake_at`` being the moment it is evaluated) and returns
where they go next, the decision row each of them leaves, and the candidate touches and tasks
the step produced. Nothing here reads or writes the store: profile conditions and the outcomes
of earlier steps come through :class:`Lookups`, so the semantics can be read (and tested) on
their own.

Every evaluation of a journey leaves exactly one decision, numbered by the journey's ``seq``;
a touch or task made by that evaluation is keyed ``j<journey id>:<seq>``. Evaluating the same
journey at the same point again therefore yields the same key, and the store refuses a second
touch for it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

import polars as pl

from baoke.playbooks.definitions import (
    BranchStep,
    Duration,
    FallbackStep,
    Playbook,
    SendStep,
    Step,
    TaskStep,
    WaitStep,
)
from baoke.segments.rules import AllOf, AnyOf, Condition, Field, Not

__all__ = [
    "JOURNEY_SCHEMA",
    "Lookups",
    "Moves",
    "apply_step",
    "describe",
    "duration_text",
    "offset",
]

UTC = pl.Datetime("us", "UTC")
JOURNEY_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "playbook": pl.String(),
    "version": pl.String(),
    "customer_id": pl.Int64(),
    "dealer_id": pl.Int64(),
    "trigger": pl.String(),
    "status": pl.String(),
    "step": pl.String(),
    "step_since": UTC,
    "wake_at": UTC,
    "seq": pl.Int64(),
    "enrolled_at": UTC,
    "finished_at": UTC,
    "end_reason": pl.String(),
    "goal_met": pl.Boolean(),
}
"""The columns of a journey frame (as in the ``journeys`` table, less the keys)."""

_END = "end"
_POLARS_UNIT = {"min": "m", "h": "h", "d": "d", "w": "w", "m": "mo", "y": "y"}
_UNIT_WORD = {"min": "min", "h": "h", "d": "d", "w": "w", "m": "个月", "y": "年"}
# Outcomes that come from the deadline passing, not from a report.
_SILENT = ("no_response",)


class Lookups(Protocol):
    """What the steps need from outside: profile conditions and step outcomes."""

    def holds(self, cond: Condition, customer_ids: pl.Series) -> pl.Series:
        """The customer ids among ``customer_ids`` for which ``cond`` holds on their profile."""
        ...

    def outcomes(self, journeys: pl.DataFrame, source: Step) -> pl.DataFrame:
        """Per journey (``journey_id``), the reported outcomes of its latest ``source`` step.

        Columns: ``journey_id``, ``labels`` (list of outcome names such as delivered,
        answered, connected, not_connected) and ``final`` (no further report will change them).
        """
        ...


@dataclass
class Moves:
    """The result of one evaluation wave: new journey states and what they produced."""

    journeys: list[pl.DataFrame] = field(default_factory=list)
    decisions: list[pl.DataFrame] = field(default_factory=list)
    touches: list[pl.DataFrame] = field(default_factory=list)
    tasks: list[pl.DataFrame] = field(default_factory=list)

    def add(self, other: Moves) -> None:
        """Append another wave part's frames."""
        self.journeys += other.journeys
        self.decisions += other.decisions
        self.touches += other.touches
        self.tasks += other.tasks


# --------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------


def offset(column: pl.Expr, span: Duration, zone: ZoneInfo) -> pl.Expr:
    """``column`` (UTC) moved by ``span`` on the business calendar (months end-of-month safe)."""
    local = column.dt.convert_time_zone(str(zone))
    moved = local.dt.offset_by(f"{span.amount}{_POLARS_UNIT[span.unit]}")
    return moved.dt.convert_time_zone("UTC")


def duration_text(span: Duration) -> str:
    """``3d``, ``24h``, ``1个月`` — for decision reasons."""
    return f"{span.amount}{_UNIT_WORD[span.unit]}"


def _window_start(column: pl.Expr, start: dt.time, end: dt.time, zone: ZoneInfo) -> pl.Expr:
    """The first moment at or after ``column`` whose local time is inside [start, end)."""
    local = column.dt.convert_time_zone(str(zone))
    minutes = local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)
    lo, hi = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    day = local.dt.truncate("1d")
    opening = day + pl.duration(minutes=lo)
    return (
        pl.when(minutes < lo)
        .then(opening)
        .when(minutes >= hi)
        .then(opening.dt.offset_by("1d"))
        .otherwise(local)
        .dt.convert_time_zone("UTC")
    )


# --------------------------------------------------------------------------------------------
# Reasons
# --------------------------------------------------------------------------------------------


def describe(cond: Condition) -> str:
    """A condition as an operator reads it: ``next_maintenance_due_date between +15d..+21d``."""
    if isinstance(cond, AllOf):
        return " and ".join(_paren(c) for c in cond.items)
    if isinstance(cond, AnyOf):
        return " or ".join(_paren(c) for c in cond.items)
    if isinstance(cond, Not):
        return f"not {_paren(cond.item)}"
    if isinstance(cond, Field):
        return f"{cond.column} {cond.op} {_value(cond.value)}"
    window = f" in the last {cond.within}" if cond.within else ""
    where = f" where {' and '.join(describe(w) for w in cond.where)}" if cond.where else ""
    return f"count of {cond.table}{where}{window} {cond.op} {_value(cond.value)}"


def _paren(cond: Condition) -> str:
    text = describe(cond)
    return f"({text})" if isinstance(cond, AllOf | AnyOf) else text


def _value(value: object) -> str:
    if isinstance(value, tuple):
        return "..".join(str(v) for v in value) if len(value) == 2 else str(list(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------------------------
# Moving journeys
# --------------------------------------------------------------------------------------------


def _following(book: Playbook, step: Step, explicit: str | None) -> str:
    if explicit:
        return explicit
    index = book.steps.index(step)
    return book.steps[index + 1].id if index + 1 < len(book.steps) else _END


def _decide(
    group: pl.DataFrame, step: Step, action: str, reason: pl.Expr | str, moves: Moves
) -> None:
    """Record one decision per journey of ``group`` (at its ``wake_at``, numbered ``seq``)."""
    if group.height == 0:
        return
    why = pl.lit(reason) if isinstance(reason, str) else reason
    moves.decisions.append(
        group.select(
            pl.col("id").alias("journey_id"),
            pl.col("seq"),
            pl.lit(step.id).alias("step"),
            pl.lit(action).alias("action"),
            pl.col("wake_at").alias("at"),
            why.cast(pl.String).alias("reason"),
        )
    )


def _go(group: pl.DataFrame, target: str, moves: Moves, wake: pl.Expr | None = None) -> None:
    """Move ``group`` to ``target`` (or finish it at ``end``), counting the decision taken."""
    if group.height == 0:
        return
    at = pl.col("wake_at")
    seq = pl.col("seq") + 1
    if target == _END:
        moved = group.with_columns(
            pl.lit("completed").alias("status"),
            pl.lit(None, pl.String).alias("step"),
            at.alias("finished_at"),
            pl.lit(None, UTC).alias("wake_at"),
            pl.lit("end").alias("end_reason"),
            seq,
        )
    else:
        moved = group.with_columns(
            pl.lit(target).alias("step"),
            at.alias("step_since"),
            (wake if wake is not None else at).alias("wake_at"),
            seq,
        )
    moves.journeys.append(moved)


def _stay(group: pl.DataFrame, until: pl.Expr, moves: Moves) -> None:
    """Keep ``group`` on its step, to look again at ``until``."""
    if group.height:
        moves.journeys.append(group.with_columns(until.alias("wake_at"), pl.col("seq") + 1))


def _key() -> pl.Expr:
    return pl.format("j{}:{}", pl.col("id"), pl.col("seq"))


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _send(book: Playbook, step: SendStep, group: pl.DataFrame, moves: Moves) -> None:
    channels = ",".join(step.channels)
    moves.touches.append(
        group.select(
            _key().alias("idempotency_key"),
            pl.col("customer_id"),
            pl.col("dealer_id"),
            pl.lit(step.channels[0]).alias("channel"),
            pl.lit(channels).alias("channels"),
            pl.lit(step.template).alias("template"),
            pl.lit(book.name).alias("playbook"),
            pl.lit(book.version).alias("version"),
            pl.lit(step.id).alias("step"),
            pl.lit(step.priority).alias("priority"),
            pl.lit("candidate").alias("status"),
            pl.lit(0, pl.Int64).alias("cost_fen"),  # the contact policy prices the channel
            # The moment of the proposal; the contact policy moves scheduled_at to the send
            # time it chooses, proposed_at stays.
            pl.col("wake_at").alias("scheduled_at"),
            pl.col("wake_at").alias("proposed_at"),
            pl.col("id").alias("journey_id"),
        )
    )
    reason = f"candidate {step.priority} message '{step.template}' on {' > '.join(step.channels)}"
    _decide(group, step, "send", reason, moves)
    _go(group, _following(book, step, step.next), moves)


def _task(
    book: Playbook, step: TaskStep, group: pl.DataFrame, zone: ZoneInfo, moves: Moves
) -> None:
    moves.tasks.append(
        group.select(
            _key().alias("idempotency_key"),
            pl.col("customer_id"),
            pl.col("dealer_id"),
            pl.lit(step.role).alias("role"),
            pl.lit("call" if step.script else "task").alias("kind"),
            pl.lit(step.title).alias("title"),
            offset(pl.col("wake_at"), step.sla, zone).alias("due_at"),
            pl.lit("open").alias("status"),
            pl.col("id").alias("journey_id"),
            pl.lit(book.name).alias("playbook"),
            pl.lit(step.id).alias("step"),
            pl.lit(step.script).cast(pl.String).alias("template"),
            pl.lit(book.version).alias("version"),
            # The business moment of the step, so a day's tasks can be listed by it.
            pl.col("wake_at").alias("created_at"),
        )
    )
    reason = f"task for the {step.role}: {step.title} (due within {duration_text(step.sla)})"
    _decide(group, step, "task", reason, moves)
    _go(group, _following(book, step, step.next), moves)


def _wait(
    book: Playbook, step: WaitStep, group: pl.DataFrame, zone: ZoneInfo, moves: Moves
) -> None:
    target = _following(book, step, step.next)
    if step.duration is not None:
        wake = offset(pl.col("wake_at"), step.duration, zone)
        reason = f"wait {duration_text(step.duration)}"
    else:
        assert step.window is not None
        start, end = step.window
        wake = _window_start(pl.col("wake_at"), start, end, zone)
        reason = f"wait until {start:%H:%M}-{end:%H:%M} local time"
    timed = group.with_columns(wake.alias("_wake"))
    _decide(
        timed,
        step,
        "wait",
        pl.format("{} (until {})", pl.lit(reason), _local_text(pl.col("_wake"), zone)),
        moves,
    )
    # Waiting ends the evaluation: the next step runs when the journey wakes.
    _go(timed.drop("_wake"), target, moves, wake=wake)


def _local_text(column: pl.Expr, zone: ZoneInfo) -> pl.Expr:
    return column.dt.convert_time_zone(str(zone)).dt.strftime("%Y-%m-%d %H:%M")


def _branch(
    book: Playbook, step: BranchStep, group: pl.DataFrame, lookups: Lookups, moves: Moves
) -> None:
    otherwise = _following(book, step, step.else_)
    if step.condition is not None:
        members = lookups.holds(step.condition, group["customer_id"])
        yes = group["customer_id"].is_in(members.implode())
        test = f"if {describe(step.condition)}"
    elif step.trigger:
        yes = group["trigger"].is_in(list(step.trigger))
        test = f"if the trigger is {' or '.join(step.trigger)}"
    else:
        assert step.of is not None
        labels = _labels(group, book.step(step.of), lookups, deadline_passed=True)
        yes = _any_of(labels, step.outcome)
        test = f"if '{step.of}' had {' or '.join(step.outcome)}"
    then, other = group.filter(yes), group.filter(~yes)
    _decide(then, step, "branch", f"{test}: yes -> {step.then}", moves)
    _decide(other, step, "branch", f"{test}: no -> {otherwise}", moves)
    _go(then, step.then, moves)
    _go(other, otherwise, moves)


def _labels(
    group: pl.DataFrame, source: Step, lookups: Lookups, *, deadline_passed: bool | pl.Series
) -> pl.DataFrame:
    """Per journey of ``group`` (same order): its source step's outcome labels and finality.

    When the deadline has passed, silence is an outcome too: nothing answered means
    ``no_response``. A call nobody logged is not taken as "not connected": without the
    outcome nobody knows, and the customer gets no SMS on a guess.
    """
    found = lookups.outcomes(group, source)
    joined = group.select("id").join(
        found.rename({"journey_id": "id"}), on="id", how="left", maintain_order="left"
    )
    labels = joined["labels"].fill_null(pl.Series([[]], dtype=pl.List(pl.String)))
    final = joined["final"].fill_null(False)
    passed = (
        deadline_passed
        if isinstance(deadline_passed, pl.Series)
        else pl.Series([deadline_passed] * group.height, dtype=pl.Boolean)
    )
    frame = pl.DataFrame({"labels": labels, "final": final, "passed": passed})
    answered = pl.col("labels").list.contains("answered") | pl.col("labels").list.contains(
        "connected"
    )
    silent = pl.col("passed") & ~answered
    return frame.with_columns(
        pl.when(silent)
        .then(pl.col("labels").list.concat(pl.lit(list(_SILENT), pl.List(pl.String))))
        .otherwise(pl.col("labels"))
        .alias("labels"),
        (pl.col("final") | pl.col("passed")).alias("final"),
    )


def _any_of(labels: pl.DataFrame, wanted: tuple[str, ...]) -> pl.Series:
    hit = pl.lit(False)
    for name in wanted:
        hit = hit | pl.col("labels").list.contains(name)
    return labels.select(hit.alias("hit"))["hit"]


def _fallback(
    book: Playbook,
    step: FallbackStep,
    group: pl.DataFrame,
    lookups: Lookups,
    zone: ZoneInfo,
    moves: Moves,
) -> None:
    following = _following(book, step, step.next)
    deadline = offset(pl.col("step_since"), step.within, zone)
    timed = group.with_columns(deadline.alias("_deadline"))
    passed = timed.select(pl.col("wake_at") >= pl.col("_deadline"))["wake_at"]
    labels = _labels(timed, book.step(step.of), lookups, deadline_passed=passed)
    hit = _any_of(labels, step.on)
    decided = hit | labels["final"]
    on = " or ".join(step.on)
    within = duration_text(step.within)

    jump = timed.filter(hit)
    carry_on = timed.filter(~hit & decided)
    waiting = timed.filter(~decided)
    _decide(jump, step, "fallback", f"'{step.of}' had {on} within {within}: -> {step.goto}", moves)
    _decide(
        carry_on,
        step,
        "fallback",
        f"'{step.of}' did not have {on} within {within}: -> {following}",
        moves,
    )
    _decide(
        waiting,
        step,
        "wait",
        pl.format(
            "waiting for {} from '{}' (until {})",
            pl.lit(on),
            pl.lit(step.of),
            _local_text(pl.col("_deadline"), zone),
        ),
        moves,
    )
    # Every evaluation is logged: a parked journey wakes only on news or at its deadline.
    _go(jump.drop("_deadline"), step.goto, moves)
    _go(carry_on.drop("_deadline"), following, moves)
    _stay(waiting.drop("_deadline"), deadline, moves)


def apply_step(
    book: Playbook, step: Step, group: pl.DataFrame, lookups: Lookups, zone: ZoneInfo
) -> Moves:
    """Evaluate ``step`` of ``book`` for every journey in ``group`` at its ``wake_at``."""
    moves = Moves()
    if isinstance(step, SendStep):
        _send(book, step, group, moves)
    elif isinstance(step, TaskStep):
        _task(book, step, group, zone, moves)
    elif isinstance(step, WaitStep):
        _wait(book, step, group, zone, moves)
    elif isinstance(step, BranchStep):
        _branch(book, step, group, lookups, moves)
    else:
        _fallback(book, step, group, lookups, zone, moves)
    return moves


def unknown_step(group: pl.DataFrame, step_id: str) -> Moves:
    """Journeys on a step their version does not have (a damaged store): end them, saying so."""
    moves = Moves()
    reason = f"step '{step_id}' is not in this playbook version; the journey is ended"
    moves.decisions.append(
        group.select(
            pl.col("id").alias("journey_id"),
            pl.col("seq"),
            pl.lit(step_id).alias("step"),
            pl.lit("exit").alias("action"),
            pl.col("wake_at").alias("at"),
            pl.lit(reason).alias("reason"),
        )
    )
    moves.journeys.append(
        group.with_columns(
            pl.lit("exited").alias("status"),
            pl.lit(None, pl.String).alias("step"),
            pl.col("wake_at").alias("finished_at"),
            pl.lit(None, UTC).alias("wake_at"),
            pl.lit("unknown_step").alias("end_reason"),
            pl.col("seq") + 1,
        )
    )
    return moves
