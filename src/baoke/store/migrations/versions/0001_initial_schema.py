"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:28:44.105000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "dealers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("brand", sa.String(length=64), nullable=True),
        sa.Column("city", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=256), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dealers")),
        sa.UniqueConstraint("code", name=op.f("uq_dealers_code")),
    )
    with op.batch_alter_table("dealers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dealers_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "import_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("file_name", sa.String(length=512), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("encoding", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("quarantine_file", sa.String(length=512), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_runs")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mobile", sa.String(length=20), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("title", sa.String(length=8), nullable=True),
        sa.Column("gender", sa.String(length=8), nullable=True),
        sa.Column("email", sa.String(length=128), nullable=True),
        sa.Column("city", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("contact_from", sa.Time(), nullable=True),
        sa.Column("contact_to", sa.Time(), nullable=True),
        sa.Column(
            "home_dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("mobile_status", sa.String(length=16), nullable=False),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["home_dealer_id"], ["dealers.id"], name=op.f("fk_customers_home_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("mobile", name=op.f("uq_customers_mobile")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customers_home_dealer_id"), ["home_dealer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_customers_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "staff",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("staff_no", sa.String(length=32), nullable=False),
        sa.Column(
            "dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("mobile", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=128), nullable=True),
        sa.Column("wecom_userid", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("departed_on", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_staff_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("staff_no", name=op.f("uq_staff_staff_no")),
        sa.UniqueConstraint("wecom_userid", name=op.f("uq_staff_wecom_userid")),
    )
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_staff_dealer_id"), ["dealer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_staff_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "behaviour_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_behaviour_events_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_behaviour_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_behaviour_events_event_key")),
    )
    with op.batch_alter_table("behaviour_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_behaviour_events_customer_time", ["customer_id", "occurred_at"], unique=False
        )

    op.create_table(
        "complaints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("complaint_no", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "owner_staff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("satisfaction", sa.SmallInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_complaints_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_complaints_dealer_id_dealers")
        ),
        sa.ForeignKeyConstraint(
            ["owner_staff_id"], ["staff.id"], name=op.f("fk_complaints_owner_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("complaint_no", name=op.f("uq_complaints_complaint_no")),
    )
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_complaints_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_complaints_dealer_id"), ["dealer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_complaints_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "consents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("basis", sa.String(length=32), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_consents_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint(
            "customer_id", "channel", "purpose", name=op.f("uq_consents_customer_id")
        ),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "customer_identities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("customer_no", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_identities_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_customer_identities_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_identities")),
        sa.UniqueConstraint(
            "dealer_id", "customer_no", name=op.f("uq_customer_identities_dealer_id")
        ),
    )
    with op.batch_alter_table("customer_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_identities_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_customer_identities_updated_at"), ["updated_at"], unique=False
        )

    op.create_table(
        "leads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lead_no", sa.String(length=64), nullable=False),
        sa.Column(
            "dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("mobile", sa.String(length=20), nullable=True),
        sa.Column("model_of_interest", sa.String(length=128), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lost_reason", sa.String(length=32), nullable=True),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("lost_on", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_leads_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_leads_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint("lead_no", name=op.f("uq_leads_lead_no")),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_leads_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_dealer_id"), ["dealer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_mobile"), ["mobile"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "loyalty_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_key", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_loyalty_ledger_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_ledger")),
        sa.UniqueConstraint("entry_key", name=op.f("uq_loyalty_ledger_entry_key")),
    )
    with op.batch_alter_table("loyalty_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loyalty_ledger_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "merge_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "import_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("customer_no", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column(
            "merged_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_merge_log_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_merge_log_dealer_id_dealers")
        ),
        sa.ForeignKeyConstraint(
            ["import_run_id"],
            ["import_runs.id"],
            name=op.f("fk_merge_log_import_run_id_import_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_log")),
    )
    with op.batch_alter_table("merge_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merge_log_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_merge_log_import_run_id"), ["import_run_id"], unique=False
        )

    op.create_table(
        "referrals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("referral_no", sa.String(length=64), nullable=False),
        sa.Column(
            "referrer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "referee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("referee_name", sa.String(length=64), nullable=True),
        sa.Column("referee_mobile", sa.String(length=20), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("stage_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["referee_id"], ["customers.id"], name=op.f("fk_referrals_referee_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["customers.id"], name=op.f("fk_referrals_referrer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("referral_no", name=op.f("uq_referrals_referral_no")),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_referrer_id"), ["referrer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_referrals_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column(
            "assignee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("script", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["staff.id"], name=op.f("fk_tasks_assignee_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_tasks_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_tasks_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_tasks_idempotency_key")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_dealer_id"), ["dealer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "touches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=128), nullable=True),
        sa.Column("playbook", sa.String(length=64), nullable=True),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("cost_fen", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_touches_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_touches_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touches")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_touches_idempotency_key")),
    )
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_touches_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_touches_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "vehicles",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("vin", sa.String(length=17), nullable=False),
        sa.Column("vin_check_ok", sa.Boolean(), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("brand", sa.String(length=64), nullable=True),
        sa.Column("series", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("model_year", sa.SmallInteger(), nullable=True),
        sa.Column("plate_no", sa.String(length=16), nullable=True),
        sa.Column("purchase_date", sa.Date(), nullable=True),
        sa.Column("delivery_date", sa.Date(), nullable=True),
        sa.Column("price_fen", sa.BigInteger(), nullable=True),
        sa.Column("insurance_expiry", sa.Date(), nullable=True),
        sa.Column("warranty_end", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_vehicles_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_vehicles_dealer_id_dealers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vehicles")),
        sa.UniqueConstraint("vin", name=op.f("uq_vehicles_vin")),
    )
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vehicles_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_vehicles_dealer_id"), ["dealer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_vehicles_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "wecom_relations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("staff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_wecom_relations_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_wecom_relations_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_relations")),
        sa.UniqueConstraint(
            "staff_id", "external_userid", name=op.f("uq_wecom_relations_staff_id")
        ),
    )
    with op.batch_alter_table("wecom_relations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wecom_relations_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_wecom_relations_staff_id"), ["staff_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_wecom_relations_updated_at"), ["updated_at"], unique=False
        )

    op.create_table(
        "mileage_readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "vehicle_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("read_on", sa.Date(), nullable=False),
        sa.Column("odometer_km", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["vehicle_id"], ["vehicles.id"], name=op.f("fk_mileage_readings_vehicle_id_vehicles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mileage_readings")),
        sa.UniqueConstraint(
            "vehicle_id", "read_on", "source", name=op.f("uq_mileage_readings_vehicle_id")
        ),
    )
    op.create_table(
        "service_orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_no", sa.String(length=64), nullable=False),
        sa.Column(
            "dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "vehicle_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "advisor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("settled_on", sa.Date(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("mileage_km", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["advisor_id"], ["staff.id"], name=op.f("fk_service_orders_advisor_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_service_orders_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name=op.f("fk_service_orders_dealer_id_dealers")
        ),
        sa.ForeignKeyConstraint(
            ["vehicle_id"], ["vehicles.id"], name=op.f("fk_service_orders_vehicle_id_vehicles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_orders")),
        sa.UniqueConstraint("order_no", name=op.f("uq_service_orders_order_no")),
    )
    with op.batch_alter_table("service_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_orders_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_orders_dealer_id"), ["dealer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_orders_settled_on"), ["settled_on"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_orders_updated_at"), ["updated_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_orders_vehicle_id"), ["vehicle_id"], unique=False
        )

    op.create_table(
        "touch_status_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("touch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["touch_id"], ["touches.id"], name=op.f("fk_touch_status_history_touch_id_touches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touch_status_history")),
    )
    with op.batch_alter_table("touch_status_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_touch_status_history_touch_id"), ["touch_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("touch_status_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touch_status_history_touch_id"))

    op.drop_table("touch_status_history")
    with op.batch_alter_table("service_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_orders_vehicle_id"))
        batch_op.drop_index(batch_op.f("ix_service_orders_updated_at"))
        batch_op.drop_index(batch_op.f("ix_service_orders_settled_on"))
        batch_op.drop_index(batch_op.f("ix_service_orders_dealer_id"))
        batch_op.drop_index(batch_op.f("ix_service_orders_customer_id"))

    op.drop_table("service_orders")
    op.drop_table("mileage_readings")
    with op.batch_alter_table("wecom_relations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wecom_relations_updated_at"))
        batch_op.drop_index(batch_op.f("ix_wecom_relations_staff_id"))
        batch_op.drop_index(batch_op.f("ix_wecom_relations_customer_id"))

    op.drop_table("wecom_relations")
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vehicles_updated_at"))
        batch_op.drop_index(batch_op.f("ix_vehicles_dealer_id"))
        batch_op.drop_index(batch_op.f("ix_vehicles_customer_id"))

    op.drop_table("vehicles")
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touches_updated_at"))
        batch_op.drop_index(batch_op.f("ix_touches_customer_id"))

    op.drop_table("touches")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_updated_at"))
        batch_op.drop_index(batch_op.f("ix_tasks_dealer_id"))
        batch_op.drop_index(batch_op.f("ix_tasks_customer_id"))

    op.drop_table("tasks")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_updated_at"))
        batch_op.drop_index(batch_op.f("ix_referrals_referrer_id"))

    op.drop_table("referrals")
    with op.batch_alter_table("merge_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merge_log_import_run_id"))
        batch_op.drop_index(batch_op.f("ix_merge_log_customer_id"))

    op.drop_table("merge_log")
    with op.batch_alter_table("loyalty_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loyalty_ledger_customer_id"))

    op.drop_table("loyalty_ledger")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leads_updated_at"))
        batch_op.drop_index(batch_op.f("ix_leads_mobile"))
        batch_op.drop_index(batch_op.f("ix_leads_dealer_id"))
        batch_op.drop_index(batch_op.f("ix_leads_customer_id"))

    op.drop_table("leads")
    with op.batch_alter_table("customer_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_identities_updated_at"))
        batch_op.drop_index(batch_op.f("ix_customer_identities_customer_id"))

    op.drop_table("customer_identities")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_updated_at"))

    op.drop_table("consents")
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaints_updated_at"))
        batch_op.drop_index(batch_op.f("ix_complaints_dealer_id"))
        batch_op.drop_index(batch_op.f("ix_complaints_customer_id"))

    op.drop_table("complaints")
    with op.batch_alter_table("behaviour_events", schema=None) as batch_op:
        batch_op.drop_index("ix_behaviour_events_customer_time")

    op.drop_table("behaviour_events")
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_updated_at"))
        batch_op.drop_index(batch_op.f("ix_staff_dealer_id"))

    op.drop_table("staff")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_updated_at"))
        batch_op.drop_index(batch_op.f("ix_customers_home_dealer_id"))

    op.drop_table("customers")
    op.drop_table("import_runs")
    with op.batch_alter_table("dealers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dealers_updated_at"))

    op.drop_table("dealers")
    op.drop_table("audit_log")
