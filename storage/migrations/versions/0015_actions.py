"""Action items on tickets and outside them (improvement actions)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # named in full: the AutoString columns below reach it as an attribute
from alembic import op

import ticketd.storage.models

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "action_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("due", ticketd.storage.models.UTCDateTime(), nullable=False),
        sa.Column("customer", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("required", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("created_at", ticketd.storage.models.UTCDateTime(), nullable=False),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("closed_at", ticketd.storage.models.UTCDateTime(), nullable=True),
        sa.Column("remind_at", ticketd.storage.models.UTCDateTime(), nullable=True),
        sa.Column("reminders", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["agent.id"]),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_action_item_ticket_id", "action_item", ["ticket_id"])
    op.create_index("ix_action_item_owner_id", "action_item", ["owner_id"])
    op.create_index("ix_action_item_status", "action_item", ["status"])
    op.create_index("ix_action_item_remind_at", "action_item", ["remind_at"])


def downgrade() -> None:
    op.drop_index("ix_action_item_remind_at", table_name="action_item")
    op.drop_index("ix_action_item_status", table_name="action_item")
    op.drop_index("ix_action_item_owner_id", table_name="action_item")
    op.drop_index("ix_action_item_ticket_id", table_name="action_item")
    op.drop_table("action_item")
