"""The organisation's own stages per ticket type, and child and linked tickets

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.add_column(sa.Column("stage", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("stage_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("stage_due", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("stage_breached_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_ticket_parent_id", "ticket", ["parent_id"], ["id"])
        batch_op.create_index("ix_ticket_parent_id", ["parent_id"])
    op.create_table(
        "ticket_link",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("ticket.id"), nullable=False),
        sa.Column("other_id", sa.Integer(), sa.ForeignKey("ticket.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("ticket_id", "other_id", name="uq_ticket_link_pair"),
    )
    op.create_index("ix_ticket_link_other_id", "ticket_link", ["other_id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_link_other_id", table_name="ticket_link")
    op.drop_table("ticket_link")
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.drop_index("ix_ticket_parent_id")
        batch_op.drop_constraint("fk_ticket_parent_id", type_="foreignkey")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("stage_breached_at")
        batch_op.drop_column("stage_due")
        batch_op.drop_column("stage_since")
        batch_op.drop_column("stage")
