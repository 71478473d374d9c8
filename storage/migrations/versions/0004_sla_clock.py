"""SLA clock: pause while pending, breaches fired once

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ticketd.storage.models import UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_paused_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("sla_paused_seconds", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("first_response_breached_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("resolution_breached_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("resolution_breached_at")
        batch_op.drop_column("first_response_breached_at")
        batch_op.drop_column("sla_paused_seconds")
        batch_op.drop_column("sla_paused_at")
