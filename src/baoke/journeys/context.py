"""The personalisation context of messages and call scripts, built for many customers at once.

:func:`build_contexts` answers, for a batch of customers, every variable of
:data:`baoke.playbooks.templates.CONTEXT_VARIABLES`: how to address them, their main car, their
dealer and advisor, their dates, points and leads, and the message settings (signature, offer,
links). Templates render with ``StrictUndefined``, so every variable is always present: a
value the store does not know gets a fallback that still reads well ("尊敬的车主", "爱车",
"本店", "您的专属顾问"; a dealer's missing phone or address is ""); an unknown *date* is
None, which ``|cn_date`` prints as "近期".

The store is read with a fixed number of statements per chunk of :data:`KEY_CHUNK` customers
(one per source table, with the "latest row per customer" picked by a window function in the
database), never one query per customer: the daily run prepares messages for whole segments.

:func:`render_message` renders one template variant of a playbook with such a context plus
the per-touch values of a step (a festival's name, the points just earned).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

from sqlalchemy import Connection, Select, case, func, select
from sqlalchemy.orm import aliased

from baoke.config import MessageSettings, Settings
from baoke.ingest.store_io import KEY_CHUNK
from baoke.playbooks.definitions import Playbook
from baoke.playbooks.templates import TD_LINE, TemplateError, render
from baoke.store import models as m

__all__ = [
    "ADVISOR_FALLBACK",
    "DEALER_FALLBACK",
    "FRIEND_FALLBACK",
    "MODEL_OF_INTEREST_FALLBACK",
    "OWNER_FALLBACK",
    "SERIES_FALLBACK",
    "RenderedMessage",
    "build_contexts",
    "render_message",
]

OWNER_FALLBACK = "尊敬的车主"
"""The greeting of a customer whose name is unknown."""
DEALER_FALLBACK = "本店"
"""dealer_name without a known dealer: "我是本店的服务经理", "本店全体同事祝您…"."""
ADVISOR_FALLBACK = "您的专属顾问"
"""advisor_name when no active advisor or WeCom contact is known."""
FRIEND_FALLBACK = "您的朋友"
"""referee_greeting when the referred friend's name is unknown."""
SERIES_FALLBACK = "爱车"
"""series (and model) without a known car: "您的爱车已陪伴您…" still reads well."""
MODEL_OF_INTEREST_FALLBACK = "心仪车型"
"""model_of_interest without a lead naming one."""

# Two-character surnames (复姓) common enough to meet in a customer base; for any other name
# the first character is the surname. Compounds that start with a common single surname and a
# plausible given name (宗政, 钟离, 南宫) are left out: 宗政华 is far more often Mr 宗 than Mr 宗政.
# fmt: off
_COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容",
    "长孙", "宇文", "司徒", "夏侯", "令狐", "端木", "独孤", "西门", "呼延",
    "轩辕", "万俟", "澹台", "赫连", "濮阳", "淳于", "申屠", "司空",
})
# fmt: on
_TITLES = ("先生", "女士")
_Query: TypeAlias = "Select[*tuple[Any, ...]]"  # a select of any columns
_TITLE_OF_GENDER = {"male": "先生", "female": "女士"}
# DMS exports often hold "张先生" in the name field: the suffix is the title, not the name.
_NAME_SUFFIXES = (("先生", "先生"), ("女士", "女士"), ("小姐", "女士"))
# WeCom contacts who look after a customer's car come before, say, a sales consultant.
_CARE_ROLES = ("advisor", "customer_manager", "service_manager")


@dataclass(frozen=True)
class RenderedMessage:
    """One rendered template variant: the text (an email's body) and an email's subject."""

    channel: str
    text: str
    subject: str | None


class _Address(NamedTuple):
    greeting: str
    surname: str
    title: str


@dataclass
class _Facts:
    """What the store knows about one chunk of customers, each map keyed by customer id."""

    customers: dict[int, Any] = field(default_factory=dict)
    vehicles: dict[int, Any] = field(default_factory=dict)
    profiles: dict[int, Any] = field(default_factory=dict)
    advisors: dict[int, Any] = field(default_factory=dict)
    wecom: dict[int, Any] = field(default_factory=dict)
    points: dict[int, Any] = field(default_factory=dict)
    leads: dict[int, Any] = field(default_factory=dict)
    referrals: dict[int, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def build_contexts(
    conn: Connection, customer_ids: Sequence[int], *, as_of: dt.date, settings: Settings
) -> dict[int, dict[str, object]]:
    """The template context of each customer in ``customer_ids``, keyed by customer id.

    Every context holds every key of ``CONTEXT_VARIABLES``, with fallbacks for what the store
    does not know (an id without a customer row gets a context of fallbacks too). ``as_of``
    is the business date every "since" counts to (years owned, months since the last visit)
    and the offer deadline counts from. ``festival_name`` is "" and ``points_change`` 0: they
    are per-touch values, passed as ``extra`` to :func:`render_message`.

    Runs a fixed number of statements per :data:`KEY_CHUNK` customers.
    """
    ids = list(dict.fromkeys(customer_ids))
    common = _message_vars(settings.messages, as_of)
    out: dict[int, dict[str, object]] = {}
    for chunk in _chunks(ids, KEY_CHUNK):
        facts = _load_facts(conn, chunk)
        for cid in chunk:
            out[cid] = _context(cid, facts, common, settings.messages, as_of)
    return out


def render_message(
    playbook: Playbook,
    template_id: str,
    channel: str,
    context: Mapping[str, object],
    *,
    extra: Mapping[str, object] | None = None,
) -> RenderedMessage:
    """Render ``playbook``'s template ``template_id`` for ``channel`` (``script``: call script).

    ``extra`` overrides or adds per-touch values (festival_name, points_change …). Raises
    :class:`TemplateError` naming the playbook, template and channel when the template or its
    variant for the channel does not exist, or when rendering fails.
    """
    name = f"{playbook.name}/{template_id}"
    try:
        template = playbook.template(template_id)
    except KeyError:
        problem = f"playbook '{playbook.name}' has no template '{template_id}' (channel {channel})"
        raise TemplateError(name, [problem]) from None
    variant = template.variant(channel)
    if variant is None:
        have = ", ".join(v.channel for v in template.variants)
        problem = (
            f"playbook '{playbook.name}': template '{template_id}' has no '{channel}' variant "
            f"(it has: {have})"
        )
        raise TemplateError(name, [problem])
    values = {**context, **(extra or {})}
    text = _render(name, channel, variant.text, values)
    subject = None if variant.subject is None else _render(name, channel, variant.subject, values)
    return RenderedMessage(channel, text, subject)


def _render(name: str, channel: str, text: str, values: Mapping[str, object]) -> str:
    """Render, re-raising any failure as a TemplateError that says which template it was."""
    try:
        return render(text, values)
    except TemplateError as err:
        raise TemplateError(name, [f"{channel}: {p}" for p in err.problems]) from None
    except (TypeError, ValueError) as err:  # a filter given the wrong kind of value
        raise TemplateError(name, [f"{channel}: {err}"]) from None


# --------------------------------------------------------------------------------------------
# Reading the store: one statement per source table and chunk
# --------------------------------------------------------------------------------------------


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_facts(conn: Connection, ids: list[int]) -> _Facts:
    return _Facts(
        customers=_by_customer(conn, _customers_query(ids)),
        vehicles=_by_customer(conn, _vehicles_query(ids)),
        profiles=_by_customer(conn, _profiles_query(ids)),
        advisors=_by_customer(conn, _advisors_query(ids)),
        wecom=_by_customer(conn, _wecom_query(ids)),
        points=_by_customer(conn, _points_query(ids)),
        leads=_by_customer(conn, _leads_query(ids)),
        referrals=_by_customer(conn, _referrals_query(ids)),
    )


def _by_customer(conn: Connection, query: _Query) -> dict[int, Any]:
    """Rows keyed by their first column, the customer id (one row per customer)."""
    # All rows at once: iterating a result fetches row by row, several times slower here.
    return {row[0]: row for row in conn.execute(query).all()}


def _customers_query(ids: list[int]) -> _Query:
    c, d = m.Customer, m.Dealer
    return (
        select(c.id, c.name, c.title, c.gender, *_dealer_columns())
        .outerjoin(d, d.id == c.home_dealer_id)
        .where(c.id.in_(ids))
    )


def _vehicles_query(ids: list[int]) -> _Query:
    """The main car: the latest delivered (purchase date if the delivery date is missing)."""
    v, d, r = m.Vehicle, m.Dealer, m.MileageReading
    since = func.coalesce(v.delivery_date, v.purchase_date)
    order = (since.desc().nulls_last(), v.id.desc())
    ranked = (
        select(
            v.customer_id,
            v.id,
            v.series,
            v.model,
            v.brand,
            v.dealer_id,
            v.insurance_expiry,
            since.label("since"),
            func.row_number().over(partition_by=v.customer_id, order_by=order).label("rn"),
        )
        .where(v.customer_id.in_(ids))
        .subquery()
    )
    # One index probe per main car (mileage_readings is unique on vehicle_id, read_on, source).
    odometer = (
        select(r.odometer_km)
        .where(r.vehicle_id == ranked.c.id)
        .order_by(r.read_on.desc(), r.odometer_km.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            ranked.c.customer_id,
            ranked.c.series,
            ranked.c.model,
            ranked.c.brand,
            ranked.c.insurance_expiry,
            ranked.c.since,
            odometer.label("odometer_km"),
            *_dealer_columns(),
        )
        .outerjoin(d, d.id == ranked.c.dealer_id)
        .where(ranked.c.rn == 1)
    )


def _dealer_columns() -> tuple[Any, ...]:
    d = m.Dealer
    return (
        d.name.label("dealer_name"),
        d.phone.label("dealer_phone"),
        d.address.label("dealer_address"),
        d.brand.label("dealer_brand"),
    )


def _profiles_query(ids: list[int]) -> _Query:
    p = m.CustomerProfile
    return select(
        p.customer_id, p.next_maintenance_due_date, p.insurance_expiry, p.last_visit_date
    ).where(p.customer_id.in_(ids))


def _advisors_query(ids: list[int]) -> _Query:
    """The active advisor of the latest service order that names one.

    A departed advisor is skipped: "我帮您预约，王磊" from someone who left would mislead.
    """
    o, s = m.ServiceOrder, m.Staff
    order = (o.settled_on.desc(), o.id.desc())
    ranked = (
        select(
            o.customer_id,
            s.name,
            func.row_number().over(partition_by=o.customer_id, order_by=order).label("rn"),
        )
        .join(s, s.id == o.advisor_id)
        .where(o.customer_id.in_(ids), s.status == "active")
        .subquery()
    )
    return select(ranked.c.customer_id, ranked.c.name).where(ranked.c.rn == 1)


def _wecom_query(ids: list[int]) -> _Query:
    """The active staff member of an undeleted WeCom friendship; care roles, then the latest."""
    w, s = m.WecomRelation, m.Staff
    order = (case((s.role.in_(_CARE_ROLES), 0), else_=1), w.added_at.desc(), w.id.desc())
    ranked = (
        select(
            w.customer_id,
            s.name,
            func.row_number().over(partition_by=w.customer_id, order_by=order).label("rn"),
        )
        .join(s, s.id == w.staff_id)
        .where(w.customer_id.in_(ids), w.deleted_at.is_(None), s.status == "active")
        .subquery()
    )
    return select(ranked.c.customer_id, ranked.c.name).where(ranked.c.rn == 1)


def _points_query(ids: list[int]) -> _Query:
    e = m.LoyaltyEntry
    return (
        select(e.customer_id, func.sum(e.points).label("balance"))
        .where(e.customer_id.in_(ids))
        .group_by(e.customer_id)
    )


def _leads_query(ids: list[int]) -> _Query:
    """The model of interest of the latest lead that names one."""
    ld = m.Lead
    order = (ld.created_on.desc(), ld.id.desc())
    ranked = (
        select(
            ld.customer_id,
            ld.model_of_interest,
            func.row_number().over(partition_by=ld.customer_id, order_by=order).label("rn"),
        )
        .where(ld.customer_id.in_(ids), ld.model_of_interest.is_not(None))
        .subquery()
    )
    return select(ranked.c.customer_id, ranked.c.model_of_interest).where(ranked.c.rn == 1)


def _referrals_query(ids: list[int]) -> _Query:
    """The friend of the latest-moving referral, with their customer record if they have one."""
    r = m.Referral
    friend = aliased(m.Customer)
    order = (r.stage_at.desc(), r.id.desc())
    ranked = (
        select(
            r.referrer_id,
            func.coalesce(r.referee_name, friend.name).label("name"),
            friend.title,
            friend.gender,
            func.row_number().over(partition_by=r.referrer_id, order_by=order).label("rn"),
        )
        .outerjoin(friend, friend.id == r.referee_id)
        .where(r.referrer_id.in_(ids))
        .subquery()
    )
    return select(ranked.c.referrer_id, ranked.c.name, ranked.c.title, ranked.c.gender).where(
        ranked.c.rn == 1
    )


# --------------------------------------------------------------------------------------------
# Assembling one context
# --------------------------------------------------------------------------------------------


def _message_vars(messages: MessageSettings, as_of: dt.date) -> dict[str, object]:
    """The variables that come from the settings, the same for every customer of a run."""
    return {
        "signature": messages.signature,
        "offer_name": messages.offer_name,
        "offer_detail": messages.offer_detail,
        "offer_deadline": as_of + dt.timedelta(days=messages.offer_days),
        "booking_link": messages.booking_link,
        "gift_link": messages.gift_link,
        "unsubscribe_line": TD_LINE,
        "festival_name": "",
        "points_change": 0,
    }


def _context(
    cid: int,
    facts: _Facts,
    common: dict[str, object],
    messages: MessageSettings,
    as_of: dt.date,
) -> dict[str, object]:
    customer = facts.customers.get(cid)
    vehicle = facts.vehicles.get(cid)
    who = (
        _address(customer.name, customer.title, customer.gender, OWNER_FALLBACK)
        if customer is not None
        else _Address(OWNER_FALLBACK, "", "")
    )
    context: dict[str, object] = {
        **common,
        "greeting": who.greeting,
        "surname": who.surname,
        "title": who.title,
        **_vehicle_vars(vehicle, as_of),
        **_dealer_vars(customer, vehicle, messages),
        **_date_vars(facts.profiles.get(cid), vehicle, as_of),
        **_loyalty_vars(facts.points.get(cid), messages),
        "advisor_name": _advisor(facts.advisors.get(cid), facts.wecom.get(cid)),
        "model_of_interest": _model_of_interest(facts.leads.get(cid)),
        "referee_greeting": _referee(facts.referrals.get(cid)),
    }
    return context


def _vehicle_vars(vehicle: Any, as_of: dt.date) -> dict[str, object]:
    if vehicle is None:
        return {
            "series": SERIES_FALLBACK,
            "model": SERIES_FALLBACK,
            "odometer_km": 0,
            "years_owned": 0,
        }
    series = vehicle.series or SERIES_FALLBACK
    return {
        "series": series,
        "model": vehicle.model or series,
        "odometer_km": int(vehicle.odometer_km or 0),
        "years_owned": _whole_months(vehicle.since, as_of) // 12,
    }


def _dealer_vars(customer: Any, vehicle: Any, messages: MessageSettings) -> dict[str, object]:
    """The home dealer; the main car's dealer when the customer has no home dealer."""
    # Both rows carry the dealer_* columns of their dealer (a left join: None without one).
    dealer = next(
        (row for row in (customer, vehicle) if row is not None and row.dealer_name is not None),
        None,
    )
    car_brand = vehicle.brand if vehicle is not None else None
    dealer_brand = dealer.dealer_brand if dealer is not None else None
    return {
        "dealer_name": dealer.dealer_name if dealer is not None else DEALER_FALLBACK,
        "dealer_phone": (dealer.dealer_phone if dealer is not None else None) or "",
        "dealer_address": (dealer.dealer_address if dealer is not None else None) or "",
        "brand": messages.brand or dealer_brand or car_brand or "",
    }


def _date_vars(profile: Any, vehicle: Any, as_of: dt.date) -> dict[str, object]:
    """Due dates (None when unknown; ``|cn_date`` prints "近期") and months since a visit.

    Without a recorded visit the delivery counts as the last one: "您已14个月没回店了" is
    true of an owner who has not been back since collecting the car.
    """
    delivered = vehicle.since if vehicle is not None else None
    car_insurance = vehicle.insurance_expiry if vehicle is not None else None
    due = profile.next_maintenance_due_date if profile is not None else None
    insurance = profile.insurance_expiry if profile is not None else None
    visit = profile.last_visit_date if profile is not None else None
    return {
        "next_maintenance_due_date": due,
        "insurance_expiry": insurance or car_insurance,
        "months_since_last_visit": _whole_months(visit or delivered, as_of),
    }


def _loyalty_vars(points: Any, messages: MessageSettings) -> dict[str, object]:
    balance = int(points.balance or 0) if points is not None else 0
    level = messages.member_levels[0][1]
    for low, name in messages.member_levels:  # lowest first, validated increasing
        if balance >= low:
            level = name
    return {"points_balance": balance, "member_level": level}


def _advisor(advisor: Any, wecom: Any) -> str:
    for row in (advisor, wecom):
        if row is not None and row.name:
            return str(row.name)
    return ADVISOR_FALLBACK


def _model_of_interest(lead: Any) -> str:
    if lead is not None and lead.model_of_interest:
        return str(lead.model_of_interest)
    return MODEL_OF_INTEREST_FALLBACK


def _referee(referral: Any) -> str:
    if referral is None:
        return FRIEND_FALLBACK
    return _address(referral.name, referral.title, referral.gender, FRIEND_FALLBACK).greeting


# --------------------------------------------------------------------------------------------
# Names and dates
# --------------------------------------------------------------------------------------------


def _address(name: str | None, title: str | None, gender: str | None, unknown: str) -> _Address:
    """How to address a person: 张先生; the full name when neither title nor gender is known.

    ``unknown`` is the greeting without a name. A title written into the name ("张先生",
    "李小姐", common in DMS exports) is taken as the title.
    """
    raw = (name or "").strip()
    for suffix, suffix_title in _NAME_SUFFIXES:
        if raw.endswith(suffix):  # a bare "先生" leaves no name: the unknown greeting
            raw, title = raw[: -len(suffix)].strip(), title or suffix_title
            break
    if not raw:
        return _Address(unknown, "", "")
    if raw.isascii():  # "John Smith": the family name is the last word
        full, surname = " ".join(raw.split()), raw.split()[-1]
    else:  # "张 伟" typed with a space is still 张伟
        full = "".join(raw.split())
        surname = _surname(full)
    known = title if title in _TITLES else _TITLE_OF_GENDER.get((gender or "").lower(), "")
    # Without a title, "张" alone is no greeting; the full name is polite enough.
    return _Address(surname + known if known else full, surname, known)


def _surname(name: str) -> str:
    """The family name in a Chinese name: a common compound surname (欧阳) or the first
    character."""
    if name[:2] in _COMPOUND_SURNAMES:
        return name[:2]
    return name[:1]


def _whole_months(start: dt.date | None, end: dt.date) -> int:
    """Whole calendar months from ``start`` to ``end`` (0 if ``start`` is None or later).

    A month counts on the same day of the month, or on the month's last day when it is
    shorter: Jan 31 -> Feb 28 is one month, Feb 29 -> Feb 28 of the next year one year.
    """
    if start is None or start >= end:
        return 0
    months = (end.year - start.year) * 12 + end.month - start.month
    last_day = calendar.monthrange(end.year, end.month)[1]
    if end.day < min(start.day, last_day):
        months -= 1
    return months
