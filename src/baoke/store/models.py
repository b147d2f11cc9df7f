"""The operational store: one SQLAlchemy model per core record of DOMAIN.md.

Conventions that every later layer relies on:

* Times are stored in UTC (``DateTime(timezone=True)``); business *dates* (order settled,
  delivery, birthday) are plain ``Date`` in the business time zone.
* Money is integer fen (``*_fen`` columns), never float.
* Mobiles are E.164 strings (``+8613800138000``).
* Every mutable table has ``updated_at``, a high-water mark for incremental snapshots.
* Natural keys (order number, VIN, lead number …) are unique so imports can upsert.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _now() -> Any:
    return func.current_timestamp()


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable migration names)."""

    metadata = MetaData(naming_convention=NAMING)


class Timestamped:
    """created_at / updated_at, both UTC, maintained by the database."""

    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), nullable=False
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), nullable=False, index=True
    )


class Dealer(Timestamped, Base):
    """A store (4S shop) of the group."""

    __tablename__ = "dealers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    brand: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(256))
    phone: Mapped[str | None] = mapped_column(String(32))


class Staff(Timestamped, Base):
    """An employee: advisor, customer manager, store manager …; active or departed."""

    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    staff_no: Mapped[str] = mapped_column(String(32), unique=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    mobile: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(128))
    wecom_userid: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    departed_on: Mapped[dt.date | None] = mapped_column(Date)


class Customer(Timestamped, Base):
    """One owner or prospect, merged across dealers by normalised mobile."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mobile: Mapped[str | None] = mapped_column(String(20), unique=True)
    name: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(8))  # 先生 / 女士
    gender: Mapped[str | None] = mapped_column(String(8))
    email: Mapped[str | None] = mapped_column(String(128))
    city: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    family: Mapped[str | None] = mapped_column(String(64))
    contact_from: Mapped[dt.time | None] = mapped_column(Time)
    contact_to: Mapped[dt.time | None] = mapped_column(Time)
    home_dealer_id: Mapped[int | None] = mapped_column(ForeignKey("dealers.id"), index=True)
    mobile_status: Mapped[str] = mapped_column(String(16), default="valid")
    tags: Mapped[str | None] = mapped_column(Text)  # JSON array text


class CustomerIdentity(Timestamped, Base):
    """A dealer's own customer number for a customer; several identities may share one customer."""

    __tablename__ = "customer_identities"
    __table_args__ = (UniqueConstraint("dealer_id", "customer_no"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id"))
    customer_no: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)


class MergeLog(Base):
    """Why two source records became one customer."""

    __tablename__ = "merge_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_run_id: Mapped[int | None] = mapped_column(ForeignKey("import_runs.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id"))
    customer_no: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(128))
    merged_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class Vehicle(Timestamped, Base):
    """A car; VIN validated (``vin_check_ok`` false keeps a wrong ISO 3779 check digit visible)."""

    __tablename__ = "vehicles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vin: Mapped[str] = mapped_column(String(17), unique=True)
    vin_check_ok: Mapped[bool] = mapped_column(Boolean, default=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    dealer_id: Mapped[int | None] = mapped_column(ForeignKey("dealers.id"), index=True)
    brand: Mapped[str | None] = mapped_column(String(64))
    series: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    model_year: Mapped[int | None] = mapped_column(SmallInteger)
    plate_no: Mapped[str | None] = mapped_column(String(16))
    purchase_date: Mapped[dt.date | None] = mapped_column(Date)
    delivery_date: Mapped[dt.date | None] = mapped_column(Date)
    price_fen: Mapped[int | None] = mapped_column(BigInteger)
    insurance_expiry: Mapped[dt.date | None] = mapped_column(Date)
    warranty_end: Mapped[dt.date | None] = mapped_column(Date)


class MileageReading(Base):
    """An odometer reading, from a service order, an import or the app."""

    __tablename__ = "mileage_readings"
    __table_args__ = (UniqueConstraint("vehicle_id", "read_on", "source"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    read_on: Mapped[dt.date] = mapped_column(Date)
    odometer_km: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32))


class ServiceOrder(Timestamped, Base):
    """An after-sales order: maintenance, repair, warranty claim, accessory …"""

    __tablename__ = "service_orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(64), unique=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id"), index=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    order_type: Mapped[str] = mapped_column(String(16))
    settled_on: Mapped[dt.date] = mapped_column(Date, index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    mileage_km: Mapped[int | None] = mapped_column(Integer)


class Lead(Timestamped, Base):
    """A sales prospect; a lost lead (战败线索) keeps its furthest stage and lost reason."""

    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_no: Mapped[str] = mapped_column(String(64), unique=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(64))
    mobile: Mapped[str | None] = mapped_column(String(20), index=True)
    model_of_interest: Mapped[str | None] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    lost_reason: Mapped[str | None] = mapped_column(String(32))
    created_on: Mapped[dt.date] = mapped_column(Date)
    lost_on: Mapped[dt.date | None] = mapped_column(Date)


class Complaint(Timestamped, Base):
    """A complaint ticket with severity, satisfaction score and SLA owner."""

    __tablename__ = "complaints"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    complaint_no: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id"), index=True)
    owner_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    severity: Mapped[str] = mapped_column(String(16))
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Consent(Timestamped, Base):
    """Current consent of one customer for one channel and purpose (history in audit_log)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "channel", "purpose"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16), default="marketing")
    granted: Mapped[bool] = mapped_column(Boolean)
    basis: Mapped[str | None] = mapped_column(String(32))
    granted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(64))


class BehaviourEvent(Base):
    """An app/web behaviour: page view, model view, community post, link click …"""

    __tablename__ = "behaviour_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    event_type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(128))
    properties: Mapped[str | None] = mapped_column(Text)  # JSON object text


Index("ix_behaviour_events_customer_time", BehaviourEvent.customer_id, BehaviourEvent.occurred_at)


class WecomRelation(Timestamped, Base):
    """A WeCom external-contact friendship between a customer and a staff member."""

    __tablename__ = "wecom_relations"
    __table_args__ = (UniqueConstraint("staff_id", "external_userid"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    external_userid: Mapped[str] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(64))  # channel QR code (渠道活码)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by: Mapped[str | None] = mapped_column(String(16))  # customer / staff


class Referral(Timestamped, Base):
    """推荐有礼: a customer refers a friend, who moves registered → test drive → purchase."""

    __tablename__ = "referrals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    referral_no: Mapped[str] = mapped_column(String(64), unique=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    referee_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    referee_name: Mapped[str | None] = mapped_column(String(64))
    referee_mobile: Mapped[str | None] = mapped_column(String(20))
    stage: Mapped[str] = mapped_column(String(16))
    stage_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LoyaltyEntry(Base):
    """One line of the loyalty points ledger (positive earns, negative redeems)."""

    __tablename__ = "loyalty_ledger"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_key: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(64))


class Touch(Timestamped, Base):
    """One message or call to a customer, with its idempotency key and current status."""

    __tablename__ = "touches"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    dealer_id: Mapped[int | None] = mapped_column(ForeignKey("dealers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(128))
    playbook: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16), default="marketing")
    cost_fen: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="planned")
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    # The journey that proposed this touch, and the channels its step allows in order of
    # preference ("wecom,sms"): the contact policy picks one of them and sets ``channel``.
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"), index=True)
    channels: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(12))
    # When the touch was first proposed: a deferral moves ``scheduled_at`` to the next allowed
    # slot, not this, so the contact policy can drop a touch that has waited too long.
    proposed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


# The contact policy reads the day's candidates and the month's sends by status and time. The
# month's usage and the 90-day response rates need only the other three columns: with them in
# the index, those two reads never fetch a touch row.
Index(
    "ix_touches_status_scheduled",
    Touch.status,
    Touch.scheduled_at,
    Touch.channel,
    Touch.customer_id,
    Touch.priority,
)
# Receipts and callbacks find their touch by the provider's message id.
Index("ix_touches_provider_message_id", Touch.provider_message_id)


class TouchStatus(Base):
    """Status history of a touch: planned, sent, delivered, failed, opened, clicked, replied …"""

    __tablename__ = "touch_status_history"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    touch_id: Mapped[int] = mapped_column(ForeignKey("touches.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str | None] = mapped_column(Text)


class Task(Timestamped, Base):
    """Human work: a call, a WeCom chat, a complaint follow-up, for a role with an SLA."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    dealer_id: Mapped[int | None] = mapped_column(ForeignKey("dealers.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(256))
    script: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="open")
    outcome: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The journey step that created the task; ``template`` names its call script there.
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"), index=True)
    playbook: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(12))
    # When the contact policy reviewed this call (null: not yet); a call it stopped (holdout,
    # open complaint, no consent, a cap) is ``cancelled``.
    planned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


# The policy finds the calls it has not reviewed, and counts the month's calls by their moment.
Index("ix_tasks_planned_at", Task.planned_at)
Index("ix_tasks_created_at", Task.created_at)


class ImportRun(Base):
    """The import log: one row per file imported, with its counts and quarantine file."""

    __tablename__ = "import_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(String(512))
    file_sha256: Mapped[str] = mapped_column(String(64))
    encoding: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # running / done / failed
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    merged: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    quarantine_file: Mapped[str | None] = mapped_column(String(512))
    error: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Audit trail: consents, sends, data access. Append-only."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class CustomerProfile(Base):
    """The latest profile of a customer (features that do not move by themselves every day).

    The full profile, including day counts relative to the business date, lives in the
    analytical snapshot; this table is what the operational side (playbooks, the web app)
    reads. Written in bulk by ``baoke profiles refresh``, only for rows that changed.
    """

    __tablename__ = "customer_profiles"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    # The business date of the refresh that last changed this row (unchanged rows are not
    # rewritten); segment_definitions.evaluated_on is the date of the latest refresh.
    as_of: Mapped[dt.date] = mapped_column(Date)
    is_owner: Mapped[bool] = mapped_column(Boolean)
    # No indexes on tier or stage: a handful of values over millions of rows makes an index
    # that costs every daily write and that no query can use well (segments answer "who").
    value_tier: Mapped[str | None] = mapped_column(String(8))
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    spend_12m_fen: Mapped[int] = mapped_column(BigInteger)
    visits_12m: Mapped[int] = mapped_column(Integer)
    last_visit_date: Mapped[dt.date | None] = mapped_column(Date)
    first_maintenance_done: Mapped[bool | None] = mapped_column(Boolean)
    next_maintenance_due_date: Mapped[dt.date | None] = mapped_column(Date)
    next_maintenance_due_km: Mapped[int | None] = mapped_column(Integer)
    insurance_expiry: Mapped[dt.date | None] = mapped_column(Date)
    warranty_end: Mapped[dt.date | None] = mapped_column(Date)
    upgrade_intent: Mapped[int | None] = mapped_column(SmallInteger)
    upgrade_reasons: Mapped[str | None] = mapped_column(Text)
    churn_risk: Mapped[int | None] = mapped_column(SmallInteger)
    churn_reasons: Mapped[str | None] = mapped_column(Text)
    open_complaint: Mapped[bool] = mapped_column(Boolean)
    sms_reachable: Mapped[bool] = mapped_column(Boolean)
    wecom_reachable: Mapped[bool] = mapped_column(Boolean)
    push_reachable: Mapped[bool] = mapped_column(Boolean)
    email_reachable: Mapped[bool] = mapped_column(Boolean)
    phone_reachable: Mapped[bool] = mapped_column(Boolean)
    tags: Mapped[str | None] = mapped_column(Text)  # JSON array text
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), nullable=False
    )


class SegmentDefinition(Timestamped, Base):
    """A segment or auto-tag rule as it was last evaluated (built-in or from a rule file)."""

    __tablename__ = "segment_definitions"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # segment / tag
    source: Mapped[str] = mapped_column(String(256))
    sql: Mapped[str] = mapped_column(Text)
    members: Mapped[int] = mapped_column(Integer, default=0)
    evaluated_on: Mapped[dt.date | None] = mapped_column(Date)


class SegmentMembership(Base):
    """One stay of a customer in a segment: entered, and exited (null while still a member).

    Playbooks trigger on entry, so the history is kept rather than only the current members.
    """

    __tablename__ = "segment_memberships"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    entered_on: Mapped[dt.date] = mapped_column(Date)
    exited_on: Mapped[dt.date | None] = mapped_column(Date)


# The daily run turns the records of the last days into events: it finds them by these dates
# (a full scan of a million vehicles or consents every day would be the slowest part of it).
Index("ix_vehicles_delivery_date", Vehicle.delivery_date)
Index("ix_leads_lost_on", Lead.lost_on)
Index("ix_consents_withdrawn_at", Consent.withdrawn_at)
Index("ix_wecom_relations_added_at", WecomRelation.added_at)
Index("ix_wecom_relations_deleted_at", WecomRelation.deleted_at)

# The journeys' daily questions: who entered or left a segment on a day, whose profile
# changed lately (a customer who became lost). Small per day, so indexed, not scanned.
Index("ix_segment_memberships_entered_on", SegmentMembership.entered_on)
Index("ix_segment_memberships_exited_on", SegmentMembership.exited_on)
Index("ix_customer_profiles_as_of", CustomerProfile.as_of)

# At most one open stay per customer and segment: a refresh that is replayed after a crash
# cannot open a second one. The exit update finds the open stay through it too.
Index(
    "uq_segment_memberships_open",
    SegmentMembership.segment,
    SegmentMembership.customer_id,
    unique=True,
    sqlite_where=SegmentMembership.exited_on.is_(None),
    postgresql_where=SegmentMembership.exited_on.is_(None),
)


class PlaybookVersion(Base):
    """Every version of a playbook that ever enrolled someone, with its text.

    A journey runs to its end on the version it enrolled in, so a changed playbook never
    strands a customer on a step that no longer exists.
    """

    __tablename__ = "playbook_versions"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(12), primary_key=True)
    source: Mapped[str] = mapped_column(String(256))
    definition: Mapped[str] = mapped_column(Text)  # the YAML as it was
    first_seen_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now()
    )


class PlaybookState(Base):
    """An operator's switch on a playbook (``baoke playbooks disable|enable``)."""

    __tablename__ = "playbook_states"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)


class Journey(Base):
    """One customer's way through one playbook: where they are and when to look again.

    ``status`` is active (``step`` runs at ``wake_at``), paused (an open complaint, say),
    holdout (kept out for measurement; goals are still recorded), completed or exited.
    ``seq`` counts the decisions taken; the next touch or task is keyed ``j<id>:<seq>``, so
    evaluating the same moment twice can never create a second one.
    """

    __tablename__ = "journeys"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # playbook:customer:trigger:occurrence. Enrolling the same occurrence twice is a no-op.
    enrolment_key: Mapped[str] = mapped_column(String(200), unique=True)
    playbook: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(12))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    dealer_id: Mapped[int | None] = mapped_column(ForeignKey("dealers.id"))
    trigger: Mapped[str] = mapped_column(String(64))
    trigger_ref: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(12))
    step: Mapped[str | None] = mapped_column(String(64))
    step_since: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    wake_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    enrolled_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(64))
    goal_met: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), nullable=False
    )


# The daily advance reads "active and due"; the entry rules read a customer's journeys.
Index("ix_journeys_due", Journey.status, Journey.wake_at)
Index("ix_journeys_customer_playbook", Journey.customer_id, Journey.playbook)


class JourneyDecision(Base):
    """One decision of a journey: what was done at which step, when, and why."""

    __tablename__ = "journey_decisions"
    __table_args__ = (UniqueConstraint("journey_id", "seq"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"))
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    touch_id: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[int | None] = mapped_column(BigInteger)


class Event(Base):
    """Something that happened to a customer (or to a model, for price and stock events).

    Events arrive by ``baoke events ingest`` or the API, or are derived from imported
    records by the daily run; ``processed_at`` is set once the journeys have reacted.
    """

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attributes: Mapped[str | None] = mapped_column(Text)  # JSON object text
    source: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_events_pending", Event.processed_at, Event.occurred_at)


class JourneyRun(Base):
    """The log of daily runs and event batches: what was advanced up to when, and counts."""

    __tablename__ = "journey_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # daily / events
    run_date: Mapped[dt.date | None] = mapped_column(Date)
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # running / done / failed
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class PolicyDecision(Base):
    """What the contact policy decided for one candidate touch or call on one date, and why.

    ``outcome`` is scheduled, deferred, rerouted or suppressed; ``rule`` names the rule that
    decided (``cap.tier``, ``quiet_hours``, ``consent`` …) and ``reason`` says it with the
    numbers (``cap: high tier 10/month reached (10 sent since 2026-11-01)``).
    """

    __tablename__ = "policy_decisions"
    __table_args__ = (
        UniqueConstraint("touch_id", "plan_date"),
        UniqueConstraint("task_id", "plan_date"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # One of the two: the touch, or the call task, decided.
    touch_id: Mapped[int | None] = mapped_column(ForeignKey("touches.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    plan_date: Mapped[dt.date] = mapped_column(Date)
    playbook: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(128))
    priority: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(12))
    rule: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(16))
    send_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cost_fen: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


# The plan summary reads a date; `baoke plan explain` reads one customer's decisions.
Index("ix_policy_decisions_plan_date", PolicyDecision.plan_date)
Index("ix_policy_decisions_customer", PolicyDecision.customer_id, PolicyDecision.plan_date)


class OutboxEntry(Base):
    """A scheduled touch waiting to be sent: the dispatcher's work queue.

    One row per touch (the touch's idempotency key travels with it to the provider), due at
    the send time the contact policy chose.
    """

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    touch_id: Mapped[int] = mapped_column(ForeignKey("touches.id"), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), nullable=False
    )
    # The send batch the emergency monitor watches and a pause names: plan day and playbook.
    batch: Mapped[str | None] = mapped_column(String(96))
    # A claim: who holds the row and until when. A row still 'sending' after its lease is a
    # dispatcher that died mid-batch; the next one reconciles it with the provider.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The provider a claim went to and the reference sent with the request (OutId …), written
    # before the request so a restart asks the same provider about the same reference.
    provider: Mapped[str | None] = mapped_column(String(32))
    send_ref: Mapped[str | None] = mapped_column(String(64))
    # When the dispatcher settled the row (sent, failed, suppressed …): the monitor's clock.
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


Index("ix_outbox_due", OutboxEntry.status, OutboxEntry.due_at)
Index("ix_outbox_batch", OutboxEntry.batch, OutboxEntry.status)
# The 1-3-5 monitor reads the last minutes of sends, not every send ever made.
Index("ix_outbox_finished", OutboxEntry.status, OutboxEntry.finished_at)


class ShortLink(Base):
    """A per-touch short link (``/s/<code>``): where it goes and how often it was clicked."""

    __tablename__ = "short_links"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    touch_id: Mapped[int] = mapped_column(ForeignKey("touches.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(16), default="link")  # link / unsubscribe
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    first_clicked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DispatchPause(Base):
    """An emergency stop: the whole dispatch, one channel or one batch, until resumed."""

    __tablename__ = "dispatch_pauses"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))  # all / channel / batch
    target: Mapped[str | None] = mapped_column(String(96))
    reason: Mapped[str] = mapped_column(Text)
    paused_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    paused_by: Mapped[str] = mapped_column(String(64))
    resumed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resumed_by: Mapped[str | None] = mapped_column(String(64))


def table(model: type[Base]) -> Table:
    """The Core table of a model, typed as a Table (for bulk statements)."""
    found = model.__table__
    assert isinstance(found, Table)
    return found
