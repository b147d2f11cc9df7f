"""``baoke demo``: generate a synthetic dealer group, import it, and explain what happened."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path

import duckdb
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from sqlalchemy import Connection, Engine, func, select

from baoke.channels.commands import print_dispatch
from baoke.channels.dispatcher import Dispatcher, DispatchResult
from baoke.config import Settings
from baoke.ingest.pipeline import ImportSummary, find_kind_files, import_file
from baoke.journeys.catalog import load_catalog
from baoke.journeys.context import build_contexts, render_message
from baoke.journeys.run import RunResult, run_day
from baoke.policy.commands import print_explanation, print_summary
from baoke.policy.explain import explain_customer
from baoke.policy.plan import summarise
from baoke.privacy import mask_mobile, mask_name
from baoke.profiles.commands import all_definitions
from baoke.profiles.engine import RefreshResult, refresh_profiles, snapshot_path
from baoke.simulate.generator import GenerateConfig, GenerateResult, generate
from baoke.store import models as m
from baoke.store.db import ensure_schema, make_engine, redact

STORE_COUNTS: list[tuple[str, type[m.Base]]] = [
    ("dealers", m.Dealer),
    ("staff", m.Staff),
    ("customers", m.Customer),
    ("dealer customer numbers", m.CustomerIdentity),
    ("vehicles", m.Vehicle),
    ("service orders", m.ServiceOrder),
    ("leads", m.Lead),
    ("complaints", m.Complaint),
    ("consents", m.Consent),
    ("behaviour events", m.BehaviourEvent),
    ("WeCom friendships", m.WecomRelation),
]


def run_demo(
    settings: Settings, *, customers: int, seed: int, fresh: bool, console: Console
) -> list[ImportSummary]:
    """Run the demo end to end and print a report a new user can follow."""
    started = time.perf_counter()
    if fresh:
        _remove_default_store(settings)
    out_dir = settings.data_dir / "generated"
    console.print(
        Panel.fit(
            f"baoke demo: a synthetic dealer group of {customers:,} customers (seed {seed})\n"
            "1) write DMS-style export files   2) import them with validation and quarantine   "
            "3) profiles and segments   4) run the playbooks for the day   "
            "5) the contact policy plans what is sent   6) the dispatcher sends it (sandbox)",
            title="保客 baoke",
        )
    )
    result = generate(
        GenerateConfig(customers=customers, seed=seed),
        out_dir,
        progress=lambda msg: console.print(f"  [dim]{msg}[/]"),
    )
    _print_generated(console, result)

    engine = make_engine(settings.url)
    ensure_schema(engine)
    summaries = []
    for kind, path in find_kind_files(out_dir):
        with console.status(f"importing {kind} from {path.name} …"):
            summaries.append(
                import_file(
                    engine, kind, path, tz=settings.zone, batch_rows=settings.import_batch_rows
                )
            )
    _print_imports(console, summaries, result)
    _print_store(console, engine)
    with console.status("computing profiles, tags and segments …"):
        refreshed = refresh_profiles(
            settings, engine, result.config.today, all_definitions(settings)
        )
    _print_profiles(console, settings, refreshed)
    with console.status("running the playbooks and the contact policy for the day …"):
        day = run_day(settings, engine, result.config.today, refresh=False)
    _print_journeys(console, settings, engine, day)
    _print_plan(console, settings, engine, day)
    with console.status("sending the day's messages through the sandbox providers …"):
        sent = _dispatch_day(settings, engine, day.day)
    _print_dispatch(console, settings, sent)
    _print_where(console, settings, out_dir, summaries, time.perf_counter() - started)
    return summaries


def _remove_default_store(settings: Settings) -> None:
    """--fresh only ever deletes the embedded SQLite store, never a configured server."""
    if settings.database_url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{settings.data_dir / 'baoke.db'}{suffix}").unlink(missing_ok=True)


def _print_generated(console: Console, result: GenerateResult) -> None:
    table = Table(title=f"1) Generated files ({result.seconds:.1f}s)", title_justify="left")
    for column in ("kind", "file", "format", "rows", "made bad on purpose"):
        table.add_column(column, justify="right" if column in ("rows",) else "left")
    for f in result.files:
        table.add_row(f.kind, f.path.name, f.encoding, f"{f.rows:,}", f"{f.dirty_rows:,}")
    console.print(table)


def _print_imports(
    console: Console, summaries: list[ImportSummary], result: GenerateResult
) -> None:
    table = Table(title="2) Imported into the store", title_justify="left")
    for column in ("kind", "read", "inserted", "updated", "unchanged", "merged", "quarantined"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    reasons: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for s in summaries:
        table.add_row(
            s.kind,
            *(
                f"{v:,}"
                for v in (s.read, s.inserted, s.updated, s.unchanged, s.merged, s.quarantined)
            ),
        )
        reasons.update(s.reasons)
        warnings.update(s.warnings)
    console.print(table)
    made_bad = sum(f.dirty_rows for f in result.files)
    quarantined = sum(s.quarantined for s in summaries)
    console.print(
        f"The generator made {made_bad:,} rows bad on purpose; import quarantined "
        f"{quarantined:,} rows, each with its reason, and loaded everything else."
    )
    for reason, count in reasons.most_common():
        console.print(f"  quarantined {count:>6,} × {reason}")
    for warning, count in warnings.most_common():
        console.print(f"  kept with a warning {count:>6,} × {warning}")
    merged = sum(s.merged for s in summaries)
    if merged:
        console.print(
            f"{merged:,} customer rows were the same person at another dealer (same mobile) "
            "and were merged into one customer; see the merge_log table."
        )
    if all(s.inserted == 0 and s.updated == 0 for s in summaries):
        console.print(
            "[green]Nothing changed: this data was imported before, and importing the same "
            "files again is a no-op.[/]"
        )


def _print_store(console: Console, engine: Engine) -> None:
    table = Table(title="3) What the store now holds", title_justify="left")
    table.add_column("record")
    table.add_column("rows", justify="right")
    with engine.connect() as conn:
        for label, model in STORE_COUNTS:
            count = conn.execute(select(func.count()).select_from(model)).scalar_one()
            table.add_row(label, f"{count:,}")
    console.print(table)


TIERS = ("high", "mid", "low")
STAGES = ("new_owner", "onboarding", "maintained", "at_risk", "lost")
EXAMPLES = (
    ("at high churn risk", "is_owner AND churn_risk >= 70 ORDER BY churn_risk DESC, customer_id"),
    ("an upgrade candidate", "upgrade_intent >= 60 ORDER BY upgrade_intent DESC, customer_id"),
    (
        "a new owner, first maintenance coming",
        "lifecycle_stage = 'new_owner' AND NOT first_maintenance_done ORDER BY customer_id",
    ),
)


def _print_profiles(console: Console, settings: Settings, refreshed: RefreshResult) -> None:
    db = duckdb.connect(str(snapshot_path(settings)), read_only=True)
    try:
        cells = dict(
            ((tier, stage), n)
            for tier, stage, n in db.execute(
                "SELECT value_tier, lifecycle_stage, count(*) FROM profiles WHERE is_owner "
                "GROUP BY ALL"
            ).fetchall()
        )
        others = db.execute(
            "SELECT lifecycle_stage, count(*) FROM profiles WHERE NOT is_owner GROUP BY ALL "
            "ORDER BY ALL"
        ).fetchall()
        examples = []
        for label, where in EXAMPLES:
            row = db.execute(
                "SELECT p.customer_id, c.name, c.mobile, p.value_tier, p.lifecycle_stage, "
                "p.series, p.car_age_years, p.upgrade_intent, p.upgrade_reasons, p.churn_risk, "
                "p.churn_reasons, p.next_maintenance_due_date "
                f"FROM profiles p JOIN customers c ON c.id = p.customer_id WHERE {where} LIMIT 1"
            ).fetchall()
            if row:
                examples.append((label, row[0]))
    finally:
        db.close()
    table = Table(
        title=f"4) Owners by value tier and lifecycle stage, as of {refreshed.as_of} "
        f"({refreshed.seconds:.1f}s)",
        title_justify="left",
    )
    table.add_column("tier \\ stage")
    for stage in STAGES:
        table.add_column(stage, justify="right")
    table.add_column("all", justify="right")
    for tier in TIERS:
        counts = [int(cells.get((tier, stage), 0)) for stage in STAGES]
        table.add_row(tier, *(f"{n:,}" for n in counts), f"{sum(counts):,}")
    console.print(table)
    console.print("Not owners: " + ", ".join(f"{stage} {n:,}" for stage, n in others))
    biggest = sorted(refreshed.segments.items(), key=lambda kv: -kv[1])
    console.print("Segments: " + ", ".join(f"{name} {n:,}" for name, n in biggest))
    for label, example in examples:
        (cid, name, mobile, tier, stage, series, age, up, up_why, risk, risk_why, due) = example
        console.print(
            Panel(
                f"{mask_name(name)} {mask_mobile(mobile)} · {series} · car age {age} years · "
                f"tier {tier} · {stage}\n"
                f"churn risk {risk}: {risk_why or '—'}\n"
                f"upgrade intent {up}: {up_why or '—'}\n"
                f"next maintenance due {due}   (baoke profiles show {cid})",
                title=f"example: {label}",
                title_align="left",
            )
        )


def _print_journeys(console: Console, settings: Settings, engine: Engine, day: RunResult) -> None:
    """What the playbooks proposed for the day, per playbook, and the tasks for staff."""
    touches, tasks = m.Touch, m.Task
    with engine.connect() as conn:
        by_book = conn.execute(
            select(touches.playbook, func.count()).group_by(touches.playbook)
        ).all()
        by_role = dict(conn.execute(select(tasks.role, func.count()).group_by(tasks.role)).all())
    enrolled = day.enrolment.enrolled + day.events.enrolment.enrolled
    held = day.enrolment.holdout + day.events.enrolment.holdout
    table = Table(
        title=f"5) Playbooks on {day.day}: {enrolled:,} customers entered (+{held:,} held out "
        f"to measure); touches proposed by playbook",
        title_justify="left",
    )
    table.add_column("playbook")
    table.add_column("touches", justify="right")
    for name, n in sorted(by_book, key=lambda r: -r[1]):
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(
        "Calls proposed for staff: "
        + (", ".join(f"{role} {n:,}" for role, n in by_role.items()) or "none")
    )


def _print_plan(console: Console, settings: Settings, engine: Engine, day: RunResult) -> None:
    """The contact policy's plan of the day, three messages as the customer reads them, and
    one customer's explanation of what was held back."""
    with engine.begin() as conn:
        summary = summarise(conn, day.day)
        samples = _samples(conn)
        contexts = build_contexts(
            conn, [row[0] for row in samples], as_of=day.day, settings=settings
        )
        catalog = load_catalog(conn, settings, record=False)
        held = conn.execute(
            select(m.PolicyDecision.customer_id)
            .where(m.PolicyDecision.plan_date == day.day, m.PolicyDecision.rule == "collision")
            .order_by(m.PolicyDecision.customer_id)
            .limit(1)
        ).scalar()
        explained = explain_customer(conn, settings, held, day.day) if held else None
    console.print(
        f"[bold]6) The contact policy on {day.day}[/]: consent, reachability, quiet hours "
        "(08:00-21:00), one marketing touch a day, monthly caps by tier, channel caps, "
        "budgets and a 5% global holdout"
    )
    print_summary(summary, console)
    for cid, name, version, template, channel, at in samples:
        text = render_message(catalog.get(name, version), template, channel, contexts[cid]).text
        when = at.astimezone(settings.zone).strftime("%H:%M")
        console.print(
            Panel(
                text.strip(),
                title=f"{name} → customer {cid} on {channel} at {when}",
                title_align="left",
            )
        )
    if explained:
        console.print(f"Why one customer got less today (baoke plan explain {held}):")
        print_explanation(explained, console)
    outbox = sum(r["touches"] for r in summary["by_channel"] if r["channel"] != "phone")
    console.print(
        f"[dim]The outbox holds {outbox:,} scheduled messages; calls are the staff's tasks.[/]"
    )


def _dispatch_day(settings: Settings, engine: Engine, day: dt.date) -> DispatchResult:
    """Send what the day's plan made due, as the dispatcher would have by the evening."""
    evening = dt.datetime.combine(day, dt.time(20, 59), settings.zone).astimezone(dt.UTC)
    dispatcher = Dispatcher(settings, engine, clock=lambda: evening)
    try:
        return dispatcher.run()
    finally:
        dispatcher.close()


def _print_dispatch(console: Console, settings: Settings, sent: DispatchResult) -> None:
    """What the dispatcher sent, where the sandbox wrote it, one message as it left."""
    console.print(
        "[bold]7) Dispatch[/]: each due message is claimed, checked once more (consent, "
        "reachability, sending hours), rendered with per-touch short links and sent through "
        "its channel's provider; calls become the staff's tasks"
    )
    print_dispatch(sent, console)
    sandbox = Path(settings.data_dir) / "sandbox"
    files = sorted(sandbox.glob("*.jsonl")) if sandbox.exists() else []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        console.print(f"  {path.name}: {len(lines):,} messages")
    if files:
        first = json.loads(files[0].read_text(encoding="utf-8").splitlines()[0])
        console.print(
            Panel(
                str(first["text"]).strip(),
                title=f"as sent on {first['channel']} to {first['address']} (touch "
                f"{first['touch_id']})",
                title_align="left",
            )
        )
    console.print(
        f"[dim]The sandbox providers wrote these to {sandbox}: nothing reached a customer. "
        "Real providers (Aliyun, Tencent, WeCom, JPush, SMTP) are a few lines of baoke.toml: "
        "see docs/channels.md, then `baoke dispatch check`.[/]"
    )


def _samples(conn: Connection) -> list[tuple[int, str, str, str, str, dt.datetime]]:
    """One scheduled touch of each of three playbooks, when there is one."""
    out = []
    for name in ("churn_winback", "service_calendar", "maintenance_cadence_high"):
        row = conn.execute(
            select(
                m.Touch.customer_id,
                m.Touch.playbook,
                m.Touch.version,
                m.Touch.template,
                m.Touch.channel,
                m.Touch.scheduled_at,
            )
            .where(m.Touch.playbook == name, m.Touch.status == "scheduled")
            .order_by(m.Touch.id)
            .limit(1)
        ).first()
        if row is not None and row[5] is not None:
            at: dt.datetime = row[5] if row[5].tzinfo else row[5].replace(tzinfo=dt.UTC)
            out.append((int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), at))
    return out


def _print_where(
    console: Console,
    settings: Settings,
    out_dir: Path,
    summaries: list[ImportSummary],
    seconds: float,
) -> None:
    quarantine_files = [s.quarantine_file for s in summaries if s.quarantine_file]
    lines = [
        f"store:            {redact(settings.url)}",
        f"generated files:  {out_dir}",
        f"quarantine files: {len(quarantine_files)} (next to each input, *.quarantine.csv)",
        "",
        f"analytics:        {snapshot_path(settings)} (DuckDB snapshot and profiles)",
        "",
        "explore:  baoke segments list · baoke segments show at_risk · baoke profiles show ID",
        "          baoke journeys list · baoke journeys show ID · baoke candidates",
        "          baoke plan --date DAY · baoke plan explain ID   (what is sent, and why not)",
        "          baoke dispatch status · baoke tasks list · baoke pause --all --reason …",
        "next: import your own DMS exports, e.g.",
        "  baoke import customers 客户资料.csv     (CSV in UTF-8 or GBK, XLSX, JSON Lines)",
        "  baoke import service-orders 工单.xlsx --mapping my-headers.yaml",
        f"demo finished in {seconds:.1f}s",
    ]
    console.print(Panel("\n".join(lines), title="where things are", title_align="left"))
