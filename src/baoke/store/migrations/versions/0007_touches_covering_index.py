"""the contact policy's touch reads answered from the index alone

Every plan reads the month's touches by status and time (caps, budgets) and the last 90 days'
(response rates by tier and channel): with the channel, customer and priority in the index
SQLite no longer fetches each touch row, which halves both reads.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_WIDE = ["status", "scheduled_at", "channel", "customer_id", "priority"]


def upgrade() -> None:
    op.drop_index("ix_touches_status_scheduled", table_name="touches")
    op.create_index("ix_touches_status_scheduled", "touches", _WIDE)


def downgrade() -> None:
    op.drop_index("ix_touches_status_scheduled", table_name="touches")
    op.create_index("ix_touches_status_scheduled", "touches", ["status", "scheduled_at"])
