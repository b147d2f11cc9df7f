"""Each feature, score and lifecycle rule on hand-made customers whose right answer is obvious."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from baoke.config import ProfileSettings
from baoke.profiles.features import profile_sql
from baoke.profiles.snapshot import TABLES

AS_OF = dt.date(2026, 11, 1)
TZ = ZoneInfo("Asia/Shanghai")
D = dt.date.fromisoformat


def empty_snapshot() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    for table in TABLES:
        columns = ", ".join(f"{name} {kind}" for name, kind in table.columns)
        db.execute(f"CREATE TABLE {table.name} ({columns})")
    return db


class World:
    """Builds snapshot rows with sensible defaults, so each test states only what matters."""

    def __init__(self) -> None:
        self.db = empty_snapshot()
        self.ids: dict[str, int] = {}

    def _insert(self, table: str, **values: Any) -> int:
        self.ids[table] = self.ids.get(table, 0) + 1
        values.setdefault("id", self.ids[table])
        cols = ", ".join(values)
        marks = ", ".join("?" * len(values))
        self.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(values.values()))
        return int(values["id"])

    def customer(self, **values: Any) -> int:
        values.setdefault("mobile", f"+86138{len(self.ids) * 7 + self.ids.get('customers', 0):08d}")
        values.setdefault("mobile_status", "valid")
        values.setdefault("name", "张伟")
        return self._insert("customers", **values)

    def vehicle(self, customer_id: int, delivered: str, series: str = "岳风", **values: Any) -> int:
        return self._insert(
            "vehicles",
            customer_id=customer_id,
            delivery_date=D(delivered),
            purchase_date=D(delivered),
            series=series,
            **values,
        )

    def order(
        self,
        customer_id: int,
        vehicle_id: int,
        day: str,
        yuan: float,
        kind: str = "maintenance",
        km: int | None = None,
    ) -> None:
        self._insert(
            "service_orders",
            customer_id=customer_id,
            vehicle_id=vehicle_id,
            settled_on=D(day),
            amount_fen=round(yuan * 100),
            order_type=kind,
            mileage_km=km,
        )

    def event(
        self,
        customer_id: int,
        at: str,
        kind: str = "model_view",
        target: str | None = None,
        source: str = "app",
    ) -> None:
        self._insert(
            "events",
            customer_id=customer_id,
            occurred_at=dt.datetime.fromisoformat(at),
            event_type=kind,
            target=target,
            source=source,
        )

    def profiles(self, cfg: ProfileSettings | None = None) -> dict[int, dict[str, Any]]:
        cursor = self.db.execute(profile_sql(AS_OF, cfg or ProfileSettings(), TZ))
        names = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


@pytest.fixture
def w() -> World:
    return World()


def test_new_owner_without_visits_has_first_maintenance_due(w: World) -> None:
    c = w.customer()
    w.vehicle(c, "2026-09-15")
    p = w.profiles()[c]
    assert p["is_owner"] and p["lifecycle_stage"] == "new_owner"
    assert p["first_maintenance_done"] is False
    assert p["months_since_delivery"] == 1
    # 5,000 km at the default 13,000 km/year comes before 6 months: ceil(5000 / 35.616) = 141 days
    assert p["next_maintenance_due_date"] == D("2026-09-15") + dt.timedelta(days=141)
    assert p["next_maintenance_due_km"] == 5000
    assert p["value_tier"] == "low" and p["spend_12m"] == 0
    assert p["upgrade_intent"] == 0 and p["upgrade_reasons"] == "新车车主，不推新车"


def test_onboarding_then_maintained_at_risk_and_lost_by_days_without_a_visit(w: World) -> None:
    onboarding = w.customer()
    w.vehicle(onboarding, "2026-06-20")
    stages = {}
    for days in (30, 89, 90, 179, 180, 400):
        c = w.customer()
        v = w.vehicle(c, "2022-01-01")
        w.order(c, v, (AS_OF - dt.timedelta(days=days)).isoformat(), 800)
        stages[days] = c
    profiles = w.profiles()
    assert profiles[onboarding]["lifecycle_stage"] == "onboarding"
    got = {days: profiles[c]["lifecycle_stage"] for days, c in stages.items()}
    assert got == {
        30: "maintained",
        89: "maintained",
        90: "at_risk",
        179: "at_risk",
        180: "lost",
        400: "lost",
    }
    assert profiles[stages[30]]["days_since_last_visit"] == 30


def test_value_tier_boundaries_on_twelve_month_spend(w: World) -> None:
    tiers = {}
    for yuan in (5000, 4999.99, 2000, 1999.99):
        c = w.customer()
        v = w.vehicle(c, "2021-01-01")
        w.order(c, v, "2026-10-01", yuan)
        w.order(c, v, "2025-10-01", 9000)  # 13 months ago: outside the window
        tiers[yuan] = c
    profiles = w.profiles()
    assert {y: profiles[c]["value_tier"] for y, c in tiers.items()} == {
        5000: "high",
        4999.99: "mid",
        2000: "mid",
        1999.99: "low",
    }
    assert profiles[tiers[5000]]["spend_12m"] == 500_000
    assert profiles[tiers[5000]]["spend_prev_12m"] == 900_000
    assert profiles[tiers[5000]]["visits_12m"] == 1


def test_thresholds_are_configurable(w: World) -> None:
    c = w.customer()
    v = w.vehicle(c, "2021-01-01")
    w.order(c, v, "2026-10-01", 3000)
    cfg = ProfileSettings(tier_high_yuan=3000, tier_mid_yuan=1000, at_risk_days=20, lost_days=25)
    p = w.profiles(cfg)[c]
    assert p["value_tier"] == "high" and p["lifecycle_stage"] == "lost"


def test_next_maintenance_from_own_mileage_velocity(w: World) -> None:
    c = w.customer()
    v = w.vehicle(c, "2024-11-01")
    # 40,000 km in 700 days: about 57 km/day, faster than the default
    w.order(c, v, "2025-04-01", 600, km=8_000)
    w.order(c, v, "2026-10-02", 900, km=40_000)
    p = w.profiles()[c]
    assert p["first_maintenance_done"] is True
    assert p["odometer_km"] == 40_000
    km_day = 40_000 / (D("2026-10-02") - D("2024-11-01")).days
    assert p["km_per_day"] == pytest.approx(km_day, abs=0.01)
    assert p["next_maintenance_due_km"] == 50_000
    days = -(-10_000 // km_day)  # ceil
    assert p["next_maintenance_due_date"] == D("2026-10-02") + dt.timedelta(days=int(days))
    assert p["days_to_maintenance"] == (p["next_maintenance_due_date"] - AS_OF).days
    assert p["visit_interval_days"] == (D("2026-10-02") - D("2025-04-01")).days


def test_upgrade_intent_old_car_and_recent_views_of_other_models(w: World) -> None:
    c = w.customer(family="已婚有孩")
    v = w.vehicle(c, "2020-01-10", series="岳风")
    w.order(c, v, "2026-10-01", 1000, km=120_000)
    for day in ("2026-10-05", "2026-10-20", "2026-10-25", "2026-10-31"):
        w.event(c, f"{day} 03:00:00", target="岳山")
    w.event(c, "2026-10-30 03:00:00", target="岳风")  # its own series: not a new model
    w.event(c, "2026-09-01 03:00:00", target="岳山")  # older than 30 days
    p = w.profiles()[c]
    assert p["car_age_years"] == pytest.approx(6.8, abs=0.05)
    assert p["model_views_30d"] == 5 and p["new_model_views_30d"] == 4
    assert p["upgrade_intent"] == 30 + 30 + 15 + 10
    assert p["upgrade_reasons"].split("；") == [
        "车龄6.8年",
        "近30天浏览其他车型4次",
        "里程12.0万公里",
        "家庭情况: 已婚有孩",
    ]


def test_churn_risk_reasons_add_up(w: World) -> None:
    c = w.customer()
    v = w.vehicle(c, "2021-03-01")
    w.order(c, v, "2025-01-01", 3000)  # 669 days ago, one visit: default rhythm 180 days
    w._insert(
        "wecom_relations",
        customer_id=c,
        staff_id=1,
        added_at=dt.datetime(2021, 3, 5),
        deleted_at=dt.datetime(2026, 8, 1),
        deleted_by="customer",
    )
    w._insert(
        "consents",
        customer_id=c,
        channel="sms",
        purpose="marketing",
        granted=True,
        granted_at=dt.datetime(2021, 3, 1),
        withdrawn_at=dt.datetime(2026, 10, 15),
    )
    w._insert(
        "complaints",
        customer_id=c,
        severity="severe",
        status="open",
        opened_at=dt.datetime(2026, 10, 20),
    )
    p = w.profiles()[c]
    assert p["lifecycle_stage"] == "lost"
    # late 50 + spend fell to nothing 15 + open severe complaint 20 + unsubscribed 10
    # + deleted WeCom 15 = 110, capped at 100
    assert p["churn_risk"] == 100
    reasons = p["churn_reasons"].split("；")
    assert reasons[0] == "上次到店2025-01-01，超出自身节奏(约180天一次)"
    assert reasons[1:] == [
        "消费下降: 近12个月¥0，前12个月¥3000",
        "有未结投诉",
        "近90天退订",
        "客户删除了企微好友",
    ]
    assert p["open_complaint"] and p["open_complaint_severity"] == "severe"
    assert p["sms_reachable"] is False and p["wecom_reachable"] is False
    assert p["unsubscribed_90d"] and p["wecom_deleted_by_customer"]


def test_lateness_points_move_in_steps_of_five(w: World) -> None:
    steps = {}
    for days in (144, 160, 170, 180, 500):  # one visit: rhythm 180 days
        c = w.customer()
        v = w.vehicle(c, "2019-01-01")
        w.order(c, v, (AS_OF - dt.timedelta(days=days)).isoformat(), 0)
        steps[days] = c
    profiles = w.profiles()
    # 50 x (days / 180 - 0.8): 0.0, 4.4, 7.2, 10.0, 98.9 -> 0, 0, 5, 10, capped 50
    assert {d: profiles[c]["churn_risk"] for d, c in steps.items()} == {
        144: 0,
        160: 0,
        170: 5,
        180: 10,
        500: 50,
    }


def test_on_rhythm_owner_has_no_lateness_risk(w: World) -> None:
    c = w.customer()
    v = w.vehicle(c, "2020-01-01")
    for day in ("2024-06-01", "2025-06-01", "2026-06-01"):
        w.order(c, v, day, 1500)
    p = w.profiles()[c]
    assert p["visit_interval_days"] == 365
    assert p["lifecycle_stage"] == "at_risk"  # 153 days without a visit
    assert p["churn_risk"] == 0 and p["churn_reasons"] is None


def test_falling_spend_and_missed_first_maintenance(w: World) -> None:
    falling = w.customer()
    v = w.vehicle(falling, "2019-01-01")
    w.order(falling, v, "2025-06-01", 4000)
    w.order(falling, v, "2026-10-01", 1000)
    never = w.customer()
    w.vehicle(never, "2025-11-01")
    profiles = w.profiles()
    assert profiles[falling]["churn_risk"] == 15
    assert profiles[falling]["churn_reasons"] == "消费下降: 近12个月¥1000，前12个月¥4000"
    assert profiles[never]["first_maintenance_done"] is False
    assert "首保未做" in profiles[never]["churn_reasons"]


def test_non_owners_are_prospects_or_lost_leads(w: World) -> None:
    lost = w.customer()
    w._insert("leads", customer_id=lost, status="open", stage="inquiry", created_on=D("2025-01-01"))
    w._insert(
        "leads",
        customer_id=lost,
        status="lost",
        stage="test_drive",
        lost_reason="price",
        model_of_interest="岳山",
        created_on=D("2026-03-01"),
        lost_on=D("2026-04-01"),
    )
    prospect = w.customer()
    w._insert(
        "leads", customer_id=prospect, status="open", stage="visit", created_on=D("2026-10-01")
    )
    nobody = w.customer()
    profiles = w.profiles()
    assert profiles[lost]["lifecycle_stage"] == "lost_lead"
    assert (profiles[lost]["lead_lost_reason"], profiles[lost]["lead_stage"]) == (
        "price",
        "test_drive",
    )
    assert profiles[prospect]["lifecycle_stage"] == "prospect"
    assert profiles[prospect]["upgrade_intent"] == 20  # an open lead
    assert profiles[nobody]["lifecycle_stage"] == "contact"
    for c in (lost, prospect, nobody):
        assert profiles[c]["value_tier"] is None and profiles[c]["churn_risk"] is None


def test_reachability_per_channel(w: World) -> None:
    c = w.customer(email="a@example.com")
    w.vehicle(c, "2024-01-01")
    for channel in ("sms", "push", "email", "phone"):
        w._insert(
            "consents",
            customer_id=c,
            channel=channel,
            purpose="marketing",
            granted=True,
            granted_at=dt.datetime(2024, 1, 1),
        )
    w._insert("wecom_relations", customer_id=c, staff_id=1, added_at=dt.datetime(2024, 1, 5))
    w.event(c, "2026-10-01 10:00:00", kind="app_open")
    bad_mobile = w.customer(mobile_status="invalid")
    w._insert(
        "consents",
        customer_id=bad_mobile,
        channel="sms",
        purpose="marketing",
        granted=True,
        granted_at=dt.datetime(2024, 1, 1),
    )
    profiles = w.profiles()
    p = profiles[c]
    assert (
        p["sms_reachable"],
        p["wecom_reachable"],
        p["push_reachable"],
        p["email_reachable"],
        p["phone_reachable"],
    ) == (True, True, True, True, True)
    assert profiles[bad_mobile]["sms_reachable"] is False
    assert profiles[bad_mobile]["mobile_valid"] is False


def test_later_as_of_sees_no_future_records(w: World) -> None:
    c = w.customer()
    v = w.vehicle(c, "2022-01-01")
    w.order(c, v, "2026-12-01", 9000)  # after as_of
    w.vehicle(c, "2026-12-01", series="岳山")  # delivered after as_of
    p = w.profiles()[c]
    assert p["spend_12m"] == 0 and p["vehicle_count"] == 1 and p["series"] == "岳风"
