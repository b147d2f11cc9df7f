"""The synthetic dealer group: deterministic, realistic and exactly as dirty as it says.

Every planted problem is re-counted here independently of the generator (regexes and polars
over the written files), so the manifest's ``dirty_rows`` / ``duplicate_rows`` /
``vin_warnings`` can be trusted by the import tests and the demo.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from baoke.ingest.kinds import IMPORT_ORDER, KINDS, ORDER_TYPES
from baoke.simulate import catalog
from baoke.simulate.generator import (
    GenerateConfig,
    GenerateResult,
    generate,
    read_manifest,
    vin_check_digit,
)

N = 3_000
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
VIN_SHAPE_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    out = tmp_path_factory.mktemp("gen")
    return generate(GenerateConfig(customers=N, seed=7), out)


def read_csv(result: GenerateResult, kind: str) -> pl.DataFrame:
    """A generated CSV as all-string columns, decoded with the encoding the manifest states."""
    f = result.file(kind)
    encoding = {"gbk": "gb18030", "utf-8": "utf-8", "utf-8-sig": "utf-8-sig"}[f.encoding]
    text = f.path.read_bytes().decode(encoding)
    return pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)


def read_xlsx(result: GenerateResult, kind: str) -> pl.DataFrame:
    wb = openpyxl.load_workbook(result.file(kind).path, read_only=True)
    rows = list(wb.active.iter_rows(values_only=True))
    wb.close()
    header = [str(h) for h in rows[0]]
    return pl.DataFrame(
        {h: [None if r[i] is None else str(r[i]) for r in rows[1:]] for i, h in enumerate(header)}
    )


def label(kind: str, field: str) -> str:
    return KINDS[kind].field(field).headers[0]


def normalise_mobile(raw: str | None) -> str | None:
    if raw is None:
        return None
    s = re.sub(r"[\s\-]", "", raw)
    s = re.sub(r"^(?:\+86|86)(?=1\d{10}$)", "", s)
    return s


def valid_mobile(raw: str | None) -> bool:
    s = normalise_mobile(raw)
    return s is not None and MOBILE_RE.match(s) is not None


def valid_date(text: str | None) -> bool:
    if text is None or not DATE_RE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def exact_duplicates(df: pl.DataFrame) -> int:
    return df.height - df.unique().height


# ------------------------------------------------------------------------------ manifest


def test_manifest_lists_every_kind_in_import_order(generated: GenerateResult) -> None:
    out = generated.files[0].path.parent
    manifest = read_manifest(out)
    assert [f["kind"] for f in manifest["files"]] == list(IMPORT_ORDER)
    assert [f.kind for f in generated.files] == list(IMPORT_ORDER)
    for entry, f in zip(manifest["files"], generated.files, strict=True):
        assert (out / entry["file"]).is_file()
        assert entry["rows"] == f.rows > 0
        assert entry["dirty_rows"] == f.dirty_rows
        assert entry["duplicate_rows"] == f.duplicate_rows
        assert entry["vin_warnings"] == f.vin_warnings
        assert entry["encoding"] == f.encoding
    assert manifest["customers"] == N
    assert any(f.encoding == "xlsx" for f in generated.files)


def test_rows_in_manifest_match_the_files(generated: GenerateResult) -> None:
    for f in generated.files:
        if f.encoding == "xlsx":
            rows = read_xlsx(generated, f.kind).height
        elif f.encoding == "jsonl":
            rows = sum(1 for _ in f.path.open(encoding="utf-8"))
        else:
            rows = read_csv(generated, f.kind).height
        assert rows == f.rows, f.kind


def test_headers_are_the_contract_labels(generated: GenerateResult) -> None:
    for f in generated.files:
        spec = KINDS[f.kind]
        labels = {fs.headers[0] for fs in spec.fields}
        if f.encoding == "jsonl":
            with f.path.open(encoding="utf-8") as fh:
                lines = [fh.readline() for _ in range(500)]
                keys = set().union(*(json.loads(line).keys() for line in lines if line))
        elif f.encoding == "xlsx":
            keys = set(read_xlsx(generated, f.kind).columns)
        else:
            keys = set(read_csv(generated, f.kind).columns)
        assert keys <= labels, (f.kind, keys - labels)
        for fs in spec.fields:
            if fs.required:
                assert fs.headers[0] in keys, (f.kind, fs.name)


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    cfg = GenerateConfig(customers=1_500, seed=11)
    a = generate(cfg, tmp_path / "a")
    b = generate(cfg, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "manifest.json" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert [f.rows for f in a.files] == [f.rows for f in b.files]


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    a = generate(GenerateConfig(customers=1_500, seed=1), tmp_path / "a")
    b = generate(GenerateConfig(customers=1_500, seed=2), tmp_path / "b")
    for kind in ("customers", "vehicles", "service-orders", "events"):
        assert a.file(kind).path.read_bytes() != b.file(kind).path.read_bytes(), kind


def test_row_counts_scale_with_customers(tmp_path: Path) -> None:
    small = generate(GenerateConfig(customers=1_000, seed=3), tmp_path / "s")
    big = generate(GenerateConfig(customers=4_000, seed=3), tmp_path / "b")
    for kind in ("customers", "vehicles", "service-orders", "leads", "consents", "events"):
        ratio = big.file(kind).rows / small.file(kind).rows
        assert 3.0 < ratio < 5.3, (kind, ratio)
    per_customer = big.file("service-orders").rows / 4_000
    assert 3.5 < per_customer < 7.0
    assert 12 < big.file("events").rows / 4_000 < 30


# ------------------------------------------------------------------------------ encodings


def test_gbk_files_are_really_gbk(generated: GenerateResult) -> None:
    gbk = [f for f in generated.files if f.encoding == "gbk"]
    assert {f.kind for f in gbk} == {"staff", "customers", "service-orders"}
    for f in gbk:
        raw = f.path.read_bytes()
        raw.decode("gb18030")
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        assert b"\r\n" in raw[:2000]  # Windows DMS line endings


def test_utf8_files(generated: GenerateResult) -> None:
    assert generated.file("dealers").path.read_bytes().startswith(b"\xef\xbb\xbf")
    for kind in ("vehicles", "consents", "wecom-relations", "events"):
        raw = generated.file(kind).path.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        raw.decode("utf-8")


def test_events_are_json_lines(generated: GenerateResult) -> None:
    f = generated.file("events")
    ids = set()
    with f.path.open(encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            ids.add(obj[label("events", "event_key")])
            assert obj[label("events", "occurred_at")].endswith("+08:00")
            assert isinstance(obj[label("events", "properties")], dict)
            assert label("events", "mobile") in obj or label("events", "customer_no") in obj
    assert len(ids) == f.rows


# ------------------------------------------------------------------------------ dirty rows


def test_customer_dirty_rows_are_exactly_the_bad_mobiles(generated: GenerateResult) -> None:
    df = read_csv(generated, "customers")
    mobiles = df[label("customers", "mobile")].to_list()
    bad = sum(not valid_mobile(m) for m in mobiles)
    f = generated.file("customers")
    assert bad == f.dirty_rows > 0
    assert exact_duplicates(df) == f.duplicate_rows > 0
    # real-world formats are present: spaces, +86 …
    assert any(m and " " in m for m in mobiles)
    assert any(m and m.startswith("+86") for m in mobiles)


def test_cross_dealer_duplicates_share_a_mobile(generated: GenerateResult) -> None:
    df = read_csv(generated, "customers").unique()
    m = df.with_columns(
        pl.col(label("customers", "mobile")).map_elements(normalise_mobile, pl.String).alias("m")
    )
    per_mobile = m.group_by("m").agg(pl.col(label("customers", "dealer_code")).n_unique())
    shared = per_mobile.filter(pl.col(label("customers", "dealer_code")) > 1).height
    assert 0.01 * N < shared < 0.03 * N


def test_vehicle_dirty_rows_and_vin_warnings(generated: GenerateResult) -> None:
    df = read_csv(generated, "vehicles")
    vins = df[label("vehicles", "vin")].to_list()
    bad_shape = [v for v in vins if not VIN_SHAPE_RE.match(v)]
    good = [v for v in vins if VIN_SHAPE_RE.match(v)]
    wrong_check = [v for v in good if v[8] != vin_check_digit(v)]
    f = generated.file("vehicles")
    assert len(bad_shape) == f.dirty_rows > 0
    assert len(wrong_check) == f.vin_warnings > 0
    assert exact_duplicates(df) == f.duplicate_rows
    assert all(v.startswith(catalog.WMI) for v in good)
    assert len(set(good)) == len(good) - f.duplicate_rows


def test_service_order_dirty_rows_are_exact(generated: GenerateResult) -> None:
    df = read_csv(generated, "service-orders")
    allowed_types = {spelling for spellings in ORDER_TYPES.values() for spelling in spellings}
    amount_re = re.compile(r"^\d+\.\d{2}$")
    bad = 0
    for settled, otype, amount in zip(
        df[label("service-orders", "settled_on")].to_list(),
        df[label("service-orders", "order_type")].to_list(),
        df[label("service-orders", "amount")].to_list(),
        strict=True,
    ):
        if not valid_date(settled) or otype not in allowed_types or not amount_re.match(amount):
            bad += 1
    f = generated.file("service-orders")
    assert bad == f.dirty_rows > 0
    assert exact_duplicates(df) == f.duplicate_rows > 0
    vins = df[label("service-orders", "vin")]
    wrong = sum(v[8] != vin_check_digit(v) for v in vins.to_list())
    assert wrong >= f.vin_warnings  # dirty rows may also carry a warned VIN


def test_consent_dirty_rows_are_exact(generated: GenerateResult) -> None:
    df = read_csv(generated, "consents")
    channels = {s for v in KINDS["consents"].field("channel").choices.values() for s in v}
    bad = df.filter(
        ~pl.col(label("consents", "channel")).is_in(list(channels))
        | ~pl.col(label("consents", "granted")).is_in(["是", "否"])
    ).height
    f = generated.file("consents")
    assert bad == f.dirty_rows > 0
    assert exact_duplicates(df) == f.duplicate_rows


def test_other_kinds_are_clean(generated: GenerateResult) -> None:
    for kind in ("dealers", "staff", "leads", "complaints", "events", "wecom-relations"):
        assert generated.file(kind).dirty_rows == 0


# ------------------------------------------------------------------------------ realism


def test_clean_mobiles_and_vins_are_valid(generated: GenerateResult) -> None:
    for kind in ("vehicles", "consents", "wecom-relations", "staff"):
        df = read_csv(generated, kind)
        assert all(valid_mobile(m) for m in df[label(kind, "mobile")].to_list()), kind
    leads = read_xlsx(generated, "leads")
    assert all(valid_mobile(m) for m in leads[label("leads", "mobile")].to_list())


def test_service_order_mileage_is_monotonic_per_vin(generated: GenerateResult) -> None:
    df = read_csv(generated, "service-orders").filter(
        pl.col(label("service-orders", "settled_on")).str.to_date(strict=False).is_not_null()
    )
    ordered = df.select(
        pl.col(label("service-orders", "vin")).alias("vin"),
        pl.col(label("service-orders", "settled_on")).str.to_date().alias("day"),
        pl.col(label("service-orders", "mileage")).cast(pl.Int64).alias("km"),
    ).sort("vin", "day", "km")
    # sorting by day then checking km catches any later visit with a lower odometer
    drops = ordered.with_columns(
        (pl.col("km").diff().over("vin") < 0).fill_null(False).alias("drop"),
        pl.col("km").sort_by("day").over("vin").alias("km_by_day"),
    )
    assert not drops["drop"].any()
    assert (drops["km"] == drops["km_by_day"]).all()


def test_value_tiers_all_present(generated: GenerateResult) -> None:
    orders = read_csv(generated, "service-orders")
    vehicles = read_csv(generated, "vehicles")
    as_of = dt.date(2026, 11, 1)
    spend = (
        orders.select(
            pl.col(label("service-orders", "vin")).alias("vin"),
            pl.col(label("service-orders", "settled_on")).str.to_date(strict=False).alias("day"),
            pl.col(label("service-orders", "amount")).cast(pl.Float64, strict=False).alias("yuan"),
        )
        .filter(pl.col("day") >= pl.lit(as_of - dt.timedelta(days=365)), pl.col("yuan") >= 0)
        .join(
            vehicles.select(
                pl.col(label("vehicles", "vin")).alias("vin"),
                pl.col(label("vehicles", "mobile")).alias("owner"),
            ).unique(),
            on="vin",
        )
        .group_by("owner")
        .agg(pl.col("yuan").sum())
    )
    n = spend.height
    high = spend.filter(pl.col("yuan") >= 5_000).height / n
    mid = spend.filter((pl.col("yuan") >= 2_000) & (pl.col("yuan") < 5_000)).height / n
    low = spend.filter(pl.col("yuan") < 2_000).height / n
    assert 0.08 < high < 0.25, high
    assert 0.25 < mid < 0.45, mid
    assert 0.35 < low < 0.65, low


def test_enums_use_chinese_spellings(generated: GenerateResult) -> None:
    staff = read_csv(generated, "staff")
    roles = set(staff[label("staff", "role")].to_list())
    assert roles == {"总经理", "店长", "客户经理", "服务顾问", "销售顾问"}
    departed = staff.filter(pl.col(label("staff", "status")) == "离职")
    assert 0 < departed.height < 0.15 * staff.height
    assert departed[label("staff", "departed_on")].null_count() == 0
    customers = read_csv(generated, "customers")
    pairs = set(
        zip(
            customers[label("customers", "title")].to_list(),
            customers[label("customers", "gender")].to_list(),
            strict=True,
        )
    )
    assert pairs == {("先生", "男"), ("女士", "女")}
    leads = read_xlsx(generated, "leads")
    status = leads[label("leads", "status")].to_list()
    lost_share = status.count("战败") / len(status)
    assert 0.3 < lost_share < 0.5
    reasons = set(leads[label("leads", "lost_reason")].drop_nulls().to_list())
    assert reasons == {"价格", "配置", "交期", "竞品", "未知"}
    complaints = read_xlsx(generated, "complaints")
    sev = complaints[label("complaints", "severity")].value_counts(normalize=True)
    shares = dict(zip(sev[label("complaints", "severity")], sev["proportion"], strict=True))
    assert shares["轻微"] > shares["一般"] > shares["严重"] > 0


def test_vehicle_dates_are_consistent(generated: GenerateResult) -> None:
    v = read_csv(generated, "vehicles").filter(
        pl.col(label("vehicles", "vin")).str.contains(r"^[A-HJ-NPR-Z0-9]{17}$")
    )
    d = v.select(
        pl.col(label("vehicles", c)).str.to_date().alias(c)
        for c in ("purchase_date", "delivery_date", "warranty_end", "mileage_date")
    )
    lag = (d["delivery_date"] - d["purchase_date"]).dt.total_days()
    assert lag.min() is not None and lag.min() >= 0  # type: ignore[operator]
    assert lag.max() is not None and lag.max() <= 30  # type: ignore[operator]
    assert (d["warranty_end"] > d["delivery_date"]).all()
    assert (d["mileage_date"] >= d["delivery_date"]).all()
    years = d["purchase_date"].dt.year()
    assert years.min() is not None and years.min() >= 2016  # type: ignore[operator]


# ------------------------------------------------------------------------------ references


def test_referential_integrity(generated: GenerateResult) -> None:
    dealers = set(read_csv(generated, "dealers")[label("dealers", "dealer_code")].to_list())
    staff = read_csv(generated, "staff")
    staff_nos = set(staff[label("staff", "staff_no")].to_list())
    assert set(staff[label("staff", "dealer_code")].to_list()) <= dealers

    customers = read_csv(generated, "customers")
    cust_keys = set(
        zip(
            customers[label("customers", "dealer_code")].to_list(),
            customers[label("customers", "customer_no")].to_list(),
            strict=True,
        )
    )
    vehicles = read_csv(generated, "vehicles")
    vin_col = label("vehicles", "vin")
    clean_vins = set(
        vehicles.filter(pl.col(vin_col).str.contains(r"^[A-HJ-NPR-Z0-9]{17}$"))[vin_col].to_list()
    )
    owner_keys = set(
        zip(
            vehicles[label("vehicles", "dealer_code")].to_list(),
            vehicles[label("vehicles", "customer_no")].to_list(),
            strict=True,
        )
    )
    assert owner_keys <= cust_keys

    orders = read_csv(generated, "service-orders")
    assert set(orders[label("service-orders", "vin")].to_list()) <= clean_vins
    assert set(orders[label("service-orders", "dealer_code")].to_list()) <= dealers
    assert set(orders[label("service-orders", "advisor_no")].to_list()) <= staff_nos
    assert orders[label("service-orders", "order_no")].n_unique() == (
        orders.height - generated.file("service-orders").duplicate_rows
    )

    for kind in ("consents", "wecom-relations"):
        df = read_csv(generated, kind)
        keys = set(
            zip(
                df[label(kind, "dealer_code")].to_list(),
                df[label(kind, "customer_no")].to_list(),
                strict=True,
            )
        )
        assert keys <= cust_keys, kind
    wecom = read_csv(generated, "wecom-relations")
    with_userid = set(
        staff.filter(pl.col(label("staff", "wecom_userid")).is_not_null())[
            label("staff", "staff_no")
        ].to_list()
    )
    assert set(wecom[label("wecom-relations", "staff_no")].to_list()) <= with_userid
    complaints = read_xlsx(generated, "complaints")
    assert set(complaints[label("complaints", "owner_staff_no")].to_list()) <= staff_nos


# ------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "cfg",
    [
        GenerateConfig(customers=10),
        GenerateConfig(customers=300, dealers=1),
        GenerateConfig(customers=300, dirty_share=0.0),
        GenerateConfig(customers=300, as_of=dt.date(2020, 1, 1)),
    ],
    ids=["tiny", "one-dealer", "clean", "early-as-of"],
)
def test_edge_configurations(cfg: GenerateConfig, tmp_path: Path) -> None:
    result = generate(cfg, tmp_path)
    assert [f.kind for f in result.files] == list(IMPORT_ORDER)
    assert all(f.path.exists() for f in result.files)
    assert result.file("dealers").rows == cfg.dealer_count
    if cfg.dirty_share == 0.0:
        assert all(f.dirty_rows == 0 and f.duplicate_rows == 0 for f in result.files)


def test_default_dealer_count_scales() -> None:
    assert GenerateConfig(customers=2_000).dealer_count == 3
    assert GenerateConfig(customers=20_000).dealer_count == 8
    assert GenerateConfig(customers=10_000_000).dealer_count == 400
    assert GenerateConfig(customers=20_000, dealers=12).dealer_count == 12


@pytest.mark.parametrize(
    "cfg",
    [
        GenerateConfig(customers=5),
        GenerateConfig(dirty_share=0.6),
        GenerateConfig(as_of=dt.date(2012, 1, 1)),
    ],
)
def test_invalid_configurations_are_refused(cfg: GenerateConfig, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(cfg, tmp_path)


def test_vin_check_digit_known_value() -> None:
    # the classic ISO 3779 / NHTSA example VIN
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert vin_check_digit("11111111111111111") == "1"


def test_staff_work_at_their_own_store(generated: GenerateResult) -> None:
    staff = read_csv(generated, "staff").select(
        pl.col(label("staff", "staff_no")).alias("no"),
        pl.col(label("staff", "dealer_code")).alias("home"),
    )
    orders = read_csv(generated, "service-orders").select(
        pl.col(label("service-orders", "advisor_no")).alias("no"),
        pl.col(label("service-orders", "dealer_code")).alias("store"),
    )
    joined = orders.join(staff, on="no")
    assert joined.height == orders.height
    assert (joined["home"] == joined["store"]).all()


def test_older_car_owners_browse_new_suvs(generated: GenerateResult) -> None:
    """The upgrade signal the 增换购 playbook looks for is really in the events."""
    vehicles = read_csv(generated, "vehicles").select(
        pl.col(label("vehicles", "mobile")).alias("mobile"),
        pl.col(label("vehicles", "purchase_date")).str.to_date().alias("bought"),
    )
    latest = vehicles.group_by("mobile").agg(pl.col("bought").max())
    events = pl.read_ndjson(generated.file("events").path, infer_schema_length=None).select(
        pl.col(label("events", "mobile")).alias("mobile"),
        pl.col(label("events", "event_type")).alias("type"),
        pl.col(label("events", "target")).alias("target"),
    )
    new_suvs = [s.name for s in catalog.SERIES if s.new_suv]
    views = (
        events.filter(pl.col("type") == "model_view")
        .join(latest, on="mobile")
        .with_columns((pl.col("bought") < pl.date(2021, 11, 1)).alias("old_car"))
        .group_by("old_car")
        .agg(pl.col("target").is_in(new_suvs).mean().alias("new_suv_share"))
    )
    share = dict(zip(views["old_car"], views["new_suv_share"], strict=True))
    assert share[True] > 1.5 * share[False]
