"""Who does what when several daemons share one database, decided by the database's own locks.

- Each instance holds a lock for its life: on PostgreSQL a session advisory lock on a connection of its own,
  on SQLite an exclusive ``flock`` on ``<database>.lock``. Dying (even by SIGKILL) releases it: the kernel
  closes the socket or the file. SQLite has one writer and no row locks, so a second instance is refused.
- Each mailbox is polled by one instance at a time: the holder of its advisory lock, held on one connection
  for all the instance's mailbox locks (``MailboxLocks``), so a holder that dies hands the mailbox to
  whichever instance asks next (within ``LOCK_RETRY_SECONDS``). Instances share the mailboxes out: none
  takes more than its share (the mailboxes divided by the instances alive, rounded up), and one holding more
  than that, because others started after it, gives the extra ones up. On SQLite the one instance holds every mailbox.
- Stored mail, outgoing mail and due timers are claimed row by row with ``FOR UPDATE SKIP LOCKED`` where the
  work is done (``pipeline``, ``outbox``, ``sweep``); nothing here keeps a list of who has what.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import sqlalchemy as sa
import structlog
from sqlmodel import col

from ticketd.storage.db import session_scope, shared
from ticketd.storage.models import Instance, MailboxState, utcnow

log = structlog.get_logger("ticketd.coordination")

INSTANCE_LOCK = 0x74696B31  # advisory lock class ids ("tik1", "tik2"): ticketd's own, apart from other apps'
MAILBOX_LOCK = 0x74696B32
LOCK_RETRY_SECONDS = 2.0  # how often an instance asks for a mailbox someone else holds
SEEN_EVERY_SECONDS = 10.0


class AlreadyRunning(Exception):
    """A second instance on SQLite: refused before it touches anything."""


class LeaseLost(Exception):
    """The connection holding a mailbox's lock is gone: someone else may be polling it now."""


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def sqlite_lock_path(engine: sa.Engine) -> Path | None:
    database = engine.url.database
    return Path(f"{database}.lock") if database and database != ":memory:" else None


def _unlock_all_and_close(conn: sa.Connection) -> None:
    """Closing only returns a connection to the pool, its session's advisory locks and all: unlock first."""
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        conn.close()


class MailboxLocks:
    """Every mailbox lock of one instance, on one connection of its own (PostgreSQL).

    A connection per held mailbox took one from the pool each: with a few dozen mailboxes the pool was spent on
    locks and the work waited for connections (30 mailboxes stalled the daemon, measured). Session advisory
    locks on one connection behave the same: the instance dying closes it and frees every mailbox at once. A
    connection lost meanwhile loses all its locks; ``generation`` tells a lease taken on an earlier connection
    that it is gone."""

    def __init__(self, connect: Callable[[], sa.Connection]) -> None:
        self._connect = connect
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()  # a connection is used by one thread at a time
        self.generation = 0

    def try_lock(self, key: int) -> int | None:
        """The generation the lock was taken in, or None when another instance holds it."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
                self.generation += 1
            try:
                got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"),
                                         {"c": MAILBOX_LOCK, "k": key}).scalar_one()
            except sa.exc.SQLAlchemyError:
                self._drop()
                raise
            return self.generation if got else None

    def check(self, name: str, generation: int) -> None:
        with self._lock:
            if self._conn is None or generation != self.generation:
                raise LeaseLost(f"lock connection for mailbox {name!r} lost: replaced since")
            try:
                self._conn.execute(sa.text("SELECT 1"))
            except sa.exc.SQLAlchemyError as exc:
                self._drop()
                raise LeaseLost(f"lock connection for mailbox {name!r} lost: {exc}") from exc

    def unlock(self, key: int, generation: int) -> None:
        with self._lock:
            if self._conn is None or generation != self.generation:
                return  # its connection is gone, and the lock with it
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), {"c": MAILBOX_LOCK, "k": key})
            except sa.exc.SQLAlchemyError:
                self._drop()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                _unlock_all_and_close(self._conn)
                self._conn = None

    def invalidate(self) -> None:
        """The connection dropped, as when the database restarts under us (and in tests)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.invalidate()
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()
            self._conn = None


@dataclass
class MailboxLease:
    """The right to poll one mailbox, for as long as the lock connection it was taken on (PostgreSQL) stays."""

    name: str
    locks: MailboxLocks | None = None
    generation: int = 0
    on_release: Callable[[str], None] | None = None

    def check(self) -> None:
        if self.locks is not None:
            self.locks.check(self.name, self.generation)

    def release(self) -> None:
        if self.on_release is not None:
            self.on_release(self.name)
            self.on_release = None
        if self.locks is not None:
            self.locks.unlock(lock_key(self.name), self.generation)
            self.locks = None


class Coordinator:
    """This instance's identity and locks."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.id = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._conn: sa.Connection | None = None
        self._file: IO[str] | None = None
        self._seen = 0.0
        self._stopped = False
        self.mailbox_count = 1  # how many mailboxes the config has: the share is computed from it
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._alive: tuple[float, int] = (0.0, 1)  # (when counted, instances alive)
        self.locks = MailboxLocks(self._lock_connection)

    def start(self) -> Coordinator:
        """Take the instance lock and register; raises AlreadyRunning (SQLite) with the reason."""
        db_pid = None
        if shared(self.engine):
            self._conn = self._lock_connection()
            self._conn.execute(sa.text("SELECT pg_advisory_lock(:c, :k)"), {"c": INSTANCE_LOCK, "k": lock_key(self.id)})
            db_pid = self._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        else:
            self._file = self._lock_file()
        with session_scope(self.engine) as session:
            session.add(Instance(id=self.id, hostname=socket.gethostname()[:255], pid=os.getpid(), db_pid=db_pid))
        log.info("instance.started", instance=self.id, backend=self.engine.dialect.name)
        return self

    def _lock_connection(self) -> sa.Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _lock_file(self) -> IO[str] | None:
        path = sqlite_lock_path(self.engine)
        if path is None:
            return None
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another ticketd instance ({holder}) is already running on {self.engine.url.database}. "
                "SQLite serves one instance; to run several, use PostgreSQL "
                '(database.url = "postgresql+psycopg://…").') from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, instance {self.id}\n")
        handle.flush()
        return handle

    def instances_alive(self) -> int:
        """Instances holding their lock now (PostgreSQL), counted at most every ``LOCK_RETRY_SECONDS``."""
        if not shared(self.engine):
            return 1
        counted_at, alive = self._alive
        if time.monotonic() - counted_at >= LOCK_RETRY_SECONDS:
            alive = max(1, len(live_locks(self.engine)[0]))
            self._alive = (time.monotonic(), alive)
        return alive

    def share(self) -> int:
        return -(-self.mailbox_count // self.instances_alive())

    def may_take(self) -> bool:
        with self._lock:
            held = len(self._held)
        return held < self.share()

    def should_give_up(self, name: str) -> bool:
        """Holding more than the share: the last mailbox by name goes, one at a time, so the count settles."""
        with self._lock:
            held = sorted(self._held)
        return len(held) > self.share() and name == held[-1]

    def released(self, name: str) -> None:
        with self._lock:
            self._held.discard(name)

    def try_mailbox(self, name: str) -> MailboxLease | None:
        """The mailbox's lease if nobody else holds it; recorded for ``ticketd status``."""
        lease = MailboxLease(name, on_release=self.released)
        if shared(self.engine):
            with self._lock:
                if name in self._held:  # ours already (a session lock is re-entrant: it would count twice)
                    return None
            generation = self.locks.try_lock(lock_key(name))
            if generation is None:
                return None
            lease.locks, lease.generation = self.locks, generation
        with session_scope(self.engine) as session:
            state = session.get(MailboxState, name) or MailboxState(mailbox=name)
            state.holder, state.held_since = self.id, utcnow()
            session.add(state)
        with self._lock:
            self._held.add(name)
        log.info("mailbox.taken", mailbox=name, instance=self.id)
        return lease

    def seen(self, monotonic_now: float) -> None:
        """The main loop's turn, written at most every ``SEEN_EVERY_SECONDS``."""
        if monotonic_now - self._seen < SEEN_EVERY_SECONDS:
            return
        self._seen = monotonic_now
        with session_scope(self.engine) as session:
            session.execute(sa.update(Instance).where(col(Instance.id) == self.id).values(seen_at=utcnow()))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(sa.exc.SQLAlchemyError), session_scope(self.engine) as session:
            session.execute(sa.update(Instance).where(col(Instance.id) == self.id).values(stopped_at=utcnow()))
        self.locks.close()
        if self._conn is not None:
            _unlock_all_and_close(self._conn)
            self._conn = None
        if self._file is not None:
            self._file.close()  # closing the file drops the flock
            self._file = None
        log.info("instance.stopped", instance=self.id)


def live_locks(engine: sa.Engine) -> tuple[set[int], set[int]]:
    """(instance keys, mailbox keys) whose advisory locks are held right now (PostgreSQL)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT classid::bigint, objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND classid IN (:i, :m)"),
            {"i": INSTANCE_LOCK, "m": MAILBOX_LOCK}).all()
    return ({int(o) for c, o in rows if int(c) == INSTANCE_LOCK}, {int(o) for c, o in rows if int(c) == MAILBOX_LOCK})


def sqlite_instance_running(engine: sa.Engine) -> bool:
    """Whether the lock file is held: a probe that takes a shared lock and drops it at once."""
    path = sqlite_lock_path(engine)
    if path is None or not path.exists():
        return False
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
