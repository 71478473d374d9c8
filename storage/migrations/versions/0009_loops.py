"""Outgoing mail records whether it answers mail that itself answered an automatic mail of ours

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

The circuit breaker counts only such mail (two robots answering each other), never the volume of fresh
requests: a burst of new customers after an outage is answered in full.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers_automatic", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("answers_automatic")
