"""Each ticket's mail leaves as the mailbox it came in through: the ticket and each outgoing mail name it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("mailbox", sa.String(255), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("mailbox", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("mailbox")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_column("mailbox")
