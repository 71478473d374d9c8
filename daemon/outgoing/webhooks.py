"""Events out: every ticket event POSTed as signed JSON to the ``[[webhooks]]`` that want it.

The trip has three steps, each committed on its own:

1. **Written with the change.** Every event row is born ``webhook_pending`` (the column's server default), by the
   same INSERT that records it, in the transaction of the change it records: whoever writes an event (the batch's
   one INSERT before commit, a CLI's ORM ``session.add``, a part of ticketd not written yet) queues it, a rolled
   back transaction or savepoint takes it away with the event, and storage needs to know nothing of webhooks.
2. **Fanned out.** The sender takes the pending events in id order and makes one ``webhook_delivery`` per
   subscription that wants it, its JSON body fixed now (a retry sends the same bytes under the same delivery id),
   and clears the mark, in one transaction. On PostgreSQL one instance at a time does it (a transaction-level
   advisory lock), so the deliveries of a ticket are made in event order.
3. **Sent.** A delivery goes when it is due and no earlier delivery of the same ticket to the same webhook is
   still waiting (in order per ticket; a dead one no longer holds the others back). On PostgreSQL it is claimed
   with ``FOR UPDATE SKIP LOCKED`` on a connection of its own, held while it is POSTed and until its outcome is
   committed, as the mail outbox does. A 2xx answer is sent; anything else (another status, a refused
   connection, a timeout) is retried after ``backoff_seconds``, doubled each time up to ``backoff_max_seconds``,
   and after ``max_attempts`` the delivery is dead and the admin is told.

The only duplicate possible is a POST whose answer the sender did not live to commit (a crash, a kill): the
receiver sees the same ``X-Ticketd-Delivery`` twice and drops the second.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
import structlog
from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.config.webhooks import WebhookConfig, webhook_event
from ticketd.daemon.outgoing.outbox import alert_admin
from ticketd.storage import batch
from ticketd.storage.db import session_scope, shared
from ticketd.storage.models import Agent, Company, Customer, Event, Ticket, WebhookDelivery, utcnow

log = structlog.get_logger("ticketd.webhooks")

PENDING = ("queued", "failed")
FAN_OUT_CHUNK = 500
SEND_CHUNK = 100
FAN_OUT_LOCK = 0x7469636B_6877  # "tick" "hw": the advisory lock of the fan-out on PostgreSQL
DEAD_TOPIC = "undeliverable webhook events"
USER_AGENT = "ticketd-webhooks/1"

_EVENT = batch.table_of(Event)
_DELIVERY = batch.table_of(WebhookDelivery)
# Written as the partial index's own predicate: SQLite uses ix_event_webhook_pending only for exactly this term
# (``webhook_pending = 1``, what SQLAlchemy writes for the column, scanned the whole event table every turn).
_PENDING_EVENT = sa.text("event.webhook_pending")


def sign(secret: str, body: bytes) -> str:
    """``X-Ticketd-Signature``: the HMAC-SHA256 of the exact body bytes, hex, as GitHub's ``sha256=`` header."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (and the tests): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_snapshot(session: Session, ticket: Ticket) -> dict[str, Any]:
    """The ticket as the receiver needs it to act without asking back (ids as people read them)."""
    requester = batch.held(session, Customer, ticket.requester_id)
    company = batch.held(session, Company, ticket.company_id) if ticket.company_id else None
    assignee = batch.held(session, Agent, ticket.assignee_id) if ticket.assignee_id else None
    return {
        "number": ticket.number, "subject": ticket.subject, "state": ticket.state, "type": ticket.type,
        "category": ticket.category, "priority": ticket.priority, "group": ticket.group, "source": ticket.source,
        "assignee": assignee.email if assignee else None,
        "requester": requester.email if requester else None,
        "company": company.name if company else None,
        "created_at": iso(ticket.created_at), "updated_at": iso(ticket.updated_at),
        "resolution_due": iso(ticket.resolution_due), "closed_at": iso(ticket.closed_at),
    }


def body_of(delivery_id: str, event: Event, name: str, ticket: dict[str, Any]) -> str:
    """The JSON a receiver gets: compact, keys sorted, UTF-8 (the signature covers these exact bytes)."""
    return json.dumps({
        "id": delivery_id, "event": name, "at": iso(event.at), "event_id": event.id, "ticket": ticket,
        "change": {"what": event.what, "actor": event.actor, "old": event.old, "new": event.new,
                   "message_id": event.via_message_id},
    }, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def fan_out(engine: sa.Engine, hooks: Sequence[WebhookConfig]) -> int:
    """Turn pending events into deliveries (none without ``[[webhooks]]``: the mark is just cleared, so that a
    webhook added later starts from then, not from the whole history). Returns how many events it took."""
    taken = 0
    while True:
        with session_scope(engine) as session:
            conn = session.connection()
            if shared(engine):
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": FAN_OUT_LOCK})
            events = list(session.exec(select(Event).where(_PENDING_EVENT)
                                       .order_by(col(Event.id)).limit(FAN_OUT_CHUNK)))
            if not events:
                return taken
            rows: list[dict[str, Any]] = []
            now = utcnow()
            for event in events:
                name = webhook_event(event.what)
                wanting = [hook for hook in hooks if hook.wants(name)]
                ticket = session.get(Ticket, event.ticket_id) if event.ticket_id and wanting else None
                if ticket is None:
                    continue  # the system's own events (no ticket) and events nobody subscribed to
                snapshot = ticket_snapshot(session, ticket)
                for hook in wanting:
                    delivery_id = str(uuid.uuid4())
                    rows.append({"delivery_id": delivery_id, "webhook": hook.label, "event_id": event.id,
                                 "ticket_id": event.ticket_id, "event": name,
                                 "body": body_of(delivery_id, event, name, snapshot), "status": "queued",
                                 "attempts": 0, "next_attempt_at": now, "created_at": now})
            if rows:
                conn.execute(sa.insert(_DELIVERY), rows)
            conn.execute(sa.update(_EVENT).where(_EVENT.c.id.in_([e.id for e in events]))
                         .values(webhook_pending=False))
            taken += len(events)
            if rows:
                log.info("webhook.queued", events=len(events), deliveries=len(rows))


def _waiting_before() -> sa.ColumnElement[bool]:
    earlier = _DELIVERY.alias("earlier")
    return sa.exists().where(earlier.c.webhook == _DELIVERY.c.webhook, earlier.c.ticket_id == _DELIVERY.c.ticket_id,
                             earlier.c.event_id < _DELIVERY.c.event_id, earlier.c.status.in_(PENDING))


def due(conn: sa.Connection, names: Sequence[str], now: datetime, limit: int = SEND_CHUNK) -> list[sa.Row[Any]]:
    """The first waiting delivery of each (webhook, ticket) whose time has come, oldest first."""
    return list(conn.execute(
        sa.select(_DELIVERY.c.id, _DELIVERY.c.delivery_id, _DELIVERY.c.webhook, _DELIVERY.c.ticket_id,
                  _DELIVERY.c.event, _DELIVERY.c.body, _DELIVERY.c.attempts)
        .where(_DELIVERY.c.status.in_(PENDING), _DELIVERY.c.next_attempt_at <= now,
               _DELIVERY.c.webhook.in_(list(names)), ~_waiting_before())
        .order_by(_DELIVERY.c.id).limit(limit)))


_CLAIM = (sa.select(_DELIVERY.c.id)
          .where(_DELIVERY.c.id == sa.bindparam("row_id"), _DELIVERY.c.status.in_(PENDING),
                 _DELIVERY.c.next_attempt_at <= sa.bindparam("now", type_=_DELIVERY.c.next_attempt_at.type),
                 ~_waiting_before())
          .with_for_update(skip_locked=True, of=_DELIVERY))


class Outcome:
    """What one attempt came to, written back with the row's new state."""

    def __init__(self, row_id: int, webhook: str, event: str, attempts: int) -> None:
        self.row_id, self.webhook, self.event, self.attempts = row_id, webhook, event, attempts
        self.status = "sent"
        self.error: str | None = None
        self.next_attempt_at: datetime | None = None

    def failed(self, hook: WebhookConfig, error: str) -> None:
        self.attempts += 1
        self.error = error[:2000]
        if self.attempts >= hook.max_attempts:
            self.status = "dead"
            log.error("webhook.dead", delivery=self.row_id, webhook=self.webhook, webhook_event=self.event,
                      error=self.error)
            return
        self.status = "failed"
        delay = min(hook.backoff_seconds * 2 ** (self.attempts - 1), hook.backoff_max_seconds)
        self.next_attempt_at = utcnow() + timedelta(seconds=delay)
        log.warning("webhook.retry_later", delivery=self.row_id, webhook=self.webhook, error=self.error,
                    attempts=self.attempts, retry_in=delay)

    def record(self, conn: sa.Connection) -> None:
        values: dict[str, Any] = {"status": self.status, "attempts": self.attempts, "last_error": self.error}
        if self.status == "sent":
            values["sent_at"] = utcnow()
        if self.next_attempt_at is not None:
            values["next_attempt_at"] = self.next_attempt_at
        conn.execute(sa.update(_DELIVERY).where(_DELIVERY.c.id == self.row_id).values(**values))
        conn.commit()


class Unreachable(Exception):
    """The webhook's server refused the connection or did not answer in time: its other rows wait too."""


def post(http: requests.Session, hook: WebhookConfig, delivery_id: str, event: str, body: str) -> None:
    """One POST; returns on 2xx, raises ``Unreachable`` or ``RuntimeError`` with the reason otherwise."""
    data = body.encode("utf-8")
    assert hook.secret is not None
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               "X-Ticketd-Delivery": delivery_id, "X-Ticketd-Event": event,
               "X-Ticketd-Signature": sign(hook.secret.get_secret_value(), data)}
    try:
        with http.post(hook.url, data=data, headers=headers, timeout=hook.timeout_seconds, allow_redirects=False,
                       stream=True) as response:  # stream: a huge answer is never read
            if not 200 <= response.status_code < 300:
                raise RuntimeError(f"HTTP {response.status_code} {response.reason}")
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc


def send_due(engine: sa.Engine, config: Config, http: requests.Session) -> int:
    """Send what is due, a ticket's deliveries one after the other; returns how many were sent."""
    hooks = {hook.label: hook for hook in config.webhooks}
    if not hooks:
        return 0
    sent = 0
    dead: list[Outcome] = []
    while True:
        with engine.connect() as conn:
            rows = due(conn, list(hooks), utcnow())
        if not rows:
            break
        unreachable: dict[str, str] = {}
        outcomes = []
        with engine.connect() as conn:
            for row in rows:
                if shared(engine) and conn.execute(_CLAIM, {"row_id": row.id, "now": utcnow()}).first() is None:
                    conn.rollback()
                    continue  # another instance has it, or an earlier one of its ticket is on its way
                hook = hooks[row.webhook]
                outcome = Outcome(row.id, row.webhook, row.event, row.attempts)
                if row.webhook in unreachable:
                    outcome.failed(hook, unreachable[row.webhook])
                else:
                    try:
                        post(http, hook, row.delivery_id, row.event, row.body)
                    except Unreachable as exc:
                        unreachable[row.webhook] = str(exc)
                        outcome.failed(hook, str(exc))
                    except RuntimeError as exc:
                        outcome.failed(hook, str(exc))
                    else:
                        outcome.attempts += 1
                        log.info("webhook.sent", delivery=row.delivery_id, webhook=row.webhook,
                                 webhook_event=row.event, ticket_id=row.ticket_id)
                outcome.record(conn)
                outcomes.append(outcome)
        sent += sum(1 for o in outcomes if o.status == "sent")
        dead += [o for o in outcomes if o.status == "dead"]
        if not any(o.status == "sent" for o in outcomes):
            break  # the rest waits for its retry time
    if dead:
        with session_scope(engine) as session:
            alert_admin(session, config, DEAD_TOPIC, "\n".join(
                f"webhook delivery {o.row_id} ({o.event}) to {o.webhook}: {o.error}" for o in dead)
                + "\n`ticketd webhooks list --failed` lists them; `ticketd webhooks retry ID` sends one again.")
    return sent


class WebhookSender:
    """The daemon's thread for webhooks: a slow or absent receiver never holds up mail. It fans out and sends
    every ``turn`` seconds, at once again while there is work; ``config`` is swapped by a reload."""

    def __init__(self, engine: sa.Engine, config: Config, turn: float = 1.0) -> None:
        self.engine, self.config, self.turn = engine, config, turn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticketd-webhooks", daemon=True)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                config = self.config
                try:
                    busy = fan_out(self.engine, config.webhooks) + send_due(self.engine, config, http)
                except sa.exc.SQLAlchemyError as exc:  # the database away: the main loop says so; wait and retry
                    log.warning("webhook.database_error", error=str(getattr(exc, "orig", None) or exc)[:300])
                    busy = 0
                    self._stop.wait(5.0)
                except Exception as exc:  # never die: the rows stay and the next turn tries again
                    log.exception("webhook.error", error=str(exc))
                    busy = 0
                if not busy:
                    self._stop.wait(self.turn)
