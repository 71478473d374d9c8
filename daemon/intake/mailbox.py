"""One mailbox as intake sees it, and the steps a worker takes for it: take its lease, connect, store and move its
mail, and leave it in IDLE, or closed when it is polled.

Intake never processes mail: it stores and commits the raw bytes, moves them out of the inbox and wakes the main
loop, which processes whatever is stored (by any instance) and sends. So an IMAP outage never stops processing or
sending, a slow mailbox never holds up another, and a mailbox whose holder died is taken over by the next instance
that asks for it. A step never lets a server's error out: it records it on the mailbox, which is tried again after
a backoff that doubles up to ``RECONNECT_MAX``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlmodel import Session, col, func, select

from ticketd.daemon.config import IntakeConfig
from ticketd.daemon.config.mailboxes import Mailbox
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.intake.plan import Login, login_of
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.coordination import LOCK_RETRY_SECONDS, Coordinator, LeaseLost, MailboxLease
from ticketd.daemon.service.metrics import Metrics
from ticketd.storage.db import session_scope
from ticketd.storage.models import Inbound, MailboxState, utcnow

log = structlog.get_logger("ticketd.intake")

RECONNECT_MIN = 1.0
RECONNECT_MAX = 300.0
INTAKE_CHUNK = 200  # messages taken from a folder per step; a bigger backlog waits for the mailbox's next turn
STORED_AHEAD = 1000  # with this many stored and waiting, the inbox stays the queue until processing catches up
ACTIVITY_HALF_LIFE = 3600.0  # how busy a mailbox is: the mail stored, each counting half after an hour


@dataclass
class IntakeState:
    """What ``systemctl status`` shows about a mailbox: an error until the next good look."""

    held: bool = False
    error: str | None = None


class MailboxIntake:
    """One mailbox's intake. The scheduler's thread owns it, except while a worker runs a step for it (``busy``),
    never both: so nothing here needs a lock."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.login: Login = login_of(mailbox)
        self.state = IntakeState()
        self.lease: MailboxLease | None = None
        self.client: IMAPClient | None = None
        self.watched = False  # the plan: IDLE on a connection of its own (else polled)
        self.can_idle = mailbox.imap.idle  # false once the server turns out not to offer IDLE
        self.idling = False  # ``client`` is in IDLE and its socket is the scheduler's to watch
        self.pushed = False  # the server announced new mail on this connection by itself
        self.silent = False  # the server left mail on this connection unannounced (logged once per connection)
        self.reached = False  # the last attempt to log in worked (the next success after a failure is logged)
        # NOTIFY (RFC 5465): the login's polled folders this connection tells of besides its own (the scheduler's
        # choice), what is set on the connection now, whether the server takes it, and the folders it told of.
        self.notify: tuple[str, ...] = ()
        self.notified: tuple[str, ...] = ()
        self.can_notify = True
        self.news: set[str] = set()
        self.give_up = False  # another instance should have it: release the lease at its next turn
        self.busy = False
        self.counted = False  # its connection counts towards its login's cap
        self.delay = RECONNECT_MIN
        self.due = 0.0  # monotonic time of its next step
        self.idle_since = 0.0
        self.looked_at = 0.0  # the last good look at its folder (``ticketd status``'s last poll)
        self.activity = 0.0
        self._activity_at = time.monotonic()
        # The scheduler's own: its timers' generation (older ones are void), the socket it watches while the
        # mailbox idles, whether the server announced mail there, and whether news of it came during a step.
        self.turn = 0
        self.socket: socket.socket | None = None
        self.announced = False
        self.again = False

    @property
    def name(self) -> str:
        return self.mailbox.name

    def busyness(self, now: float) -> float:
        return self.activity * math.pow(0.5, (now - self._activity_at) / ACTIVITY_HALF_LIFE)

    def stored(self, count: int, now: float) -> None:
        self.activity, self._activity_at = self.busyness(now) + count, now


class Steps:
    """What a worker does for one mailbox (or, for polled mailboxes, for several of one login on one connection).
    Each step leaves the mailbox's next due time in ``due``, or the mailbox in IDLE."""

    def __init__(self, engine: sa.Engine, max_bytes: int, coordinator: Coordinator, wake: Callable[[], None],
                 metrics: Metrics, connections: Connections, settings: IntakeConfig,
                 stopping: threading.Event) -> None:
        self.engine, self.max_bytes, self.coordinator, self.wake = engine, max_bytes, coordinator, wake
        self.metrics, self.connections, self.settings, self.stopping = metrics, connections, settings, stopping

    # --- the lease ---------------------------------------------------------------------------------------------

    def take(self, box: MailboxIntake) -> None:
        now = time.monotonic()
        try:
            lease = self.coordinator.try_mailbox(box.name) if self.coordinator.may_take() else None
        except sa.exc.SQLAlchemyError as exc:
            log.error("mailbox.lock_failed", mailbox=box.name, error=str(exc))
            lease = None
        box.lease, box.state.held = lease, lease is not None
        box.due = now if lease is not None else now + LOCK_RETRY_SECONDS

    def release(self, box: MailboxIntake, handed_over: bool = False) -> None:
        """Log out and let the lease go: at stop, or because another instance should have the mailbox now."""
        self._close(box)
        if box.lease is not None:
            box.lease.release()
            box.lease = None
        box.state.held, box.give_up = False, False
        if handed_over:
            log.info("mailbox.handed_over", mailbox=box.name, detail="more instances run now: sharing out")
        box.due = time.monotonic() + LOCK_RETRY_SECONDS

    # --- a watched mailbox ---------------------------------------------------------------------------------------

    def watch(self, box: MailboxIntake, pushed: bool) -> None:
        """Bring a watched mailbox back into IDLE with nothing left in its folder: out of IDLE (the server announced
        mail, or the renewal is due), a look, whatever is there stored and moved, a look again, IDLE."""
        self._guarded(box, lambda: self._watch(box, pushed))

    def _watch(self, box: MailboxIntake, pushed: bool) -> None:
        cfg = box.mailbox.imap
        assert box.lease is not None
        box.lease.check()
        client, must_poll = box.client, True
        if client is not None and box.idling:
            box.idling = False
            _, responses = client.idle_done()
            box.news |= poller.folders_with_news(responses) | poller.news_left(client)  # NOTIFY's, as IDLE ended
            pushed = pushed or poller.announces_new_mail(responses)
            must_poll = pushed
            if not pushed:
                must_poll, told = poller.news(client)
                box.news |= told
            if pushed:
                box.pushed = True
            elif must_poll and not box.silent:
                box.silent = True
                log.info("imap.idle_silent", mailbox=box.name, renew_seconds=self.settings.idle_renew_seconds,
                         detail="the server did not announce new mail under IDLE; it is looked for at each renewal")
        if client is None:
            client = box.client = self._connect(box)
            box.pushed = box.silent = False
            box.can_idle = poller.offers_idle(client, cfg)
            box.can_notify, box.notified = client.has_capability("NOTIFY"), ()
        box.looked_at = time.monotonic()
        while True:
            while must_poll:
                if not self._poll(box, client):
                    return
                must_poll = poller.mail_waiting(client)
            box.state.error, box.delay = None, RECONNECT_MIN
            if not (box.watched and box.can_idle):
                box.news |= poller.news_left(client)
                self._close(box)
                box.due = time.monotonic() + cfg.poll_seconds
                return
            if box.can_notify and box.notify != box.notified:
                box.can_notify = poller.notify(client, box.notify, replacing=bool(box.notified))
                box.notified = box.notify
            if not poller.start_idle(client):
                break
            _, responses = client.idle_done()  # mail came as IDLE began: fetched now, not at the renewal
            box.news |= poller.folders_with_news(responses)
            must_poll = True
        box.news |= poller.news_left(client)  # NOTIFY's, from the poll's answers and before IDLE's go-ahead
        box.idling, box.idle_since = True, time.monotonic()

    def renew_after(self, box: MailboxIntake) -> float:
        period = self.settings.pushed_idle_renew_seconds if box.pushed else self.settings.idle_renew_seconds
        return min(box.mailbox.imap.poll_seconds, period)

    # --- polled mailboxes ------------------------------------------------------------------------------------------

    def poll(self, boxes: list[MailboxIntake]) -> None:
        """Polled mailboxes of one login, one folder after the other on one connection, logged out after."""
        try:
            client = poller.connect(boxes[0].mailbox.imap, self.connections)
        except Exception as exc:
            for box in boxes:
                self._failed(box, exc)
            return
        try:
            for index, box in enumerate(boxes):
                self._report(box, True)
                if not box.reached:
                    log.info("imap.connected", host=box.mailbox.imap.host, folder=box.mailbox.imap.folder,
                             mailbox=box.name, watched=False)
                    box.reached = True
                if not self._guarded(box, functools.partial(self._poll_polled, box, client)):
                    for rest in boxes[index + 1:]:  # the connection may be broken: theirs is the next turn
                        rest.due = time.monotonic()
                    break
        finally:
            poller.close(client)

    def _poll_polled(self, box: MailboxIntake, client: IMAPClient) -> None:
        assert box.lease is not None
        box.lease.check()
        if self._poll(box, client):
            box.looked_at = time.monotonic()
            box.due = time.monotonic() + box.mailbox.imap.poll_seconds

    # --- shared -----------------------------------------------------------------------------------------------------

    def _poll(self, box: MailboxIntake, client: IMAPClient) -> bool:
        """Store and move one chunk; False (with ``due`` set) when the mailbox should give the worker up first."""
        if self._stored_ahead():
            box.due = time.monotonic() + 0.5  # processing is behind: leave the rest in the inbox meanwhile
            return False
        result = poller.poll_once(client, self.engine, box.mailbox.imap, self.max_bytes, limit=INTAKE_CHUNK,
                                  mailbox=box.name)
        box.news |= result.news
        box.state.error, box.delay = None, RECONNECT_MIN
        if result.stored:
            box.stored(result.stored, time.monotonic())
            self.wake()
        if result.remaining:
            box.due = time.monotonic()  # more is waiting: again at once, after the mailboxes already due
            return False
        return True

    def _connect(self, box: MailboxIntake) -> IMAPClient:
        cfg = box.mailbox.imap
        client = poller.connect(cfg, self.connections)
        self._report(box, True)
        box.reached = True
        log.info("imap.connected", host=cfg.host, folder=cfg.folder, mailbox=box.name, watched=True)
        return client

    def _guarded(self, box: MailboxIntake, step: Callable[[], None]) -> bool:
        try:
            step()
            return True
        except Exception as exc:
            self._failed(box, exc)
            return False

    def _failed(self, box: MailboxIntake, exc: Exception) -> None:
        now, delay = time.monotonic(), box.delay
        if isinstance(exc, LeaseLost):
            log.warning("mailbox.lease_lost", mailbox=box.name, error=str(exc))
            self.release(box)
            box.due = now
            return
        if isinstance(exc, IMAPClientError | OSError):
            log.error("imap.error", error=str(exc), mailbox=box.name, retry_in=round(delay, 1))
            self._report(box, False)
            box.state.error = f"IMAP unreachable ({exc}); retrying in {round(delay)} s"
            box.reached = False
            self._close(box)
            delay *= random.uniform(0.8, 1.2)
        elif isinstance(exc, sa.exc.SQLAlchemyError):  # the database is away: keep the mail in the inbox
            log.error("intake.database_error", error=str(exc), mailbox=box.name)
        else:
            log.error("intake.failed", error=repr(exc), mailbox=box.name, retry_in=round(delay, 1), exc_info=exc)
            box.state.error = f"intake failed ({exc!r}); retrying in {round(delay)} s"
            self._close(box)
        box.due = now + delay
        box.delay = min(box.delay * 2, RECONNECT_MAX)

    def _stored_ahead(self) -> bool:
        with Session(self.engine) as session:
            waiting = session.exec(select(func.count()).select_from(
                select(Inbound.id).where(Inbound.status == "new").limit(STORED_AHEAD).subquery())).one()
        return waiting >= STORED_AHEAD

    def _close(self, box: MailboxIntake) -> None:
        """Log out; the gauge says so at once, whether the server failed or the lease went to another instance."""
        client, box.client = box.client, None
        if client is None:
            return
        if box.idling:
            box.idling = False
            with contextlib.suppress(IMAPClientError, OSError):
                client.idle_done()
        poller.close(client)
        self._report(box, False)

    def _report(self, box: MailboxIntake, connected: bool) -> None:
        """The mailbox's ``ticketd_imap_connected`` series. A stopping intake leaves it alone: after a reload its
        successor for the same mailbox may already be writing it (a dropped mailbox's series the runner removes)."""
        if not self.stopping.is_set():
            self.metrics.mailbox_connected(box.name, connected)

    # --- for every mailbox ------------------------------------------------------------------------------------------

    def chores(self, held: list[str], looked: list[str]) -> list[str]:
        """Which held mailboxes to hand over (more instances run now), and the last look at each mailbox looked at
        since the last time, for ``ticketd status``: one write for all of them instead of one per look."""
        try:
            leaving = [name for name in held if self.coordinator.should_give_up(name)]
        except sa.exc.SQLAlchemyError:
            leaving = []
        if looked:
            with contextlib.suppress(sa.exc.SQLAlchemyError), session_scope(self.engine) as session:
                session.execute(sa.update(MailboxState).where(col(MailboxState.mailbox).in_(looked))
                                .values(last_poll_at=utcnow()))
        return leaving
