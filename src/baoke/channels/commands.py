"""Commands: ``baoke dispatch``, ``baoke pause`` / ``baoke resume``, ``baoke tasks``.

``baoke dispatch`` sends what is due in the outbox (until nothing is, or ``--forever`` as a
service) and prints what happened; ``dispatch status`` shows the queue, the pauses and the
providers; ``dispatch check`` makes every configured provider (a configuration error shows
before anything is claimed); ``dispatch resolve`` settles rows no provider could confirm.
``baoke pause`` and ``baoke resume`` are the manual emergency stop, audited. ``baoke tasks``
lists the staff's call tasks and logs a call's outcome, which the playbooks react to.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, select, text

from baoke.channels import emergency
from baoke.channels.dispatcher import Dispatcher, DispatchResult
from baoke.channels.inbound import log_call
from baoke.channels.outbox import Settled, release, settle
from baoke.channels.receipts import poll as poll_receipts
from baoke.channels.registry import Providers, available
from baoke.channels.wecom import WecomAdapter
from baoke.channels.wecom_events import transfer_relations
from baoke.config import Settings, load_settings
from baoke.errors import ConfigError, InputError
from baoke.journeys.commands import store_engine, store_failed
from baoke.journeys.vocabulary import CALL_OUTCOMES
from baoke.privacy import mask_mobile
from baoke.store import models as m
from baoke.store.db import STORE_FAILURES
from baoke.store.models import table
from baoke.touches import CHANNELS

__all__ = [
    "dispatch_app",
    "pause_command",
    "resume_command",
    "run_dispatch",
    "tasks_app",
    "wecom_app",
]

dispatch_app = typer.Typer(
    help="Send what is due in the outbox through the configured providers.",
    invoke_without_command=True,
)
tasks_app = typer.Typer(help="The staff's call tasks: list them, log a call.", no_args_is_help=True)
console = Console()


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def run_dispatch(
    settings: Settings,
    engine: Engine,
    *,
    forever: bool = False,
    max_seconds: float | None = None,
    channels: list[str] | None = None,
) -> DispatchResult:
    """Dispatch until the outbox has nothing due (or forever, until SIGTERM / Ctrl-C)."""
    providers = Providers(settings, engine)
    providers.check()
    dispatcher = Dispatcher(settings, engine, providers=providers, channels=channels)
    stop = threading.Event()
    previous = None
    if forever and threading.current_thread() is threading.main_thread():
        # Finish the pass under way, then stop: a claimed batch is settled, not abandoned.
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return dispatcher.run(until_empty=not forever, max_seconds=max_seconds, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        dispatcher.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def print_dispatch(result: DispatchResult, out: Console = console) -> None:
    """A dispatch result in a few lines."""
    out.print(
        f"[bold]dispatch[/]: {result.claimed:,} claimed, {result.sent:,} sent "
        f"({', '.join(f'{k} {v:,}' for k, v in result.by_provider.items()) or 'none'}) "
        f"in {result.requests:,} requests, {result.seconds:.1f}s"
    )
    others = {
        "failed": result.failed,
        "suppressed at send time": result.suppressed,
        "expired": result.expired,
        "retry later": result.retried,
        "waiting for sending hours": result.waiting,
        "in doubt": result.in_doubt,
        "recovered as sent": result.recovered_sent,
        "recovered and queued again": result.recovered_queued,
        "unknown (see dispatch status)": result.unknown,
        "failovers": result.failovers,
    }
    shown = ", ".join(f"{k} {v:,}" for k, v in others.items() if v)
    if shown:
        out.print(f"  {shown}")
    for batch in result.paused:
        out.print(f"  [red]paused batch {escape(batch)}[/] by the emergency monitor")


@dispatch_app.callback()
def dispatch_command(
    ctx: typer.Context,
    forever: Annotated[
        bool, typer.Option("--forever", help="keep polling (a service); stop with SIGTERM")
    ] = False,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", min=0, help="stop after this long")
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="only this channel (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Send what is due now, then stop (``--forever``: keep going)."""
    if ctx.invoked_subcommand is not None:
        return
    unknown = sorted(set(channel or ()) - set(CHANNELS))
    if unknown:
        raise InputError(f"unknown channel {unknown[0]!r}; channels are {', '.join(CHANNELS)}")
    settings = load_settings()
    engine = store_engine(settings)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_dispatch(
            settings, engine, forever=forever, max_seconds=max_seconds, channels=channel
        )
    except STORE_FAILURES as exc:
        raise store_failed("dispatch", exc) from exc
    if as_json:
        _print_json(result.as_dict())
        return
    print_dispatch(result)


def queue_status(conn: Any) -> dict[str, Any]:
    """The outbox by status and channel, the rows needing an operator, the pauses."""
    counts = conn.execute(
        text("SELECT status, channel, count(*) FROM outbox GROUP BY status, channel")
    ).all()
    by_status: dict[str, dict[str, int]] = {}
    for status, channel, n in counts:
        by_status.setdefault(status, {})[channel] = int(n)
    unknown = conn.execute(
        text(
            "SELECT id, touch_id, channel, provider, send_ref, last_error FROM outbox "
            "WHERE status = 'unknown' ORDER BY id LIMIT 20"
        )
    ).mappings()
    return {
        "outbox": by_status,
        "unknown": [dict(r) for r in unknown],
        "pauses": emergency.list_pauses(conn),
    }


@dispatch_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """The outbox by status and channel, rows in doubt, pauses, and the providers' routes."""
    settings = load_settings()
    engine = store_engine(settings)
    with engine.connect() as conn:
        data = queue_status(conn)
    data["routes"] = settings.channels.routes
    data["installed_providers"] = sorted(available())
    if as_json:
        _print_json(data)
        return
    grid = Table("status", *CHANNELS, title="outbox")
    for status, row in sorted(data["outbox"].items()):
        grid.add_row(status, *(f"{row.get(c, 0):,}" for c in CHANNELS))
    console.print(grid)
    for channel, names in data["routes"].items():
        console.print(f"  {channel}: {' > '.join(names)}")
    for row in data["unknown"]:
        console.print(f"  [yellow]unknown[/] outbox {row['id']}: {escape(row['last_error'] or '')}")
    for pause in data["pauses"]:
        what = "everything" if pause["scope"] == "all" else f"{pause['scope']} {pause['target']}"
        at = pause["paused_at"]
        since = (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).astimezone(settings.zone)
        console.print(
            f"  [red]paused[/] {escape(what)} since {since:%Y-%m-%d %H:%M} by "
            f"{pause['paused_by']}: {escape(pause['reason'])}"
        )


@dispatch_app.command("check")
def check_command() -> None:
    """Make every configured provider now: missing secrets and bad options show here."""
    settings = load_settings()
    engine = store_engine(settings)
    providers = Providers(settings, engine)
    try:
        serving = providers.check()
    finally:
        providers.close()
    for channel, names in settings.channels.routes.items():
        console.print(f"{channel}: {' > '.join(names)} (ok)")
    console.print(f"{len(serving)} provider(s) ready")
    # Which secrets are set, never what they are.
    marks = ("SECRET", "KEY", "TOKEN", "PASSWORD")
    names = sorted(n for n in providers.secrets if any(mark in n for mark in marks))
    console.print("secrets set: " + (", ".join(names) or "none"))


@dispatch_app.command("receipts")
def receipts_command(
    days: Annotated[int, typer.Option("--days", min=1, max=28, help="how far back")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Fetch the receipts WeCom and JPush do not push (run it every few minutes)."""
    settings = load_settings()
    engine = store_engine(settings)
    try:
        done = poll_receipts(settings, engine, days=days)
    except STORE_FAILURES as exc:
        raise store_failed("receipts", exc) from exc
    if as_json:
        _print_json(done.as_dict())
        return
    console.print(
        f"receipts: {done.received:,} fetched, {done.stored:,} new, {done.unmatched:,} for no "
        "known touch"
    )


@dispatch_app.command("resolve")
def resolve_command(
    outbox_id: Annotated[list[int], typer.Argument(help="outbox ids in state 'unknown'")],
    sent: Annotated[
        bool, typer.Option("--sent/--resend", help="the provider has it / send it again")
    ] = False,
) -> None:
    """Settle rows no provider could confirm: mark them sent, or queue them to send again."""
    settings = load_settings()
    engine = store_engine(settings)
    outbox = table(m.OutboxEntry)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        found = conn.execute(
            select(outbox.c.id, outbox.c.touch_id).where(
                outbox.c.id.in_(outbox_id), outbox.c.status == "unknown"
            )
        ).all()
        if len(found) != len(set(outbox_id)):
            raise InputError("every id must be an outbox row in state 'unknown' (dispatch status)")
        if sent:
            confirmed = [Settled(i, t, "sent", None, "confirmed by an operator") for i, t in found]
            settle(conn, confirmed, now)
        else:
            release(conn, [(i, "pending", now, "resend ordered by an operator") for i, _ in found])
        conn.execute(
            table(m.AuditEntry)
            .insert()
            .values(
                actor="cli",
                action="dispatch_resolve",
                entity="outbox",
                entity_id=",".join(str(i) for i, _ in found),
                detail={"as": "sent" if sent else "resend"},
            )
        )
    console.print(f"{len(found)} row(s) {'marked sent' if sent else 'queued to send again'}")


def _scope(batch: str | None, channel: str | None, everything: bool) -> tuple[str, str | None]:
    chosen = [x for x in (batch, channel) if x] + (["all"] if everything else [])
    if len(chosen) != 1:
        raise InputError("name exactly one of --batch ID, --channel NAME or --all")
    if channel and channel not in CHANNELS:
        raise InputError(f"unknown channel {channel!r}; channels are {', '.join(CHANNELS)}")
    if everything:
        return "all", None
    return ("batch", batch) if batch else ("channel", channel)


_BATCH = typer.Option("--batch", help="a batch: plan day/playbook, e.g. 2026-12-01/churn_winback")
_CHANNEL = typer.Option("--channel", help="one channel")
_ALL = typer.Option("--all", help="everything")


def pause_command(
    batch: Annotated[str | None, _BATCH] = None,
    channel: Annotated[str | None, _CHANNEL] = None,
    everything: Annotated[bool, _ALL] = False,
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit log)")] = "",
) -> None:
    """Emergency stop: no new sends of a batch, a channel or everything until resumed."""
    scope, target = _scope(batch, channel, everything)
    if not reason.strip():
        raise InputError("--reason is required: the audit log keeps why sending stopped")
    settings = load_settings()
    engine = store_engine(settings)
    made = emergency.pause(
        engine, settings, scope=scope, target=target, reason=reason.strip(), actor="cli"
    )
    what = "everything" if target is None else f"{scope} {target}"
    console.print(f"paused {what}" if made else f"{what} was already paused")


def resume_command(
    batch: Annotated[str | None, _BATCH] = None,
    channel: Annotated[str | None, _CHANNEL] = None,
    everything: Annotated[bool, typer.Option("--all", help="lift every pause")] = False,
) -> None:
    """Lift a pause (``--all``: every pause)."""
    scope, target = _scope(batch, channel, everything)
    settings = load_settings()
    engine = store_engine(settings)
    lifted = emergency.resume(engine, settings, scope=scope, target=target, actor="cli")
    console.print(f"lifted {lifted} pause(s)" if lifted else "nothing was paused there")


@tasks_app.command("list")
def tasks_list(
    dealer: Annotated[str | None, typer.Option("--dealer", help="dealer code")] = None,
    role: Annotated[str | None, typer.Option("--role", help="only this role")] = None,
    status: Annotated[str, typer.Option("--status", help="open / done / cancelled")] = "open",
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Call tasks, soonest due first (mobiles masked)."""
    settings = load_settings()
    engine = store_engine(settings)
    tasks, customers, dealers = table(m.Task), table(m.Customer), table(m.Dealer)
    query = (
        select(
            tasks.c.id,
            dealers.c.code.label("dealer"),
            tasks.c.role,
            tasks.c.title,
            tasks.c.due_at,
            tasks.c.status,
            tasks.c.outcome,
            customers.c.id.label("customer_id"),
            customers.c.mobile,
        )
        .join(customers, customers.c.id == tasks.c.customer_id)
        .outerjoin(dealers, dealers.c.id == tasks.c.dealer_id)
        .where(tasks.c.status == status)
        .order_by(tasks.c.due_at, tasks.c.id)
        .limit(limit)
    )
    if dealer:
        query = query.where(dealers.c.code == dealer)
    if role:
        query = query.where(tasks.c.role == role)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["mobile"] = mask_mobile(row["mobile"])
        due = row["due_at"]
        row["due_at"] = (due if due.tzinfo else due.replace(tzinfo=dt.UTC)).astimezone(
            settings.zone
        )
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print(f"no {status} tasks")
    for row in rows:
        # One line a task: readable in a narrow terminal, and easy to grep.
        console.print(
            f"{row['id']:>6}  {row['dealer'] or '-':<6}  {row['role']:<16}  "
            f"due {row['due_at']:%Y-%m-%d %H:%M}  customer {row['customer_id']} "
            f"{row['mobile'] or ''}  {row['outcome'] or row['status']}  {escape(row['title'])}",
            soft_wrap=True,
        )


@tasks_app.command("log")
def tasks_log(
    task_id: Annotated[int, typer.Argument(help="the task")],
    outcome: Annotated[str, typer.Argument(help=" / ".join(CALL_OUTCOMES))],
) -> None:
    """Log a call's outcome; the playbooks react at once (a missed call: the fallback SMS)."""
    settings = load_settings()
    result = log_call(settings, store_engine(settings), task_id, outcome)
    console.print(
        f"task {task_id}: {outcome} logged"
        + "".join(f"; {k} {v:,}" for k, v in result.effects.items())
    )


wecom_app = typer.Typer(help="WeCom customer contact: hand customers over.", no_args_is_help=True)


@wecom_app.command("transfer")
def wecom_transfer(
    from_staff: Annotated[str, typer.Option("--from", help="staff number handing over")],
    to_staff: Annotated[str, typer.Option("--to", help="staff number taking over")],
    message: Annotated[
        str | None, typer.Option("--message", help="what customers are told (in service only)")
    ] = None,
) -> None:
    """Hand a staff member's WeCom customers to a colleague (离职继承 when they have left,
    在职继承 otherwise); the relations move when WeCom accepts, and it is audited."""
    settings = load_settings()
    engine = store_engine(settings)
    staff, relations = table(m.Staff), table(m.WecomRelation)
    with engine.connect() as conn:
        found = {
            row.staff_no: row
            for row in conn.execute(
                select(staff.c.id, staff.c.staff_no, staff.c.wecom_userid, staff.c.status).where(
                    staff.c.staff_no.in_([from_staff, to_staff])
                )
            )
        }
        for number in (from_staff, to_staff):
            if number not in found or not found[number].wecom_userid:
                raise InputError(f"staff {number} is not known or has no WeCom userid")
        giver, taker = found[from_staff], found[to_staff]
        externals = [
            r[0]
            for r in conn.execute(
                select(relations.c.external_userid).where(
                    relations.c.staff_id == giver.id, relations.c.deleted_at.is_(None)
                )
            )
        ]
    if not externals:
        console.print(f"{from_staff} has no WeCom customers to hand over")
        return
    providers = Providers(settings, engine)
    try:
        adapter = providers.get("wecom")
        if not isinstance(adapter, WecomAdapter):
            raise ConfigError("configure the 'wecom' provider first ([channels.providers.wecom])")
        if giver.status == "active":
            codes = adapter.transfer_in_service(
                giver.wecom_userid, taker.wecom_userid, externals, message
            )
        else:
            codes = adapter.transfer_resigned(giver.wecom_userid, taker.wecom_userid, externals)
    finally:
        providers.close()
    accepted = [e for e, code in codes.items() if code == 0]
    with engine.begin() as conn:
        moved = transfer_relations(conn, giver.id, taker.id, accepted)
        conn.execute(
            table(m.AuditEntry)
            .insert()
            .values(
                actor="cli",
                action="wecom_transfer",
                entity="staff",
                entity_id=from_staff,
                detail={"to": to_staff, "accepted": len(accepted), "asked": len(externals)},
            )
        )
    refused = {code for code in codes.values() if code != 0}
    console.print(
        f"{len(accepted):,} of {len(externals):,} customers handed to {to_staff} "
        f"({moved:,} relations moved; WeCom completes the takeover within 24 hours)"
        + (f"; refused with errcode {', '.join(map(str, sorted(refused)))}" if refused else "")
    )
