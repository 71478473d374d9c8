"""Costs, time worked and the evidence of each step: a row per Cost: line (its amount as exact decimal text),
per Time: line, and per file a command mail carried

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ticketd.storage.models

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cost_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("ticket.id"), nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agent.id"), nullable=False),
        sa.Column("via_message_id", sa.String(998), nullable=True),
        sa.Column("at", ticketd.storage.models.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_cost_entry_ticket_id", "cost_entry", ["ticket_id"])
    op.create_table(
        "time_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("ticket.id"), nullable=False),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agent.id"), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("via_message_id", sa.String(998), nullable=True),
        sa.Column("at", ticketd.storage.models.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_time_entry_ticket_id", "time_entry", ["ticket_id"])
    op.create_index("ix_time_entry_agent_id", "time_entry", ["agent_id"])
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("ticket.id"), nullable=False),
        sa.Column("attachment_id", sa.Integer(), sa.ForeignKey("attachment.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("via_message_id", sa.String(998), nullable=True),
        sa.Column("at", ticketd.storage.models.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_evidence_ticket_id", "evidence", ["ticket_id"])
    op.create_index("ix_evidence_attachment_id", "evidence", ["attachment_id"])


def downgrade() -> None:
    op.drop_table("evidence")
    op.drop_table("time_entry")
    op.drop_table("cost_entry")
