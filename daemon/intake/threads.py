"""One thread per mailbox: take its lease, connect, store new mail, wait (IDLE or polling), again.

Intake never processes mail: it stores and commits the raw bytes, moves them out of the inbox and wakes the
main loop, which processes whatever is stored (by any instance) and sends. So an IMAP outage never stops
processing or sending, a slow mailbox never holds up another, and a mailbox whose holder died is taken over
by the next instance that asks for it. Each thread reconnects with capped exponential backoff and never dies
of a server's error.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlmodel import Session, func, select

from ticketd.daemon.config.mailboxes import Mailbox
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.coordination import LOCK_RETRY_SECONDS, Coordinator, LeaseLost, MailboxLease
from ticketd.daemon.service.metrics import Metrics
from ticketd.storage.models import Inbound

log = structlog.get_logger("ticketd.intake")

RECONNECT_MIN = 1.0
RECONNECT_MAX = 300.0
INTAKE_CHUNK = 200  # messages taken from the inbox per poll
STORED_AHEAD = 1000  # with this many stored and waiting, the inbox stays the queue until processing catches up


@dataclass
class IntakeState:
    """What ``systemctl status`` shows about a mailbox: an error until the next good poll."""

    held: bool = False
    error: str | None = None


class MailboxIntake:
    """One mailbox's thread. ``metrics`` and ``connections`` are the daemon's: its ``ticketd_imap_connected``
    series is labelled with the mailbox's name, and its reconnects reuse the daemon's OAuth2 token."""

    def __init__(self, engine: sa.Engine, mailbox: Mailbox, max_bytes: int, coordinator: Coordinator,
                 wake: Callable[[], None], metrics: Metrics, connections: Connections) -> None:
        self.engine, self.mailbox, self.max_bytes = engine, mailbox, max_bytes
        self.coordinator, self.wake = coordinator, wake
        self.metrics, self.connections = metrics, connections
        self.state = IntakeState()
        self._checked = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"intake:{mailbox.name}", daemon=True)

    def start(self) -> MailboxIntake:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        lease: MailboxLease | None = None
        client: IMAPClient | None = None
        delay = RECONNECT_MIN
        cfg = self.mailbox.imap
        try:
            while not self._stop.is_set():
                if lease is not None and self._give_up(lease):
                    self._close(client)
                    lease, client = None, None
                    self._stop.wait(LOCK_RETRY_SECONDS)
                    continue
                if lease is None:
                    lease = self._take_lease()
                    if lease is None:
                        self._stop.wait(LOCK_RETRY_SECONDS)
                        continue
                try:
                    lease.check()
                    if client is None:
                        client = poller.connect(cfg, self.connections)
                        self._report(connected=True)
                        log.info("imap.connected", host=cfg.host, folder=cfg.folder, mailbox=self.mailbox.name)
                    if self._stored_ahead():
                        self._stop.wait(0.5)  # processing is behind: leave the rest in the inbox meanwhile
                        continue
                    result = poller.poll_once(client, self.engine, cfg, self.max_bytes, limit=INTAKE_CHUNK,
                                              mailbox=self.mailbox.name)
                    self.state.error = None
                    delay = RECONNECT_MIN
                    if result.stored:
                        self.wake()
                    if result.remaining:
                        continue
                    poller.wait_for_mail(client, cfg, self._interrupted)
                except LeaseLost as exc:
                    log.warning("mailbox.lease_lost", mailbox=self.mailbox.name, error=str(exc))
                    lease.release()
                    self._close(client)
                    lease, client = None, None
                    self.state.held = False
                except (IMAPClientError, OSError) as exc:
                    log.error("imap.error", error=str(exc), mailbox=self.mailbox.name, retry_in=round(delay, 1))
                    self._report(connected=False)
                    self.state.error = f"IMAP unreachable ({exc}); retrying in {round(delay)} s"
                    self._close(client)
                    client = None
                    self._stop.wait(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, RECONNECT_MAX)
                except sa.exc.SQLAlchemyError as exc:  # the database is away: keep the mail in the inbox
                    log.error("intake.database_error", error=str(exc), mailbox=self.mailbox.name)
                    self._stop.wait(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
        finally:
            self._close(client)
            if lease is not None:
                lease.release()

    def _interrupted(self) -> bool:
        """Stop waiting for mail: asked to stop, or another instance should have this mailbox now."""
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if now - self._checked < LOCK_RETRY_SECONDS:
            return False
        self._checked = now
        try:
            return self.coordinator.should_give_up(self.mailbox.name)
        except sa.exc.SQLAlchemyError:
            return False

    def _give_up(self, lease: MailboxLease) -> bool:
        try:
            if self._stop.is_set() or not self.coordinator.should_give_up(self.mailbox.name):
                return False
        except sa.exc.SQLAlchemyError:
            return False
        log.info("mailbox.handed_over", mailbox=self.mailbox.name, detail="more instances run now: sharing out")
        lease.release()
        self.state.held = False
        return True

    def _take_lease(self) -> MailboxLease | None:
        try:
            if not self.coordinator.may_take():
                return None
            lease = self.coordinator.try_mailbox(self.mailbox.name)
        except sa.exc.SQLAlchemyError as exc:
            log.error("mailbox.lock_failed", mailbox=self.mailbox.name, error=str(exc))
            return None
        self.state.held = lease is not None
        return lease

    def _stored_ahead(self) -> bool:
        with Session(self.engine) as session:
            waiting = session.exec(select(func.count()).select_from(
                select(Inbound.id).where(Inbound.status == "new").limit(STORED_AHEAD).subquery())).one()
        return waiting >= STORED_AHEAD

    def _close(self, client: IMAPClient | None) -> None:
        """Log out; the gauge says so at once, whether the server failed or the lease went to another instance."""
        if client is not None:
            poller.close(client)
            self._report(connected=False)
        return None

    def _report(self, connected: bool) -> None:
        """The mailbox's ``ticketd_imap_connected`` series. A stopping intake leaves it alone: after a reload its
        successor for the same mailbox may already be writing it (a dropped mailbox's series the runner removes)."""
        if not self._stop.is_set():
            self.metrics.mailbox_connected(self.mailbox.name, connected)


def start_all(engine: sa.Engine, mailboxes: list[Mailbox], max_bytes: int, coordinator: Coordinator,
              wake: Callable[[], None], metrics: Metrics, connections: Connections) -> list[MailboxIntake]:
    coordinator.mailbox_count = max(1, len(mailboxes))
    return [MailboxIntake(engine, box, max_bytes, coordinator, wake, metrics, connections).start()
            for box in mailboxes]


def stop_all(intakes: list[MailboxIntake]) -> None:
    for intake in intakes:
        intake._stop.set()
    deadline = time.monotonic() + 10
    for intake in intakes:
        intake.stop(max(0.1, deadline - time.monotonic()))
