"""Outgoing mail records what caused it (inbound mail, an agent, a timer) and what it announces

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Only mail that answers inbound mail automatically is held back by the storm caps; an agent's action or a timer
is no loop. ``announces`` holds who an "assigned to …" mail names, so a later change can supersede it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # named in full: the AutoString columns below reach it as an attribute
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(length=8), server_default="inbound",
                                      nullable=False))
        batch_op.add_column(sa.Column("announces", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True))
    # Before this column only the agent's own words went out as not automatic; every other mail answered mail.
    op.execute(sa.text("UPDATE outbox SET cause = 'agent' WHERE NOT automatic"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE outbox SET status = 'suppressed' WHERE status = 'superseded'"))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("announces")
        batch_op.drop_column("cause")
