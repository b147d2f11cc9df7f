"""``baoke profiles …`` and ``baoke segments …``: refresh, explain, count, list, test rules."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from baoke.config import Settings, load_settings
from baoke.errors import BaokeError, InputError
from baoke.privacy import mask_mobile, mask_name
from baoke.profiles.engine import refresh_profiles, snapshot_path
from baoke.profiles.snapshot import first_row
from baoke.segments.rules import (
    RuleError,
    SegmentDef,
    builtin_segments,
    load_rule_file,
    segment_query,
)
from baoke.store.db import STORE_FAILURES, ensure_schema, make_engine

profiles_app = typer.Typer(help="Customer profiles: refresh and explain.", no_args_is_help=True)
segments_app = typer.Typer(help="Segments and tags: list, count, show, test.", no_args_is_help=True)
console = Console()

SHOWN = (
    "customer_id",
    "value_tier",
    "lifecycle_stage",
    "spend_12m",
    "days_since_last_visit",
    "upgrade_intent",
    "churn_risk",
)


def all_definitions(settings: Settings) -> list[SegmentDef]:
    """Built-in segments and tags, overridden or extended by rule files in the data dir."""
    defs = {d.name: d for d in builtin_segments()}
    custom_dir = settings.data_dir / "segments"
    if custom_dir.is_dir():
        for path in sorted(custom_dir.glob("*.y*ml")):
            for definition in _load(path):
                defs[definition.name] = definition
    return list(defs.values())


def _load(path: Path) -> list[SegmentDef]:
    try:
        return load_rule_file(path)
    except RuleError as exc:
        raise InputError(str(exc)) from exc


def _open_snapshot(settings: Settings) -> duckdb.DuckDBPyConnection:
    path = snapshot_path(settings)
    if not path.exists():
        raise BaokeError("no profiles yet: run `baoke profiles refresh` first")
    db = duckdb.connect(str(path), read_only=True)
    db.execute("SET enable_progress_bar = false")  # it would print into --json output
    tables = {row[0] for row in db.execute("SHOW TABLES").fetchall()}
    if "profiles" not in tables:
        db.close()
        raise BaokeError("no profiles yet: run `baoke profiles refresh` first")
    return db


@contextmanager
def _snapshot(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The latest profiles, read-only, closed afterwards."""
    db = _open_snapshot(settings)
    try:
        yield db
    finally:
        db.close()


def _as_of(db: duckdb.DuckDBPyConnection) -> str:
    row = first_row(db.execute("SELECT max(as_of) FROM profiles").fetchall())
    return str(row[0]) if row and row[0] else dt.date.today().isoformat()


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@profiles_app.command("refresh")
def refresh(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="business date YYYY-MM-DD (default today)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Recompute every profile, tag and segment as of a business date."""
    settings = load_settings()
    day = _parse_day(as_of) if as_of else None
    engine = make_engine(settings.url)
    ensure_schema(engine)
    try:
        result = refresh_profiles(settings, engine, day, all_definitions(settings))
    except STORE_FAILURES as exc:
        # Each write is its own transaction, so what was committed stays consistent.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BaokeError(f"profile refresh failed: {first}") from exc
    if as_json:
        _print_json(
            {
                "as_of": result.as_of,
                "customers": result.customers,
                "snapshot": {
                    "cold": result.snapshot.cold if result.snapshot else None,
                    "rows_read": result.snapshot.rows_read if result.snapshot else {},
                },
                "facts": {
                    "whole": result.facts.whole if result.facts else None,
                    "customers": result.facts.customers if result.facts else 0,
                },
                "profiles_rolled": result.profiles_rolled,
                "segments": result.segments,
                "entered": result.entered,
                "exited": result.exited,
                "profiles_written": result.profiles_written,
                "timings": result.timings,
            }
        )
        return
    snap = result.snapshot
    console.print(
        f"profiles as of {result.as_of}: {result.customers:,} customers in "
        f"{result.seconds:.1f}s ({'cold' if snap and snap.cold else 'incremental'} snapshot: "
        f"{sum(snap.rows_read.values()) if snap else 0:,} rows read)"
    )
    if result.facts is not None:
        facts = result.facts
        console.print(
            "facts: "
            + ("all recomputed" if facts.whole else f"{facts.customers:,} customers recomputed")
            + "; profiles "
            + ("rolled forward" if result.profiles_rolled else "projected whole")
        )
    console.print(
        f"segments: {len(result.segments)}; {result.entered:,} entries, {result.exited:,} exits; "
        f"{result.profiles_written:,} stored profiles changed"
    )
    console.print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--as-of must be a date like 2026-11-01, not {text!r}") from None


@profiles_app.command("show")
def show_profile(
    customer_id: Annotated[int, typer.Argument(help="customer id")],
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Explain one customer: every feature, the reasons behind the scores, the segments."""
    settings = load_settings()
    with _snapshot(settings) as db:
        cursor = db.execute("SELECT * FROM profiles WHERE customer_id = ?", [customer_id])
        row = first_row(cursor.fetchall())
        if row is None:
            raise InputError(f"no profile for customer {customer_id}")
        names = [d[0] for d in cursor.description]
        profile = dict(zip(names, row, strict=True))
        person = first_row(
            db.execute("SELECT name, mobile FROM customers WHERE id = ?", [customer_id]).fetchall()
        )
        segments = [
            r[0]
            for r in db.execute(
                "SELECT segment FROM segment_members WHERE customer_id = ? ORDER BY segment",
                [customer_id],
            ).fetchall()
        ]
    profile["name"] = mask_name(person[0]) if person else None
    profile["mobile"] = mask_mobile(person[1]) if person else None
    profile["segments"] = segments
    if as_json:
        _print_json(profile)
        return
    table = Table(title=f"customer {customer_id} as of {profile['as_of']}")
    table.add_column("feature")
    table.add_column("value")
    for name, value in profile.items():
        table.add_row(name, escape(str(value)))
    console.print(table)


@segments_app.command("list")
def list_segments(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Every segment and tag rule, with its member count at the last refresh."""
    settings = load_settings()
    counts: dict[str, int] = {}
    if snapshot_path(settings).exists():
        with _snapshot(settings) as db:
            counts = dict(
                db.execute(
                    "SELECT segment, count(*) FROM segment_members GROUP BY segment"
                ).fetchall()
            )
    rows: list[dict[str, Any]] = [
        {
            "name": d.name,
            "label": d.label,
            "kind": d.kind,
            "members": counts.get(d.name),
            "description": d.description,
            "source": d.source,
        }
        for d in all_definitions(settings)
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="segments and tags")
    for column in ("name", "label", "kind", "members", "description"):
        table.add_column(column, justify="right" if column == "members" else "left")
    for r in rows:
        members = "" if r["members"] is None else f"{r['members']:,}"
        table.add_row(r["name"], r["label"], r["kind"], members, escape(r["description"]))
    console.print(table)


def _find(settings: Settings, name: str) -> SegmentDef:
    for definition in all_definitions(settings):
        if definition.name == name:
            return definition
    raise InputError(f"unknown segment {name!r}; see `baoke segments list`")


def _members(
    db: duckdb.DuckDBPyConnection, seg: SegmentDef, limit: int | None, tz: str
) -> tuple[int, list[dict[str, Any]]]:
    query = segment_query(seg, as_of=_as_of(db), tz=tz)
    row = first_row(db.execute(f"SELECT count(*) FROM ({query})").fetchall())
    total = int(row[0]) if row else 0
    sample: list[dict[str, Any]] = []
    if limit:
        cols = ", ".join(f"p.{c}" for c in SHOWN)
        cursor = db.execute(
            f"SELECT {cols}, c.name, c.mobile, p.upgrade_reasons, p.churn_reasons "
            f"FROM profiles p JOIN customers c ON c.id = p.customer_id "
            f"WHERE p.customer_id IN ({query}) ORDER BY p.customer_id LIMIT {int(limit)}"
        )
        names = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            item = dict(zip(names, values, strict=True))
            item["name"] = mask_name(item["name"])
            item["mobile"] = mask_mobile(item["mobile"])
            sample.append(item)
    return total, sample


@segments_app.command("count")
def count_segment(
    name: Annotated[str, typer.Argument(help="segment name")],
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """How many customers are in a segment now (from the latest profiles)."""
    settings = load_settings()
    seg = _find(settings, name)
    with _snapshot(settings) as db:
        total, _ = _members(db, seg, None, settings.timezone)
    if as_json:
        _print_json({"segment": name, "members": total})
    else:
        console.print(f"{name} ({seg.label}): {total:,}")


@segments_app.command("show")
def show_segment(
    name: Annotated[str, typer.Argument(help="segment name")],
    limit: Annotated[int, typer.Option(min=1, help="how many members to list")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """List members of a segment with the features that put them there (mobiles masked)."""
    settings = load_settings()
    seg = _find(settings, name)
    with _snapshot(settings) as db:
        total, sample = _members(db, seg, limit, settings.timezone)
    _print_members(seg, total, sample, as_json)


@segments_app.command("test")
def test_rule(
    rule_file: Annotated[Path, typer.Argument(help="YAML or JSON rule file")],
    limit: Annotated[int, typer.Option(min=0, help="sample size")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Count and sample a rule file against the latest profiles, without saving anything."""
    settings = load_settings()
    definitions = _load(rule_file)
    results = []
    with _snapshot(settings) as db:
        for seg in definitions:
            total, sample = _members(db, seg, limit, settings.timezone)
            results.append((seg, total, sample))
        # Event types are an open list, so a misspelt one is valid and matches nobody: when a
        # rule finds no one, show what the data holds.
        event_types = [
            row[0]
            for row in db.execute(
                "SELECT event_type FROM events GROUP BY event_type ORDER BY count(*) DESC LIMIT 20"
            ).fetchall()
        ]
    if as_json:
        _print_json([{"segment": s.name, "members": t, "sample": smp} for s, t, smp in results])
        return
    for seg, total, sample in results:
        _print_members(seg, total, sample, False)
        if total == 0:
            console.print(
                f"no customer matches {seg.name}; check the values it compares. "
                f"Event types in the data: {escape(', '.join(map(str, event_types)))}",
                highlight=False,
            )


def _print_members(
    seg: SegmentDef, total: int, sample: list[dict[str, Any]], as_json: bool
) -> None:
    if as_json:
        _print_json({"segment": seg.name, "members": total, "sample": sample})
        return
    table = Table(title=f"{seg.name} ({seg.label}): {total:,} members")
    columns = [*SHOWN, "name", "mobile", "reasons"]
    for column in columns:
        table.add_column(column)
    for item in sample:
        reasons = "；".join(r for r in (item["churn_reasons"], item["upgrade_reasons"]) if r)
        table.add_row(*(escape(str(item.get(c, ""))) for c in columns[:-1]), escape(reasons))
    console.print(table)
