"""The personalisation context: values, fallbacks, set-based reads and rendering, both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert

from baoke.config import MessageSettings, Settings
from baoke.journeys.context import (
    ADVISOR_FALLBACK,
    DEALER_FALLBACK,
    FRIEND_FALLBACK,
    MODEL_OF_INTEREST_FALLBACK,
    OWNER_FALLBACK,
    SERIES_FALLBACK,
    RenderedMessage,
    _whole_months,
    build_contexts,
    render_message,
)
from baoke.playbooks.definitions import Playbook, load_builtin_playbooks, parse_playbook
from baoke.playbooks.templates import CONTEXT_VARIABLES, TD_LINE, TemplateError
from baoke.store import models as m

AS_OF = dt.date(2025, 6, 15)
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# Customer ids of the small store.
ZHANG, OUYANG, NOBODY, LI, WANG, CHEN, MISSING = 1, 2, 3, 4, 5, 6, 999


@pytest.fixture(autouse=True)
def no_local_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings() must not pick up a developer's baoke.toml or BAOKE_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in ("BAOKE_CONFIG", "BAOKE_MESSAGES__BRAND", "BAOKE_MESSAGES__SIGNATURE"):
        monkeypatch.delenv(name, raising=False)


def _rows(conn: Connection, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``; a key missing from some rows is NULL there (executemany needs them all)."""
    keys = {key for row in rows for key in row}
    conn.execute(insert(model), [dict.fromkeys(keys) | row for row in rows])


def _profile(customer_id: int, **dates: dt.date | None) -> dict[str, Any]:
    """A customer_profiles row: every NOT NULL column filled, the dates as given."""
    row: dict[str, Any] = {
        "customer_id": customer_id,
        "as_of": AS_OF,
        "is_owner": True,
        "lifecycle_stage": "active",
        "spend_12m_fen": 0,
        "visits_12m": 1,
        "open_complaint": False,
        "sms_reachable": True,
        "wecom_reachable": True,
        "push_reachable": False,
        "email_reachable": False,
        "phone_reachable": True,
    }
    return row | dates


def _seed_people(conn: Connection) -> None:
    _rows(
        conn,
        m.Dealer,
        [
            {
                "id": 1,
                "code": "HZ01",
                "name": "杭州西湖店",
                "brand": "星途",
                "phone": "0571-88886666",
                "address": "杭州市西湖区文三路100号",
            },
            {"id": 2, "code": "NB01", "name": "宁波江北店", "brand": "远航"},
        ],
    )
    staff = [
        (1, "王磊", "advisor", "active"),
        (2, "李强", "advisor", "departed"),
        (3, "赵敏", "customer_manager", "active"),
        (4, "陈晨", "sales_consultant", "active"),
    ]
    _rows(
        conn,
        m.Staff,
        [
            {"id": i, "staff_no": f"S{i}", "dealer_id": 1, "name": n, "role": r, "status": s}
            for i, n, r, s in staff
        ],
    )
    _rows(
        conn,
        m.Customer,
        [
            {"id": ZHANG, "name": "张伟", "title": "先生", "gender": "male", "home_dealer_id": 1},
            {"id": OUYANG, "name": "欧阳娜娜", "gender": "female"},
            {"id": NOBODY, "name": None},
            {"id": LI, "name": "李娜", "gender": "female", "home_dealer_id": 1},
            {"id": WANG, "name": "王先生"},
            {"id": CHEN, "name": "陈静"},
        ],
    )


def _seed_cars(conn: Connection) -> None:
    _rows(
        conn,
        m.Vehicle,
        [
            {
                "id": 1,
                "vin": "V0000000000000001",
                "customer_id": ZHANG,
                "dealer_id": 1,
                "brand": "星途",
                "series": "远峰",
                "model": "远峰 2.0T",
                "delivery_date": dt.date(2020, 3, 1),
                "insurance_expiry": dt.date(2025, 3, 1),
            },
            {
                "id": 2,
                "vin": "V0000000000000002",
                "customer_id": ZHANG,
                "dealer_id": 1,
                "brand": "星途",
                "series": "揽月",
                "model": "揽月 1.5T 豪华版",
                "delivery_date": dt.date(2022, 6, 10),
                "insurance_expiry": dt.date(2025, 9, 1),
            },
            {
                "id": 3,
                "vin": "V0000000000000003",
                "customer_id": OUYANG,
                "dealer_id": 2,
                "brand": "远航",
                "series": "远航Y6",
                "delivery_date": dt.date(2024, 6, 16),
                "insurance_expiry": dt.date(2025, 6, 20),
            },
        ],
    )
    readings = [(2, "2024-01-01", 10_000), (2, "2025-05-01", 23_568), (1, "2025-06-01", 90_000)]
    _rows(
        conn,
        m.MileageReading,
        [
            {
                "vehicle_id": v,
                "read_on": dt.date.fromisoformat(d),
                "odometer_km": km,
                "source": "service",
            }
            for v, d, km in readings
        ],
    )


def _seed_activity(conn: Connection) -> None:
    # Zhang's latest order is with an advisor who left: the earlier, active advisor is named.
    orders = [(1, 2, 1, "2024-01-01"), (2, 2, 2, "2025-05-01"), (3, 3, None, "2025-06-01")]
    _rows(
        conn,
        m.ServiceOrder,
        [
            {
                "id": i,
                "order_no": f"O{i}",
                "dealer_id": 1,
                "vehicle_id": v,
                "customer_id": ZHANG if v != 3 else OUYANG,
                "advisor_id": a,
                "order_type": "maintenance",
                "settled_on": dt.date.fromisoformat(d),
                "amount_fen": 50_000,
            }
            for i, v, a, d in orders
        ],
    )
    _rows(
        conn,
        m.CustomerProfile,
        [
            _profile(
                ZHANG,
                next_maintenance_due_date=dt.date(2025, 7, 15),
                insurance_expiry=dt.date(2025, 8, 1),
                last_visit_date=dt.date(2025, 2, 10),
            ),
            _profile(CHEN),  # a profile without any date
        ],
    )
    points = [(ZHANG, 3_000), (ZHANG, 2_500), (ZHANG, -300), (LI, 60_000)]
    _rows(
        conn,
        m.LoyaltyEntry,
        [
            {
                "entry_key": f"L{i}",
                "customer_id": c,
                "occurred_at": T0,
                "points": p,
                "reason": "service",
            }
            for i, (c, p) in enumerate(points)
        ],
    )
    # WeCom: Ouyang has a care manager, a later sales consultant, and a deleted advisor friend.
    relations = [(OUYANG, 3, 0, None), (OUYANG, 4, 5, None), (OUYANG, 1, 9, T0), (NOBODY, 1, 0, T0)]
    _rows(
        conn,
        m.WecomRelation,
        [
            {
                "customer_id": c,
                "staff_id": s,
                "external_userid": f"wx{c}-{s}",
                "added_at": T0 + dt.timedelta(days=days),
                "deleted_at": deleted,
            }
            for c, s, days, deleted in relations
        ],
    )


def _seed_leads(conn: Connection) -> None:
    leads = [(1, "揽月", "2024-05-01"), (2, "灵犀EV", "2025-03-01"), (3, None, "2025-04-01")]
    _rows(
        conn,
        m.Lead,
        [
            {
                "id": i,
                "lead_no": f"LD{i}",
                "dealer_id": 1,
                "customer_id": ZHANG,
                "model_of_interest": model,
                "stage": "quote",
                "status": "lost",
                "created_on": dt.date.fromisoformat(d),
            }
            for i, model, d in leads
        ],
    )
    referrals = [(1, "周杰", None, 1), (2, "李娜", LI, 30), (3, None, None, 2)]
    _rows(
        conn,
        m.Referral,
        [
            {
                "id": i,
                "referral_no": f"R{i}",
                "referrer_id": ZHANG if i < 3 else CHEN,
                "referee_id": referee,
                "referee_name": name,
                "stage": "registered",
                "stage_at": T0 + dt.timedelta(days=days),
            }
            for i, name, referee, days in referrals
        ],
    )


@pytest.fixture
def store(engine: Engine) -> Engine:
    """A small store covering every source of the context and every fallback."""
    with engine.begin() as conn:
        _seed_people(conn)
        _seed_cars(conn)
        _seed_activity(conn)
        _seed_leads(conn)
    return engine


@pytest.fixture
def contexts(store: Engine) -> dict[int, dict[str, object]]:
    ids = [ZHANG, OUYANG, NOBODY, LI, WANG, CHEN, MISSING]
    with store.connect() as conn:
        return build_contexts(conn, ids, as_of=AS_OF, settings=Settings())


# --------------------------------------------------------------------------------------------
# Values and fallbacks
# --------------------------------------------------------------------------------------------


def test_every_variable_is_present_for_every_customer(
    contexts: dict[int, dict[str, object]],
) -> None:
    assert set(contexts) == {ZHANG, OUYANG, NOBODY, LI, WANG, CHEN, MISSING}
    for context in contexts.values():
        assert set(context) == set(CONTEXT_VARIABLES)


def test_a_known_customer(contexts: dict[int, dict[str, object]]) -> None:
    zhang = contexts[ZHANG]
    assert (zhang["greeting"], zhang["surname"], zhang["title"]) == ("张先生", "张", "先生")
    # The later delivery is the main car; the older car's higher reading is not its odometer.
    assert (zhang["series"], zhang["model"], zhang["brand"]) == ("揽月", "揽月 1.5T 豪华版", "星途")
    assert zhang["odometer_km"] == 23_568
    assert zhang["years_owned"] == 3
    assert zhang["dealer_name"] == "杭州西湖店"
    assert zhang["dealer_phone"] == "0571-88886666"
    assert zhang["dealer_address"] == "杭州市西湖区文三路100号"
    assert zhang["advisor_name"] == "王磊"  # the latest order's advisor has left
    assert zhang["next_maintenance_due_date"] == dt.date(2025, 7, 15)
    assert zhang["insurance_expiry"] == dt.date(2025, 8, 1)  # the profile's, not the car's
    assert zhang["months_since_last_visit"] == 4
    assert (zhang["points_balance"], zhang["member_level"]) == (5_200, "银卡")
    assert zhang["model_of_interest"] == "灵犀EV"  # the latest lead that names a model
    assert zhang["referee_greeting"] == "李女士"  # the friend's own record gives the title


def test_message_settings_fill_the_offer(contexts: dict[int, dict[str, object]]) -> None:
    zhang = contexts[ZHANG]
    assert zhang["signature"] == "保客汽车服务"
    assert zhang["offer_name"] == "回厂关怀礼"
    assert zhang["offer_detail"] == "免费检测+工时8折"
    assert zhang["offer_deadline"] == AS_OF + dt.timedelta(days=7)
    assert zhang["booking_link"] == "https://bk.example.cn/b"
    assert zhang["gift_link"] == "https://bk.example.cn/g"
    assert zhang["unsubscribe_line"] == TD_LINE
    assert (zhang["festival_name"], zhang["points_change"]) == ("", 0)


def test_compound_surname_title_from_gender_and_the_cars_dealer(
    contexts: dict[int, dict[str, object]],
) -> None:
    ouyang = contexts[OUYANG]
    assert (ouyang["greeting"], ouyang["surname"], ouyang["title"]) == ("欧阳女士", "欧阳", "女士")
    # No home dealer: the dealer that sold the main car, and its brand.
    assert (ouyang["dealer_name"], ouyang["dealer_phone"], ouyang["brand"]) == (
        "宁波江北店",
        "",
        "远航",
    )
    assert ouyang["odometer_km"] == 0  # no reading
    assert ouyang["years_owned"] == 0  # one day before the first anniversary
    assert ouyang["months_since_last_visit"] == 11  # no profile: counted from the delivery
    assert ouyang["next_maintenance_due_date"] is None
    assert ouyang["insurance_expiry"] == dt.date(2025, 6, 20)  # the car's, without a profile
    # An order without an advisor; WeCom: the care manager before the later sales consultant,
    # and never the deleted friendship.
    assert ouyang["advisor_name"] == "赵敏"


def test_nothing_known_gives_fallbacks(contexts: dict[int, dict[str, object]]) -> None:
    for cid in (NOBODY, MISSING):
        context = contexts[cid]
        assert (context["greeting"], context["surname"], context["title"]) == (
            OWNER_FALLBACK,
            "",
            "",
        )
        assert (context["series"], context["model"]) == (SERIES_FALLBACK, SERIES_FALLBACK)
        assert (context["odometer_km"], context["years_owned"]) == (0, 0)
        assert (context["dealer_name"], context["dealer_phone"], context["brand"]) == (
            DEALER_FALLBACK,
            "",
            "",
        )
        assert context["advisor_name"] == ADVISOR_FALLBACK  # NOBODY's WeCom friend deleted them
        assert context["months_since_last_visit"] == 0
        assert context["next_maintenance_due_date"] is None
        assert context["insurance_expiry"] is None
        assert (context["points_balance"], context["member_level"]) == (0, "普卡")
        assert context["model_of_interest"] == MODEL_OF_INTEREST_FALLBACK
        assert context["referee_greeting"] == FRIEND_FALLBACK


def test_names_without_a_title(contexts: dict[int, dict[str, object]]) -> None:
    # "王先生" in the name field: the title is taken from it.
    wang = contexts[WANG]
    assert (wang["greeting"], wang["surname"], wang["title"]) == ("王先生", "王", "先生")
    # Neither title nor gender: the full name, never a bare "陈".
    chen = contexts[CHEN]
    assert (chen["greeting"], chen["surname"], chen["title"]) == ("陈静", "陈", "")
    # A profile without dates: no crash, no visit count.
    assert chen["next_maintenance_due_date"] is None and chen["months_since_last_visit"] == 0
    # A referral without a name: the friend fallback.
    assert chen["referee_greeting"] == FRIEND_FALLBACK
    assert (contexts[LI]["points_balance"], contexts[LI]["member_level"]) == (60_000, "铂金卡")


def test_as_of_drives_every_since(store: Engine) -> None:
    later = dt.date(2025, 6, 16)  # Ouyang's first delivery anniversary
    with store.connect() as conn:
        context = build_contexts(conn, [OUYANG, ZHANG], as_of=later, settings=Settings())
    assert context[OUYANG]["years_owned"] == 1
    assert context[OUYANG]["months_since_last_visit"] == 12
    assert context[ZHANG]["offer_deadline"] == later + dt.timedelta(days=7)


def test_settings_override_brand_signature_offer_and_levels(store: Engine) -> None:
    messages = MessageSettings(
        signature="星途汽车",
        brand="星途",
        offer_days=3,
        offer_name="夏季关怀",
        member_levels=[(0, "会员"), (5_000, "高级会员")],
    )
    with store.connect() as conn:
        context = build_contexts(
            conn, [OUYANG, ZHANG], as_of=AS_OF, settings=Settings(messages=messages)
        )
    assert context[OUYANG]["brand"] == "星途"  # the setting wins over the dealer's brand
    assert context[ZHANG]["signature"] == "星途汽车"
    assert context[ZHANG]["offer_name"] == "夏季关怀"
    assert context[ZHANG]["offer_deadline"] == dt.date(2025, 6, 18)
    assert context[ZHANG]["member_level"] == "高级会员"
    assert context[OUYANG]["member_level"] == "会员"


def test_duplicate_and_empty_ids(store: Engine) -> None:
    with store.connect() as conn:
        assert build_contexts(conn, [], as_of=AS_OF, settings=Settings()) == {}
        twice = build_contexts(conn, [ZHANG, ZHANG], as_of=AS_OF, settings=Settings())
    assert list(twice) == [ZHANG]


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        ("2025-01-31", "2025-02-28", 1),  # a shorter month counts on its last day
        ("2025-01-31", "2025-02-27", 0),
        ("2024-02-29", "2025-02-28", 12),  # a leap-day delivery has its anniversary
        ("2025-03-15", "2025-03-14", 0),  # a date after as_of counts nothing
        ("2022-06-10", "2025-06-09", 35),
    ],
)
def test_whole_months(start: str, end: str, months: int) -> None:
    assert _whole_months(dt.date.fromisoformat(start), dt.date.fromisoformat(end)) == months


# --------------------------------------------------------------------------------------------
# Set-based reads
# --------------------------------------------------------------------------------------------


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the fixture is active."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def _seed_many(engine: Engine, n: int) -> list[int]:
    """``n`` customers, each with a car, a reading, an order, a profile, points and a lead."""
    ids = list(range(1_000, 1_000 + n))
    with engine.begin() as conn:
        _rows(conn, m.Dealer, [{"id": 1, "code": "D1", "name": "一店", "brand": "星途"}])
        _rows(
            conn,
            m.Staff,
            [{"id": 1, "staff_no": "S1", "dealer_id": 1, "name": "王磊", "role": "advisor"}],
        )
        _rows(
            conn,
            m.Customer,
            [{"id": c, "name": f"张{c}", "gender": "male", "home_dealer_id": 1} for c in ids],
        )
        _rows(
            conn,
            m.Vehicle,
            [
                {
                    "id": c,
                    "vin": f"V{c:016d}",
                    "customer_id": c,
                    "series": "远峰",
                    "delivery_date": dt.date(2021, 1, 1),
                }
                for c in ids
            ],
        )
        _rows(
            conn,
            m.MileageReading,
            [{"vehicle_id": c, "read_on": AS_OF, "odometer_km": c, "source": "app"} for c in ids],
        )
        _rows(
            conn,
            m.ServiceOrder,
            [
                {
                    "order_no": f"O{c}",
                    "dealer_id": 1,
                    "vehicle_id": c,
                    "customer_id": c,
                    "advisor_id": 1,
                    "order_type": "repair",
                    "settled_on": AS_OF,
                    "amount_fen": 1,
                }
                for c in ids
            ],
        )
        _rows(
            conn, m.CustomerProfile, [_profile(c, last_visit_date=dt.date(2025, 1, 1)) for c in ids]
        )
        _rows(
            conn,
            m.LoyaltyEntry,
            [
                {
                    "entry_key": f"E{c}",
                    "customer_id": c,
                    "occurred_at": T0,
                    "points": 10,
                    "reason": "service",
                }
                for c in ids
            ],
        )
        _rows(
            conn,
            m.Lead,
            [
                {
                    "lead_no": f"L{c}",
                    "dealer_id": 1,
                    "customer_id": c,
                    "model_of_interest": "灵犀EV",
                    "stage": "visit",
                    "status": "lost",
                    "created_on": AS_OF,
                }
                for c in ids
            ],
        )
    return ids


def test_statement_count_does_not_grow_with_customers(
    engine: Engine, statements: list[str]
) -> None:
    ids = _seed_many(engine, 300)
    counts = []
    for batch in (ids[:3], ids):
        statements.clear()
        with engine.connect() as conn:
            contexts = build_contexts(conn, batch, as_of=AS_OF, settings=Settings())
        counts.append(len(statements))
        assert len(contexts) == len(batch)
        assert all(
            c["advisor_name"] == "王磊" and c["odometer_km"] == cid for cid, c in contexts.items()
        )
    assert counts[0] == counts[1] <= 10


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def test_every_builtin_variant_renders_for_every_context(
    contexts: dict[int, dict[str, object]],
) -> None:
    extras: list[dict[str, object]] = [{}, {"festival_name": "春节", "points_change": 500}]
    rendered = 0
    for playbook in load_builtin_playbooks():
        for template in playbook.templates:
            for variant in template.variants:
                for context in contexts.values():
                    for extra in extras:
                        out = render_message(
                            playbook, template.id, variant.channel, context, extra=extra
                        )
                        assert out.text and "None" not in out.text
                        assert (out.subject is None) == (variant.channel != "email")
                        rendered += 1
    assert rendered > 100


def _builtin(name: str) -> Playbook:
    return next(p for p in load_builtin_playbooks() if p.name == name)


def test_render_sms_script_and_extra(contexts: dict[int, dict[str, object]]) -> None:
    winback = _builtin("churn_winback")
    sms = render_message(winback, "winback_sms", "sms", contexts[ZHANG])
    assert sms == RenderedMessage(
        "sms",
        "【保客汽车服务】张先生，您已4个月未保养，回厂关怀礼保留至周日，"
        "预约https://bk.example.cn/b 回复TD退订",
        None,
    )
    script = render_message(winback, "winback_call", "script", contexts[OUYANG])
    assert script.text.startswith("欧阳女士您好，我是宁波江北店的服务经理。您已经11个月没回店了")
    playbook = parse_playbook(
        """
name: t
label: t
description: t
kind: care
triggers: [{festival: spring_festival}]
steps:
  - id: s
    send: {channel: email, template: hello}
templates:
  hello:
    email:
      subject: "{{ festival_name }}快乐，{{ greeting }}"
      body: "预计{{ next_maintenance_due_date | cn_date }}保养"
"""
    )
    mail = render_message(
        playbook, "hello", "email", contexts[OUYANG], extra={"festival_name": "春节"}
    )
    assert (mail.subject, mail.text) == ("春节快乐，欧阳女士", "预计近期保养")


def test_missing_variant_or_template_is_a_clear_error(
    contexts: dict[int, dict[str, object]],
) -> None:
    winback = _builtin("churn_winback")
    with pytest.raises(TemplateError) as info:
        render_message(winback, "winback_sms", "email", contexts[ZHANG])
    assert "churn_winback" in str(info.value)
    assert "winback_sms" in str(info.value) and "'email'" in str(info.value)
    with pytest.raises(TemplateError, match="no template 'nope'"):
        render_message(winback, "nope", "sms", contexts[ZHANG])


def test_a_bad_extra_is_a_template_error(contexts: dict[int, dict[str, object]]) -> None:
    care = _builtin("care_moments")
    template = next(
        t for t in care.templates if "odometer_km" in (t.variant("sms") or t.variants[0]).text
    )
    channel = template.variants[0].channel
    with pytest.raises(TemplateError, match=f"care_moments/{template.id}"):
        render_message(care, template.id, channel, contexts[ZHANG], extra={"odometer_km": None})
