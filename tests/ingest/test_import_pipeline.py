"""Importing every kind end to end, on SQLite and PostgreSQL: counts, quarantine, idempotence."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import Engine, select

from baoke.errors import InputError
from baoke.ingest import loader
from baoke.ingest.pipeline import ImportSummary, import_file
from baoke.store import models as m

TZ = ZoneInfo("Asia/Shanghai")
GOOD_VIN = "LHGCM82683A004352"  # check digit 8 is correct
GOOD_VIN_2 = "1M8GDM9AXKP042788"  # the classic ISO 3779 example, check digit X
WRONG_CHECK_VIN = "LHGCM82633A004352"  # 9th character should be 8


def write_csv(
    path: Path, header: list[str], rows: list[list[Any]], encoding: str = "utf-8"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(
                (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n"
            )
    return path


def run(engine: Engine, kind: str, path: Path, **kwargs: Any) -> ImportSummary:
    return import_file(engine, kind, path, tz=TZ, **kwargs)


def counts(s: ImportSummary) -> tuple[int, int, int, int, int, int]:
    return (s.read, s.inserted, s.updated, s.unchanged, s.quarantined, s.merged)


def rows_of(engine: Engine, model: type[m.Base]) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(model)).all())


@pytest.fixture
def group(engine: Engine, tmp_path: Path) -> Engine:
    """Two dealers, three staff and three customers (one known at both dealers)."""
    write_csv(
        tmp_path / "dealers.csv",
        ["经销商代码", "经销商名称", "城市"],
        [
            ["D01", "杭州华岳西湖4S店", "杭州"],
            ["D02", "宁波华岳4S店", "宁波"],
        ],
        encoding="utf-8-sig",
    )
    run(engine, "dealers", tmp_path / "dealers.csv")
    write_xlsx(
        tmp_path / "staff.xlsx",
        ["员工编号", "经销商代码", "员工姓名", "岗位", "在职状态"],
        [
            ["S01", "D01", "王芳", "服务顾问", "在职"],
            ["S02", "D01", "李强", "客户经理", "在职"],
            ["S03", "D02", "赵敏", "店长", "离职"],
        ],
    )
    run(engine, "staff", tmp_path / "staff.xlsx")
    write_csv(
        tmp_path / "customers.csv",
        ["经销商代码", "客户编号", "客户姓名", "称谓", "手机号", "生日"],
        [
            ["D01", "C001", "张伟", "先生", "13800138000", "1985/3/1"],
            ["D01", "C002", "刘洋", "女士", "139 0013 9000", "1990年5月6日"],
            ["D02", "K777", "张伟", "先生", "+86 138-0013-8000", ""],
        ],
        encoding="gbk",
    )
    run(engine, "customers", tmp_path / "customers.csv")
    return engine


def test_gbk_customers_good_rows_in_bad_rows_quarantined_and_reimport_unchanged(
    engine: Engine, tmp_path: Path
) -> None:
    write_csv(tmp_path / "dealers.csv", ["经销商代码", "经销商名称"], [["D01", "杭州店"]])
    run(engine, "dealers", tmp_path / "dealers.csv")
    source = write_csv(
        tmp_path / "客户资料.csv",
        ["经销商代码", "客户编号", "客户姓名", "手机号"],
        [
            ["D01", "C1", "张伟", "13800138000"],
            ["D01", "C2", "王芳", "1380013800"],
            ["D01", "C3", "李娜", "13900139000"],
            ["D09", "C4", "周杰", "13700137000"],
            ["D01", "", "无名", ""],
        ],
        encoding="gbk",
    )

    first = run(engine, "customers", source)
    assert first.encoding in {"gb18030", "gbk"}
    assert counts(first) == (5, 2, 0, 0, 3, 0)
    assert first.quarantine_file is not None
    with open(first.quarantine_file, encoding="utf-8-sig", newline="") as handle:
        quarantined = list(csv.DictReader(handle))
    assert [q["客户编号"] for q in quarantined] == ["C2", "C4", ""]
    assert quarantined[0]["reason"] == "手机号格式错误: 1380013800"
    assert "经销商代码不存在: D09" in quarantined[1]["reason"]
    assert "缺少客户标识" in quarantined[2]["reason"]

    second = run(engine, "customers", source)
    assert counts(second) == (5, 0, 0, 2, 3, 0)
    stored = rows_of(engine, m.Customer)
    assert sorted(c.mobile for c in stored) == ["+8613800138000", "+8613900139000"]


def test_same_mobile_at_two_dealers_is_one_customer_with_a_merge_log(group: Engine) -> None:
    customers = rows_of(group, m.Customer)
    assert len(customers) == 2
    zhang = next(c for c in customers if c.mobile == "+8613800138000")
    identities = rows_of(group, m.CustomerIdentity)
    assert sorted((i.customer_no, i.customer_id) for i in identities) == sorted(
        [
            ("C001", zhang.id),
            ("C002", next(c.id for c in customers if c.id != zhang.id)),
            ("K777", zhang.id),
        ]
    )
    log = rows_of(group, m.MergeLog)
    assert [(e.customer_id, e.customer_no) for e in log] == [(zhang.id, "K777")]
    assert "13800138000" in log[0].reason
    # The home dealer is where the person was first known; the birthday survives the empty cell.
    dealers = {d.code: d.id for d in rows_of(group, m.Dealer)}
    assert zhang.home_dealer_id == dealers["D01"]
    assert str(zhang.birthday) == "1985-03-01"


def test_merge_across_files_counts_merged_once(group: Engine, tmp_path: Path) -> None:
    later = write_csv(
        tmp_path / "d02.csv",
        ["经销商代码", "客户编号", "手机号", "邮箱"],
        [
            ["D02", "K900", "13900139000", "liu@example.com"],
        ],
    )
    first = run(group, "customers", later)
    assert counts(first) == (1, 0, 0, 0, 0, 1)
    liu = next(c for c in rows_of(group, m.Customer) if c.mobile == "+8613900139000")
    assert liu.email == "liu@example.com"
    assert liu.name == "刘洋"
    again = run(group, "customers", later)
    assert counts(again) == (1, 0, 0, 1, 0, 0)


def test_changed_value_counts_as_updated(group: Engine, tmp_path: Path) -> None:
    changed = write_csv(
        tmp_path / "c.csv",
        ["经销商代码", "客户编号", "手机号", "城市"],
        [
            ["D01", "C001", "13800138000", "上海"],
        ],
    )
    summary = run(group, "customers", changed)
    assert counts(summary) == (1, 0, 1, 0, 0, 0)


def test_vehicles_service_orders_and_money_exact(group: Engine, tmp_path: Path) -> None:
    vehicles = write_csv(
        tmp_path / "vehicles.csv",
        [
            "车架号",
            "经销商代码",
            "车主手机",
            "车系",
            "车型",
            "购车日期",
            "购车价格",
            "当前里程",
            "里程日期",
        ],
        [
            [
                GOOD_VIN.lower(),
                "D01",
                "13800138000",
                "岳风",
                "岳风 1.5T 豪华版",
                "2021-06-18",
                "159,800.50",
                "45,210",
                "2026-10-01",
            ],
            [
                WRONG_CHECK_VIN,
                "D01",
                "13900139000",
                "岳山",
                "岳山 2.0T",
                "2019/1/2",
                "210000",
                "",
                "",
            ],
            ["LHGCM82633A00435", "D01", "13900139000", "岳山", "", "", "", "", ""],
            [GOOD_VIN_2, "D01", "13500000000", "岳山", "", "", "", "", ""],
        ],
        encoding="utf-8-sig",
    )
    summary = run(group, "vehicles", vehicles)
    assert counts(summary) == (4, 2, 0, 0, 2, 0)
    assert summary.warnings == {"车架号校验位错误 (已导入并标记)": 1}
    assert set(summary.reasons) == {"车架号长度错误", "车主不存在"}
    cars = {v.vin: v for v in rows_of(group, m.Vehicle)}
    assert cars[GOOD_VIN].price_fen == 15_980_050 and cars[GOOD_VIN].vin_check_ok
    assert cars[WRONG_CHECK_VIN].vin_check_ok is False
    readings = rows_of(group, m.MileageReading)
    assert [(r.odometer_km, str(r.read_on)) for r in readings] == [(45210, "2026-10-01")]

    orders = write_csv(
        tmp_path / "orders.csv",
        [
            "工单号",
            "经销商代码",
            "车架号",
            "结算日期",
            "工单类型",
            "金额",
            "里程",
            "服务顾问工号",
        ],
        [
            ["RO-1", "D01", GOOD_VIN, "2024-03-01", "保养", "￥1,234.56", "10000", "S01"],
            ["RO-2", "D01", GOOD_VIN, "45352", "维修", "99.9", "12,000", "S99"],
            ["RO-3", "D01", "LGBH52E05JY000001", "2024-03-01", "保养", "500", "", ""],
            ["RO-4", "D01", GOOD_VIN, "2024-02-30", "洗车", "-5", "", ""],
        ],
        encoding="gbk",
    )
    result = run(group, "service-orders", orders)
    assert counts(result) == (4, 2, 0, 0, 2, 0)
    assert result.warnings == {"员工工号不存在 (已留空)": 1}
    stored = {o.order_no: o for o in rows_of(group, m.ServiceOrder)}
    assert stored["RO-1"].amount_fen == 123_456
    assert stored["RO-1"].order_type == "maintenance"
    assert str(stored["RO-2"].settled_on) == "2024-03-01"  # Excel serial 45352
    assert stored["RO-2"].advisor_id is None
    owner = next(c for c in rows_of(group, m.Customer) if c.mobile == "+8613800138000")
    assert stored["RO-1"].customer_id == owner.id
    assert counts(run(group, "service-orders", orders)) == (4, 0, 0, 2, 2, 0)


def test_leads_complaints_consents_events_wecom(group: Engine, tmp_path: Path) -> None:
    leads = write_xlsx(
        tmp_path / "leads.xlsx",
        [
            "线索编号",
            "经销商代码",
            "客户姓名",
            "手机号",
            "意向车型",
            "最远阶段",
            "线索状态",
            "战败原因",
            "创建日期",
            "战败日期",
        ],
        [
            [
                "L1",
                "D01",
                "孙丽",
                13600136000,
                "岳风",
                "试驾",
                "战败",
                "价格",
                "2025-01-02",
                "2025-02-01",
            ],
            [
                "L2",
                "D01",
                "张伟",
                "13800138000",
                "岳山",
                "报价",
                "跟进中",
                None,
                "2025-03-01",
                None,
            ],
            ["L3", "D01", "坏", "13600136001", "岳山", "签约", None, None, "2025-03-01", None],
        ],
    )
    s = run(group, "leads", leads)
    assert counts(s) == (3, 2, 0, 0, 1, 0)
    stored = {lead.lead_no: lead for lead in rows_of(group, m.Lead)}
    assert stored["L1"].lost_reason == "price" and stored["L1"].stage == "test_drive"
    # A lead with an unknown mobile becomes a prospect customer; a known mobile links.
    customers = {c.mobile: c for c in rows_of(group, m.Customer)}
    assert stored["L1"].customer_id == customers["+8613600136000"].id
    assert customers["+8613600136000"].name == "孙丽"
    assert stored["L2"].customer_id == customers["+8613800138000"].id
    assert counts(run(group, "leads", leads)) == (3, 0, 0, 2, 1, 0)
    assert len(rows_of(group, m.Customer)) == len(customers)

    complaints = write_csv(
        tmp_path / "complaints.csv",
        [
            "投诉编号",
            "经销商代码",
            "手机号",
            "投诉时间",
            "严重程度",
            "满意度",
            "处理状态",
            "负责人工号",
        ],
        [
            ["T1", "D01", "13800138000", "2025-05-01 09:30", "严重", "3", "处理中", "S02"],
            ["T2", "D01", "13700000000", "2025-05-01 09:30", "轻微", "8", "", ""],
        ],
    )
    s = run(group, "complaints", complaints)
    assert counts(s) == (2, 1, 0, 0, 1, 0)
    (t1,) = rows_of(group, m.Complaint)
    assert t1.severity == "severe" and t1.status == "in_progress"
    assert t1.opened_at.replace(tzinfo=None).isoformat() == "2025-05-01T01:30:00"  # UTC

    consents = write_csv(
        tmp_path / "consents.csv",
        [
            "手机号",
            "渠道",
            "是否同意",
            "授权方式",
            "授权时间",
        ],
        [
            ["13800138000", "短信", "是", "购车书面授权", "2021-06-18 10:00"],
            ["13800138000", "企业微信", "否", "", ""],
            ["13800138000", "传真", "是", "", ""],
        ],
    )
    s = run(group, "consents", consents)
    assert counts(s) == (3, 2, 0, 0, 1, 0)
    audit = rows_of(group, m.AuditEntry)
    assert len(audit) == 2 and {a.action for a in audit} == {"consent.imported"}
    assert counts(run(group, "consents", consents)) == (3, 0, 0, 2, 1, 0)
    assert len(rows_of(group, m.AuditEntry)) == 2

    events = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {
                "event_id": "e1",
                "mobile": "13800138000",
                "occurred_at": "2025-06-01T10:00:00+08:00",
                "event_type": "model_view",
                "source": "app",
                "target": "岳山",
                "properties": {"secs": 31},
            },
            "{not json",
            {
                "event_id": "e3",
                "mobile": "13100000000",
                "occurred_at": "2025-06-01 10:00",
                "event_type": "page_view",
            },
        ],
    )
    s = run(group, "events", events)
    assert counts(s) == (3, 1, 0, 0, 2, 0)
    (event,) = rows_of(group, m.BehaviourEvent)
    assert json.loads(event.properties) == {"secs": 31}

    wecom = write_csv(
        tmp_path / "wecom.csv",
        ["员工编号", "外部联系人ID", "手机号", "渠道码", "添加时间"],
        [
            ["S01", "wmABC", "13800138000", "delivery_qr", "2021-06-20 12:00"],
            ["S99", "wmDEF", "13800138000", "service_qr", "2021-06-20 12:00"],
        ],
    )
    s = run(group, "wecom-relations", wecom)
    assert counts(s) == (2, 1, 0, 0, 1, 0)


def test_custom_mapping_and_ignored_columns(engine: Engine, tmp_path: Path) -> None:
    from baoke.ingest.headers import load_mapping
    from baoke.ingest.kinds import KINDS

    mapping_file = tmp_path / "map.yaml"
    mapping_file.write_text("columns:\n  店号: dealer_code\n  店名全称: name\n", encoding="utf-8")
    mapping = load_mapping(mapping_file, KINDS["dealers"])
    source = write_csv(
        tmp_path / "stores.csv", ["店号", "店名全称", "备注"], [["D7", "温州店", "x"]]
    )
    summary = run(engine, "dealers", source, mapping=mapping)
    assert counts(summary) == (1, 1, 0, 0, 0, 0)
    assert summary.ignored_columns == ["备注"]


def test_multi_batch_file_counts_every_row(engine: Engine, tmp_path: Path) -> None:
    write_csv(tmp_path / "dealers.csv", ["经销商代码", "经销商名称"], [["D01", "杭州店"]])
    run(engine, "dealers", tmp_path / "dealers.csv")
    rows = [["D01", f"C{i}", f"1380000{i:04d}"] for i in range(250)]
    rows.append(["D01", "C0", "13800000000"])  # exact repeat in a later batch
    source = write_csv(tmp_path / "many.csv", ["经销商代码", "客户编号", "手机号"], rows)
    summary = run(engine, "customers", source, batch_rows=100)
    assert counts(summary) == (251, 250, 0, 1, 0, 0)


def test_missing_identification_column_is_one_clear_error(engine: Engine, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "c.csv", ["经销商代码", "客户姓名"], [["D01", "张伟"]])
    with pytest.raises(InputError, match="手机号"):
        run(engine, "customers", source)


def test_failure_midway_rolls_back_everything(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_csv(tmp_path / "dealers.csv", ["经销商代码", "经销商名称"], [["D01", "杭州店"]])
    run(engine, "dealers", tmp_path / "dealers.csv")
    rows = [["D01", f"C{i}", f"1380000{i:04d}"] for i in range(30)] + [["D01", "X", "123"]]
    source = write_csv(tmp_path / "c.csv", ["经销商代码", "客户编号", "手机号"], rows)
    calls = {"n": 0}
    real = loader.LOADERS["customers"]

    def flaky(ctx: Any, frame: Any, out: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(ctx, frame, out)

    monkeypatch.setitem(loader.LOADERS, "customers", flaky)
    with pytest.raises(InputError, match="nothing was written"):
        run(engine, "customers", source, batch_rows=10)
    assert rows_of(engine, m.Customer) == []
    assert not (tmp_path / "c.quarantine.csv").exists()
    runs = rows_of(engine, m.ImportRun)
    assert [r.status for r in runs] == ["done", "failed"]
