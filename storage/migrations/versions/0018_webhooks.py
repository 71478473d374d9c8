"""Events out: the webhook outbox, written in the transaction of the change

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Events already written are history, not news: they are added as sent (false), and only then does the
    # column's default become true, so that every event written from now on waits for the webhook sender.
    with op.batch_alter_table("event") as table:
        table.add_column(sa.Column("webhook_pending", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("event") as table:
        table.alter_column("webhook_pending", existing_type=sa.Boolean(), existing_nullable=False,
                           server_default=sa.true())
    op.create_index("ix_event_webhook_pending", "event", ["id"], sqlite_where=sa.text("webhook_pending"),
                    postgresql_where=sa.text("webhook_pending"))
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False, unique=True),
        sa.Column("webhook", sa.String(200), nullable=False),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("event.id"), nullable=False),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("ticket.id"), nullable=True),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_webhook_delivery_event_id", "webhook_delivery", ["event_id"])
    op.create_index("ix_webhook_delivery_status", "webhook_delivery", ["status"])
    op.create_index("ix_webhook_delivery_chain", "webhook_delivery", ["webhook", "ticket_id", "event_id"])


def downgrade() -> None:
    op.drop_table("webhook_delivery")
    op.drop_index("ix_event_webhook_pending", "event")
    with op.batch_alter_table("event") as table:
        table.drop_column("webhook_pending")
