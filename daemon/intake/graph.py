"""Graph intake: a Microsoft 365 folder's new mail, stored raw and committed, then moved to the processed folder.

As with IMAP, the folder is the work queue and nothing is lost: a message is moved only after its row is
committed, so a failure in between leaves it in the folder *and* stored, and the next poll recognises it and only
moves it. New mail is found by the folder's delta query; a round's ``@odata.deltaLink`` is kept (``DeltaCursor``)
only once every message the round listed is stored and moved, so a round cut short (an error, a crash) is listed
again from the previous link, and a restart (no link) or a poll stopped at its ``limit`` lists the whole folder
next, which holds only what is still to be done. Graph has no IDLE: the thread polls every ``poll_seconds``.
(Change notifications would need a public HTTPS endpoint for Microsoft to call, which a helpdesk daemon behind a
firewall does not have.)

The key that makes storing idempotent is the Graph message id, kept in the IMAP columns without a schema change:
``uidvalidity`` 0, which no IMAP server gives (RFC 3501 makes UIDVALIDITY a non-zero number), and ``uid`` the
first 63 bits of the id's SHA-256, under the unique key (mailbox, uidvalidity, uid). Two ids of one mailbox share
a uid with a chance of about n²/2⁶⁴ (10⁻⁸ for 500,000 messages); the second would then be moved unstored, which a
column of its own for the id would rule out (see the report of this change).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from ticketd.daemon.config.graph import GraphConfig
from ticketd.daemon.intake.mailbox import INTAKE_CHUNK, RECONNECT_MAX, RECONNECT_MIN, STORED_AHEAD, IntakeState
from ticketd.daemon.service.coordination import LOCK_RETRY_SECONDS, Coordinator, LeaseLost, MailboxLease
from ticketd.daemon.service.graph import GraphClient, GraphError, GraphPermanent, MimeDownload
from ticketd.daemon.service.metrics import Metrics
from ticketd.storage.db import session_scope
from ticketd.storage.inbound import OVERSIZE_PREFIX, store_inbound, store_inbound_many, truncated_message
from ticketd.storage.models import Inbound, MailboxState, utcnow

log = structlog.get_logger("ticketd.graph_intake")

GRAPH_UIDVALIDITY = 0  # the mark of a Graph row: never an IMAP server's UIDVALIDITY
CHANNEL = "graph"
GROUP_BYTES = 16 * 1024 * 1024  # downloaded mail stored (one commit) and moved at least this often


def graph_uid(message_id: str) -> int:
    """The Graph id's place in the ``uid`` column: 63 bits of its SHA-256 (a BIGINT is signed)."""
    return int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class DeltaCursor:
    """Where the next poll of one folder starts: the delta link of the last round finished whole (None: list the
    whole folder). Kept by the intake for its life; a restart lists the folder again, which costs one listing."""

    link: str | None = None


@dataclass
class GraphPollResult:
    stored: int = 0
    moved: int = 0
    already_stored: int = 0  # stored by an earlier poll that failed before moving them: only moved now
    gone: int = 0  # listed, then deleted or moved by someone else before we got to them
    remaining: bool = False  # the round stopped at ``limit``: more is waiting


def poll_graph_once(client: GraphClient, engine: sa.Engine, cfg: GraphConfig, max_bytes: int, mailbox_name: str,
                    cursor: DeltaCursor | None = None, limit: int | None = None) -> GraphPollResult:
    """Store and move what the folder's delta lists; returns what was done. Raises ``GraphTransient`` or
    ``GraphPermanent`` (having kept everything done before the failure), and the database's errors.

    A message over ``max_bytes`` is stored as its headers and the first ``OVERSIZE_PREFIX`` bytes of its body
    (``X-Ticketd-Truncated``), and the whole of it stays in the processed folder, as IMAP intake does; Graph gives
    no size before the download, so the download stops keeping bytes at the limit."""
    cursor = cursor if cursor is not None else DeltaCursor()
    result = GraphPollResult()
    processed = client.folder_id(cfg.processed_folder, create=True)
    link = cursor.link or client.delta_start(client.folder_id(cfg.folder))
    restarted = False
    while True:
        try:
            page = client.delta_page(link)
        except GraphPermanent as exc:
            if exc.status != 410 or restarted:
                raise
            # The sync state expired (Graph keeps it for a while only): list the whole folder again.
            log.info("graph.delta_reset", mailbox=mailbox_name, code=exc.code)
            cursor.link, restarted = None, True
            link = client.delta_start(client.folder_id(cfg.folder))
            continue
        processed = _handle(client, engine, mailbox_name, page.ids, processed, cfg, max_bytes, result)
        if limit is not None and result.moved >= limit and page.next_link:
            # The round is left unfinished. The next poll lists the folder afresh: it holds only what is left,
            # where the old delta link would page through every message moved out since.
            result.remaining, cursor.link = True, None
            break
        if page.next_link:
            link = page.next_link
            continue
        cursor.link = page.delta_link
        break
    _remember(engine, mailbox_name)
    if result.stored or result.moved or result.gone:
        log.info("graph.polled", mailbox=mailbox_name, folder=cfg.folder, stored=result.stored, moved=result.moved,
                 already_stored=result.already_stored, gone=result.gone)
    return result


def _handle(client: GraphClient, engine: sa.Engine, name: str, ids: list[str], processed: str, cfg: GraphConfig,
            max_bytes: int, result: GraphPollResult) -> str:
    """One page: what is stored already is only moved; the rest is downloaded, stored and committed in groups, each
    group moved after its commit. Returns the processed folder's id (looked up again if it went away)."""
    if not ids:
        return processed
    uids = {message_id: graph_uid(message_id) for message_id in dict.fromkeys(ids)}
    with Session(engine) as session:
        known = set(session.exec(select(Inbound.uid).where(
            Inbound.mailbox == name, Inbound.uidvalidity == GRAPH_UIDVALIDITY, col(Inbound.uid).in_(uids.values()))))
    group: list[tuple[str, bytes]] = []
    held = 0
    for message_id, uid in uids.items():
        if uid in known:
            result.already_stored += 1
            processed = _move(client, message_id, processed, cfg, result)
            continue
        try:
            download = client.download_mime(message_id, max_bytes)
        except GraphPermanent as exc:
            if exc.status != 404:
                raise
            result.gone += 1  # ErrorItemNotFound: deleted or moved by someone else since the listing
            continue
        raw = download.data if download.complete else _truncated(download)
        group.append((message_id, raw))
        held += len(raw)
        if held >= GROUP_BYTES:
            processed = _store_and_move(client, engine, name, group, processed, cfg, result)
            group, held = [], 0
    if group:
        processed = _store_and_move(client, engine, name, group, processed, cfg, result)
    return processed


def _truncated(download: MimeDownload) -> bytes:
    data = download.data
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if not ends:  # a header block longer than the limit: hostile, kept as far as it goes
        return truncated_message(data, b"", download.size)
    cut, gap = min(ends)
    return truncated_message(data[:cut], data[cut + gap:cut + gap + OVERSIZE_PREFIX], download.size)


def _store_and_move(client: GraphClient, engine: sa.Engine, name: str, group: list[tuple[str, bytes]],
                    processed: str, cfg: GraphConfig, result: GraphPollResult) -> str:
    result.stored += _store_group(engine, name, group)
    for message_id, _ in group:  # only after the group's rows are committed
        processed = _move(client, message_id, processed, cfg, result)
    return processed


def _store_group(engine: sa.Engine, name: str, group: list[tuple[str, bytes]]) -> int:
    """One commit for the group; if another poll stored some meanwhile, one commit per message."""
    mails = [(graph_uid(message_id), raw) for message_id, raw in group]
    try:
        with session_scope(engine) as session:
            rows = store_inbound_many(session, mails, name, GRAPH_UIDVALIDITY, channel=CHANNEL)
    except IntegrityError:
        return sum(_store_one(engine, name, message_id, raw) for message_id, raw in group)
    for (message_id, _), row in zip(group, rows, strict=True):
        log.info("inbound.stored", inbound_id=row.id, message_id=row.message_id, graph_id=message_id[-16:],
                 size=row.size, mailbox=name)
    return len(rows)


def _store_one(engine: sa.Engine, name: str, message_id: str, raw: bytes) -> bool:
    try:
        with session_scope(engine) as session:
            row = store_inbound(session, raw, name, GRAPH_UIDVALIDITY, graph_uid(message_id), channel=CHANNEL)
            log.info("inbound.stored", inbound_id=row.id, message_id=row.message_id, graph_id=message_id[-16:],
                     size=row.size, mailbox=name)
        return True
    except IntegrityError:  # stored already by a concurrent poll: the unique key is the guard
        return False


def _move(client: GraphClient, message_id: str, processed: str, cfg: GraphConfig, result: GraphPollResult) -> str:
    """Move one stored message out of the queue; a missing processed folder (deleted under us) is made again."""
    for attempt in (1, 2):
        try:
            client.move(message_id, processed)
            result.moved += 1
            return processed
        except GraphPermanent as exc:
            if exc.status != 404:
                raise
            if attempt == 1:  # the message or the folder is gone: look the folder up again, then try once more
                client.forget_folders()
                processed = client.folder_id(cfg.processed_folder, create=True)
    result.gone += 1  # stored, and taken out of the folder by someone else: nothing left to move
    return processed


def _remember(engine: sa.Engine, name: str) -> None:
    with session_scope(engine) as session:
        state = session.get(MailboxState, name) or MailboxState(mailbox=name)
        state.last_poll_at = utcnow()
        session.add(state)


def stored_ahead(engine: sa.Engine) -> bool:
    """Processing is this far behind: the folder stays the queue until it catches up."""
    with Session(engine) as session:
        waiting = session.exec(select(func.count()).select_from(
            select(Inbound.id).where(Inbound.status == "new").limit(STORED_AHEAD).subquery())).one()
    return waiting >= STORED_AHEAD


class GraphIntake:
    """One Graph mailbox's thread: take its lease, poll, sleep ``poll_seconds``, again; back off (capped) on errors.

    ``client`` is the mailbox's (shared with its sending, so one token serves both); ``metrics``' connected series
    for the mailbox says whether the last poll reached Graph."""

    def __init__(self, engine: sa.Engine, name: str, cfg: GraphConfig, client: GraphClient, max_bytes: int,
                 coordinator: Coordinator, wake: Callable[[], None], metrics: Metrics) -> None:
        self.engine, self.name, self.cfg, self.client, self.max_bytes = engine, name, cfg, client, max_bytes
        self.coordinator, self.wake, self.metrics = coordinator, wake, metrics
        self.state = IntakeState()
        self.cursor = DeltaCursor()
        self._checked = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"intake:{name}", daemon=True)

    def start(self) -> GraphIntake:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        lease: MailboxLease | None = None
        delay = RECONNECT_MIN
        try:
            while not self._stop.is_set():
                if lease is not None and self._give_up(lease):
                    lease = None
                    self._stop.wait(LOCK_RETRY_SECONDS)
                    continue
                if lease is None:
                    lease = self._take_lease()
                    if lease is None:
                        self._stop.wait(LOCK_RETRY_SECONDS)
                        continue
                try:
                    lease.check()
                    if stored_ahead(self.engine):
                        self._stop.wait(0.5)
                        continue
                    result = poll_graph_once(self.client, self.engine, self.cfg, self.max_bytes, self.name,
                                             self.cursor, limit=INTAKE_CHUNK)
                    self.state.error = None
                    self._report(True)
                    delay = RECONNECT_MIN
                    if result.stored:
                        self.wake()
                    if result.remaining:
                        continue
                    self._wait(self.cfg.poll_seconds)
                except LeaseLost as exc:
                    log.warning("mailbox.lease_lost", mailbox=self.name, error=str(exc))
                    lease.release()
                    lease = None
                    self.state.held = False
                except GraphError as exc:
                    # Permanent errors are retried too, at the capped pace: an admin granting the permission or
                    # fixing the mailbox should not need a restart. Retry-After longer than the client's cap
                    # is honoured here.
                    wait = max(delay, exc.retry_after or 0.0)
                    kind = "transient" if not isinstance(exc, GraphPermanent) else "permanent"
                    log.error("graph.error", mailbox=self.name, kind=kind, code=exc.code, error=exc.message,
                              retry_in=round(wait, 1))
                    self._report(False)
                    self.state.error = f"Graph {'unreachable' if kind == 'transient' else 'refused'} ({exc}); " \
                                       f"retrying in {round(wait)} s"
                    self._wait(wait * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, RECONNECT_MAX)
                except sa.exc.SQLAlchemyError as exc:  # the database is away: the mail stays in the folder
                    log.error("intake.database_error", error=str(exc), mailbox=self.name)
                    self._stop.wait(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
        finally:
            if lease is not None:
                lease.release()

    def _wait(self, seconds: float) -> None:
        """Sleep in one-second slices: a stop, or another instance due to take the mailbox, ends it early."""
        deadline = time.monotonic() + seconds
        while not self._interrupted() and time.monotonic() < deadline:
            self._stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def _interrupted(self) -> bool:
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if now - self._checked < LOCK_RETRY_SECONDS:
            return False
        self._checked = now
        try:
            return self.coordinator.should_give_up(self.name)
        except sa.exc.SQLAlchemyError:
            return False

    def _give_up(self, lease: MailboxLease) -> bool:
        try:
            if self._stop.is_set() or not self.coordinator.should_give_up(self.name):
                return False
        except sa.exc.SQLAlchemyError:
            return False
        log.info("mailbox.handed_over", mailbox=self.name, detail="more instances run now: sharing out")
        lease.release()
        self.state.held = False
        return True

    def _take_lease(self) -> MailboxLease | None:
        try:
            if not self.coordinator.may_take():
                return None
            lease = self.coordinator.try_mailbox(self.name)
        except sa.exc.SQLAlchemyError as exc:
            log.error("mailbox.lock_failed", mailbox=self.name, error=str(exc))
            return None
        self.state.held = lease is not None
        return lease

    def _report(self, connected: bool) -> None:
        if not self._stop.is_set():
            self.metrics.mailbox_connected(self.name, connected)
