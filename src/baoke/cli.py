"""The ``baoke`` command. Every subcommand has ``--help``; user errors exit 2 with one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from baoke import __version__
from baoke.channels.commands import (
    dispatch_app,
    pause_command,
    resume_command,
    tasks_app,
    wecom_app,
)
from baoke.config import Settings, load_settings
from baoke.errors import BaokeError, ConfigError, InputError
from baoke.journeys.commands import candidates_command, events_app, journeys_app, run_command
from baoke.playbooks.commands import playbooks_app
from baoke.policy.commands import plan_app
from baoke.profiles.commands import profiles_app, segments_app
from baoke.store.db import current_revision, ensure_schema, head_revision, make_engine, redact

app = typer.Typer(
    name="baoke",
    help="保客 baoke — after-sales customer retention for car brands and dealer groups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(profiles_app, name="profiles")
app.add_typer(segments_app, name="segments")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(events_app, name="events")
app.add_typer(journeys_app, name="journeys")
app.add_typer(plan_app, name="plan")
app.add_typer(dispatch_app, name="dispatch")
app.add_typer(tasks_app, name="tasks")
app.add_typer(wecom_app, name="wecom")
app.command("pause")(pause_command)
app.command("resume")(resume_command)
app.command("run")(run_command)
app.command("candidates")(candidates_command)

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    return load_settings()


@app.command()
def version() -> None:
    """Print the baoke version."""
    console.print(f"baoke {__version__}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the store to the newest schema (any other command does this first, too)."""
    settings = _settings()
    engine = make_engine(settings.url)
    ran = ensure_schema(engine)
    state = "migrated to" if ran else "already at"
    console.print(f"{redact(settings.url)}: {state} revision {head_revision()}")


@db_app.command("status")
def db_status() -> None:
    """Show the database URL (password hidden) and its schema revision."""
    settings = _settings()
    engine = make_engine(settings.url)
    current = current_revision(engine)
    console.print(f"database: {redact(settings.url)}")
    console.print(f"revision: {current or 'empty'} (newest: {head_revision()})")


@app.command("import")
def import_command(
    kind: Annotated[
        str,
        typer.Argument(
            help="dealers, staff, customers, vehicles, service-orders, leads, complaints, "
            "consents, events, wecom-relations — or 'all' with a directory"
        ),
    ],
    files: Annotated[list[Path], typer.Argument(help="CSV (UTF-8/GBK), XLSX or JSONL files")],
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="YAML mapping of your column headers")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Import DMS exports; bad rows go to <file>.quarantine.csv with the reason."""
    from baoke.ingest.headers import load_mapping
    from baoke.ingest.pipeline import find_kind_files, import_file, kind_spec

    settings = _settings()
    if kind == "all":
        if mapping is not None:
            raise InputError("--mapping applies to one kind; import that kind on its own")
        jobs = [job for directory in files for job in find_kind_files(_directory(directory))]
    else:
        kind_spec(kind)
        jobs = [(kind, path) for path in files]
    engine = make_engine(settings.url)
    ensure_schema(engine)
    summaries = []
    for job_kind, path in jobs:
        custom = load_mapping(mapping, kind_spec(job_kind)) if mapping else None
        with _progress(as_json) as progress:
            task = progress.add_task(f"{job_kind} {path.name}", total=None)

            def advance(done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total)

            summary = import_file(
                engine,
                job_kind,
                path,
                tz=settings.zone,
                mapping=custom,
                batch_rows=settings.import_batch_rows,
                progress=advance,
            )
        summaries.append(summary)
        if not as_json:
            _print_summary(summary)
    if as_json:
        data: Any = [s.as_dict() for s in summaries]
        print(json.dumps(data[0] if len(data) == 1 else data, ensure_ascii=False, indent=2))


@app.command("imports")
def imports_log(
    limit: Annotated[int, typer.Option(min=1, help="how many recent runs")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Show the import log: recent runs with their counts and status."""
    from sqlalchemy import select

    from baoke.store.models import ImportRun

    settings = _settings()
    engine = make_engine(settings.url)
    ensure_schema(engine)
    with engine.connect() as conn:
        runs = conn.execute(select(ImportRun).order_by(ImportRun.id.desc()).limit(limit)).all()
    fields = (
        "id",
        "kind",
        "file_name",
        "status",
        "started_at",
        "rows_read",
        "inserted",
        "updated",
        "unchanged",
        "quarantined",
        "merged",
        "quarantine_file",
        "error",
    )
    rows = [{f: getattr(run, f) for f in fields} for run in runs]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    table = Table(title=f"Import log ({redact(settings.url)})")
    for column in (
        "id",
        "kind",
        "file",
        "status",
        "started (UTC)",
        "read",
        "inserted",
        "updated",
        "unchanged",
        "quarantined",
        "merged",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["kind"],
            Path(r["file_name"]).name,
            r["status"],
            f"{r['started_at']:%Y-%m-%d %H:%M}",
            *(
                f"{r[k]:,}"
                for k in ("rows_read", "inserted", "updated", "unchanged", "quarantined", "merged")
            ),
        )
    console.print(table)


def _directory(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(f"{path}: 'import all' needs a directory of files")
    return path


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )


def _print_summary(summary: Any) -> None:
    console.print(
        f"[bold]{summary.kind}[/] {escape(summary.file)} ({summary.format}"
        f"{', ' + summary.encoding if summary.encoding else ''}): "
        f"read {summary.read:,}, inserted {summary.inserted:,}, updated {summary.updated:,}, "
        f"unchanged {summary.unchanged:,}, quarantined {summary.quarantined:,}, "
        f"merged {summary.merged:,} in {summary.seconds:.1f}s"
    )
    for reason, count in summary.reasons.items():
        console.print(f"  quarantined {count:,} × {escape(reason)}")
    for warning, count in summary.warnings.items():
        console.print(f"  warning {count:,} × {escape(warning)}")
    if summary.quarantine_file:
        console.print(f"  bad rows with reasons: {escape(summary.quarantine_file)}")
    if summary.ignored_columns:
        console.print(f"  columns not used: {escape(', '.join(summary.ignored_columns))}")


@app.command()
def generate(
    customers: Annotated[int, typer.Option(min=1, help="number of customers")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same files")] = 42,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("generated"),
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Write a realistic synthetic dealer group as DMS-like import files."""
    from baoke.simulate.generator import GenerateConfig
    from baoke.simulate.generator import generate as run_generate

    result = run_generate(
        GenerateConfig(customers=customers, seed=seed),
        out,
        progress=None if as_json else (lambda msg: err.print(f"[dim]{msg}[/]")),
    )
    if as_json:
        print(
            json.dumps(
                {
                    "seconds": result.seconds,
                    "files": [
                        {
                            "kind": f.kind,
                            "path": str(f.path),
                            "rows": f.rows,
                            "dirty_rows": f.dirty_rows,
                            "duplicate_rows": f.duplicate_rows,
                            "vin_warnings": f.vin_warnings,
                            "encoding": f.encoding,
                        }
                        for f in result.files
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table(title=f"Generated {customers:,} customers (seed {seed}) in {result.seconds:.1f}s")
    for column in ("kind", "file", "rows", "deliberately bad", "encoding"):
        table.add_column(column)
    for f in result.files:
        table.add_row(f.kind, str(f.path), f"{f.rows:,}", f"{f.dirty_rows:,}", f.encoding)
    console.print(table)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=100, help="size of the synthetic group")] = 20_000,
    days: Annotated[int, typer.Option(min=1, max=730, help="simulated days to live")] = 180,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same run")] = 42,
    model: Annotated[
        Path | None, typer.Option(help="response model file (default: the shipped one)")
    ] = None,
) -> None:
    """Generate a dealer group, import it, live months of it through baoke, and report.

    Always starts from an empty embedded store in the data directory.
    """
    from baoke.demo import run_demo

    run_demo(
        _settings(), customers=customers, days=days, seed=seed, model_path=model, console=console
    )


@app.command()
def simulate(
    arm: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=CONFIG: an arm file (TOML) or a shipped arm (sms_only, wecom_led, "
            "full_blast); repeat for each arm. Default: the three shipped arms"
        ),
    ] = None,
    customers: Annotated[
        int, typer.Option(min=100, help="size of the synthetic group, split between the arms")
    ] = 6_000,
    days: Annotated[int, typer.Option(min=1, max=730, help="simulated days")] = 180,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same run")] = 42,
    model: Annotated[
        Path | None, typer.Option(help="response model file (default: the shipped one)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
) -> None:
    """Compare strategies side by side on one synthetic group, before spending money.

    Customers are split at random between the arms; each arm runs the group through the real
    engine with its own playbooks and contact policy, and a response model plays the
    customers. The report gives each arm's cost, visits, satisfaction proxy and fatigue with
    95% intervals.
    """
    from baoke.simulate.command import run_simulate

    run_simulate(
        _settings(),
        arms=arm or ["sms_only", "wecom_led", "full_blast"],
        customers=customers,
        days=days,
        seed=seed,
        model_path=model,
        as_json=as_json,
        console=err if as_json else console,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
) -> None:
    """Run the HTTP API (events in real time; needs BAOKE_API_TOKEN)."""
    import uvicorn

    from baoke.api.app import create_app

    settings = _settings()
    if settings.api_token is None:
        raise ConfigError("set BAOKE_API_TOKEN: the API accepts no request without a token")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except BaokeError as exc:
        # One line, whatever the underlying library put in its message.
        message = " ".join(exc.message.split())
        err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
