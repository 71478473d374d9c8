"""Inbound mail handed over by LMTP keeps its envelope recipients; every inbound row names its channel

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain added nullable column: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("inbound", sa.Column("recipients", sa.String(), nullable=True))
    # Rows from before this revision came by IMAP or `ticketd deliver`; "imap" is the likelier of the two.
    op.add_column("inbound", sa.Column("channel", sa.String(8), nullable=False, server_default="imap"))


def downgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("recipients")
        batch.drop_column("channel")
