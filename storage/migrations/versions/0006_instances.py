"""Several instances sharing the work: who polls which mailbox, instances, once-per-period jobs, one ticket
per mail across mailboxes, replies found by what they answer, and ticket numbers from a sequence on PostgreSQL

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # named in full: the AutoString columns below reach it as an attribute
from alembic import op

from ticketd.storage.models import UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DONE = sa.text("status = 'done'")


def upgrade() -> None:
    with op.batch_alter_table("mailbox_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("held_since", UTCDateTime(), nullable=True))
    op.create_table(
        "instance",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hostname", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("db_pid", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "job_run",
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("instance", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", "slot"),
    )
    op.create_index("uq_inbound_done_once", "inbound", ["message_id_hash"], unique=True,
                    sqlite_where=DONE, postgresql_where=DONE)
    op.create_index("ix_message_in_reply_to", "message", ["in_reply_to"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE ticket_number_seq")
        op.execute("SELECT setval('ticket_number_seq', coalesce((SELECT max(number) FROM ticket), 0) + 1, false)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE ticket_number_seq")
    op.drop_index("ix_message_in_reply_to", table_name="message")
    op.drop_index("uq_inbound_done_once", table_name="inbound")
    op.drop_table("job_run")
    op.drop_table("instance")
    with op.batch_alter_table("mailbox_state", schema=None) as batch_op:
        batch_op.drop_column("held_since")
        batch_op.drop_column("holder")
