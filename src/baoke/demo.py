"""``baoke demo``: a synthetic dealer group, imported, then months of its life through baoke.

The engine is the real one (profiles, playbooks, contact policy, outbox, dispatch to the
sandbox providers); the customers and staff are a response model (:mod:`baoke.simulate`).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections import Counter
from pathlib import Path

import duckdb
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Connection, Engine, func, select

from baoke.config import Settings
from baoke.errors import InputError
from baoke.ingest.pipeline import ImportSummary
from baoke.journeys.catalog import load_catalog
from baoke.journeys.context import build_contexts, render_message
from baoke.policy.commands import print_explanation, print_summary
from baoke.policy.explain import explain_customer
from baoke.policy.plan import summarise
from baoke.privacy import mask_mobile, mask_name
from baoke.profiles.engine import RefreshResult, snapshot_path
from baoke.simulate.generator import GenerateConfig, GenerateResult, generate
from baoke.simulate.model import load_model
from baoke.simulate.report import print_report
from baoke.simulate.session import GroupRun, import_group, simulate_group
from baoke.store import models as m
from baoke.store.db import redact

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
    settings: Settings,
    *,
    customers: int,
    days: int,
    seed: int,
    console: Console,
    model_path: Path | None = None,
) -> GroupRun:
    """Generate a group, import it, live ``days`` simulated days through the engine, report."""
    started = time.perf_counter()
    if settings.database_url is not None:
        raise InputError(
            "baoke demo simulates months of sends and visits, so it runs on its own embedded "
            "store: unset BAOKE_DATABASE_URL (or database_url in baoke.toml) to run it"
        )
    model = load_model(model_path)
    _remove_demo_files(settings)
    out_dir = settings.data_dir / "generated"
    console.print(
        Panel.fit(
            f"baoke demo: a synthetic dealer group of {customers:,} customers (seed {seed}), "
            f"then {days} days of its life\n"
            "1) write DMS-style export files   2) import them with validation and quarantine   "
            "3) profiles and segments\n"
            f"4) {days} simulated days: every day the real engine refreshes the profiles, runs "
            "the playbooks, plans through the contact policy and dispatches to the sandbox "
            "providers; a response model plays the customers and staff, and what they do comes "
            "back as receipts, replies, call logs and DMS imports\n"
            "5) the director's report   6) one day in detail",
            title="保客 baoke",
        )
    )
    result = generate(
        GenerateConfig(customers=customers, seed=seed),
        out_dir,
        progress=lambda msg: console.print(f"  [dim]{msg}[/]"),
    )
    _print_generated(console, result)
    with console.status("importing …") as status:
        run = import_group(
            settings, out_dir, result.config.today, note=lambda msg: status.update(f"{msg} …")
        )
    _print_imports(console, run.imports, result)
    _print_store(console, run.engine)
    assert run.refreshed is not None
    _print_profiles(console, settings, run.refreshed)
    start = result.config.today
    with _day_bar(console, days) as bar:
        task = bar.add_task("simulating", total=days, info="")

        def advanced(day: dt.date, counts: dict[str, int]) -> None:
            bar.update(
                task,
                advance=1,
                info=f"{day} · sent {counts['sent']:,} · calls {counts['calls']:,} · "
                f"visits {counts['visits']:,}",
            )

        measures = simulate_group(run, model, start, days, seed, advanced)
    console.print(
        f"[bold]4) {days} simulated days[/] in {run.timings['days']:.0f}s "
        f"({run.timings['days'] / max(days, 1):.2f}s a day)"
    )
    print_report(measures, console, f"5) The director's report: {days} days of baoke")
    _print_day(console, settings, run.engine, start)
    _print_where(console, settings, out_dir, run.imports, days, time.perf_counter() - started)
    return run


def _day_bar(console: Console, days: int) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )


def _remove_demo_files(settings: Settings) -> None:
    """The demo starts from nothing: its embedded store, snapshot and files from last time."""
    base = settings.data_dir
    for suffix in ("", "-wal", "-shm"):
        Path(f"{base / 'baoke.db'}{suffix}").unlink(missing_ok=True)
    for name in ("analytics.duckdb", "analytics.duckdb.wal"):
        (base / name).unlink(missing_ok=True)
    for folder in ("sandbox", "simulated"):
        shutil.rmtree(base / folder, ignore_errors=True)


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


def _print_day(console: Console, settings: Settings, engine: Engine, day: dt.date) -> None:
    """The first simulated day up close: the contact policy's plan, three messages as the
    customer read them, and why one customer got less that day."""
    with engine.begin() as conn:
        summary = summarise(conn, day)
        samples = _samples(conn, day, settings)
        contexts = build_contexts(conn, [row[0] for row in samples], as_of=day, settings=settings)
        catalog = load_catalog(conn, settings, record=False)
        held = conn.execute(
            select(m.PolicyDecision.customer_id)
            .where(m.PolicyDecision.plan_date == day, m.PolicyDecision.rule == "collision")
            .order_by(m.PolicyDecision.customer_id)
            .limit(1)
        ).scalar()
        explained = explain_customer(conn, settings, held, day) if held else None
    console.print(
        f"[bold]6) One day in detail: {day}[/], the first simulated day. The contact policy "
        "applied consent, reachability, quiet hours (08:00-21:00), one marketing touch a day, "
        "monthly caps by tier, channel caps, budgets and a 5% global holdout"
    )
    print_summary(summary, console)
    for cid, name, version, template, channel, at in samples:
        text = render_message(catalog.get(name, version), template, channel, contexts[cid]).text
        when = at.astimezone(settings.zone).strftime("%H:%M")
        console.print(
            Panel(
                text.strip(),
                title=f"{name} → customer {cid} on {channel}, planned for {when}",
                title_align="left",
            )
        )
    if explained:
        console.print(
            f"Why one customer got less that day (baoke plan explain {held} --date {day}):"
        )
        print_explanation(explained, console)
    sandbox = Path(settings.data_dir) / "sandbox"
    files = sorted(sandbox.glob("*.jsonl")) if sandbox.exists() else []
    counts = ", ".join(
        f"{path.stem} {sum(1 for _ in path.open(encoding='utf-8')):,}" for path in files
    )
    console.print(
        f"[dim]Everything sent went to the sandbox providers ({sandbox}: {counts or 'nothing'}); "
        "nothing reached a customer. Real providers (Aliyun, Tencent, WeCom, JPush, SMTP) are a "
        "few lines of baoke.toml: see docs/channels.md, then `baoke dispatch check`.[/]"
    )


def _samples(
    conn: Connection, day: dt.date, settings: Settings
) -> list[tuple[int, str, str, str, str, dt.datetime]]:
    """One message of each of three playbooks planned for ``day``, when there is one."""
    start = dt.datetime.combine(day, dt.time(0), settings.zone).astimezone(dt.UTC)
    end = start + dt.timedelta(days=1)
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
            .where(
                m.Touch.playbook == name,
                m.Touch.sent_at.is_not(None),
                m.Touch.channel != "phone",
                m.Touch.scheduled_at >= start,
                m.Touch.scheduled_at < end,
            )
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
    days: int,
    seconds: float,
) -> None:
    quarantine_files = [s.quarantine_file for s in summaries if s.quarantine_file]
    lines = [
        f"store:            {redact(settings.url)}",
        f"generated files:  {out_dir}",
        f"quarantine files: {len(quarantine_files)} (next to each input, *.quarantine.csv)",
        f"simulated feeds:  {settings.data_dir / 'simulated'} (the daily DMS exports the "
        "simulation imported)",
        f"analytics:        {snapshot_path(settings)} (DuckDB snapshot and profiles)",
        "",
        "explore:  baoke segments list · baoke profiles show ID · baoke journeys list",
        "          baoke plan --date DAY · baoke plan explain ID --date DAY",
        "          baoke dispatch status · baoke tasks list",
        "compare strategies before paying for them (a model, see docs/simulation.md):",
        "  baoke simulate --arm sms_only --arm wecom_led --arm full_blast --customers 6000",
        "next: import your own DMS exports, e.g.",
        "  baoke import customers 客户资料.csv     (CSV in UTF-8 or GBK, XLSX, JSON Lines)",
        f"demo finished in {seconds:.1f}s ({days} simulated days)",
    ]
    console.print(Panel("\n".join(lines), title="where things are", title_align="left"))
