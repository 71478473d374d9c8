"""Personal data that can be erased: erased customers and tickets are marked, purged raw mail is marked

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain added nullable columns: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("customer", sa.Column("erased_at", sa.DateTime(), nullable=True))
    op.add_column("ticket", sa.Column("erased_at", sa.DateTime(), nullable=True))
    op.add_column("inbound", sa.Column("raw_purged_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("raw_purged_at")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_column("erased_at")
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("erased_at")
