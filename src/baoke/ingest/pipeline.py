"""Import one file of one kind: read in batches, validate, quarantine bad rows, load the rest.

One database transaction per file: a file either lands whole (with its bad rows quarantined)
or not at all, and the import log says which. Re-importing the same file changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Engine, Table, insert, update
from sqlalchemy.exc import SQLAlchemyError

from baoke.errors import BaokeError, InputError
from baoke.ingest.headers import ColumnMap, resolve_columns
from baoke.ingest.kinds import IMPORT_ORDER, KINDS, FieldSpec, FieldType, KindSpec
from baoke.ingest.loader import LOADERS, BatchOutcome, ImportContext
from baoke.ingest.quarantine import QuarantineWriter
from baoke.ingest.readers import inspect_source, iter_batches
from baoke.ingest.validate import parse_field
from baoke.store import models as m

ProgressFn = Callable[[int, int], None]

# Kinds whose rows must name a customer by mobile or by dealer customer number.
NEEDS_CUSTOMER = {"customers", "complaints", "consents", "events"}

_DTYPES: dict[FieldType, pl.DataType] = {
    FieldType.DATE: pl.Date(),
    FieldType.DATETIME: pl.Datetime("us", "UTC"),
    FieldType.TIME: pl.Time(),
    FieldType.MONEY: pl.Int64(),
    FieldType.INT: pl.Int64(),
    FieldType.BOOL: pl.Boolean(),
}


@dataclass
class ImportSummary:
    """What importing one file did; printed by the CLI and stored in the import log."""

    kind: str
    file: str
    format: str
    encoding: str | None
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    merged: int = 0
    quarantine_file: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    import_run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def kind_spec(kind: str) -> KindSpec:
    """The spec of an import kind, or one clear error listing the valid kinds."""
    try:
        return KINDS[kind]
    except KeyError:
        raise InputError(
            f"unknown import kind {kind!r}; choose one of: {', '.join(IMPORT_ORDER)}"
        ) from None


def import_file(
    engine: Engine,
    kind: str,
    path: Path,
    *,
    tz: ZoneInfo,
    mapping: Mapping[str, str] | None = None,
    batch_rows: int = 50_000,
    progress: ProgressFn | None = None,
) -> ImportSummary:
    """Import ``path`` as ``kind`` into the store behind ``engine``.

    Raises InputError for a file that cannot be imported at all (nothing is written then).
    """
    spec = kind_spec(kind)
    info = inspect_source(path)
    columns = resolve_columns(spec, info.columns, mapping)
    _check_identification(spec, columns)
    summary = ImportSummary(
        kind=kind,
        file=str(path),
        format=info.format,
        encoding=info.encoding,
        ignored_columns=list(columns.ignored),
    )
    started = dt.datetime.now(dt.UTC)
    run_id = _start_run(engine, summary, _sha256(path), started)
    summary.import_run_id = run_id
    quarantine = QuarantineWriter(path, info.columns)
    reasons: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    try:
        with engine.begin() as conn:
            ctx = ImportContext(conn=conn, import_run_id=run_id)
            for batch in iter_batches(path, batch_rows):
                out = _import_batch(ctx, spec, columns, batch.frame, tz, quarantine, reasons)
                _add(summary, out, batch.frame.height)
                warnings.update(out.warnings)
                if progress:
                    progress(batch.bytes_done, info.size_bytes)
            if ctx.merge_rows:
                conn.execute(insert(_table(m.MergeLog)), ctx.merge_rows)
            summary.quarantined = quarantine.count
            summary.reasons = dict(reasons.most_common())
            summary.warnings = dict(warnings.most_common())
            summary.quarantine_file = str(quarantine.path) if quarantine.path else None
            summary.seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
            _finish_run(conn, run_id, summary, "done")
    except BaokeError as exc:
        _fail(engine, run_id, quarantine, exc.message)
        raise
    except (SQLAlchemyError, pl.exceptions.PolarsError, OSError) as exc:
        _fail(engine, run_id, quarantine, str(exc).splitlines()[0])
        raise InputError(
            f"{path}: import failed, nothing was written: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        quarantine.close()
    return summary


def _check_identification(spec: KindSpec, columns: ColumnMap) -> None:
    if spec.name in NEEDS_CUSTOMER and not (
        "mobile" in columns.fields or "customer_no" in columns.fields
    ):
        raise InputError(
            f"{spec.name}: the file needs a 手机号 (mobile) or 客户编号 (customer_no) column "
            "to identify customers"
        )


def _import_batch(
    ctx: ImportContext,
    spec: KindSpec,
    columns: ColumnMap,
    raw: pl.DataFrame,
    tz: ZoneInfo,
    quarantine: QuarantineWriter,
    reasons: Counter[str],
) -> BatchOutcome:
    typed, errors = parse_batch(spec, columns, raw, tz)
    good = typed.filter(errors.is_null())
    out = BatchOutcome()
    LOADERS[spec.name](ctx, good, out)
    bad = pl.concat(
        [
            pl.DataFrame({"row_no": typed["row_no"], "reason": errors}).drop_nulls("reason"),
            out.rejected,
        ]
    ).sort("row_no")
    if bad.height:
        rows = raw.join(bad, left_on="__line__", right_on="row_no", how="inner").sort("__line__")
        quarantine.write(rows, rows["reason"])
        reasons.update(_reason_category(r) for r in rows["reason"].to_list())
    return out


def parse_batch(
    spec: KindSpec, columns: ColumnMap, raw: pl.DataFrame, tz: ZoneInfo
) -> tuple[pl.DataFrame, pl.Series]:
    """Typed canonical columns (plus ``row_no``) and one error text per row (null if fine)."""
    out: dict[str, pl.Series] = {"row_no": raw["__line__"].cast(pl.Int64).alias("row_no")}
    errors: list[pl.Series] = [raw["__error__"].cast(pl.String)]
    for fs in spec.fields:
        source = columns.fields.get(fs.name)
        if source is None:
            out[fs.name] = pl.Series(fs.name, [None] * raw.height, dtype=_dtype(fs))
            continue
        parsed = parse_field(raw[source], fs, tz)
        out[fs.name] = parsed.values.alias(fs.name)
        errors.append(parsed.errors.alias(f"_e_{fs.name}"))
        if parsed.check_ok is not None:
            out[f"{fs.name}_check_ok"] = parsed.check_ok.alias(f"{fs.name}_check_ok")
    joined = pl.DataFrame(errors).select(
        pl.concat_str(pl.all(), separator="; ", ignore_nulls=True).alias("reason")
    )["reason"]
    joined = joined.replace("", None)
    return pl.DataFrame(out), joined


def _dtype(spec: FieldSpec) -> pl.DataType:
    return _DTYPES.get(spec.type, pl.String())


def _reason_category(reason: str) -> str:
    """'手机号格式错误: 1380013800; 购车日期格式错误: x' → '手机号格式错误'."""
    return reason.split(";")[0].split(":")[0].strip()


def _add(summary: ImportSummary, out: BatchOutcome, rows: int) -> None:
    summary.read += rows
    summary.inserted += out.inserted
    summary.updated += out.updated
    summary.unchanged += out.unchanged
    summary.merged += out.merged


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _table(model: type[m.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _start_run(engine: Engine, summary: ImportSummary, sha: str, started: dt.datetime) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(_table(m.ImportRun)).values(
                kind=summary.kind,
                file_name=summary.file,
                file_sha256=sha,
                encoding=summary.encoding,
                status="running",
                started_at=started,
                rows_read=0,
                inserted=0,
                updated=0,
                unchanged=0,
                quarantined=0,
                merged=0,
                chunks_done=0,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def _finish_run(conn: Any, run_id: int, summary: ImportSummary, status: str) -> None:
    conn.execute(
        update(_table(m.ImportRun))
        .where(_table(m.ImportRun).c.id == run_id)
        .values(
            status=status,
            finished_at=dt.datetime.now(dt.UTC),
            rows_read=summary.read,
            inserted=summary.inserted,
            updated=summary.updated,
            unchanged=summary.unchanged,
            quarantined=summary.quarantined,
            merged=summary.merged,
            quarantine_file=summary.quarantine_file,
            error=json.dumps(
                {"reasons": summary.reasons, "warnings": summary.warnings}, ensure_ascii=False
            )
            if summary.reasons or summary.warnings
            else None,
        )
    )


def _fail(engine: Engine, run_id: int, quarantine: QuarantineWriter, message: str) -> None:
    """Record the failure; the quarantine file of a rolled-back import would mislead, so go."""
    path = quarantine.path
    quarantine.close()
    if path is not None:
        path.unlink(missing_ok=True)
    with engine.begin() as conn:
        conn.execute(
            update(_table(m.ImportRun))
            .where(_table(m.ImportRun).c.id == run_id)
            .values(status="failed", finished_at=dt.datetime.now(dt.UTC), error=message)
        )


def find_kind_files(directory: Path) -> list[tuple[str, Path]]:
    """The files of a generated or exported set in import order: manifest.json, else by name."""
    manifest = directory / "manifest.json"
    if manifest.exists():
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            found = [(str(e["kind"]), directory / str(e["file"])) for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{manifest}: not a valid manifest: {exc}") from exc
        return sorted(found, key=lambda kf: IMPORT_ORDER.index(kf[0]))
    found = []
    for kind in IMPORT_ORDER:
        stems = {kind, kind.replace("-", "_")}
        found += [
            (kind, p)
            for p in sorted(directory.iterdir())
            if p.is_file() and p.stem in stems and ".quarantine" not in p.name
        ]
    if not found:
        raise InputError(
            f"{directory}: no manifest.json and no files named after a kind "
            f"({', '.join(IMPORT_ORDER)})"
        )
    return found
