"""Events from files and from imported records: checked against the vocabulary, then stored.

Two ways in, one shape out. :func:`read_event_file` reads a JSON Lines or CSV file of events
(from a CRM, the WeCom callback log, a call centre …), checks every row against
:data:`~baoke.journeys.vocabulary.EVENT_TYPES` and quarantines the rows that do not fit, each
with its reason. :func:`derive_record_events` turns imported records (deliveries, service
orders, complaints …) whose moment falls in a window into the same events. Both return a frame
of :data:`EVENT_SCHEMA`; :func:`store_events` writes one to the ``events`` table, skipping
events whose key is already there, so replaying a file or a window changes nothing.

The ``attributes`` column is a JSON object in one canonical spelling (keys sorted, compact
separators, non-ASCII kept): only the attributes that have a value appear; choice values are
lower-case vocabulary choices, ``int`` attributes are JSON numbers, everything else a string.

Checks run on whole columns; a JSON Lines ``attributes`` object is unpacked row by row, and
customer references are resolved with one query per kind of reference.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    DateTime,
    Integer,
    Select,
    SmallInteger,
    Table,
    case,
    func,
    select,
)

from baoke.errors import InputError
from baoke.ingest.kinds import FieldSpec, FieldType
from baoke.ingest.quarantine import QuarantineWriter
from baoke.ingest.readers import (
    ERROR_COL,
    JSONL_EXTENSIONS,
    LINE_COL,
    inspect_source,
    iter_batches,
)
from baoke.ingest.store_io import bulk_insert_new, fetch_by_keys, to_utc
from baoke.ingest.validate import parse_field
from baoke.journeys.vocabulary import EVENT_TYPES, Attribute, EventType
from baoke.privacy import mask_mobile
from baoke.store import models as m

__all__ = [
    "EVENT_SCHEMA",
    "EventBatch",
    "derive_record_events",
    "read_event_file",
    "store_events",
]

EVENT_SCHEMA = pl.Schema(
    {
        "event_key": pl.String(),
        "type": pl.String(),
        "customer_id": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "attributes": pl.String(),
        "source": pl.String(),
    }
)
"""Columns of an events frame, as stored in the ``events`` table."""

RECORDS_SOURCE = "records"

# Columns of an event file that are not attributes of the event.
_FIELDS = ("type", "occurred_at", "customer_id", "mobile", "external_userid", "event_id")
_RESERVED = (*_FIELDS, "attributes")
# Working columns of a batch, beside the source's own.
_NESTED, _TIME_RAW, _CUSTOMER, _HAS_REF = "__nested__", "__time__", "__customer__", "__has_ref__"
_INTERNAL = (LINE_COL, ERROR_COL, _NESTED, _TIME_RAW, _CUSTOMER, _HAS_REF)
_VOCABULARY_ATTRIBUTES = sorted({a.name for e in EVENT_TYPES.values() for a in e.attributes})
_CUSTOMER_TYPES = [e.name for e in EVENT_TYPES.values() if e.customer]
_MODEL_TYPES = [e.name for e in EVENT_TYPES.values() if not e.customer]
_ATTRIBUTE_LISTS = {
    e.name: ", ".join(a.name for a in e.attributes) or "none" for e in EVENT_TYPES.values()
}

_KEY_MAX = 128  # events.event_key
_EXT_PREFIX = "ext:"
_SOURCE_MAX = 64  # events.source
_HASH_HEX = 24
_ID_RE = r"^\d{1,18}(?:\.0+)?$"  # "123.0": a number that went through a spreadsheet
_INT_RE = r"^[+-]?\d{1,18}(?:\.0+)?$"
# The documented shapes only: ISO 8601 (offset optional) or "YYYY-MM-DD HH:MM[:SS]". The import
# parser behind it also takes Excel serials and Chinese dates, which an event feed never sends.
_TIME_RE = (
    r"^\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
    r"\s*(?:[Zz]|[+-]\d{2}:?\d{2})?$"
)
_OCCURRED_AT = FieldSpec("occurred_at", FieldType.DATETIME, (), "occurred_at")
_MOBILE = FieldSpec("mobile", FieldType.MOBILE, (), "mobile")


@dataclass
class EventBatch:
    """The events read from one file, with what happened to the rest of its rows."""

    events: pl.DataFrame  # EVENT_SCHEMA; one row per event key (a repeated key keeps its first)
    rows_read: int
    quarantined: int
    quarantine_file: Path | None


# --------------------------------------------------------------------------------------------
# reading a file


def read_event_file(
    path: Path, conn: Connection, *, zone: ZoneInfo, batch_rows: int = 50_000
) -> EventBatch:
    """Read and check the events of a JSON Lines or CSV file; bad rows go to quarantine.

    ``zone`` is the business time zone, used for times written without an offset. ``conn``
    is only read from (customer look-ups). Raises InputError when the file cannot be used at
    all (unknown extension, unreadable, no ``type`` or ``occurred_at`` column); a file whose
    every row is bad returns an empty ``events`` frame, and the caller decides.
    """
    path = Path(path)
    expected = _expected_format(path)
    info = inspect_source(path)
    if info.format != expected:
        raise InputError(f"{path.name}: does not hold JSON Lines (one JSON object per line)")
    _check_header(path, _field_names(path, info.columns))
    source = f"file:{path.name}"[:_SOURCE_MAX]
    parts: list[pl.DataFrame] = []
    rows_read = 0
    with QuarantineWriter(path, info.columns) as quarantine:
        for batch in iter_batches(path, batch_rows):
            rows_read += batch.frame.height
            events, reasons = _check_batch(path, batch.frame, conn, zone, source)
            bad = reasons.is_not_null()
            quarantine.write(batch.frame.filter(bad), reasons.filter(bad))
            parts.append(events)
    events = pl.concat(parts) if parts else pl.DataFrame(schema=EVENT_SCHEMA)
    return EventBatch(
        events.unique("event_key", keep="first", maintain_order=True),
        rows_read,
        quarantine.count,
        quarantine.path,
    )


def read_event_rows(
    rows: Sequence[Mapping[str, Any]], conn: Connection, *, zone: ZoneInfo, source: str = "api"
) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Check events given as objects (the HTTP API): the good ones, and (index, reason) of the
    bad ones. The same rules as a JSON Lines file, row for row."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    if "type" not in names or "occurred_at" not in names:
        raise InputError("every event needs type and occurred_at")
    columns = {
        name: pl.Series(
            name,
            [
                _scalar_text(row.get(name)) if name != "attributes" else _object_text(row.get(name))
                for row in rows
            ],
            dtype=pl.String,
        )
        for name in names
    }
    raw = pl.DataFrame(columns).with_columns(pl.lit(None, pl.String).alias(ERROR_COL))
    events, reasons = _check_batch(Path(source), raw, conn, zone, source[:_SOURCE_MAX])
    rejected = [(i, str(r)) for i, r in enumerate(reasons.to_list()) if r is not None]
    return events.unique("event_key", keep="first", maintain_order=True), rejected


def _object_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _expected_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in JSONL_EXTENSIONS or suffix == ".json":
        return "jsonl"
    raise InputError(
        f"{path.name}: an event file must be JSON Lines (.jsonl, .ndjson) or CSV (.csv), "
        f"not {suffix or 'a file without extension'}"
    )


def _field_names(path: Path, columns: Sequence[str]) -> dict[str, str]:
    """Source column → field name (trimmed, lower-case), refusing two columns for one field."""
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for column in columns:
        if column in (LINE_COL, ERROR_COL):
            continue
        name = _field_name(column)
        if name in seen:
            raise InputError(
                f"{path.name}: columns {seen[name]!r} and {column!r} are the same field"
            )
        seen[name] = column
        names[column] = name
    return names


@functools.lru_cache(maxsize=4096)
def _field_name(column: str) -> str:
    """``" Event ID"`` → ``event_id``: headers are matched loosely, values never are."""
    return re.sub(r"[\s-]+", "_", column.strip().lower())


def _check_header(path: Path, names: dict[str, str]) -> None:
    missing = [n for n in ("type", "occurred_at") if n not in names.values()]
    if missing:
        found = ", ".join(names) or "none"
        raise InputError(
            f"{path.name}: no {' or '.join(missing)} column; an event file needs type and "
            f"occurred_at (columns found: {found})"
        )


def _check_batch(
    path: Path, raw: pl.DataFrame, conn: Connection, zone: ZoneInfo, source: str
) -> tuple[pl.DataFrame, pl.Series]:
    """The good events of one batch, and per row the reason it is bad (null: good)."""
    work = _unpack_attributes(_stripped(raw.rename(_field_names(path, raw.columns))))
    # Every field and vocabulary attribute as a column, so a rule never meets a missing one.
    absent = [c for c in (*_FIELDS, *_VOCABULARY_ATTRIBUTES) if c not in work.columns]
    work = work.with_columns(pl.lit(None, pl.String).alias(c) for c in absent)
    work = work.with_columns(
        _occurred_at(work.get_column("occurred_at"), zone),
        pl.col("occurred_at").alias(_TIME_RAW),
    )
    work = work.with_columns(_resolve_customers(conn, work, zone))
    attributes = [c for c in work.columns if c not in (*_RESERVED, *_INTERNAL)]
    reasons = [pl.col(ERROR_COL), _joined(_rules(tuple(attributes)))]
    reason = work.select(pl.coalesce(reasons)).to_series()
    good = work.filter(reason.is_null())
    return _file_events(good, attributes, source), reason


def _stripped(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text cell trimmed; blank cells become null (a blank cell means "not given")."""
    text = [c for c, t in frame.schema.items() if t == pl.String and c != ERROR_COL]
    trimmed = [pl.col(c).str.strip_chars() for c in text]
    return frame.with_columns(pl.when(t.str.len_bytes() > 0).then(t) for t in trimmed)


def _joined(errors: Sequence[pl.Expr]) -> pl.Expr:
    """All the reasons of a row in one text, null when there is none."""
    text = pl.concat_str(list(errors), separator="; ", ignore_nulls=True)
    return pl.when(text.str.len_bytes() > 0).then(text)


# ---- attributes given as a nested object


def _unpack_attributes(work: pl.DataFrame) -> pl.DataFrame:
    """Spread an ``attributes`` object (JSON text) into attribute columns.

    A value given both as a column and in the object must agree; nested objects and lists
    are refused (every attribute is a single value). Problems land in ``__nested__``.
    """
    if "attributes" not in work.columns:
        return work.with_columns(pl.lit(None, pl.String).alias(_NESTED))
    columns, problems = _parse_objects(work.get_column("attributes").to_list())
    work = work.drop("attributes").with_columns(pl.Series(_NESTED, problems, dtype=pl.String))
    for name, values in columns.items():
        nested = pl.Series(name, values, dtype=pl.String).str.strip_chars()
        nested = pl.select(pl.when(nested.str.len_bytes() > 0).then(nested)).to_series()
        work = _merge_nested(work, name, nested.alias(name))
    return work


def _parse_objects(texts: list[str | None]) -> tuple[dict[str, list[str | None]], list[str | None]]:
    """Attribute columns from the objects, and per row a problem (None: fine)."""
    columns: dict[str, list[str | None]] = {}
    problems: list[str | None] = [None] * len(texts)
    for row, text in enumerate(texts):
        if text is None:
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            problems[row] = "attributes must be a JSON object"
            continue
        for key, value in obj.items():
            name = _field_name(str(key))
            if isinstance(value, dict | list):
                problems[row] = (
                    f"attribute {name!r} must be a single value, not {type(value).__name__}"
                )
            elif name in _RESERVED:
                problems[row] = f"{name!r} belongs outside attributes, as its own field"
            else:
                if name not in columns:
                    columns[name] = [None] * len(texts)
                columns[name][row] = _scalar_text(value)
    return columns, problems


def _scalar_text(value: Any) -> str | None:
    """A JSON scalar as the text a CSV cell would hold (``12.0`` → ``12``, ``true``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _merge_nested(work: pl.DataFrame, name: str, nested: pl.Series) -> pl.DataFrame:
    if name not in work.columns:
        return work.with_columns(nested)
    top, given = pl.col(name), pl.lit(nested)
    clash = top.is_not_null() & given.is_not_null() & (top != given)
    message = f"attribute {name!r} is given twice with different values"
    return work.with_columns(
        pl.coalesce(top, given).alias(name),
        pl.when(clash & pl.col(_NESTED).is_null())
        .then(pl.lit(message))
        .otherwise(pl.col(_NESTED))
        .alias(_NESTED),
    )


# ---- time and customer


def _occurred_at(raw: pl.Series, zone: ZoneInfo) -> pl.Series:
    """UTC time of each row (naive times are in ``zone``); null where there is none."""
    shaped = raw.str.contains(_TIME_RE).fill_null(False)
    candidate = pl.select(pl.when(shaped).then(raw)).to_series().alias("occurred_at")
    return parse_field(candidate, _OCCURRED_AT, zone).values.alias("occurred_at")


def _time_rule() -> pl.Expr:
    raw = pl.col(_TIME_RAW)
    return (
        pl.when(raw.is_null())
        .then(pl.lit("occurred_at is missing"))
        .when(pl.col("occurred_at").is_null())
        .then(
            pl.concat_str(
                pl.lit("occurred_at '"),
                raw,
                pl.lit("' is not a time like 2024-05-01T10:00:00+08:00 or 2024-05-01 10:00"),
            )
        )
    )


def _resolve_customers(conn: Connection, work: pl.DataFrame, zone: ZoneInfo) -> list[pl.Series]:
    """``customer_id`` resolved from the first reference a row gives, and why that failed.

    References are tried in the order customer_id, mobile, external_userid: the first one
    present is the one that counts, so a row never silently falls back to another.
    """
    refs = work.select(
        id_raw=pl.col("customer_id"),
        id=pl.when(pl.col("customer_id").str.contains(_ID_RE))
        .then(pl.col("customer_id").str.replace(r"\.0+$", ""))
        .cast(pl.Int64, strict=False),
        mobile_raw=pl.col("mobile"),
        mobile=parse_field(work.get_column("mobile"), _MOBILE, zone).values,
        ext=pl.col("external_userid"),
    )
    refs = _join_known_ids(conn, refs)
    refs = _join_mobiles(conn, refs)
    refs = _join_wecom(conn, refs)
    has_ref = pl.any_horizontal(pl.col(c).is_not_null() for c in ("id_raw", "mobile_raw", "ext"))
    out = refs.select(
        pl.when(pl.col("id_raw").is_not_null())
        .then(pl.col("id_found"))
        .when(pl.col("mobile_raw").is_not_null())
        .then(pl.col("mobile_customer"))
        .otherwise(pl.col("ext_customer"))
        .alias("customer_id"),
        _customer_reason(_masked_mobiles(refs)).alias(_CUSTOMER),
        has_ref.alias(_HAS_REF),
    )
    return out.get_columns()


def _join_known_ids(conn: Connection, refs: pl.DataFrame) -> pl.DataFrame:
    customers = _table(m.Customer)
    known = fetch_by_keys(conn, customers, ["id"], refs.select("id"), ["id"])
    found = known.select(pl.col("id"), pl.col("id").alias("id_found"))
    return refs.join(found, on="id", how="left", maintain_order="left")


def _join_mobiles(conn: Connection, refs: pl.DataFrame) -> pl.DataFrame:
    customers = _table(m.Customer)
    known = fetch_by_keys(conn, customers, ["mobile"], refs.select("mobile"), ["id"])
    found = known.select("mobile", pl.col("id").alias("mobile_customer"))
    return refs.join(found, on="mobile", how="left", maintain_order="left")


def _join_wecom(conn: Connection, refs: pl.DataFrame) -> pl.DataFrame:
    """One customer per external_userid; several friendships of one contact are normal."""
    relations = _table(m.WecomRelation)
    keys = refs.select(pl.col("ext").alias("external_userid"))
    known = fetch_by_keys(conn, relations, ["external_userid"], keys, ["customer_id"])
    per_contact = known.group_by("external_userid").agg(
        pl.col("customer_id").drop_nulls().first().alias("ext_customer"),
        pl.col("customer_id").drop_nulls().n_unique().alias("ext_customers"),
    )
    per_contact = per_contact.rename({"external_userid": "ext"})
    return refs.join(per_contact, on="ext", how="left", maintain_order="left")


def _masked_mobiles(refs: pl.DataFrame) -> pl.DataFrame:
    """Add ``mobile_masked`` for the rows whose mobile will be named in a reason."""
    failing = refs.get_column("mobile_raw").is_not_null() & refs.get_column("id_raw").is_null()
    failing = failing & refs.get_column("mobile_customer").is_null()
    shown = refs.select(pl.coalesce("mobile", "mobile_raw")).to_series().filter(failing)
    mapping = {v: mask_mobile(v) for v in shown.unique().to_list()}
    masked = refs.select(pl.coalesce("mobile", "mobile_raw")).to_series()
    masked = masked.replace_strict(mapping, default=None, return_dtype=pl.String)
    return refs.with_columns(masked.alias("mobile_masked"))


def _customer_reason(refs: pl.DataFrame) -> pl.Series:
    """Why the reference that counts (see :func:`_resolve_customers`) names no customer."""
    id_raw, mobile_raw, ext = pl.col("id_raw"), pl.col("mobile_raw"), pl.col("ext")
    by_id = id_raw.is_not_null()
    by_mobile = ~by_id & mobile_raw.is_not_null()
    by_ext = ~by_id & mobile_raw.is_null() & ext.is_not_null()
    masked = pl.col("mobile_masked")

    def text(*parts: pl.Expr | str) -> pl.Expr:
        return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])

    cases = [
        (by_id & pl.col("id").is_null(), text("customer_id '", id_raw, "' is not a whole number")),
        (
            by_id & pl.col("id_found").is_null(),
            text("customer_id ", id_raw, " is not a known customer"),
        ),
        (
            by_mobile & pl.col("mobile").is_null(),
            text("mobile ", masked, " is not a valid mobile number"),
        ),
        (
            by_mobile & pl.col("mobile_customer").is_null(),
            text("mobile ", masked, " is not a known customer"),
        ),
        (
            by_ext & pl.col("ext_customer").is_null(),
            text("external_userid ", ext, " is not a known customer"),
        ),
        (
            by_ext & (pl.col("ext_customers") > 1),
            text("external_userid ", ext, " belongs to several customers"),
        ),
    ]
    return refs.select(_first(cases)).to_series()


# ---- rules of the vocabulary


@functools.lru_cache(maxsize=256)
def _rules(attributes: tuple[str, ...]) -> tuple[pl.Expr, ...]:
    """One reason expression per rule, in the order a reader fixes them.

    Kept per set of attribute columns: building the expressions (a when/then chain per
    attribute and event type) cost a tenth of checking a day's few hundred events.
    """
    kind = pl.col("type")
    longest = _KEY_MAX - len(_EXT_PREFIX)
    return (
        pl.when(kind.is_null())
        .then(pl.lit("type is missing"))
        .when(~kind.is_in(list(EVENT_TYPES)))
        .then(pl.concat_str(pl.lit("unknown event type '"), kind, pl.lit("'"))),
        _time_rule(),
        pl.col(_CUSTOMER),
        pl.when(kind.is_in(_CUSTOMER_TYPES) & ~pl.col(_HAS_REF))
        .then(
            pl.concat_str(
                kind, pl.lit(" needs a customer: give customer_id, mobile or external_userid")
            )
        )
        .when(kind.is_in(_MODEL_TYPES) & pl.col(_HAS_REF))
        .then(pl.concat_str(kind, pl.lit(" is about a car model and takes no customer"))),
        pl.when(
            kind.is_in(_MODEL_TYPES) & pl.col("model").is_null() & pl.col("series").is_null()
        ).then(pl.concat_str(kind, pl.lit(" needs model or series"))),
        pl.when(pl.col("event_id").str.len_chars() > longest).then(
            pl.lit(f"event_id is longer than {longest} characters")
        ),
        pl.col(_NESTED),
        *(_attribute_rule(name) for name in attributes),
    )


def _first(cases: Sequence[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
    """The value of the first case whose condition holds, else null (a when/then chain)."""
    result = pl.lit(None, pl.String)
    for condition, value in reversed(cases):
        result = pl.when(condition).then(value).otherwise(result)
    return result


@functools.lru_cache(maxsize=1024)
def _attribute_rule(name: str) -> pl.Expr:
    """Why the value of attribute ``name`` does not fit the row's event type, if it does not."""
    kind, value = pl.col("type"), pl.col(name)
    owners = [e for e in EVENT_TYPES.values() if e.attribute(name) is not None]
    foreign = kind.is_in(list(EVENT_TYPES)) & ~kind.is_in([e.name for e in owners])
    unknown = pl.concat_str(
        pl.lit(f"unknown attribute '{name}' for "),
        kind,
        pl.lit(" (its attributes: "),
        kind.replace_strict(_ATTRIBUTE_LISTS, default="none"),
        pl.lit(")"),
    )
    cases = [(value.is_not_null() & foreign, unknown)]
    for event in owners:
        attribute = event.attribute(name)
        assert attribute is not None
        cases += _value_cases(attribute, kind == event.name, event.name)
    return _first(cases)


def _value_cases(attribute: Attribute, mine: pl.Expr, event: str) -> list[tuple[pl.Expr, pl.Expr]]:
    """The checks of one attribute of one event type: required, choices, whole number."""
    name, value = attribute.name, pl.col(attribute.name)
    given = mine & value.is_not_null()
    cases = []
    if attribute.required:
        cases.append((mine & value.is_null(), pl.lit(f"{event} needs {name}")))
    if attribute.choices is not None:
        listed = ", ".join(attribute.choices)
        cases.append(
            (
                given & ~value.str.to_lowercase().is_in(attribute.choices),
                pl.concat_str(pl.lit(f"{name} '"), value, pl.lit(f"' is not one of: {listed}")),
            )
        )
    if attribute.kind == "int":
        cases.append(
            (
                given & ~value.str.contains(_INT_RE),
                pl.concat_str(pl.lit(f"{name} '"), value, pl.lit("' is not a whole number")),
            )
        )
    return cases


# ---- the events of the good rows


def _file_events(good: pl.DataFrame, attributes: Sequence[str], source: str) -> pl.DataFrame:
    frame = good.select(
        "type",
        "customer_id",
        "occurred_at",
        "event_id",
        _attributes_json(good.schema, attributes).alias("attributes"),
    )
    digest = pl.Series(_digests(frame), dtype=pl.String)
    return frame.select(
        pl.when(pl.col("event_id").is_not_null())
        .then(pl.concat_str(pl.lit(_EXT_PREFIX), pl.col("event_id")))
        .otherwise(pl.concat_str(pl.lit("h:"), pl.lit(digest)))
        .alias("event_key"),
        "type",
        "customer_id",
        "occurred_at",
        "attributes",
        pl.lit(source).alias("source"),
    ).cast(EVENT_SCHEMA)


def _digests(frame: pl.DataFrame) -> list[str]:
    """First hex digits of sha256 over what the event is: type, customer, time, attributes.

    The file name is left out on purpose: the same event in another file is the same event.
    """
    payload = frame.select(
        pl.concat_str(
            pl.col("type"),
            pl.col("customer_id").cast(pl.String).fill_null(""),
            pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
            pl.col("attributes"),
            separator="\n",
        )
    ).to_series()
    return [hashlib.sha256(p.encode()).hexdigest()[:_HASH_HEX] for p in payload.to_list()]


def _attributes_json(schema: pl.Schema, names: Iterable[str]) -> pl.Expr:
    """The row's attributes as canonical JSON object text (see the module docstring).

    Built column-wise: polars' JSON encoding of a one-field struct gives ``{"k":v}`` with the
    same escaping as ``json.dumps(..., ensure_ascii=False)``; the braces are cut and the
    pieces joined in key order.
    """
    pieces = [_attribute_piece(name, schema[name]) for name in sorted(names)]
    inner = pl.concat_str(pieces, separator=",", ignore_nulls=True) if pieces else pl.lit("")
    return pl.concat_str(pl.lit("{"), inner, pl.lit("}"))


def _attribute_piece(name: str, dtype: pl.DataType) -> pl.Expr:
    """``"name":value`` for rows whose event type has ``name`` and a value for it, else null."""
    kind, value = pl.col("type"), pl.col(name)
    cases = []
    for event in EVENT_TYPES.values():
        attribute = event.attribute(name)
        if attribute is None:
            continue
        canonical = value
        if attribute.kind == "int" and dtype == pl.String:
            canonical = value.str.replace(r"\.0+$", "").cast(pl.Int64)
        elif attribute.choices is not None:
            canonical = value.str.to_lowercase()
        encoded = pl.struct(canonical.alias(name)).struct.json_encode()
        piece = encoded.str.strip_prefix("{").str.strip_suffix("}")
        cases.append(((kind == event.name) & value.is_not_null(), piece))
    return _first(cases)


# --------------------------------------------------------------------------------------------
# events derived from records


@dataclass(frozen=True)
class _Window:
    """(since, until] in UTC, and the business dates whose start lies in it."""

    since: dt.datetime
    until: dt.datetime
    first_day: dt.date
    last_day: dt.date
    zone: ZoneInfo


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """A business date as a moment: its start in the business zone, in UTC."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _window(since: dt.datetime, until: dt.datetime, zone: ZoneInfo) -> _Window:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be time-zone aware")
    since, until = since.astimezone(dt.UTC), until.astimezone(dt.UTC)
    first = since.astimezone(zone).date()
    if _day_start(first, zone) <= since:
        first += dt.timedelta(days=1)
    return _Window(since, until, first, until.astimezone(zone).date(), zone)


@dataclass(frozen=True)
class _RecordSource:
    """One kind of record that becomes an event: its query and how its key is made."""

    event: str
    query: Callable[[_Window], Select[Any]]
    key: tuple[str, ...] = ("id",)
    # Stand-ins for a missing (or non-vocabulary) stored value of a required attribute.
    defaults: tuple[tuple[str, str], ...] = ()


def derive_record_events(
    conn: Connection, since: dt.datetime, until: dt.datetime, *, zone: ZoneInfo
) -> pl.DataFrame:
    """Events for the imported records whose moment falls in (since, until].

    A record with a business date (delivery, settlement, lost lead) happens at the start of
    that date in ``zone``; timestamped records (complaints, referrals, points, WeCom) at their
    time. Keys are ``rec:<event>:<record id>`` (referrals add ``:<stage>``), so deriving the
    same window twice gives the same events. One query per kind of record, on the window only.
    """
    window = _window(since, until, zone)
    frames = [_derive(conn, source, window) for source in _RECORD_SOURCES]
    events = pl.concat(frames) if frames else pl.DataFrame(schema=EVENT_SCHEMA)
    return events.sort("occurred_at", "event_key")


def _derive(conn: Connection, source: _RecordSource, window: _Window) -> pl.DataFrame:
    event = EVENT_TYPES[source.event]
    rows = _conform(_fetch(conn, source.query(window), window.zone), event, dict(source.defaults))
    key_parts = [pl.col(c).cast(pl.String) for c in source.key]
    attributes = [a.name for a in event.attributes if a.name in rows.columns]
    return (
        rows.with_columns(pl.lit(event.name).alias("type"))
        .select(
            pl.concat_str(pl.lit(f"rec:{event.name}"), *key_parts, separator=":").alias(
                "event_key"
            ),
            "type",
            "customer_id",
            "occurred_at",
            _attributes_json(rows.schema, attributes).alias("attributes"),
            pl.lit(RECORDS_SOURCE).alias("source"),
        )
        .cast(EVENT_SCHEMA)
    )


def _conform(rows: pl.DataFrame, event: EventType, defaults: dict[str, str]) -> pl.DataFrame:
    """Keep stored values only where the vocabulary allows them; drop rows lacking a must.

    Imports validate these columns already; this guards against rows written another way,
    which would otherwise reach the journeys as events the vocabulary does not know.
    """
    for attribute in event.attributes:
        if attribute.name not in rows.columns or attribute.choices is None:
            continue
        value = pl.col(attribute.name)
        allowed = pl.when(value.is_in(attribute.choices)).then(value)
        rows = rows.with_columns(allowed.fill_null(pl.lit(defaults.get(attribute.name))))
    for attribute in event.attributes:
        if attribute.required:
            rows = rows.filter(pl.col(attribute.name).is_not_null())
    return rows


def _fetch(conn: Connection, statement: Select[Any], zone: ZoneInfo) -> pl.DataFrame:
    """Run a query into a frame; a ``day`` column becomes ``occurred_at`` (start of day)."""
    schema = {c.name: _polars_type(c.type) for c in statement.selected_columns}
    naive = {k: pl.Datetime("us") if isinstance(v, pl.Datetime) else v for k, v in schema.items()}
    rows = [tuple(r) for r in conn.execute(statement).all()]
    frame = to_utc(pl.DataFrame(rows, schema=naive, orient="row", strict=False))
    if "day" in frame.columns:
        frame = frame.with_columns(_day_starts(frame.get_column("day"), zone)).drop("day")
    return frame


def _day_starts(days: pl.Series, zone: ZoneInfo) -> pl.Series:
    """Start of each business date in UTC; one Python call per distinct date, not per row."""
    starts = {d: _day_start(d, zone) for d in days.drop_nulls().unique().to_list()}
    out = days.replace_strict(starts, default=None, return_dtype=pl.Datetime("us", "UTC"))
    return out.alias("occurred_at")


def _polars_type(kind: Any) -> pl.DataType:
    if isinstance(kind, DateTime):
        return pl.Datetime("us", "UTC")
    if isinstance(kind, Date):
        return pl.Date()
    if isinstance(kind, BigInteger | Integer | SmallInteger):
        return pl.Int64()
    return pl.String()


def _table(model: type[m.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _between_days(column: Any, window: _Window) -> Any:
    return column.between(window.first_day, window.last_day)


def _in_window(column: Any, window: _Window) -> Any:
    # Bound UTC datetimes: SQLite keeps naive UTC text, which compares as text in the same
    # format SQLAlchemy renders the parameters in; PostgreSQL compares timestamptz.
    return (column > window.since) & (column <= window.until)


def _vehicles(window: _Window) -> Select[Any]:
    v = _table(m.Vehicle)
    return select(
        v.c.id, v.c.customer_id, v.c.delivery_date.label("day"), v.c.series, v.c.model, v.c.vin
    ).where(v.c.customer_id.is_not(None), _between_days(v.c.delivery_date, window))


def _service_orders(window: _Window) -> Select[Any]:
    o = _table(m.ServiceOrder)
    return select(
        o.c.id, o.c.customer_id, o.c.settled_on.label("day"), o.c.order_type, o.c.order_no
    ).where(o.c.customer_id.is_not(None), _between_days(o.c.settled_on, window))


def _complaints(moment: str) -> Callable[[_Window], Select[Any]]:
    def query(window: _Window) -> Select[Any]:
        c = _table(m.Complaint)
        at = c.c[moment]
        return select(
            c.c.id, c.c.customer_id, at.label("occurred_at"), c.c.severity, c.c.complaint_no
        ).where(_in_window(at, window))

    return query


def _lost_leads(window: _Window) -> Select[Any]:
    lead = _table(m.Lead)
    return select(
        lead.c.id,
        lead.c.customer_id,
        lead.c.lost_on.label("day"),
        lead.c.lost_reason,
        lead.c.stage,
        lead.c.lead_no,
    ).where(
        lead.c.status == "lost",
        lead.c.customer_id.is_not(None),
        _between_days(lead.c.lost_on, window),
    )


def _referrals(window: _Window) -> Select[Any]:
    r = _table(m.Referral)
    return select(
        r.c.id,
        r.c.referrer_id.label("customer_id"),
        r.c.stage_at.label("occurred_at"),
        r.c.stage,
        r.c.referee_name,
    ).where(_in_window(r.c.stage_at, window))


def _points(window: _Window) -> Select[Any]:
    ledger = _table(m.LoyaltyEntry)
    reason = func.lower(func.trim(ledger.c.reason))
    return select(
        ledger.c.id,
        ledger.c.customer_id,
        ledger.c.occurred_at,
        _points_reason(reason, ledger.c.points).label("reason"),
        ledger.c.points,
    ).where(_in_window(ledger.c.occurred_at, window))


# Ledger reasons are free text from the loyalty system; the vocabulary has five. An unknown
# reason is "activity" when points are earned but "redemption" when they are spent, so a
# redemption is never announced as points earned.
_POINTS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "purchase": ("purchase", "buy", "sale", "购车", "购买"),
    "service": ("service", "maintenance", "repair", "保养", "维修", "维保", "售后"),
    "referral": ("referral", "refer", "推荐"),
    "activity": ("activity", "event", "campaign", "活动", "签到"),
    "redemption": ("redemption", "redeem", "exchange", "兑换", "使用"),
}


def _points_reason(reason: Any, points: Any) -> Any:
    whens = [(reason.in_(words), choice) for choice, words in _POINTS_SYNONYMS.items()]
    return case(*whens, (points < 0, "redemption"), else_="activity")


def _wecom(moment: str) -> Callable[[_Window], Select[Any]]:
    def query(window: _Window) -> Select[Any]:
        w, s = _table(m.WecomRelation), _table(m.Staff)
        at = w.c[moment]
        extra = [w.c.state.label("channel_code")] if moment == "added_at" else [w.c.deleted_by]
        return (
            select(w.c.id, w.c.customer_id, at.label("occurred_at"), *extra, s.c.staff_no)
            .select_from(w.join(s, w.c.staff_id == s.c.id))
            .where(w.c.customer_id.is_not(None), _in_window(at, window))
        )

    return query


_RECORD_SOURCES = (
    _RecordSource("vehicle_delivered", _vehicles),
    _RecordSource("service_visit", _service_orders),
    _RecordSource("complaint_opened", _complaints("opened_at")),
    _RecordSource("complaint_resolved", _complaints("resolved_at")),
    _RecordSource("lead_lost", _lost_leads, defaults=(("lost_reason", "unknown"),)),
    _RecordSource("referral_stage", _referrals, ("id", "stage")),
    _RecordSource("points_changed", _points),
    _RecordSource("wecom_friend_added", _wecom("added_at")),
    _RecordSource(
        "wecom_friend_deleted", _wecom("deleted_at"), defaults=(("deleted_by", "customer"),)
    ),
)


# --------------------------------------------------------------------------------------------
# storing


def store_events(conn: Connection, events: pl.DataFrame) -> int:
    """Insert the events whose key is not stored yet; returns how many were inserted.

    The count is the new keys found before inserting; the insert itself still skips any key
    that a concurrent writer stored in between, so the table never holds a key twice.
    """
    events = events.select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA)
    events = events.unique("event_key", keep="first", maintain_order=True)
    table = _table(m.Event)
    stored = fetch_by_keys(conn, table, ["event_key"], events.select("event_key"), ["event_key"])
    new = events.filter(~pl.col("event_key").is_in(stored.get_column("event_key").implode()))
    bulk_insert_new(conn, table, new, conflict="(event_key)")
    return new.height
