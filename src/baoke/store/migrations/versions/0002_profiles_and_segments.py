"""profiles and segments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:00:10.110830
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment_definitions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("evaluated_on", sa.Date(), nullable=True),
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
        sa.PrimaryKeyConstraint("name", name=op.f("pk_segment_definitions")),
    )
    with op.batch_alter_table("segment_definitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segment_definitions_updated_at"), ["updated_at"], unique=False
        )

    op.create_table(
        "customer_profiles",
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("is_owner", sa.Boolean(), nullable=False),
        sa.Column("value_tier", sa.String(length=8), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("spend_12m_fen", sa.BigInteger(), nullable=False),
        sa.Column("visits_12m", sa.Integer(), nullable=False),
        sa.Column("last_visit_date", sa.Date(), nullable=True),
        sa.Column("first_maintenance_done", sa.Boolean(), nullable=True),
        sa.Column("next_maintenance_due_date", sa.Date(), nullable=True),
        sa.Column("next_maintenance_due_km", sa.Integer(), nullable=True),
        sa.Column("insurance_expiry", sa.Date(), nullable=True),
        sa.Column("warranty_end", sa.Date(), nullable=True),
        sa.Column("upgrade_intent", sa.SmallInteger(), nullable=True),
        sa.Column("upgrade_reasons", sa.Text(), nullable=True),
        sa.Column("churn_risk", sa.SmallInteger(), nullable=True),
        sa.Column("churn_reasons", sa.Text(), nullable=True),
        sa.Column("open_complaint", sa.Boolean(), nullable=False),
        sa.Column("sms_reachable", sa.Boolean(), nullable=False),
        sa.Column("wecom_reachable", sa.Boolean(), nullable=False),
        sa.Column("push_reachable", sa.Boolean(), nullable=False),
        sa.Column("email_reachable", sa.Boolean(), nullable=False),
        sa.Column("phone_reachable", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_profiles_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_profiles")),
    )

    op.create_table(
        "segment_memberships",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("entered_on", sa.Date(), nullable=False),
        sa.Column("exited_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_segment_memberships_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_memberships")),
    )
    with op.batch_alter_table("segment_memberships", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segment_memberships_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "uq_segment_memberships_open",
            ["segment", "customer_id"],
            unique=True,
            sqlite_where=sa.text("exited_on IS NULL"),
            postgresql_where=sa.text("exited_on IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("segment_memberships", schema=None) as batch_op:
        batch_op.drop_index("uq_segment_memberships_open")
        batch_op.drop_index(batch_op.f("ix_segment_memberships_customer_id"))

    op.drop_table("segment_memberships")
    op.drop_table("customer_profiles")
    with op.batch_alter_table("segment_definitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segment_definitions_updated_at"))

    op.drop_table("segment_definitions")
