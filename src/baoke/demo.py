"""``baoke demo``: generate a synthetic dealer group, import it, and explain what happened."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from sqlalchemy import Engine, func, select

from baoke.config import Settings
from baoke.ingest.pipeline import ImportSummary, find_kind_files, import_file
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
            "3) report",
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
        "next: import your own DMS exports, e.g.",
        "  baoke import customers 客户资料.csv     (CSV in UTF-8 or GBK, XLSX, JSON Lines)",
        "  baoke import service-orders 工单.xlsx --mapping my-headers.yaml",
        f"demo finished in {seconds:.1f}s",
    ]
    console.print(Panel("\n".join(lines), title="where things are", title_align="left"))
