"""Engine, sessions and schema upgrades.

SQLite runs in WAL mode with a busy timeout so the CLI can read while the daemon writes; foreign keys are on
because SQLite leaves them off by default. PostgreSQL goes through psycopg 3 (``postgresql+psycopg://``; a plain
``postgresql://`` URL means the same), with a small pool whose connections are checked before use, so a database
restart costs a reconnect rather than an error.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


def fold(value: str) -> str:
    """Lower case for searching: Turkish "İ" lowers to "i" plus a combining dot, which is dropped so "ÇİĞDEM"
    finds "Çiğdem"."""
    return value.lower().replace("\u0307", "")


def _lower(value: object) -> object:
    return fold(value) if isinstance(value, str) else value


def shared(bind: sa.Engine | sa.Connection) -> bool:
    """Whether several instances may work on this database at once (PostgreSQL), so work must be claimed and
    conversations locked; SQLite has one instance, and skips all of that."""
    return bind.dialect.name == "postgresql"


# Over this, SQLite gets a blob by incremental I/O: a bound blob is copied by the driver (and that copy is kept in
# its statement cache until the statement runs again), then again into the record SQLite builds, so a 15 MB
# attachment cost 45 MiB. Written into a zeroblob in 1 MiB pieces it costs nothing beyond the caller's bytes.
LARGE_BYTES = 1024 * 1024


def insert_new(conn: sa.Connection, table: sa.Table, values: dict[str, Any], key: str | tuple[str, ...],
               large: str | None = None) -> bool:
    """Insert unless a row with the same ``key`` (a column, or several) exists (``ON CONFLICT DO NOTHING``); True
    if this one did.

    Two instances meeting the same new customer at once: the second waits for the first's commit and then adds
    nothing, instead of failing the whole batch on the unique key. ``large`` names a bytes column that may be big
    (an attachment, a raw mail), written on SQLite without being copied (``LARGE_BYTES``).
    """
    if conn.dialect.name == "postgresql":  # each dialect's own INSERT … ON CONFLICT, imported where it is used
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]  # the same ON CONFLICT API
    keys = [key] if isinstance(key, str) else list(key)
    data = values.get(large) if large else None
    streamed = conn.dialect.name == "sqlite" and isinstance(data, bytes) and len(data) > LARGE_BYTES
    # The values go as parameters, not into the statement: SQLAlchemy's compiled-statement cache keeps the first
    # statement of each shape, values and all, for the life of the process (a 15 MB attachment, forever).
    params = {name: value for name, value in values.items() if not (streamed and name == large)}
    columns: dict[str, Any] = {name: sa.bindparam(name) for name in params}
    if streamed:
        columns[str(large)] = sa.func.zeroblob(sa.bindparam("large_size"))
        params["large_size"] = len(data)  # type: ignore[arg-type]  # streamed: data is bytes
    # RETURNING says whether this insert made the row (what a conflict gives as ``rowcount`` is driver-specific:
    # psycopg says -1) and, for a blob to write, where it is (SQLite's rowid).
    stmt = (insert(table).values(columns).on_conflict_do_nothing(index_elements=keys)
            .returning(sa.literal_column("rowid") if streamed else table.c[keys[0]]))
    made = conn.execute(stmt, params).first()
    if made is None:
        return False
    if streamed:
        assert isinstance(data, bytes) and large is not None
        write_blob(conn, table.name, large, int(made[0]), data)
    return True


def write_blob(conn: sa.Connection, table: str, column: str, rowid: int, data: bytes) -> None:
    """Fill a zeroblob of ``len(data)`` bytes in place (SQLite's incremental blob I/O, in this transaction)."""
    dbapi = conn.connection.dbapi_connection
    view = memoryview(data)
    with dbapi.blobopen(table, column, rowid) as blob:  # type: ignore[union-attr]  # SQLite's; the connection is open
        for at in range(0, len(view), LARGE_BYTES):
            blob.write(view[at:at + LARGE_BYTES])


def read_blob(conn: sa.Connection, table: str, column: str, rowid: int) -> bytes:
    """One value read straight from its pages into one bytes object (SQLite's incremental blob I/O); a SELECT
    assembles the value in SQLite's memory before the driver copies it. Raises sqlite3.OperationalError when the
    row does not exist."""
    dbapi = conn.connection.dbapi_connection
    with dbapi.blobopen(table, column, rowid, readonly=True) as blob:  # type: ignore[union-attr]  # as in write_blob
        return bytes(blob.read())


def insert_shared(conn: sa.Connection, table: sa.Table, values: dict[str, Any], key: str,
                  large: str | None = None) -> None:
    """``insert_new`` for rows any mail may need (a customer, an attachment's bytes), committed at once on a
    connection of its own on PostgreSQL. Inside the batch's transaction, two instances whose batches need the same
    two new customers in opposite orders would wait on each other's uncommitted rows: a deadlock, and both
    batches redone. Such a row is harmless without the mail that led to it. SQLite has one writer: in the batch."""
    if not shared(conn):
        insert_new(conn, table, values, key, large)
        return
    with conn.engine.connect() as own:
        insert_new(own, table, values, key, large)
        own.commit()


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # SQLite's own lower() folds ASCII only: "MÜŞTERİ" would never match "müşteri" in a search.
            dbapi_conn.create_function("lower", 1, _lower, deterministic=True)

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # psycopg 3 is the driver ticketd ships
    # A daemon holds one connection for its instance lock and one per mailbox it polls (advisory locks live as long
    # as their connection), and at busy moments uses one for the main loop, one per sending lane (4), one per
    # intake thread and one for the timers: up to 20 per instance; each CLI run one. Size PostgreSQL's
    # max_connections for that. connect_timeout: an unreachable server fails in seconds (`deliver` exits 75, the
    # loop backs off), not minutes.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=30, pool_recycle=1800,
                         connect_args={"connect_timeout": 10, "application_name": "ticketd"})


def reachable(engine: sa.Engine) -> bool:
    """Whether the database answers now. After a failure this tells the database's fault (wait for it; the mail
    stays as it is) from one mail's (quarantine that mail, go on with the others)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False


def display_url(url: str) -> str:
    """The URL for messages and logs: a password in it is masked."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(engine: sa.Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig  # alembic: only for an upgrade (see schema_is_current)

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("ticketd.storage") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def head_revisions() -> set[str]:
    """The newest migrations: those no other revises, read from the scripts' own ``revision`` and
    ``down_revision`` assignments."""
    revises: dict[str, set[str]] = {}
    for script in (resources.files("ticketd.storage") / "migrations" / "versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("_"):
            continue
        found: dict[str, Any] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign | ast.Assign):
                targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value:
                        found[target.id] = ast.literal_eval(node.value)
        down = found.get("down_revision")
        revises[str(found["revision"])] = set() if down is None else {down} if isinstance(down, str) else set(down)
    return set(revises) - set().union(*revises.values())


def schema_is_current(engine: sa.Engine) -> bool:
    """The database is at the newest migration. Read without alembic, which cost every `ticketd run` 10 MiB of
    resident memory for this one question; `head_revisions` is held to alembic's own answer by a unit test."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False
        current = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
    return current == head_revisions()
