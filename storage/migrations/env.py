"""Alembic environment: the engine comes from ticketd's config (passed in by storage.db), never from a URL here."""

from alembic import context
from sqlmodel import SQLModel

from ticketd.storage import models  # noqa: F401  (registers the tables)

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
