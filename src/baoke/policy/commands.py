"""Commands: ``baoke plan [--date D]`` and ``baoke plan explain CUSTOMER``.

``baoke plan`` decides the day's open candidates (if any are left; ``baoke run`` has usually
done it) and prints the stored plan of the day: touches and cost by channel, tier and
playbook, and what was not sent, by rule. ``--dry-run`` decides without writing and prints
what would be planned.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from baoke.config import load_settings
from baoke.journeys.commands import parse_day, store_engine, store_failed
from baoke.policy.explain import explain_customer, find_customer
from baoke.policy.plan import plan_day, summarise, summary_of
from baoke.store.db import STORE_FAILURES

__all__ = ["plan_app"]

plan_app = typer.Typer(
    help="The contact policy's plan of a day: what is sent, moved or dropped, and why.",
    invoke_without_command=True,
)
console = Console()

_DATE = typer.Option("--date", help="business date YYYY-MM-DD (default today)")


def _yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


@plan_app.callback()
def plan_command(
    ctx: typer.Context,
    date: Annotated[str | None, _DATE] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="decide without writing; show what would be planned")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Plan the day's open candidates and print the day's plan."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    day = parse_day(date, settings)
    engine = store_engine(settings)
    today = dt.datetime.now(settings.zone).date()
    not_before = dt.datetime.now(dt.UTC) if day == today else None
    try:
        result, plan = plan_day(settings, engine, day, not_before=not_before, dry_run=dry_run)
        if dry_run:
            summary = summary_of(plan.decisions, day)
        else:
            with engine.connect() as conn:
                summary = summarise(conn, day)
    except STORE_FAILURES as exc:
        raise store_failed("plan", exc) from exc
    summary["decided_now"] = result.as_dict()
    summary["dry_run"] = dry_run
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
        return
    print_summary(summary)


def print_summary(summary: dict[str, Any], out: Console | None = None) -> None:
    """The plan summary as tables (the demo prints it too)."""
    con = out or console
    decided = summary.get("decided_now", {})
    head = "would plan" if summary.get("dry_run") else "plan"
    con.print(
        f"[bold]{head} {summary['day']}[/]: {summary['candidates']:,} candidates for "
        f"{summary['customers']:,} customers -> {summary['touches']:,} touches, "
        f"{_yuan(summary['cost_fen'])}"
        + (f" ({decided['candidates']:,} decided just now)" if decided.get("candidates") else "")
    )
    if summary["outcomes"]:
        con.print("  " + ", ".join(f"{k} {v:,}" for k, v in summary["outcomes"].items()))
    grid = Table.grid(padding=(0, 3))
    tables = [
        _table(summary["by_channel"], "channel"),
        _table(summary["by_tier"], "tier"),
        _table(summary["by_playbook"], "playbook"),
    ]
    grid.add_row(*tables[:2])
    con.print(grid)
    con.print(tables[2])
    if summary["not_sent_by_rule"]:
        held = Table(title="not sent, by rule")
        for column in ("outcome", "rule", "candidates"):
            held.add_column(column, justify="right" if column == "candidates" else "left")
        for row in summary["not_sent_by_rule"]:
            held.add_row(row["outcome"], row["rule"], f"{row['n']:,}")
        con.print(held)


def _channel_state(ch: dict[str, Any]) -> str:
    if not ch["reachable"]:
        return f"✗ {ch['unreachable_why']}"
    if ch["consent"] == "granted":
        basis = ", ".join(x for x in (ch["consent_detail"], ch["consent_at"]) if x)
        return "✓ consent" + (f" ({basis})" if basis else "")
    if ch["consent"] == "withdrawn":
        how = ", ".join(x for x in (ch["consent_at"], ch["consent_detail"]) if x)
        return "✗ unsubscribed" + (f" ({how})" if how else "")
    return "~ reachable, no marketing consent (service notices only, where the law allows)"


def _table(rows: list[dict[str, Any]], key: str) -> Table:
    table = Table(title=f"by {key}")
    table.add_column(key)
    table.add_column("touches", justify="right")
    table.add_column("cost", justify="right")
    for row in rows:
        table.add_row(str(row[key]), f"{row['touches']:,}", _yuan(int(row["cost_fen"])))
    return table


@plan_app.command("explain")
def explain_command(
    customer: Annotated[str, typer.Argument(help="customer id or mobile number")],
    date: Annotated[
        str | None, typer.Option("--date", help="plan date (default: the latest for them)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Each candidate for one customer on a day, and why it was sent, moved or dropped."""
    settings = load_settings()
    engine = store_engine(settings)
    day = parse_day(date, settings) if date else None
    try:
        with engine.begin() as conn:
            cid = find_customer(conn, customer)
            found = explain_customer(conn, settings, cid, day)
    except STORE_FAILURES as exc:
        raise store_failed("explain", exc) from exc
    if as_json:
        print(json.dumps(found, ensure_ascii=False, indent=2, default=str))
        return
    print_explanation(found)


def print_explanation(found: dict[str, Any], out: Console | None = None) -> None:
    """One screen a store manager reads: who, this month, the channels, each candidate."""
    con = out or console
    month = found["month"]
    con.print(
        f"[bold]{escape(found['greeting'])}[/] (customer {found['customer_id']}"
        + (f", {found['mobile']}" if found["mobile"] else "")
        + f") · {found['tier']} tier"
        + (f" · plan of {found['day']}" if found["day"] else "")
    )
    con.print(
        f"  this month: {month['marketing_sent']} of {month['cap']} marketing touches"
        + (
            " · " + ", ".join(f"{c} {n}" for c, n in month["by_channel"].items())
            if month["by_channel"]
            else ""
        )
    )
    con.print("  channels:")
    for ch in found["channels"]:
        con.print(f"    {ch['channel']:<6} " + escape(_channel_state(ch)))
    if not found["decisions"]:
        con.print(
            "  no candidate messages for this customer"
            + (f" on {found['day']}" if found["day"] else " yet")
        )
        return
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    for column in ("playbook / step", "message", "what happened", "why"):
        table.add_column(column, overflow="fold")
    for d in found["decisions"]:
        what = d["outcome_words"]
        if d["channel"] and d["outcome"] in ("scheduled", "rerouted"):
            what += f" {d['channel']}"
        if d["send_at_local"]:
            what += f" {d['send_at_local']}"
        table.add_row(
            escape(f"{d['playbook_label']} / {d['step']}"),
            escape(f"{d['template']} ({d['priority']})"),
            escape(what),
            escape(d["reason"]),
        )
    con.print(table)
