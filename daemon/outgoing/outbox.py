"""Outgoing mail: queued as rows inside the transaction that caused them, sent after commit.

A row's Message-ID is fixed when it is queued, so a retry after a crash or a 4xx is the same mail to the
recipient's client. Transient failures (connection errors, 4xx) are retried with capped backoff; permanent
ones (5xx) are marked dead at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Any

import aiosmtplib
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from ticketd.daemon.config import Config, SmtpConfig
from ticketd.daemon.config.graph import GraphConfig
from ticketd.daemon.outgoing import graph_send, wire
from ticketd.daemon.outgoing.files import size_text
from ticketd.daemon.outgoing.outbox_parts import load_attachments, store_attachments
from ticketd.daemon.outgoing.storm import (
    ALERT_KIND,
    alert_recently_sent,
    answers_automatic,
    hold_back_reason,
    is_capped,
    note_queued,
)
from ticketd.daemon.outgoing.wire import MailAttachment
from ticketd.daemon.outgoing.wire import clean as clean_header
from ticketd.daemon.service import oauth2
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.graph import GraphClient, GraphPermanent, GraphTransient
from ticketd.daemon.service.metrics import Metrics
from ticketd.mailtemplates.render import render
from ticketd.parsers.message import parse_addresses
from ticketd.rules import identify
from ticketd.storage import batch
from ticketd.storage.db import session_scope, shared
from ticketd.storage.inbound import arrivals
from ticketd.storage.models import Outbox, utcnow

log = structlog.get_logger("ticketd.outbox")

MAX_ATTEMPTS = 12
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=2)
SMTP_LANES = 4  # connections used at once by one sending run


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")  # dot-atom@dot-atom
_NAME_SPECIALS = frozenset('()<>@,:;.\\"[]')  # a display name with one of these is quoted


def format_address(name: str | None, address: str) -> str:
    """Unencoded display form (stored and shown as is); the email package RFC 2047-encodes it when sending."""
    name, address = clean_header(name or ""), clean_header(address)
    if _PLAIN_ADDRESS.fullmatch(address) and _NAME_SPECIALS.isdisjoint(name):  # nearly every address, and what
        return f"{name} <{address}>" if name else address  # the email package makes of it, at a tenth of the cost
    try:
        return str(Address(display_name=name, addr_spec=address))
    except (ValueError, IndexError, TypeError):  # an address the email package cannot model (odd local part)
        try:
            return formataddr((name, address))
        except UnicodeEncodeError:  # RFC 6532 UTF-8 local part: kept as written; SMTP decides
            return f'"{name}" <{address}>' if name else address


def new_message_id(helpdesk_address: str) -> str:
    return f"<ticketd.{uuid.uuid4().hex}@{helpdesk_address.rsplit('@', 1)[1]}>"


@dataclass(frozen=True)
class OutgoingMail:
    kind: str
    to: list[tuple[str, str]]  # (name, address)
    subject: str
    body: str
    ticket_id: int | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    reply_to: str | None = None
    from_name: str | None = None
    automatic: bool = True
    cc: list[tuple[str, str]] = field(default_factory=list)
    attachments: tuple[MailAttachment, ...] = ()
    html: str | None = None  # an HTML alternative; its inline images are attachments with a content_id
    cause: str = "inbound"  # inbound | agent | timer | system: only "inbound" is held back by the storm caps
    language: str | None = None  # the language it is written in (Content-Language)
    announces: str | None = None  # an "assigned" mail: the agent it names, so a later change can supersede it
    not_before: datetime | None = None  # sent no earlier (an "assigned" mail waits out a flurry of changes)
    mailbox: str | None = None  # the [[mailboxes]] identity it leaves as (From, Message-ID, transport); None: ours


def queue_mail(session: Session, config: Config, mail: OutgoingMail) -> Outbox:
    """Add an outbox row to the caller's transaction; nothing is sent unless that transaction commits."""
    row = batch.add(session, Outbox(**outbox_values(session, config, mail)))
    if mail.attachments:
        assert row.id is not None
        store_attachments(session, row.id, mail.attachments)
    after_queued(session, config, row.cause, row.status, row.kind, row.last_error, row.recipient, row.ticket_id,
                 row.message_id)
    return row


def outbox_values(session: Session, config: Config, mail: OutgoingMail) -> dict[str, Any]:
    """The row's columns: headers fixed (Message-ID included) and the storm caps applied."""
    now = utcnow()
    headers = {"Date": format_datetime(max(now, mail.not_before) if mail.not_before else now)}
    if mail.in_reply_to and len(mail.in_reply_to) <= wire.MAX_ID_LENGTH:
        headers["In-Reply-To"] = mail.in_reply_to
    refs = wire.thread_ids([*mail.references, *([mail.in_reply_to] if mail.in_reply_to else [])])
    if refs:
        headers["References"] = " ".join(refs)
    identity = config.identity(mail.mailbox)
    if mail.reply_to:
        headers["Reply-To"] = format_address(identity.name, mail.reply_to)
    headers["From"] = format_address(mail.from_name or identity.name, identity.address)
    if mail.automatic:  # RFC 3834: an answer to a mail is auto-replied; what a timer or an action wrote, generated
        headers["Auto-Submitted"] = "auto-replied" if mail.cause == "inbound" else "auto-generated"
        headers["X-Auto-Response-Suppress"] = "All"
    if mail.language:
        headers["Content-Language"] = mail.language
    headers["X-Ticketd-Kind"] = mail.kind  # agents filter on it (escalations, satisfaction answers); so do tests
    headers = {k: clean_header(v) for k, v in headers.items()}
    recipient = mail.to[0][1].strip().lower() if mail.to else ""
    capped = is_capped(mail.cause, mail.kind)
    held = hold_back_reason(session, config, recipient, mail.kind) if capped else None
    return {
        "kind": mail.kind, "recipient": recipient, "automatic": mail.automatic, "cause": mail.cause,
        "announces": mail.announces, "status": "suppressed" if held else "queued", "last_error": held,
        "answers_automatic": capped and answers_automatic(session),
        "to_addrs": ", ".join(format_address(n, a) for n, a in mail.to),
        "cc_addrs": ", ".join(format_address(n, a) for n, a in mail.cc),
        "subject": clean_header(mail.subject), "body": mail.body, "html": mail.html, "headers": headers,
        "message_id": new_message_id(identity.address), "ticket_id": mail.ticket_id, "mailbox": identity.mailbox,
        "next_attempt_at": max(now, mail.not_before) if mail.not_before else now, "attempts": 0, "created_at": now,
    }


def after_queued(session: Session, config: Config, cause: str, status: str, kind: str, held: str | None,
                 recipient: str, ticket_id: int | None, message_id: str) -> None:
    """Count the mail for the breaker; a mail held back is never silent: the admin (else the managers) hears of
    it, once an hour per reason, with the command that sends it after all."""
    note_queued(session, cause, status, kind, recipient)
    if held:
        log.warning("outbox.suppressed", to=recipient, kind=kind, reason=held, ticket_id=ticket_id)
        topic = "circuit breaker open" if held.startswith("circuit breaker") else f"mail held back for {recipient}"
        alert_admin(session, config, topic, f"{held}.\nHeld back: the {kind!r} mail {message_id}"
                    + (f" of ticket id {ticket_id}" if ticket_id else "") + ".\n"
                    "`ticketd outbox list --failed` lists held mail; `ticketd outbox retry ID` sends one after all.")


def alert_admin(session: Session, config: Config, topic: str, detail: str) -> list[Outbox]:
    """Tell the operator (``helpdesk.admin``, else the managers), at most once an hour per topic.

    Here beside ``queue_mail`` rather than in ``notify`` (which offers it to everyone else): queueing and sending
    are what raise most alerts (a mail held back, a dead one), and an alert is itself a queued mail.
    """
    if alert_recently_sent(session, topic):
        return []
    if config.helpdesk.admin:
        people = [("", config.helpdesk.admin)]
    else:
        people = [(a.name, a.email) for a in identify.agents(session) if a.active and a.role == "manager"]
    context = {"helpdesk": config.identity(None).context(), "attached": [], "left_out": [],
               "files_budget": size_text(config.limits.forward_attachments_bytes),  # what ``notify.compose`` gives
               "topic": topic, "detail": detail}
    rendered = render(config.templates, "admin_alert", config.helpdesk.language, context)
    return [queue_mail(session, config, OutgoingMail(kind=ALERT_KIND, to=[person], subject=rendered.subject,
                                                     body=rendered.body, cause="system", language=rendered.language))
            for person in people]


def row_headers(row: Outbox) -> list[tuple[str, str]]:
    return wire.headers_of(row.to_addrs, row.cc_addrs, row.subject, row.message_id, row.headers)


def build_message(row: Outbox, attachments: Sequence[MailAttachment] = ()) -> EmailMessage:
    """The wire form of a row by the full email package (the fast one is ``wire.wire_bytes``); header values
    are cleaned again here so no code path can inject a header. With attachments or HTML, the parts and their
    boundaries follow from the row alone: a retry sends the same bytes."""
    msg = EmailMessage(policy=SMTP)
    headers = row_headers(row)
    for name, value in headers:
        if name.lower() in wire.ID_HEADERS:
            msg[clean_header(name)] = wire.FoldedIds(clean_header(name), clean_header(value))
        elif not name.lower().startswith("content-"):
            msg[clean_header(name)] = clean_header(value)
    msg.set_content(row.body, charset="utf-8", cte="quoted-printable")
    if attachments or row.html is not None:
        wire.add_parts(msg, row.html, attachments, row.message_id)
    for name, value in headers:  # after the parts: growing a multipart moves Content-* headers into the text part
        if name.lower().startswith("content-"):
            msg[clean_header(name)] = clean_header(value)
    return msg


def recipients(row: Outbox) -> list[str]:
    """The envelope: the valid mailboxes of the row's To and Cc, read strictly. The lenient ``getaddresses``
    took an address out of a display name ("a@x" <b@y> reached a as well), so a name could add a recipient."""
    return list(dict.fromkeys(a.email for value in (row.to_addrs, row.cc_addrs) for a in parse_addresses(value)))


def _tls_context(cfg: SmtpConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cfg.cafile) if cfg.cafile else None)


def smtp_client(cfg: SmtpConfig, connections: Connections | None = None) -> aiosmtplib.SMTP:
    """A client for ``cfg``, its XOAUTH2 token and EHLO name from ``connections`` (a fresh set without)."""
    connections = connections or Connections()
    smtp_class, login = oauth2.smtp_login(cfg, connections.tokens)  # a password, or XOAUTH2 with a token each login
    return smtp_class(
        hostname=cfg.host,
        port=cfg.port,
        use_tls=cfg.tls == "implicit",
        start_tls=cfg.tls == "starttls",
        tls_context=_tls_context(cfg) if cfg.tls != "none" else None,
        **login,
        timeout=cfg.timeout_seconds,
        local_hostname=connections.local_hostname(),
    )


PENDING = ("queued", "failed")


def due_rows(session: Session, now: datetime, limit: int = 100,
             only: list[str | None] | None = None) -> list[Outbox]:
    """Mail whose time has come, oldest first. A ticket's mail to one recipient never overtakes earlier mail to
    them still waiting for a retry: the customer must not read the answer before "we received your request".
    Other recipients (the agents) are not held up by it, and nor is anyone by a mail scheduled for later on
    purpose (an "assigned to" mail waiting out a flurry of reassignments)."""
    earlier = aliased(Outbox)
    waiting_before = sa.exists().where(col(earlier.ticket_id) == Outbox.ticket_id,
                                       col(earlier.recipient) == Outbox.recipient, col(earlier.id) < Outbox.id,
                                       col(earlier.status) == "failed", col(earlier.next_attempt_at) > now)
    stmt = (
        select(Outbox)
        .where(col(Outbox.status).in_(PENDING), col(Outbox.next_attempt_at) <= now, ~waiting_before)
        .order_by(col(Outbox.id))
        .limit(limit)
    )
    if only is not None:  # only these mailboxes' mail can leave (None: the helpdesk's own)
        names = [name for name in only if name is not None]
        stmt = stmt.where(sa.or_(col(Outbox.mailbox).in_(names),
                                 *([col(Outbox.mailbox).is_(None)] if None in only else [])))
    return list(session.exec(stmt))


def _record_failure(row: Outbox, error: str, permanent: bool) -> None:
    row.attempts += 1
    row.last_error = error[:2000]
    if permanent or row.attempts >= MAX_ATTEMPTS:
        row.status = "dead"
        log.error("outbox.dead", outbox_id=row.id, to=row.to_addrs, error=row.last_error, ticket_id=row.ticket_id)
    else:
        row.status = "failed"
        delay = min(BACKOFF_BASE * (2 ** (row.attempts - 1)), BACKOFF_CAP)
        row.next_attempt_at = utcnow() + delay
        log.warning("outbox.retry_later", outbox_id=row.id, error=row.last_error, attempts=row.attempts,
                    next_attempt_at=row.next_attempt_at.isoformat())


async def _send_one(client: aiosmtplib.SMTP, row: Outbox, parts: Sequence[MailAttachment] = ()) -> None:
    try:
        raw: bytes | EmailMessage = wire.wire_bytes(row_headers(row), row.body, bool(parts) or row.html is not None)
    except (wire.NeedsFullComposer, UnicodeError):
        raw = build_message(row, parts)  # attachments, or an RFC 6532 address: the full email package
    except Exception as exc:  # a row we cannot even compose will never go out: dead, not a crash of the loop
        _record_failure(row, f"cannot compose the mail: {type(exc).__name__}: {exc}", permanent=True)
        return
    try:
        if isinstance(raw, bytes):
            await client.sendmail(wire.envelope_sender(row.headers["From"]), recipients(row), raw)
        else:
            await client.send_message(raw, recipients=recipients(row))
    except aiosmtplib.SMTPRecipientsRefused as exc:
        details = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        _record_failure(row, details, permanent=all(r.code >= 500 for r in exc.recipients))
    except aiosmtplib.SMTPResponseException as exc:
        _record_failure(row, f"{exc.code} {exc.message}", permanent=exc.code >= 500)
    except (aiosmtplib.SMTPException, OSError) as exc:
        _record_failure(row, f"{type(exc).__name__}: {exc}", permanent=False)
    except ValueError as exc:  # the client refuses an address outright: no retry will change that
        _record_failure(row, f"{type(exc).__name__}: {exc}", permanent=True)
    else:
        row.status, row.sent_at, row.last_error = "sent", utcnow(), None
        row.attempts += 1
        log.info("outbox.sent", outbox_id=row.id, to=row.to_addrs, kind=row.kind,
                 message_id=row.message_id, ticket_id=row.ticket_id)


def _claim_statement() -> sa.Select[tuple[int]]:
    """The row, still due, with no earlier mail of its ticket to the same recipient failed or due before it;
    locked, or skipped when another instance holds it."""
    table = batch.table_of(Outbox)
    earlier = table.alias("earlier")
    now = sa.bindparam("now", type_=table.c.next_attempt_at.type)
    return (sa.select(table.c.id)
            .where(table.c.id == sa.bindparam("row_id"), table.c.status.in_(PENDING), table.c.next_attempt_at <= now,
                   ~sa.exists().where(earlier.c.ticket_id == table.c.ticket_id,
                                      earlier.c.recipient == table.c.recipient, earlier.c.id < table.c.id,
                                      sa.or_(earlier.c.status == "failed",
                                             sa.and_(earlier.c.status == "queued", earlier.c.next_attempt_at <= now))))
            .with_for_update(skip_locked=True, of=table))


_CLAIM = _claim_statement()  # built once: PostgreSQL asks it before every mail it sends
_RECORD = sa.update(Outbox).where(col(Outbox.id) == sa.bindparam("row_id"))  # built once; SET: the columns passed


class Ledger:
    """One sending lane's own database connection: it claims each row just before its SMTP transaction and
    records the outcome right after, one commit per mail.

    On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED`` on the row, held until the outcome is
    committed: an instance sending the same due mail skips it, and a row whose sender dies mid-transaction is
    free again (its mail may then go twice: the only duplicate possible, and only of a transaction the death
    cut). The claim also waits for the same recipient's earlier mail on the ticket that another instance is
    sending, so the order holds across instances. SQLite has one instance: no claim needed.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.shared = shared(conn)
        self.recorded: list[Outbox] = []

    def claim(self, row: Outbox) -> bool:
        if not self.shared:
            return True
        if self.conn.execute(_CLAIM, {"row_id": row.id, "now": utcnow()}).first() is None:
            self.conn.rollback()
            return False
        return True

    def record(self, row: Outbox) -> None:
        self.conn.execute(_RECORD, {"row_id": row.id, "status": row.status, "attempts": row.attempts,
                                    "last_error": row.last_error, "sent_at": row.sent_at,
                                    "next_attempt_at": row.next_attempt_at})
        self.conn.commit()
        self.recorded.append(row)


async def _send_lane(cfg: SmtpConfig, rows: list[Outbox], ledger: Ledger, unreachable: Callable[[], None],
                     parts: Mapping[int, Sequence[MailAttachment]], connections: Connections) -> None:
    """Send on one reused connection, reconnecting when the server drops it between mails."""
    client = smtp_client(cfg, connections)
    held_up: set[tuple[int, str]] = set()  # (ticket, recipient) whose earlier mail failed in this run
    try:
        for i, row in enumerate(rows):
            if (row.ticket_id, row.recipient) in held_up:
                continue  # stays due; a later run sends it once the earlier mail has gone out
            if not ledger.claim(row):
                continue  # another instance is sending it, or has
            if not client.is_connected:
                try:
                    await client.connect()
                except (aiosmtplib.SMTPException, OSError) as exc:
                    ledger.conn.rollback()
                    for waiting in rows[i:]:  # the server is unreachable: no point trying each row
                        if ledger.claim(waiting):
                            _record_failure(waiting, f"cannot connect to {cfg.host}:{cfg.port}: {exc}", False)
                            ledger.record(waiting)
                    unreachable()
                    return
            await _send_one(client, row, parts.get(row.id or 0, ()))
            ledger.record(row)
            if row.status == "failed" and row.ticket_id is not None:
                held_up.add((row.ticket_id, row.recipient))
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


async def _send_rows(cfg: SmtpConfig, rows: list[Outbox], ledgers: Sequence[Ledger],
                     unreachable: Callable[[], None] = lambda: None,
                     parts: Mapping[int, Sequence[MailAttachment]] | None = None,
                     connections: Connections | None = None) -> None:
    """A few connections at once, so one mail's round trips overlap another's; a ticket's mail keeps one
    connection and its order. Each lane commits each row's outcome as soon as the server has answered: a
    crash then repeats at most the mails whose SMTP transactions it cut, never a whole batch."""
    lanes: dict[int, list[Outbox]] = {}
    for row in rows:
        lanes.setdefault((row.ticket_id or row.id or 0) % len(ledgers), []).append(row)
    connections = connections or Connections()
    await asyncio.gather(*(_send_lane(cfg, lane, ledgers[key], unreachable, parts or {}, connections)
                           for key, lane in lanes.items()))


def _observe_acknowledgments(engine: sa.Engine, recorded: Sequence[Outbox], metrics: Metrics) -> None:
    """The latency the customer sees: from the arrival of the mail that opened the ticket to its ``received``
    mail accepted by the SMTP server."""
    acks = {r.ticket_id: r for r in recorded if r.kind == "received" and r.status == "sent" and r.ticket_id
            and r.sent_at is not None}
    if not acks:
        return
    with Session(engine) as session:
        found = arrivals(session, list(acks))
    for ticket_id, (channel, arrived) in found.items():
        sent_at = acks[ticket_id].sent_at
        assert sent_at is not None
        metrics.acknowledged.labels(channel).observe(max(0.0, (sent_at - arrived).total_seconds()))


def _by_sender(config: Config, rows: list[Outbox]) -> dict[SmtpConfig | GraphConfig, list[Outbox]]:
    """Rows by the way they leave: a Graph mailbox's through Graph, a mailbox with its own ``smtp_username`` as
    that login, every other through ``[smtp]``. Order within each is kept (a ticket's mail never overtakes).
    A row with no way out (no ``[smtp]``) stays queued."""
    groups: dict[SmtpConfig | GraphConfig, list[Outbox]] = {}
    for row in rows:
        transport = config.transport_for(row.mailbox)
        if transport is not None:
            groups.setdefault(transport, []).append(row)
    return groups


def wire_form(row: Outbox, attachments: Sequence[MailAttachment] = ()) -> bytes:
    """The row's bytes as they leave, by the fast composer where it can write them."""
    return wire.compose(row_headers(row), row.body, lambda: build_message(row, attachments).as_bytes(),
                        bool(attachments) or row.html is not None)


async def _send_graph_rows(client: GraphClient, address: str, rows: list[Outbox], ledger: Ledger,
                           parts: Mapping[int, Sequence[MailAttachment]]) -> None:
    """One after another on the mailbox's client (Graph throttles per mailbox; its client retries 429s). The
    MIME is the row's, exactly as SMTP would carry it: the Message-ID and threading headers are ours."""
    held_up: set[tuple[int, str]] = set()
    for row in rows:
        if (row.ticket_id, row.recipient) in held_up or not ledger.claim(row):
            continue
        try:
            raw = wire_form(row, parts.get(row.id or 0, ()))
        except Exception as exc:  # a row we cannot even compose will never go out
            _record_failure(row, f"cannot compose the mail: {type(exc).__name__}: {exc}", permanent=True)
        else:
            try:
                await graph_send.send_mime(client, address, raw)
            except GraphPermanent as exc:
                _record_failure(row, f"Graph refused it: {exc}", permanent=True)
            except GraphTransient as exc:
                _record_failure(row, f"Graph unavailable: {exc}", permanent=False)
            else:
                row.status, row.sent_at, row.last_error = "sent", utcnow(), None
                row.attempts += 1
                log.info("outbox.sent", outbox_id=row.id, to=row.to_addrs, kind=row.kind, via="graph",
                         message_id=row.message_id, ticket_id=row.ticket_id)
        ledger.record(row)
        if row.status == "failed" and row.ticket_id is not None:
            held_up.add((row.ticket_id, row.recipient))


def send_due(engine: sa.Engine, config: Config, limit: int = 100,
             unreachable: Callable[[], None] = lambda: None, metrics: Metrics | None = None,
             connections: Connections | None = None) -> int:
    """Send every row that is due; returns how many were sent. Each row's outcome is committed with it.

    ``unreachable`` is called when the server could not be reached (refused, or no greeting in time), so the
    caller can stop trying for a while instead of waiting out a connect timeout after every batch. The daemon
    passes its ``metrics`` and ``connections`` (its cached token, its EHLO name); a one-shot caller leaves them
    out and gets fresh ones.
    """
    only = None if config.smtp is not None else config.graph_senders()  # without [smtp]: Graph's rows only
    if only == []:
        return 0
    metrics, connections = metrics or Metrics(), connections or Connections()
    sent = 0
    while True:
        with Session(engine, expire_on_commit=False) as session:
            rows = due_rows(session, utcnow(), limit, only)
            parts = load_attachments(session, [r.id for r in rows if r.id is not None])
            session.expunge_all()  # outcomes are written by plain UPDATEs, one commit per mail
        if not rows:
            return sent
        recorded: list[Outbox] = []
        for transport, group in _by_sender(config, rows).items():  # one mailbox's way out after another
            with contextlib.ExitStack() as stack:
                if isinstance(transport, GraphConfig):
                    ledgers = [Ledger(stack.enter_context(engine.connect()))]
                    asyncio.run(_send_graph_rows(connections.graph.client(transport), transport.mailbox, group,
                                                 ledgers[0], parts))
                else:
                    if shared(engine):  # each lane holds its claim on a connection of its own
                        ledgers = [Ledger(stack.enter_context(engine.connect())) for _ in range(SMTP_LANES)]
                    else:
                        conn = stack.enter_context(engine.connect())
                        ledgers = [Ledger(conn) for _ in range(SMTP_LANES)]
                    asyncio.run(_send_rows(transport, group, ledgers, unreachable, parts, connections))
            recorded += [row for ledger in ledgers for row in ledger.recorded]
        sent += sum(1 for r in recorded if r.status == "sent")
        for row in recorded:
            metrics.outgoing.labels(row.status).inc()
        _observe_acknowledgments(engine, recorded, metrics)
        dead = [r for r in recorded if r.status == "dead" and r.kind != ALERT_KIND]
        if dead:
            with session_scope(engine) as session:
                alert_admin(session, config, "undeliverable mail", "\n".join(
                    f"outbox {r.id} to {r.to_addrs}: {r.last_error}" for r in dead))
        if all(r.status != "sent" for r in recorded) or len(rows) < limit:
            return sent
