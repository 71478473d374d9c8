"""Inbound raw bytes in a table of their own: an UPDATE of an inbound row no longer rewrites the mail

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_raw",
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound.id"]),
        sa.PrimaryKeyConstraint("inbound_id"),
    )
    # Purged rows (raw_purged_at set) held empty bytes: they get no row, as purging now leaves none.
    op.execute("INSERT INTO inbound_raw (inbound_id, raw) SELECT id, raw FROM inbound WHERE raw_purged_at IS NULL")
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL): no batch copy of the table, and its partial index stays as is.
    op.execute("ALTER TABLE inbound DROP COLUMN raw")


def downgrade() -> None:
    op.add_column("inbound", sa.Column("raw", sa.LargeBinary(), nullable=True))  # purged rows: NULL, not empty
    op.execute("UPDATE inbound SET raw = (SELECT raw FROM inbound_raw WHERE inbound_raw.inbound_id = inbound.id) "
               "WHERE id IN (SELECT inbound_id FROM inbound_raw)")
    op.drop_table("inbound_raw")
