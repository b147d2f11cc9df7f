"""``baoke playbooks list|show|validate``: read and check playbooks without running them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from baoke.config import Settings, load_settings
from baoke.errors import InputError
from baoke.playbooks.definitions import (
    Playbook,
    validate_all,
)
from baoke.playbooks.library import load_library
from baoke.playbooks.templates import SAMPLE_CONTEXT, render

playbooks_app = typer.Typer(help="Playbooks: list, show, validate.", no_args_is_help=True)
console = Console()


def all_playbooks(settings: Settings) -> list[Playbook]:
    """Built-in playbooks, replaced or extended by ``<data dir>/playbooks/*.yaml``."""
    return [entry.book for entry in load_library(settings).values()]


def _switched_off(settings: Settings) -> dict[str, str]:
    """Playbooks an operator disabled (``baoke playbooks disable``), with the reason."""
    from sqlalchemy import select

    from baoke.store.db import ensure_schema, make_engine
    from baoke.store.models import PlaybookState

    engine = make_engine(settings.url)
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(PlaybookState.name, PlaybookState.reason).where(PlaybookState.enabled.is_(False))
        ).all()
    engine.dispose()
    return {name: reason or "" for name, reason in rows}


def _summary(book: Playbook) -> dict[str, Any]:
    return {
        "name": book.name,
        "label": book.label,
        "kind": book.kind,
        "enabled": book.enabled,
        "version": book.version,
        "triggers": len(book.triggers),
        "steps": len(book.steps),
        "source": book.source,
        "description": book.description,
    }


@playbooks_app.command("list")
def list_playbooks(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Every playbook: built-in and custom, enabled or not, with its version."""
    settings = load_settings()
    off = _switched_off(settings)
    rows = [_summary(book) for book in all_playbooks(settings)]
    for row in rows:
        if row["name"] in off:
            row["enabled"] = False
            row["disabled_by_operator"] = off[row["name"]]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="playbooks")
    for column in ("name", "label", "kind", "enabled", "version", "triggers", "steps"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["name"],
            r["label"],
            r["kind"],
            "yes" if r["enabled"] else "no (operator)" if "disabled_by_operator" in r else "no",
            r["version"],
            str(r["triggers"]),
            str(r["steps"]),
        )
    console.print(table)


@playbooks_app.command("show")
def show_playbook(
    name: Annotated[str, typer.Argument(help="playbook name")],
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """One playbook: triggers, entry rules, steps, and each template rendered on sample data."""
    books = {book.name: book for book in all_playbooks(load_settings())}
    if name not in books:
        raise InputError(f"unknown playbook {name!r}; see `baoke playbooks list`")
    book = books[name]
    samples = {
        f"{t.id}/{v.channel}": render(v.text, SAMPLE_CONTEXT)
        for t in book.templates
        for v in t.variants
    }
    if as_json:
        data = dataclasses.asdict(book)
        data["samples"] = samples
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return
    console.print(
        f"[bold]{escape(book.label)}[/] ({book.name}, {book.kind}, "
        f"version {book.version}){'' if book.enabled else ' — disabled'}"
    )
    console.print(escape(book.description))
    for trigger in book.triggers:
        console.print(f"  trigger: {escape(str(trigger))}")
    console.print(f"  entry: {escape(str(book.entry))}")
    for step in book.steps:
        console.print(f"  step {step.id}: {type(step).__name__} {escape(str(step))}")
    for key, text in samples.items():
        console.print(f"  template {key}: {escape(text)}")


@playbooks_app.command("disable")
def disable_playbook(
    name: Annotated[str, typer.Argument(help="playbook name")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
) -> None:
    """Stop a playbook from enrolling anyone; journeys under way finish. Audited."""
    from baoke.journeys.commands import playbook_switch

    playbook_switch(name, False, reason)


@playbooks_app.command("enable")
def enable_playbook(
    name: Annotated[str, typer.Argument(help="playbook name")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
) -> None:
    """Let a disabled playbook enrol again. Audited."""
    from baoke.journeys.commands import playbook_switch

    playbook_switch(name, True, reason)


@playbooks_app.command("validate")
def validate_playbooks(
    files: Annotated[list[Path], typer.Argument(help="playbook YAML files")],
) -> None:
    """Check playbook files; every problem as file:line:col: where: what. Exit 2 on errors."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"no such file: {', '.join(missing)}")
    errors = validate_all(files)
    # Every error of every file, once each, unwrapped so editors can jump to file:line:col.
    for line in dict.fromkeys(str(error) for error in errors):
        print(line)
    if errors:
        raise typer.Exit(2)
    console.print(f"{len(files)} playbook file(s) valid")
