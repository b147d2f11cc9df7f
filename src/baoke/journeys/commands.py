"""Commands: ``baoke run``, ``baoke events ingest``, ``baoke journeys …``, ``baoke candidates``.

Output masks mobiles and names (see :mod:`baoke.privacy`); ``--json`` prints machine-readable
results. A failure in the middle of a run is one error line: each phase commits on its own
and everything is keyed, so the same command can simply be run again.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Connection, Engine

from baoke.config import Settings, load_settings
from baoke.errors import BaokeError, InputError
from baoke.ingest.store_io import query_frame
from baoke.journeys.catalog import Catalog, load_catalog, set_enabled
from baoke.journeys.context import build_contexts, render_message
from baoke.journeys.engine import load_journeys
from baoke.journeys.run import RunResult, ingest_events, run_day
from baoke.journeys.steps import UTC
from baoke.playbooks.templates import TemplateError
from baoke.store.db import STORE_FAILURES, ensure_schema, make_engine

__all__ = [
    "candidates_command",
    "events_app",
    "journeys_app",
    "parse_day",
    "run_command",
    "store_engine",
    "store_failed",
]

events_app = typer.Typer(help="Events: ingest a file and react at once.", no_args_is_help=True)
journeys_app = typer.Typer(
    help="Journeys: where customers are in the playbooks.", no_args_is_help=True
)
console = Console()


def store_engine(settings: Settings) -> Engine:
    """The store of ``settings``, migrated to the newest schema if it is not."""
    engine = make_engine(settings.url)
    ensure_schema(engine)
    return engine


def parse_day(text: str | None, settings: Settings) -> dt.date:
    """The ``--date`` option's business date (default today), or one clear error."""
    if text is None:
        return dt.datetime.now(settings.zone).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--date must be a date like 2026-11-01, not {text!r}") from None


def store_failed(what: str, exc: BaseException) -> BaokeError:
    """A store failure as one line, saying that running the command again is safe."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return BaokeError(
        f"{what} failed: {first} (run it again: finished work is kept, none is repeated)"
    )


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def run_command(
    date: Annotated[
        str | None, typer.Option("--date", help="business date YYYY-MM-DD (default today)")
    ] = None,
    skip_profiles: Annotated[
        bool, typer.Option("--skip-profiles", help="use the profiles as they are")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    dispatch: Annotated[
        bool,
        typer.Option("--dispatch/--no-dispatch", help="send what is due now (default: yes)"),
    ] = True,
) -> None:
    """Run one day: profiles, events, journeys, the contact policy, then send what is due."""
    # Imported here: the channels import the journeys, not the other way round.
    from baoke.channels.commands import print_dispatch, run_dispatch

    settings = load_settings()
    day = parse_day(date, settings)
    engine = store_engine(settings)
    try:
        result = run_day(settings, engine, day, refresh=not skip_profiles)
        sent = run_dispatch(settings, engine) if dispatch else None
    except STORE_FAILURES as exc:
        raise store_failed("run", exc) from exc
    if as_json:
        _print_json({**result.as_dict(), "dispatch": sent.as_dict() if sent else None})
        return
    _print_run(result)
    if sent is not None:
        print_dispatch(sent, console)


def _print_run(result: RunResult) -> None:
    adv, enr = result.advance, result.enrolment
    console.print(f"[bold]run {result.day}[/] up to {result.until:%Y-%m-%d %H:%M} UTC")
    console.print(
        f"  events: {result.events_derived:,} from records, {result.events.processed:,} processed"
        + "".join(f"; {k} {v:,}" for k, v in result.events.effects.items())
    )
    if result.checks:
        console.print("  checks: " + ", ".join(f"{k} {v:,}" for k, v in result.checks.items()))
    enrolled = enr.enrolled + result.events.enrolment.enrolled
    held = enr.holdout + result.events.enrolment.holdout
    console.print(f"  enrolled: {enrolled:,} (+{held:,} held out for measurement)")
    for reason, n in {**enr.skipped, **result.events.enrolment.skipped}.items():
        console.print(f"    not enrolled, {reason}: {n:,}")
    console.print(
        f"  advanced: {adv.evaluations:,} evaluations in {adv.waves} waves -> "
        f"{adv.touches:,} candidate touches, {adv.tasks:,} tasks, {adv.completed:,} ended"
    )
    plan = result.plan
    if plan:
        console.print(
            f"  policy: {plan['candidates']:,} candidates -> "
            + (", ".join(f"{k} {v:,}" for k, v in plan["outcomes"].items()) or "nothing to decide")
            + " (`baoke plan` shows the day's plan, `baoke plan explain ID` one customer)"
        )
    console.print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))


@events_app.command("ingest")
def ingest_command(
    file: Annotated[Path, typer.Argument(help="events as JSONL or CSV")],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Store the events of a file and let the journeys react now (not at the next daily run)."""
    if not file.is_file():
        raise InputError(f"no such file: {file}")
    settings = load_settings()
    engine = store_engine(settings)
    try:
        read, stored, quarantine, events, moved = ingest_events(settings, engine, file)
    except STORE_FAILURES as exc:
        raise store_failed("event ingest", exc) from exc
    data = {
        "rows_read": read,
        "stored": stored,
        "quarantine_file": str(quarantine) if quarantine else None,
        "effects": events.effects,
        "enrolled": events.enrolment.enrolled,
        "held_out": events.enrolment.holdout,
        "touches": moved.touches,
        "tasks": moved.tasks,
    }
    if as_json:
        _print_json(data)
        return
    console.print(
        f"{read:,} rows read, {stored:,} new events; "
        + ", ".join(f"{k} {v:,}" for k, v in events.effects.items())
    )
    console.print(
        f"enrolled {events.enrolment.enrolled:,}; {moved.touches:,} candidate touches, "
        f"{moved.tasks:,} tasks"
    )
    if quarantine:
        console.print(f"[yellow]bad rows quarantined in {escape(str(quarantine))}[/]")


@journeys_app.command("list")
def list_journeys(
    playbook: Annotated[str | None, typer.Option(help="only this playbook")] = None,
    status: Annotated[
        str | None, typer.Option(help="active, paused, holdout, completed or exited")
    ] = None,
    customer: Annotated[int | None, typer.Option(help="only this customer id")] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Journeys, newest first, with counts by playbook and status."""
    settings = load_settings()
    engine = store_engine(settings)
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    for column, value in (("playbook", playbook), ("status", status), ("customer_id", customer)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    with engine.connect() as conn:
        rows = load_journeys(conn, " AND ".join(where) + f" ORDER BY id DESC LIMIT {limit}", params)
        counts = query_frame(
            conn,
            "SELECT playbook, status, count(*) AS n FROM journeys WHERE "
            + " AND ".join(where)
            + " GROUP BY playbook, status ORDER BY playbook, status",
            params,
            {"playbook": pl.String(), "status": pl.String(), "n": pl.Int64()},
        )
    if as_json:
        _print_json({"counts": counts.to_dicts(), "journeys": rows.to_dicts()})
        return
    summary = Table(title="journeys by playbook and status")
    for column in ("playbook", "status", "journeys"):
        summary.add_column(column)
    for name, state, n in counts.iter_rows():
        summary.add_row(name, state, f"{n:,}")
    console.print(summary)
    table = Table(title=f"latest {rows.height}")
    for column in ("id", "playbook", "customer", "status", "step", "next look", "end"):
        table.add_column(column)
    for r in rows.iter_rows(named=True):
        table.add_row(
            str(r["id"]),
            r["playbook"],
            str(r["customer_id"]),
            r["status"],
            r["step"] or "",
            _local(r["wake_at"], settings),
            r["end_reason"] or "",
        )
    console.print(table)


def _local(value: dt.datetime | None, settings: Settings) -> str:
    return value.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M") if value else ""


@journeys_app.command("show")
def show_journey(
    journey_id: Annotated[int, typer.Argument(help="journey id")],
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """One journey: where it stands, and every decision with its reason."""
    settings = load_settings()
    engine = store_engine(settings)
    with engine.connect() as conn:
        found = load_journeys(conn, "id = ?", [journey_id])
        decisions = query_frame(
            conn,
            "SELECT seq, at, step, action, reason, touch_id, task_id FROM journey_decisions "
            "WHERE journey_id = ? ORDER BY seq",
            [journey_id],
            {
                "seq": pl.Int64(),
                "at": UTC,
                "step": pl.String(),
                "action": pl.String(),
                "reason": pl.String(),
                "touch_id": pl.Int64(),
                "task_id": pl.Int64(),
            },
        )
    if found.height == 0:
        raise InputError(f"no journey {journey_id}; see `baoke journeys list`")
    journey = found.row(0, named=True)
    if as_json:
        _print_json({"journey": journey, "decisions": decisions.to_dicts()})
        return
    console.print(
        f"[bold]journey {journey_id}[/]: {journey['playbook']} v{journey['version']}, customer "
        f"{journey['customer_id']}, {journey['status']}"
        + (
            f" at {journey['step']} until {_local(journey['wake_at'], settings)}"
            if journey["step"]
            else ""
        )
        + (f" ({journey['end_reason']})" if journey["end_reason"] else "")
    )
    for r in decisions.iter_rows(named=True):
        made = f" touch {r['touch_id']}" if r["touch_id"] else ""
        made += f" task {r['task_id']}" if r["task_id"] else ""
        console.print(
            f"  {r['seq']:>3} {_local(r['at'], settings)} {r['action']:<8} "
            f"{escape(r['step'] or '-')}: {escape(r['reason'])}{made}"
        )


def candidates_command(
    date: Annotated[
        str | None, typer.Option("--date", help="business date YYYY-MM-DD (default today)")
    ] = None,
    playbook: Annotated[str | None, typer.Option(help="only this playbook")] = None,
    limit: Annotated[int, typer.Option(min=1, help="touches and tasks to show, each")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """The candidate touches and tasks of a day, rendered for the customer (names masked)."""
    settings = load_settings()
    day = parse_day(date, settings)
    engine = store_engine(settings)
    start = dt.datetime.combine(day, dt.time(0), settings.zone).astimezone(dt.UTC)
    end = start + dt.timedelta(days=1)
    extra, params = ("AND playbook = ?", [playbook]) if playbook else ("", [])
    with engine.connect() as conn:
        touches = query_frame(
            conn,
            "SELECT id, customer_id, playbook, version, step, template, channels, priority, "
            "proposed_at, status FROM touches WHERE proposed_at >= ? AND proposed_at < ? "
            f"{extra} ORDER BY id LIMIT {limit}",
            [start, end, *params],
            _TOUCH_SCHEMA,
        )
        tasks = query_frame(
            conn,
            "SELECT id, customer_id, playbook, version, role, title, template, due_at, status, "
            "outcome FROM tasks WHERE journey_id IS NOT NULL AND created_at >= ? "
            f"AND created_at < ? {extra} ORDER BY id LIMIT {limit}",
            [start, end, *params],
            _TASK_SCHEMA,
        )
        totals = _totals(conn, start, end)
        people = pl.concat([touches["customer_id"], tasks["customer_id"]]).unique().to_list()
        contexts = build_contexts(conn, people, as_of=day, settings=settings)
        catalog = load_catalog(conn, settings, record=False)
    rendered = [_render_touch(r, contexts, catalog) for r in touches.iter_rows(named=True)]
    scripts = [_render_task(r, contexts, catalog) for r in tasks.iter_rows(named=True)]
    if as_json:
        _print_json({"day": day, "totals": totals, "touches": rendered, "tasks": scripts})
        return
    console.print(
        f"[bold]candidates for {day}[/]: " + ", ".join(f"{k} {v:,}" for k, v in totals.items())
    )
    for t in rendered:
        console.print(
            f"  touch {t['id']} {t['playbook']}/{t['step']} {t['priority']} "
            f"[{' > '.join(t['channels'])}] {escape(t['greeting'])}: {escape(t['text'])}"
        )
    for t in scripts:
        console.print(
            f"  task {t['id']} {t['playbook']} for {t['role']} due {t['due_at']}: "
            f"{escape(t['title'])} ({escape(t['greeting'])})"
        )


_TOUCH_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "customer_id": pl.Int64(),
    "playbook": pl.String(),
    "version": pl.String(),
    "step": pl.String(),
    "template": pl.String(),
    "channels": pl.String(),
    "priority": pl.String(),
    "proposed_at": UTC,
    "status": pl.String(),
}
_TASK_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "customer_id": pl.Int64(),
    "playbook": pl.String(),
    "version": pl.String(),
    "role": pl.String(),
    "title": pl.String(),
    "template": pl.String(),
    "due_at": UTC,
    "status": pl.String(),
    "outcome": pl.String(),
}


def _totals(conn: Connection, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    counts = query_frame(
        conn,
        "SELECT 'touches' AS what, count(*) AS n FROM touches WHERE proposed_at >= ? AND "
        "proposed_at < ? UNION ALL SELECT 'tasks', count(*) FROM tasks WHERE journey_id IS NOT "
        "NULL AND created_at >= ? AND created_at < ?",
        [start, end, start, end],
        {"what": pl.String(), "n": pl.Int64()},
    )
    return dict(counts.iter_rows())


def _masked_greeting(context: dict[str, object]) -> str:
    surname = str(context.get("surname") or "")
    title = str(context.get("title") or "")
    return f"{surname}{title}" if surname and title else "客户"


def _render_touch(
    row: dict[str, Any], contexts: dict[int, dict[str, object]], catalog: Catalog
) -> dict[str, Any]:
    context = contexts[row["customer_id"]]
    channels = row["channels"].split(",")
    try:
        book = catalog.get(row["playbook"], row["version"])
        message = render_message(book, row["template"], channels[0], context)
        text = message.text
    except (TemplateError, KeyError) as exc:
        text = f"(cannot render: {exc})"
    return {**row, "channels": channels, "greeting": _masked_greeting(context), "text": text}


def _render_task(
    row: dict[str, Any], contexts: dict[int, dict[str, object]], catalog: Catalog
) -> dict[str, Any]:
    context = contexts[row["customer_id"]]
    script = None
    if row["template"]:
        try:
            book = catalog.get(row["playbook"], row["version"])
            script = render_message(book, row["template"], "script", context).text
        except (TemplateError, KeyError) as exc:
            script = f"(cannot render: {exc})"
    return {**row, "greeting": _masked_greeting(context), "script": script}


def playbook_switch(name: str, enabled: bool, reason: str) -> None:
    """``baoke playbooks disable|enable``: switch enrolment off or on, audited."""
    settings = load_settings()
    engine = store_engine(settings)
    with engine.begin() as conn:
        set_enabled(conn, settings, name, enabled, actor="cli", reason=reason)
    state = "enabled" if enabled else "disabled"
    console.print(
        f"{name} {state}" + ("" if enabled else "; journeys already under way finish as they are")
    )
