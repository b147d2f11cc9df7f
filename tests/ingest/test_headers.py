"""Header normalisation, built-in resolution and custom YAML mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from baoke.errors import InputError
from baoke.ingest.headers import ColumnMap, load_mapping, normalise_header, resolve_columns
from baoke.ingest.kinds import KINDS

ORDERS = KINDS["service-orders"]
CUSTOMERS = KINDS["customers"]
FULL = ["工单号", "经销商代码", "车架号", "结算日期", "工单类型", "金额", "里程", "服务顾问工号"]


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("金额(元)", "金额"),
        ("里程（公里）", "里程"),
        (" Mobile_No ", "mobileno"),
        ("mobile-no", "mobileno"),
        ("Order No", "orderno"),
        ("ＶＩＮ码", "vin码"),
        ("金额【元】", "金额"),
        ("(备注)", "备注"),
    ],
)
def test_normalise_header(raw: str, norm: str) -> None:
    assert normalise_header(raw) == norm


def test_resolve_builtin_headers_with_units_and_case() -> None:
    cols = [
        "工单号",
        "经销商代码",
        "vin",
        "结算时间",
        "维修类型",
        "金额(元)",
        "进厂里程（公里）",
        "备注",
    ]
    cmap = resolve_columns(ORDERS, cols)
    assert isinstance(cmap, ColumnMap)
    assert cmap.fields == {
        "order_no": "工单号",
        "dealer_code": "经销商代码",
        "vin": "vin",
        "settled_on": "结算时间",
        "order_type": "维修类型",
        "amount": "金额(元)",
        "mileage": "进厂里程（公里）",
    }
    assert cmap.ignored == ["备注"]


def test_english_and_canonical_names() -> None:
    cmap = resolve_columns(CUSTOMERS, ["Dealer Code", "Mobile", "customer_no", "Name"])
    assert cmap.fields == {
        "dealer_code": "Dealer Code",
        "customer_no": "customer_no",
        "name": "Name",
        "mobile": "Mobile",
    }


def test_duplicate_match_first_wins() -> None:
    cmap = resolve_columns(ORDERS, [*FULL, "VIN", "结算金额"])
    assert cmap.fields["vin"] == "车架号"
    assert cmap.fields["amount"] == "金额"
    assert cmap.ignored == ["VIN", "结算金额"]


def test_missing_required_message() -> None:
    with pytest.raises(InputError) as exc:
        resolve_columns(ORDERS, [c for c in FULL if c != "工单号"])
    assert exc.value.message == (
        "service-orders: required column missing: 工单号 (order_no); found columns: "
        + ", ".join(c for c in FULL if c != "工单号")
    )
    with pytest.raises(
        InputError,
        match=r"required column missing: 工单号 \(order_no\).*"
        r"found columns: a, b, c",
    ):
        resolve_columns(ORDERS, ["a", "b", "c"])


def test_customers_have_no_single_required_identifier() -> None:
    cmap = resolve_columns(CUSTOMERS, ["门店代码", "客户编号"])
    assert "mobile" not in cmap.fields  # the pipeline checks mobile OR customer_no


def test_custom_mapping_wins_over_builtin() -> None:
    mapping = {"单据编号": "order_no", "VIN": "vin", "DMS金额": "amount"}
    cols = ["单据编号", "经销商代码", "车架号", "VIN", "结算日期", "工单类型", "金额", "DMS金额"]
    cmap = resolve_columns(ORDERS, cols, mapping)
    assert cmap.fields["order_no"] == "单据编号"
    assert cmap.fields["vin"] == "VIN"
    assert cmap.fields["amount"] == "DMS金额"
    assert set(cmap.ignored) == {"车架号", "金额"}


def test_custom_mapping_matches_normalised_source_header() -> None:
    cmap = resolve_columns(ORDERS, [*FULL[1:], "Doc_No"], {"doc no": "order_no"})
    assert cmap.fields["order_no"] == "Doc_No"


def test_mapping_with_unknown_field_rejected() -> None:
    with pytest.raises(InputError, match="unknown field 'nope'"):
        resolve_columns(ORDERS, FULL, {"x": "nope"})


# ---- YAML --------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_mapping_accepts_field_names_and_builtin_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kind: service-orders\ncolumns:\n  单据编号: order_no\n  合计: 金额\n  顾问: advisor_no\n",
    )
    assert load_mapping(path, ORDERS) == {
        "单据编号": "order_no",
        "合计": "amount",
        "顾问": "advisor_no",
    }


def test_load_mapping_kind_optional(tmp_path: Path) -> None:
    path = write(tmp_path, "columns:\n  手机: mobile\n")
    assert load_mapping(path, CUSTOMERS) == {"手机": "mobile"}


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("columns: [unclosed\n", "invalid YAML at line"),
        ("", "is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("kind: customers\ncolumns:\n  a: order_no\n", "is for kind 'customers'"),
        (
            "columns:\n  a: nope\n",
            r"unknown field 'nope' for service-orders; valid fields: order_no, ",
        ),
        ("columns: {}\n", "must be a non-empty mapping"),
        ("colums:\n  a: order_no\n", "unknown key"),
        ("columns:\n  a: [order_no]\n", "bad entry"),
    ],
)
def test_load_mapping_errors(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern) as exc:
        load_mapping(write(tmp_path, text), ORDERS)
    assert "\n" not in exc.value.message


def test_load_mapping_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mapping file not found"):
        load_mapping(tmp_path / "nope.yaml", ORDERS)
