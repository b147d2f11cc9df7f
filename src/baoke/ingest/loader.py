"""Writes validated batches of each import kind into the store.

Each batch arrives as a polars frame of typed canonical fields plus ``row_no`` (the batch's row
index). A loader resolves references (dealer code → dealer, VIN → vehicle, mobile or dealer
customer number → customer), rejects rows whose references do not exist, compares the rest with
the stored rows by natural key, and writes inserts and updates in bulk. Counting is per source
row: every row ends up inserted, updated, unchanged, merged or rejected — never dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Table

from baoke.ingest.store_io import (
    allocate_ids,
    bulk_insert,
    bulk_update,
    changed_mask,
    fetch_all,
    fetch_by_keys,
)
from baoke.store import models as m

OLD = "__old"


@dataclass
class BatchOutcome:
    """What one batch did to the store, counted per source row."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    rejected: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"row_no": pl.Int64, "reason": pl.String})
    )
    warnings: Counter[str] = field(default_factory=Counter)

    def reject(self, rows: pl.DataFrame, reason: pl.Expr) -> None:
        """Add ``rows`` (which have ``row_no``) to the rejected rows with ``reason``."""
        if rows.height:
            extra = rows.select(pl.col("row_no"), reason.alias("reason"))
            self.rejected = pl.concat([self.rejected, extra])


@dataclass
class ImportContext:
    """Per-file state shared by the batches: small lookup tables and the import run id."""

    conn: Connection
    import_run_id: int
    _dealers: pl.DataFrame | None = None
    _staff: pl.DataFrame | None = None
    merge_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dealers(self) -> pl.DataFrame:
        """dealer code → id (the dealers table is small; loaded once per file)."""
        if self._dealers is None:
            self._dealers = fetch_all(self.conn, _t(m.Dealer), ["id", "code"]).rename(
                {"id": "dealer_id", "code": "dealer_code"}
            )
        return self._dealers

    @property
    def staff(self) -> pl.DataFrame:
        """staff number → id."""
        if self._staff is None:
            self._staff = fetch_all(self.conn, _t(m.Staff), ["id", "staff_no"])
        return self._staff

    def forget_small_tables(self) -> None:
        """Drop cached lookups after dealers or staff were written."""
        self._dealers = None
        self._staff = None


def _t(model: type[m.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# ---------------------------------------------------------------- reference resolution


def _split_unresolved(
    frame: pl.DataFrame, given: pl.Expr, resolved: str, reason: pl.Expr, out: BatchOutcome
) -> pl.DataFrame:
    """Reject rows where a reference was given but did not resolve; return the others."""
    bad = given & pl.col(resolved).is_null()
    out.reject(frame.filter(bad), reason)
    return frame.filter(~bad)


def resolve_dealer(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> pl.DataFrame:
    """Add ``dealer_id``; a dealer code that does not exist rejects the row."""
    if "dealer_code" not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("dealer_id"))
    joined = frame.join(ctx.dealers, on="dealer_code", how="left")
    return _split_unresolved(
        joined,
        pl.col("dealer_code").is_not_null(),
        "dealer_id",
        pl.format("经销商代码不存在: {}", pl.col("dealer_code")),
        out,
    )


def resolve_staff(
    ctx: ImportContext,
    frame: pl.DataFrame,
    out: BatchOutcome,
    column: str,
    target: str,
    *,
    reject: bool,
) -> pl.DataFrame:
    """Add ``target`` (a staff id) from the staff number in ``column``.

    With ``reject`` an unknown number rejects the row; otherwise the id stays empty and the
    file's summary counts a warning, so a typo in an optional column never loses the row.
    """
    if column not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.Int64).alias(target))
    lookup = ctx.staff.rename({"id": target, "staff_no": column})
    joined = frame.join(lookup, on=column, how="left")
    unknown = pl.col(column).is_not_null() & pl.col(target).is_null()
    if reject:
        return _split_unresolved(
            joined,
            pl.col(column).is_not_null(),
            target,
            pl.format("员工工号不存在: {}", pl.col(column)),
            out,
        )
    missing = joined.filter(unknown).height
    if missing:
        out.warnings["员工工号不存在 (已留空)"] += missing
    return joined


def resolve_customer(
    ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome, *, required: bool
) -> pl.DataFrame:
    """Add ``customer_id`` from the mobile, else from the dealer's customer number.

    ``required``: a row that names no customer, or names one that does not exist, is rejected.
    Otherwise (e.g. a lead from a prospect) ``customer_id`` stays empty.
    """
    frame = _attach_customer_id(ctx, frame)
    has_mobile = _has(frame, "mobile")
    has_no = _has(frame, "customer_no") & _has(frame, "dealer_id")
    named = has_mobile | has_no
    if not required:
        return frame
    out.reject(
        frame.filter(~named),
        pl.lit("缺少客户标识: 需要手机号或经销商代码+客户编号"),
    )
    frame = frame.filter(named)
    who = pl.coalesce(
        pl.concat_str([pl.lit("手机号 "), pl.col("mobile")])
        if "mobile" in frame.columns
        else pl.lit(None, dtype=pl.String),
        pl.concat_str([pl.lit("客户编号 "), pl.col("customer_no")])
        if "customer_no" in frame.columns
        else pl.lit(None, dtype=pl.String),
    )
    return _split_unresolved(
        frame, pl.lit(True), "customer_id", pl.format("客户不存在: {}", who), out
    )


def _has(frame: pl.DataFrame, column: str) -> pl.Expr:
    return pl.col(column).is_not_null() if column in frame.columns else pl.lit(False)


def _attach_customer_id(ctx: ImportContext, frame: pl.DataFrame) -> pl.DataFrame:
    by_mobile = pl.lit(None, dtype=pl.Int64)
    if "mobile" in frame.columns:
        found = fetch_by_keys(ctx.conn, _t(m.Customer), ["mobile"], frame, ["id"])
        frame = frame.join(found.rename({"id": "_cid_m"}), on="mobile", how="left")
        by_mobile = pl.col("_cid_m")
    by_no = pl.lit(None, dtype=pl.Int64)
    if "customer_no" in frame.columns and "dealer_id" in frame.columns:
        found = fetch_by_keys(
            ctx.conn, _t(m.CustomerIdentity), ["dealer_id", "customer_no"], frame, ["customer_id"]
        )
        frame = frame.join(
            found.rename({"customer_id": "_cid_i"}), on=["dealer_id", "customer_no"], how="left"
        )
        by_no = pl.col("_cid_i")
    frame = frame.with_columns(pl.coalesce(by_mobile, by_no).alias("customer_id"))
    return frame.drop([c for c in ("_cid_m", "_cid_i") if c in frame.columns])


# ---------------------------------------------------------------- generic upsert


def upsert(
    ctx: ImportContext,
    table: Table,
    frame: pl.DataFrame,
    key: list[str],
    columns: list[str],
    out: BatchOutcome,
    *,
    keep_existing_when_null: bool = False,
    want_ids: bool = False,
) -> pl.DataFrame:
    """Insert new rows, update changed ones, count unchanged ones; key = natural key columns.

    Several rows with the same key in one batch: the last one wins and the earlier ones count as
    unchanged (identical) or updated (different), because the store ends up as the file says.
    Returns the written rows; with ``want_ids`` new rows carry their ``id`` too (for
    dependent tables such as audit entries).
    """
    written = [c for c in columns if c not in key]
    frame = frame.with_columns(
        pl.col("row_no").rank("ordinal").over(key).alias("_rank"),
        pl.len().over(key).alias("_count"),
    )
    last = frame.filter(pl.col("_rank") == pl.col("_count"))
    earlier = frame.filter(pl.col("_rank") < pl.col("_count"))
    if earlier.height:
        later = last.select([*key, *[pl.col(c).alias(f"{c}{OLD}") for c in written]])
        cmp = earlier.join(later, on=key, how="left", nulls_equal=True)
        differing = cmp.filter(changed_mask(cmp, OLD, written)).height
        out.updated += differing
        out.unchanged += earlier.height - differing

    existing = fetch_by_keys(ctx.conn, table, key, last, ["id", *written])
    existing = existing.rename({c: f"{c}{OLD}" for c in written})
    both = last.join(existing, on=key, how="left", nulls_equal=True)
    if keep_existing_when_null:
        both = both.with_columns(
            [pl.coalesce(pl.col(c), pl.col(f"{c}{OLD}")).alias(c) for c in written]
        )
    new_rows = both.filter(pl.col("id").is_null())
    old_rows = both.filter(pl.col("id").is_not_null())
    changed = old_rows.filter(changed_mask(old_rows, OLD, written))
    out.inserted += new_rows.height
    out.updated += changed.height
    out.unchanged += old_rows.height - changed.height

    bulk_insert(ctx.conn, table, new_rows.select([*key, *written]))
    bulk_update(ctx.conn, table, changed.select(["id", *written]))
    if not (want_ids and new_rows.height):
        return pl.concat([changed, new_rows], how="diagonal_relaxed")
    inserted_ids = fetch_by_keys(ctx.conn, table, key, new_rows, ["id"])
    new_rows = new_rows.drop("id").join(inserted_ids, on=key, how="left", nulls_equal=True)
    return pl.concat([changed, new_rows], how="diagonal_relaxed")


# ---------------------------------------------------------------- one loader per kind


def load_dealers(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Dealers: upsert on code."""
    frame = frame.rename({"dealer_code": "code"})
    upsert(
        ctx,
        _t(m.Dealer),
        frame,
        ["code"],
        ["name", "brand", "city", "region", "address", "phone"],
        out,
    )
    ctx.forget_small_tables()


def load_staff(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Staff: upsert on staff number; the dealer must exist."""
    frame = resolve_dealer(ctx, frame, out)
    frame = frame.with_columns(pl.col("status").fill_null("active"))
    upsert(
        ctx,
        _t(m.Staff),
        frame,
        ["staff_no"],
        ["dealer_id", "name", "role", "mobile", "email", "wecom_userid", "status", "departed_on"],
        out,
    )
    ctx.forget_small_tables()


CUSTOMER_FIELDS = [
    "name",
    "title",
    "gender",
    "email",
    "city",
    "region",
    "birthday",
    "family",
    "contact_from",
    "contact_to",
    "tags",
]


def load_customers(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Customers: one person per normalised mobile, however many dealers know them.

    A row is *merged* when it brings a dealer customer number not seen before for a person who
    already has another one (stored, or from an earlier row of this file); the link goes to
    ``customer_identities`` and the reason to ``merge_log``. Non-empty new values win over stored
    ones; an empty cell never erases what is stored.
    """
    frame = resolve_dealer(ctx, frame, out)
    no_id = ~(_has(frame, "mobile") | _has(frame, "customer_no"))
    out.reject(frame.filter(no_id), pl.lit("缺少客户标识: 需要手机号或客户编号"))
    frame = _attach_customer_id(ctx, frame.filter(~no_id))

    # A person key per row: the stored customer, else the mobile (a row without one borrows
    # it from another row of the same dealer customer number), else the dealer number.
    known_mobile = (
        frame.filter(pl.col("mobile").is_not_null() & pl.col("customer_no").is_not_null())
        .group_by("dealer_id", "customer_no")
        .agg(pl.col("mobile").sort_by("row_no").last().alias("_number_mobile"))
    )
    frame = frame.join(known_mobile, on=["dealer_id", "customer_no"], how="left")
    frame = frame.with_columns(
        pl.coalesce(
            pl.format("c:{}", pl.col("customer_id")),
            pl.format("m:{}", pl.coalesce("mobile", "_number_mobile")),
            pl.format("i:{}:{}", pl.col("dealer_id"), pl.col("customer_no")),
        ).alias("_person")
    ).drop("_number_mobile")
    persons = _customer_values(frame)
    fresh = persons.filter(pl.col("customer_id").is_null())
    fresh = fresh.with_columns(
        allocate_ids(ctx.conn, _t(m.Customer), fresh.height).alias("customer_id")
    )
    persons = pl.concat([persons.filter(pl.col("customer_id").is_not_null()), fresh])
    frame = frame.drop("customer_id").join(
        persons.select("_person", "customer_id"), on="_person", how="left"
    )
    changed = _write_customers(ctx, persons, fresh)
    merged = _link_identities(ctx, frame, out)

    # Per-row counts: merges as such; the person's outcome on its first other row; the rest
    # (repeats of the same person in this file) unchanged.
    rest = frame.join(merged, on="row_no", how="anti").sort("row_no")
    first = rest.filter(pl.col("row_no").rank("ordinal").over("customer_id") == 1)
    is_new = pl.col("customer_id").is_in(fresh["customer_id"].implode())
    is_changed = pl.col("customer_id").is_in(changed.implode())
    out.inserted += first.filter(is_new).height
    out.updated += first.filter(~is_new & is_changed).height
    out.unchanged += first.filter(~is_new & ~is_changed).height + rest.height - first.height


def _customer_values(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per person: the last non-empty value of each field, the first dealer as home."""
    aggs = [pl.col(c).drop_nulls().last().alias(c) for c in [*CUSTOMER_FIELDS, "mobile"]]
    aggs += [
        pl.col("customer_id").first(),
        pl.col("dealer_id").drop_nulls().first().alias("home_dealer_id"),
    ]
    return frame.sort("row_no").group_by("_person", maintain_order=True).agg(aggs)


def _write_customers(ctx: ImportContext, persons: pl.DataFrame, fresh: pl.DataFrame) -> pl.Series:
    """Insert new persons, update stored ones whose values changed; returns the changed ids."""
    table = _t(m.Customer)
    cols = [*CUSTOMER_FIELDS, "mobile", "home_dealer_id"]
    bulk_insert(
        ctx.conn,
        table,
        fresh.select(
            pl.col("customer_id").alias("id"), *cols, pl.lit("valid").alias("mobile_status")
        ),
    )
    stored = persons.join(fresh.select("customer_id"), on="customer_id", how="anti")
    stored = stored.rename({"customer_id": "id"})
    existing = fetch_by_keys(ctx.conn, table, ["id"], stored, cols)
    both = stored.join(existing.rename({c: f"{c}{OLD}" for c in cols}), on="id", how="left")
    both = both.with_columns(
        [
            pl.coalesce(pl.col(c), pl.col(f"{c}{OLD}")).alias(c)
            for c in cols
            if c != "home_dealer_id"
        ]
        # The home dealer is where the person was first known; a later dealer never moves it.
        + [
            pl.coalesce(pl.col(f"home_dealer_id{OLD}"), pl.col("home_dealer_id")).alias(
                "home_dealer_id"
            )
        ]
    )
    changed = both.filter(changed_mask(both, OLD, cols))
    bulk_update(ctx.conn, table, changed.select(["id", *cols]))
    return changed["id"]


def _link_identities(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> pl.DataFrame:
    """Record dealer customer numbers; returns the ``row_no`` of rows that were merges.

    Decisions are per dealer customer number: it belongs to the person of its *last* row in
    the batch (so re-importing the same file never moves it again), and it is a merge when
    that person already had another number (stored, or first seen earlier in this batch).
    """
    table = _t(m.CustomerIdentity)
    ident = ["dealer_id", "customer_no"]
    rows = frame.filter(pl.col("customer_no").is_not_null() & pl.col("dealer_id").is_not_null())
    numbers = (
        rows.sort("row_no")
        .group_by(ident, maintain_order=True)
        .agg(
            pl.col("customer_id").last(),
            pl.col("row_no").min().alias("_first_row"),
            pl.col("mobile").drop_nulls().last(),
        )
    )
    stored = fetch_by_keys(ctx.conn, table, ident, numbers, ["id", "customer_id"]).rename(
        {"customer_id": "_linked_to", "id": "_identity_id"}
    )
    had = fetch_by_keys(ctx.conn, table, ["customer_id"], numbers, ["customer_id"])
    numbers = numbers.join(stored, on=ident, how="left").with_columns(
        pl.col("_first_row").min().over("customer_id").alias("_person_first")
    )
    new_links = numbers.filter(pl.col("_identity_id").is_null())
    merged = new_links.filter(
        pl.col("customer_id").is_in(had["customer_id"].implode())
        | (pl.col("_first_row") > pl.col("_person_first"))
    )
    # A stored number now arriving with another person's mobile: the mobile decides.
    relinked = numbers.filter(
        pl.col("_identity_id").is_not_null() & (pl.col("_linked_to") != pl.col("customer_id"))
    )
    out.merged += merged.height

    bulk_insert(ctx.conn, table, new_links.select(*ident, "customer_id"))
    bulk_update(ctx.conn, table, relinked.select(pl.col("_identity_id").alias("id"), "customer_id"))
    log = pl.concat(
        [
            merged.select(
                "customer_id",
                *ident,
                pl.when(pl.col("mobile").is_not_null())
                .then(pl.format("同一手机号 {}", pl.col("mobile")))
                .otherwise(pl.lit("同一客户"))
                .alias("reason"),
            ),
            relinked.select(
                "customer_id",
                *ident,
                pl.format("客户编号改绑: 原客户 {} (手机号变更)", pl.col("_linked_to")).alias(
                    "reason"
                ),
            ),
        ]
    )
    ctx.merge_rows.extend(
        log.with_columns(pl.lit(ctx.import_run_id).alias("import_run_id")).to_dicts()
    )
    return merged.select(pl.col("_first_row").alias("row_no"))


def load_vehicles(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Vehicles: upsert on VIN; an owner named but not found rejects the row."""
    frame = resolve_dealer(ctx, frame, out)
    frame = _resolve_optional_owner(ctx, frame, out)
    bad_check = frame.filter(~pl.col("vin_check_ok")).height
    if bad_check:
        out.warnings["车架号校验位错误 (已导入并标记)"] += bad_check
    frame = frame.rename({"price": "price_fen"})
    upsert(
        ctx,
        _t(m.Vehicle),
        frame,
        ["vin"],
        [
            "vin_check_ok",
            "customer_id",
            "dealer_id",
            "brand",
            "series",
            "model",
            "model_year",
            "plate_no",
            "purchase_date",
            "delivery_date",
            "price_fen",
            "insurance_expiry",
            "warranty_end",
        ],
        out,
    )
    readings = frame.filter(pl.col("mileage").is_not_null() & pl.col("mileage_date").is_not_null())
    if readings.height:
        ids = fetch_by_keys(ctx.conn, _t(m.Vehicle), ["vin"], readings, ["id", "vin"])
        readings = readings.join(ids, on="vin").select(
            pl.col("id").alias("vehicle_id"),
            pl.col("mileage_date").alias("read_on"),
            pl.col("mileage").alias("odometer_km"),
            pl.lit("import").alias("source"),
            "row_no",
        )
        _upsert_quietly(
            ctx,
            _t(m.MileageReading),
            readings,
            ["vehicle_id", "read_on", "source"],
            ["odometer_km"],
        )


def _upsert_quietly(
    ctx: ImportContext, table: Table, frame: pl.DataFrame, key: list[str], columns: list[str]
) -> None:
    """Upsert a dependent table without counting its rows in the file's summary."""
    upsert(ctx, table, frame, key, [*key, *columns], BatchOutcome())


def _resolve_optional_owner(
    ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome
) -> pl.DataFrame:
    named = _has(frame, "mobile") | (_has(frame, "customer_no") & _has(frame, "dealer_id"))
    frame = _attach_customer_id(ctx, frame)
    return _split_unresolved(
        frame,
        named,
        "customer_id",
        pl.format(
            "车主不存在: {}",
            pl.coalesce(
                pl.col("mobile") if "mobile" in frame.columns else pl.lit(None, dtype=pl.String),
                pl.col("customer_no")
                if "customer_no" in frame.columns
                else pl.lit(None, dtype=pl.String),
            ),
        ),
        out,
    )


def load_service_orders(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Service orders: upsert on order number; the VIN and dealer must exist."""
    frame = resolve_dealer(ctx, frame, out)
    vehicles = fetch_by_keys(ctx.conn, _t(m.Vehicle), ["vin"], frame, ["id", "customer_id"])
    frame = frame.join(vehicles.rename({"id": "vehicle_id"}), on="vin", how="left")
    frame = _split_unresolved(
        frame, pl.lit(True), "vehicle_id", pl.format("车架号不存在: {}", pl.col("vin")), out
    )
    frame = resolve_staff(ctx, frame, out, "advisor_no", "advisor_id", reject=False)
    frame = frame.rename({"amount": "amount_fen", "mileage": "mileage_km"})
    upsert(
        ctx,
        _t(m.ServiceOrder),
        frame,
        ["order_no"],
        [
            "dealer_id",
            "vehicle_id",
            "customer_id",
            "advisor_id",
            "order_type",
            "settled_on",
            "amount_fen",
            "mileage_km",
        ],
        out,
    )


def load_leads(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Leads: upsert on lead number; linked to a customer when the mobile is known."""
    frame = resolve_dealer(ctx, frame, out)
    frame = resolve_customer(ctx, frame, out, required=False)
    frame = _create_prospects(ctx, frame)
    frame = frame.with_columns(
        pl.coalesce(
            pl.col("status"),
            pl.when(pl.col("lost_reason").is_not_null() | pl.col("lost_on").is_not_null())
            .then(pl.lit("lost"))
            .otherwise(pl.lit("open")),
        ).alias("status")
    )
    upsert(
        ctx,
        _t(m.Lead),
        frame,
        ["lead_no"],
        [
            "dealer_id",
            "customer_id",
            "name",
            "mobile",
            "model_of_interest",
            "stage",
            "status",
            "lost_reason",
            "created_on",
            "lost_on",
        ],
        out,
    )


def _create_prospects(ctx: ImportContext, frame: pl.DataFrame) -> pl.DataFrame:
    """A lead with a mobile nobody has yet is a person too: create a prospect customer.

    Lost-lead reactivation and prospect care work on customers, so a prospect must exist in
    the single customer view; a later owner import with the same mobile finds this customer.
    """
    fresh = (
        frame.filter(pl.col("customer_id").is_null() & pl.col("mobile").is_not_null())
        .sort("row_no")
        .group_by("mobile", maintain_order=True)
        .agg(pl.col("name").drop_nulls().last(), pl.col("dealer_id").first())
    )
    if fresh.height == 0:
        return frame
    fresh = fresh.with_columns(allocate_ids(ctx.conn, _t(m.Customer), fresh.height))
    bulk_insert(
        ctx.conn,
        _t(m.Customer),
        fresh.select(
            "id",
            "mobile",
            "name",
            pl.col("dealer_id").alias("home_dealer_id"),
            pl.lit("valid").alias("mobile_status"),
        ),
    )
    return (
        frame.join(fresh.select("mobile", pl.col("id").alias("_new")), on="mobile", how="left")
        .with_columns(pl.coalesce("customer_id", "_new").alias("customer_id"))
        .drop("_new")
    )


def load_complaints(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Complaints: upsert on complaint number; the customer must exist."""
    frame = resolve_dealer(ctx, frame, out)
    frame = resolve_customer(ctx, frame, out, required=True)
    frame = resolve_staff(ctx, frame, out, "owner_staff_no", "owner_staff_id", reject=False)
    frame = frame.with_columns(
        pl.coalesce(
            pl.col("status"),
            pl.when(pl.col("resolved_at").is_not_null())
            .then(pl.lit("resolved"))
            .otherwise(pl.lit("open")),
        ).alias("status")
    )
    upsert(
        ctx,
        _t(m.Complaint),
        frame,
        ["complaint_no"],
        [
            "customer_id",
            "dealer_id",
            "owner_staff_id",
            "opened_at",
            "severity",
            "satisfaction",
            "status",
            "category",
            "description",
            "resolved_at",
        ],
        out,
    )


def load_consents(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Consents: one current state per customer, channel and purpose; every change audited."""
    frame = resolve_dealer(ctx, frame, out)
    frame = resolve_customer(ctx, frame, out, required=True)
    frame = frame.with_columns(pl.col("purpose").fill_null("marketing"))
    before = out.inserted + out.updated
    written = upsert(
        ctx,
        _t(m.Consent),
        frame,
        ["customer_id", "channel", "purpose"],
        ["granted", "basis", "granted_at", "withdrawn_at", "source"],
        out,
        want_ids=True,
    )
    if out.inserted + out.updated > before and written.height:
        audit = written.select(
            pl.lit(f"import:{ctx.import_run_id}").alias("actor"),
            pl.lit("consent.imported").alias("action"),
            pl.lit("consent").alias("entity"),
            pl.col("customer_id").cast(pl.String).alias("entity_id"),
            # Encoded by polars for the whole batch, not json.dumps per row.
            pl.struct("channel", "purpose", "granted", "basis")
            .struct.json_encode()
            .alias("detail"),
        )
        bulk_insert(ctx.conn, _t(m.AuditEntry), audit)


def load_events(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """Behaviour events: insert on event id (events never change once recorded)."""
    frame = resolve_dealer(ctx, frame, out)
    frame = resolve_customer(ctx, frame, out, required=True)
    upsert(
        ctx,
        _t(m.BehaviourEvent),
        frame,
        ["event_key"],
        ["customer_id", "occurred_at", "event_type", "source", "target", "properties"],
        out,
    )


def load_wecom_relations(ctx: ImportContext, frame: pl.DataFrame, out: BatchOutcome) -> None:
    """WeCom friendships: upsert on (staff, external user id)."""
    frame = resolve_dealer(ctx, frame, out)
    frame = resolve_staff(ctx, frame, out, "staff_no", "staff_id", reject=True)
    frame = resolve_customer(ctx, frame, out, required=False)
    named = _has(frame, "mobile") | _has(frame, "customer_no")
    frame = _split_unresolved(
        frame, named, "customer_id", pl.lit("客户不存在 (企业微信好友关系)"), out
    )
    upsert(
        ctx,
        _t(m.WecomRelation),
        frame,
        ["staff_id", "external_userid"],
        ["customer_id", "state", "added_at", "deleted_at", "deleted_by"],
        out,
    )


LOADERS = {
    "dealers": load_dealers,
    "staff": load_staff,
    "customers": load_customers,
    "vehicles": load_vehicles,
    "service-orders": load_service_orders,
    "leads": load_leads,
    "complaints": load_complaints,
    "consents": load_consents,
    "events": load_events,
    "wecom-relations": load_wecom_relations,
}
