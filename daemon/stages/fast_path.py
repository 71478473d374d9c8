"""The common case without the ORM's bookkeeping: a customer's first mail on a subject opens a ticket.

Most of what a helpdesk takes in is exactly that, and it is what piles up after an outage. Through the ORM
(a unit-of-work flush for each object whose id the next one needs) such a mail cost about 8 ms; the same rows
written with plain Core statements in the same transaction cost a fraction of that. ``open_ticket`` first
checks, without writing anything, that the mail is that case; anything else (replies, agents, robots,
attachments, blocked senders, truncated mail) returns ``None`` and takes the full path. Both paths must leave
the same rows: the integration test ``test_fast_path.py`` runs one set of mail through each and compares.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import notify
from ticketd.daemon.outgoing.outbox import after_queued, outbox_values
from ticketd.daemon.stages import new_ticket
from ticketd.daemon.stages.conversation import Outcome, is_our_address, next_ticket_number
from ticketd.parsers.message import Address, ParsedMail
from ticketd.parsers.subject import SubjectInfo
from ticketd.rules import participants as rules_participants
from ticketd.rules.auth import signed_recipient
from ticketd.rules.identify import active_agent
from ticketd.rules.match import answered_by
from ticketd.rules.screen import Screening, Verdict
from ticketd.storage.db import insert_shared
from ticketd.storage.inbound import TRUNCATED_HEADER
from ticketd.storage.models import (
    SYSTEM_ACTOR,
    CompanyDomain,
    Customer,
    Event,
    Inbound,
    Message,
    Outbox,
    Participant,
    Ticket,
)

TRUNCATED = TRUNCATED_HEADER.lower()
CUSTOMERS, DOMAINS, TICKETS, MESSAGES, EVENTS, PARTICIPANTS, OUTBOX = (
    m.__table__ for m in (Customer, CompanyDomain, Ticket, Message, Event, Participant, Outbox))  # type: ignore


def is_plain_new_mail(session: Session, config: Config, mail: ParsedMail, screening: Screening,
                      subject: SubjectInfo, now: datetime) -> bool:
    """A customer's mail that can only open a ticket: nothing to thread it into, nothing to steer."""
    sender = mail.sender
    return (sender is not None and screening.verdict is Verdict.CONTINUE and not mail.in_reply_to
            and not mail.references and subject.ticket_number is None and not mail.attachments
            and not mail.header(TRUNCATED) and active_agent(session, sender.email) is None
            and signed_recipient(mail, config.auth, sender.email, now) is None and answered_by(session, mail) is None)


def open_ticket(session: Session, config: Config, inbound: Inbound, mail: ParsedMail,
                subject: SubjectInfo, now: datetime, source: str = "email") -> Outcome | None:
    assert mail.sender is not None
    conn = session.connection()
    customer = known_customer(conn, mail.sender)
    if customer is False:
        return None  # blocked, or a name to learn: the full path knows what to do
    learned = None if customer and customer.language else \
        config.language_guesser.guess(f"{subject.title}\n{mail.text}")  # as customer_mail.learn_language
    new_contact = customer is None
    if customer is None:
        customer = new_customer(conn, mail.sender, learned)
    elif learned is not None:
        conn.execute(sa.update(CUSTOMERS).where(CUSTOMERS.c.id == customer.id).values(language=learned))
        customer.language = learned
    setup = new_ticket.prepare(session, config, customer, now, mail=mail, source=source, mailbox=inbound.mailbox)
    ticket = Ticket(number=next_ticket_number(session), subject=subject.title[:500], requester_id=customer.id,
                    company_id=customer.company_id, created_at=now, updated_at=now, **setup.fields)
    ticket.id = insert(conn, TICKETS, columns(ticket))
    message_id = mail.message_id or f"<missing.{inbound.message_id_hash[:32]}@ticketd.invalid>"
    insert(conn, MESSAGES, message_row(mail, ticket, inbound, message_id, now))
    events = [event(ticket, mail, "created", now, new="new")]
    if learned is not None:
        events.append(event(ticket, mail, "language", now, new=f"{learned} (learnt from the customer's first mail)"))
    events += [columns(Event(ticket_id=ticket.id, actor=SYSTEM_ACTOR, what=what, old=old, new=new,
                             via_message_id=mail.message_id, at=now)) for what, old, new in setup.events]
    added, refused = participants(conn, config, mail, ticket, customer, now, new_contact)
    if added:
        insert_many(conn, PARTICIPANTS, added)
        events.append(event(ticket, mail, "participants", now, new=", ".join(p["email"] for p in added)))
    if refused:
        events.append(columns(Event(ticket_id=ticket.id, actor=SYSTEM_ACTOR, what="participants-not-added",
                                    new=refused, via_message_id=mail.message_id, at=now)))
    insert_many(conn, EVENTS, events)
    thread = (message_id, (message_id,))
    facts = notify.ticket_context(session, config, ticket, requester=customer)
    kinds = [("received", None)] + ([("assigned", setup.assignee.email)] if setup.assignee is not None else [])
    for kind, announces in kinds:
        queue(session, config, conn, notify.compose(
            session, config, kind=kind, template=kind, language=notify.customer_language(config, customer),
            ticket=ticket, to=[(customer.name or "", customer.email)], reply_party=customer.email, thread=thread,
            context={"customer": {"name": customer.name or "", "email": customer.email}, "ticket": facts},
            cause="inbound", announces=announces))
    said = {"from_name": mail.sender.name, "from_email": mail.sender.email, "text": mail.text}
    for agent in notify.agents_to_notify(session, ticket):
        queue(session, config, conn, notify.compose(
            session, config, kind="agent_new", template="agent_new", language=config.helpdesk.language,
            ticket=ticket, to=[(agent.name, agent.email)], reply_party=agent.email, thread=thread,
            context={"agent": {"name": agent.name, "email": agent.email}, "message": said, "ticket": facts},
            cause="inbound"))
    return Outcome("done", ticket.number, new_ticket=True, ticket_id=ticket.id)


def known_customer(conn: sa.Connection, address: Address) -> Customer | Literal[False] | None:
    row = conn.execute(sa.select(CUSTOMERS).where(CUSTOMERS.c.email == address.email)).first()
    if row is None:
        return None
    if row.blocked or (not row.name and address.name):
        return False
    return Customer(**row._asdict())


def new_customer(conn: sa.Connection, address: Address, language: str | None) -> Customer:
    domain = address.email.rsplit("@", 1)[-1].lower()
    company_id = conn.execute(sa.select(DOMAINS.c.company_id).where(DOMAINS.c.domain == domain)).scalar()
    customer = Customer(email=address.email, name=address.name or None, company_id=company_id, language=language)
    insert_shared(conn, CUSTOMERS, columns(customer), "email")  # another instance may have added them just now
    row = conn.execute(sa.select(CUSTOMERS).where(CUSTOMERS.c.email == address.email)).one()
    return Customer(**row._asdict())


def message_row(mail: ParsedMail, ticket: Ticket, inbound: Inbound, message_id: str,
                now: datetime) -> dict[str, Any]:
    """The columns ``conversation.record_message`` writes for a customer's first mail."""
    assert mail.sender is not None
    return {
        "ticket_id": ticket.id, "direction": "in", "kind": "customer", "message_id": message_id,
        "in_reply_to": None, "references": None, "from_addr": mail.sender.email,
        "from_name": mail.sender.name or None, "to_addrs": ", ".join(a.email for a in mail.to),
        "cc_addrs": ", ".join(a.email for a in mail.cc), "subject": mail.subject, "date": mail.date,
        "text": mail.text, "html": mail.html, "inbound_id": inbound.id, "outbox_id": None, "created_at": now,
    }


def participants(conn: sa.Connection, config: Config, mail: ParsedMail, ticket: Ticket, requester: Customer,
                 now: datetime, new_contact: bool) -> tuple[list[dict[str, Any]], str | None]:
    """As ``conversation.add_participants`` for a new ticket (``rules.participants`` decides): the rows to
    insert and the note on who was left out."""
    reason = rules_participants.vouched(rules_participants.Circumstances(
        new_ticket=True, new_contact=new_contact, via=None, answers_our_mail=False))

    def colleague(email: str) -> bool:
        domain = email.rsplit("@", 1)[-1]
        company = conn.execute(sa.select(DOMAINS.c.company_id).where(DOMAINS.c.domain == domain)).scalar()
        return requester.company_id is not None and company == requester.company_id

    limit = config.limits.max_participants
    choice = rules_participants.choose(
        [*mail.to, *mail.cc], known=set(), reason=reason, room=limit, colleague=colleague,
        skip=lambda email: is_our_address(config, email) or email == requester.email)
    rows = [columns(Participant(ticket_id=ticket.id, email=p.email, name=p.name or None, added_at=now))
            for p in choice.added]
    return rows, rules_participants.refusal_note(choice, limit)


def event(ticket: Ticket, mail: ParsedMail, what: str, now: datetime, new: str | None = None) -> dict[str, Any]:
    assert mail.sender is not None
    return columns(Event(ticket_id=ticket.id, actor=mail.sender.email, what=what, new=new,
                         via_message_id=mail.message_id, at=now))


def queue(session: Session, config: Config, conn: sa.Connection, mail: Any) -> None:
    """As ``outbox.queue_mail`` plus the ticket's mail-queued event, as two plain INSERTs."""
    row = outbox_values(session, config, mail)
    insert_many(conn, OUTBOX, [row])
    after_queued(session, config, row["cause"], row["status"], row["kind"], row["last_error"],
                 row["recipient"], row["ticket_id"], row["message_id"])
    insert_many(conn, EVENTS, [columns(Event(**notify.queued_event(
        row["ticket_id"], row["kind"], row["status"], row["last_error"], row["message_id"])))])


def columns(obj: Customer | Ticket | Participant | Event) -> dict[str, Any]:
    """The model's column values, defaults applied by the model itself, without the id the database assigns."""
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key != "id"}  # type: ignore[attr-defined]


def insert(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> int:
    return int(conn.execute(sa.insert(table).returning(table.c.id), values).scalar_one())


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    conn.execute(sa.insert(table), rows)
