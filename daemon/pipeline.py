"""One inbound message's trip, top to bottom.

``process_inbound`` is the list of stages; each stage is a plain function with explicit inputs and outputs.
The whole trip runs in one database transaction: either the ticket, message, attachments, events, outbox rows
and the inbound row's new status are all committed, or none is and the row is marked failed with its error
(in a fresh transaction) so it can be retried from the CLI. One bad message never blocks the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import sqlalchemy as sa
import structlog
from jinja2.sandbox import SandboxedEnvironment
from sqlmodel import Session, func, select

from ticketd.daemon.config import Config
from ticketd.daemon.outbox import OutgoingMail, queue_mail
from ticketd.daemon.signing import reply_address
from ticketd.mailtemplates.render import make_environment, render
from ticketd.parsers.message import ParsedMail, parse_message
from ticketd.parsers.subject import SubjectInfo, parse_subject, ticket_tag
from ticketd.rules.identify import Sender, identify_sender
from ticketd.rules.screen import ScreenContext, Verdict, screen
from ticketd.storage.db import session_scope
from ticketd.storage.models import (
    Attachment,
    Blob,
    Event,
    Inbound,
    Message,
    Outbox,
    Ticket,
    utcnow,
)

log = structlog.get_logger("ticketd.pipeline")


@dataclass(frozen=True)
class Outcome:
    status: Literal["done", "dropped", "failed"]
    ticket_number: int | None = None
    reason: str | None = None
    new_ticket: bool = False


# --- the trip -----------------------------------------------------------------------------------------------

def process_inbound(session: Session, config: Config, inbound: Inbound) -> Outcome:
    mail = parse_message(inbound.raw)
    duplicate_of = find_duplicate(session, inbound)
    if duplicate_of is not None:
        return finish(inbound, Outcome("dropped", reason=f"duplicate of inbound #{duplicate_of}"))
    screening = screen(mail, ScreenContext(our_addresses=frozenset({config.helpdesk.address})))
    if screening.verdict is Verdict.DROP:
        return finish(inbound, Outcome("dropped", reason=f"{screening.rule}: {screening.reason}"))
    assert mail.sender is not None  # screening drops mail without a sender
    sender = identify_sender(session, mail.sender)
    subject = parse_subject(mail.subject, config.helpdesk.tag)
    ticket = match_ticket(session, mail, subject, sender)
    is_new = ticket is None
    if is_new and screening.verdict is Verdict.NO_AUTOREPLY:  # robots never open tickets
        return finish(inbound, Outcome("dropped", reason=f"{screening.rule}: {screening.reason}; no ticket to join"))
    if ticket is None:
        ticket = open_ticket(session, subject, sender)
    message = record_message(session, ticket, mail, inbound)
    record_event(session, ticket, sender, "created" if is_new else "customer-reply", mail)
    if is_new and screening.verdict is Verdict.CONTINUE:
        queue_received(session, config, ticket, sender, message)
    reason = None if screening.verdict is Verdict.CONTINUE else f"not answered: {screening.reason}"
    inbound.ticket_id = ticket.id
    return finish(inbound, Outcome("done", ticket.number, reason, new_ticket=is_new))


# --- stages -------------------------------------------------------------------------------------------------

def find_duplicate(session: Session, inbound: Inbound) -> int | None:
    """The same mail fetched again (UIDVALIDITY change, two folders, a redelivery) is processed once."""
    stmt = select(Inbound.id).where(
        Inbound.message_id_hash == inbound.message_id_hash,
        Inbound.id != inbound.id,
        Inbound.status == "done",
    )
    return session.exec(stmt.limit(1)).first()


def match_ticket(session: Session, mail: ParsedMail, subject: SubjectInfo, sender: Sender) -> Ticket | None:
    """Threading headers first (ours and theirs), then the subject tag when the sender is the requester."""
    refs = [r for r in (mail.in_reply_to, *reversed(mail.references)) if r]
    if refs:
        found = session.exec(select(Message.ticket_id).where(Message.message_id.in_(refs)).limit(1)).first()
        if found is None:
            found = session.exec(select(Outbox.ticket_id).where(Outbox.message_id.in_(refs),
                                                                Outbox.ticket_id.is_not(None)).limit(1)).first()
        if found is not None:
            return session.get(Ticket, found)
    if subject.ticket_number is not None and sender.customer is not None:
        ticket = session.exec(select(Ticket).where(Ticket.number == subject.ticket_number)).first()
        if ticket is not None and ticket.requester_id == sender.customer.id:
            return ticket
    return None


def next_ticket_number(session: Session) -> int:
    return (session.exec(select(func.max(Ticket.number))).one() or 0) + 1


def open_ticket(session: Session, subject: SubjectInfo, sender: Sender) -> Ticket:
    assert sender.customer is not None
    ticket = Ticket(
        number=next_ticket_number(session),
        subject=subject.title[:500],
        requester_id=sender.customer.id,
        company_id=sender.company.id if sender.company else None,
        source="email",
        state="new",
    )
    session.add(ticket)
    session.flush()
    return ticket


def record_message(session: Session, ticket: Ticket, mail: ParsedMail, inbound: Inbound) -> Message:
    message = Message(
        ticket_id=ticket.id,
        direction="in",
        kind="customer",
        message_id=mail.message_id or f"<missing.{inbound.message_id_hash[:32]}@ticketd.invalid>",
        in_reply_to=mail.in_reply_to,
        references=" ".join(mail.references) or None,
        from_addr=mail.sender.email if mail.sender else "",
        from_name=mail.sender.name if mail.sender else None,
        to_addrs=", ".join(a.email for a in mail.to),
        cc_addrs=", ".join(a.email for a in mail.cc),
        subject=mail.subject,
        date=mail.date,
        text=mail.text,
        html=mail.html,
        inbound_id=inbound.id,
    )
    session.add(message)
    session.flush()
    for att in mail.attachments:
        if session.get(Blob, att.sha256) is None:
            session.add(Blob(sha256=att.sha256, size=len(att.payload), data=att.payload))
        session.add(Attachment(message_pk=message.id, filename=att.filename, content_type=att.content_type,
                               size=len(att.payload), sha256=att.sha256, content_id=att.content_id,
                               inline=att.inline))
    ticket.updated_at = utcnow()
    return message


def record_event(session: Session, ticket: Ticket, sender: Sender, what: str, mail: ParsedMail) -> None:
    session.add(Event(ticket_id=ticket.id, actor=sender.address.email, what=what,
                      new=ticket.state if what == "created" else None, via_message_id=mail.message_id))


def queue_received(session: Session, config: Config, ticket: Ticket, sender: Sender, message: Message) -> None:
    customer = sender.customer
    assert customer is not None
    language = customer.language or config.helpdesk.language
    rendered = render(_templates(), "received", language, {
        "helpdesk": {"name": config.helpdesk.name, "address": config.helpdesk.address},
        "ticket": {"number": ticket.number, "subject": ticket.subject},
        "customer": {"name": customer.name or "", "email": customer.email},
        "tag": ticket_tag(config.helpdesk.tag, ticket.number),
    })
    secret = config.security.secret.get_secret_value() if config.security.secret else ""
    row = queue_mail(session, config, OutgoingMail(
        kind="received",
        to=[(customer.name or "", customer.email)],
        subject=f"{ticket_tag(config.helpdesk.tag, ticket.number)} {rendered.subject}",
        body=rendered.body,
        ticket_id=ticket.id,
        in_reply_to=message.message_id,
        references=tuple((message.references or "").split()),
        reply_to=reply_address(config.helpdesk.address, ticket.number, customer.email, secret),
    ))
    session.flush()
    session.add(Event(ticket_id=ticket.id, actor="ticketd", what="mail-queued", new="received",
                      via_message_id=row.message_id))


def finish(inbound: Inbound, outcome: Outcome) -> Outcome:
    inbound.status = outcome.status
    inbound.reason = outcome.reason
    inbound.processed_at = utcnow()
    inbound.attempts += 1
    return outcome


# --- running it over stored rows ----------------------------------------------------------------------------

@cache
def _templates() -> SandboxedEnvironment:
    return make_environment()


def process_pending(engine: sa.Engine, config: Config, ids: list[int] | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> list[Outcome]:
    """Process every ``new`` inbound row (or the given ones), each in its own transaction.

    ``should_stop`` is checked between messages: a stopping daemon finishes the current one and leaves the
    rest ``new`` for the next start.
    """
    with Session(engine) as session:
        stmt = select(Inbound.id).where(Inbound.status == "new").order_by(Inbound.id)
        todo = list(ids) if ids is not None else list(session.exec(stmt))
    outcomes = []
    for inbound_id in todo:
        if should_stop():
            break
        outcomes.append(process_one(engine, config, inbound_id))
    return outcomes


def process_one(engine: sa.Engine, config: Config, inbound_id: int) -> Outcome:
    bound = log.bind(inbound_id=inbound_id)
    try:
        with session_scope(engine) as session:
            inbound = session.get(Inbound, inbound_id)
            if inbound is None:
                return Outcome("failed", reason="no such inbound row")
            bound = bound.bind(message_id=inbound.message_id)
            outcome = process_inbound(session, config, inbound)
    except Exception as exc:  # quarantine: keep the row, its error, and move on
        error = f"{type(exc).__name__}: {exc}"
        bound.exception("inbound.failed", error=error)
        with session_scope(engine) as session:
            inbound = session.get(Inbound, inbound_id)
            if inbound is not None:
                inbound.status, inbound.reason = "failed", error[:2000]
                inbound.attempts += 1
                inbound.processed_at = utcnow()
        return Outcome("failed", reason=error)
    bound.info("inbound.processed", status=outcome.status, ticket=outcome.ticket_number,
               reason=outcome.reason, new_ticket=outcome.new_ticket)
    return outcome
