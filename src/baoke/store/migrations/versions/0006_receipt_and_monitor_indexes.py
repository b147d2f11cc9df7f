"""indexes for receipt matching and the dispatch monitor

Receipts and provider callbacks look a touch up by ``provider_message_id``; the 1-3-5 monitor
reads the outbox rows finished in its window. Without these both read every row ever sent.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_touches_provider_message_id", "touches", ["provider_message_id"])
    op.create_index("ix_outbox_finished", "outbox", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_finished", table_name="outbox")
    op.drop_index("ix_touches_provider_message_id", table_name="touches")
