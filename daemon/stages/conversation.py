"""The stages shared by customers' and agents' mail: the mail in hand, tickets, messages, participants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing.files import File
from ticketd.daemon.outgoing.outbox_parts import keep_blob
from ticketd.daemon.stages.new_ticket import Setup
from ticketd.parsers.message import ParsedMail
from ticketd.parsers.quotes import quoted_only_cids
from ticketd.parsers.subject import SubjectInfo
from ticketd.rules import participants
from ticketd.rules.channels import FormChoices
from ticketd.rules.identify import Sender, find_company_by_domain
from ticketd.rules.match import Match
from ticketd.rules.screen import Screening
from ticketd.storage import batch
from ticketd.storage.db import shared
from ticketd.storage.models import (
    SYSTEM_ACTOR,
    Attachment,
    Awaited,
    Customer,
    Inbound,
    Message,
    Outbox,
    Participant,
    Ticket,
)


@dataclass(frozen=True)
class Outcome:
    status: Literal["done", "dropped", "failed", "deferred"]  # deferred: left ``new``, taken again later
    ticket_number: int | None = None
    reason: str | None = None
    new_ticket: bool = False
    ticket_id: int | None = None  # saves a lookup when the stage has the ticket in hand


@dataclass(frozen=True)
class Incoming:
    """Everything the earlier stages learnt about one mail; the later stages only read it."""

    session: Session
    config: Config
    inbound: Inbound
    mail: ParsedMail
    screening: Screening
    sender: Sender
    subject: SubjectInfo
    match: Match
    now: datetime  # the one clock reading of this message: every timestamp and deadline it causes uses it
    source: str = "email"  # "web" for a web form's mail, attributed to the customer it names
    form: FormChoices | None = None  # what the customer chose on ticketd's own form

    def customer_is_requester(self, ticket: Ticket) -> bool:
        return self.sender.customer is not None and self.sender.customer.id == ticket.requester_id

    def is_ours(self, address: str) -> bool:
        return is_our_address(self.config, address)


def is_our_address(config: Config, address: str) -> bool:
    return config.is_our_address(address)


# Behind the data only when tickets were written with explicit numbers (an import): then it catches up.
_NEXT_FROM_SEQUENCE = sa.text(
    "SELECT CASE WHEN n >= m THEN n ELSE setval('ticket_number_seq', m) END FROM "
    "(SELECT nextval('ticket_number_seq') AS n, (SELECT coalesce(max(number), 0) + 1 FROM ticket) AS m) AS s")


def next_ticket_number(session: Session) -> int:
    """On PostgreSQL a sequence, so instances opening tickets at the same moment never pick the same number
    (a number is never reused; a rolled-back ticket leaves a gap). SQLite has one writer: the highest plus one."""
    if shared(session.get_bind()):
        return int(session.connection().execute(_NEXT_FROM_SEQUENCE).scalar_one())
    # Read once per transaction: after its first ticket the transaction holds SQLite's write lock, so nobody
    # else can add one before it commits.
    last = session.info.get(batch.LAST_TICKET_NUMBER)
    if last is None:
        last = session.exec(select(func.max(Ticket.number))).one() or 0
    session.info[batch.LAST_TICKET_NUMBER] = last + 1
    return int(last) + 1


def open_ticket(session: Session, title: str, customer: Customer, setup: Setup, now: datetime,
                linked_to: Ticket | None = None) -> Ticket:
    """The ticket as ``new_ticket.prepare`` decided it: type, category, priority, contract, deadlines, assignee.
    Opened at ``now``, the instant its deadlines were counted from."""
    ticket = Ticket(number=next_ticket_number(session), subject=title[:500], requester_id=customer.id,  # type: ignore[arg-type]  # a stored customer: has its id
                    company_id=customer.company_id, linked_to_id=linked_to.id if linked_to else None,
                    created_at=now, updated_at=now, **setup.fields)
    return batch.add(session, ticket)


def record_setup(session: Session, ticket: Ticket, setup: Setup, via_message_id: str | None,
                 now: datetime) -> None:
    """What the rules, the contract check and the group's policy decided, after the ticket's "created"."""
    for what, old, new in setup.events:
        batch.event(session, ticket_id=ticket.id, actor=SYSTEM_ACTOR, what=what, old=old, new=new,
                    via_message_id=via_message_id, at=now)


def record_message(inc: Incoming, ticket: Ticket, kind: str, text: str, direction: str = "in",
                   outbox_id: int | None = None, is_reply: bool = False) -> tuple[Message, list[File]]:
    """The message on its conversation, with its files; the files come back with their attachment ids, for the
    notifications that carry them. Images that only sit in the quoted older mail of a reply are not kept."""
    mail = inc.mail
    message = Message(
        ticket_id=ticket.id, direction=direction, kind=kind,  # type: ignore[arg-type]  # the ticket is flushed
        message_id=mail.message_id or f"<missing.{inc.inbound.message_id_hash[:32]}@ticketd.invalid>",
        in_reply_to=mail.in_reply_to[:998] if mail.in_reply_to else None,  # an indexed column: bounded
        references=" ".join(mail.references) or None,
        from_addr=inc.sender.address.email, from_name=inc.sender.address.name or None,
        to_addrs=", ".join(a.email for a in mail.to), cc_addrs=", ".join(a.email for a in mail.cc),
        subject=mail.subject, date=mail.date, text=text, html=mail.html, inbound_id=inc.inbound.id,
        outbox_id=outbox_id, created_at=inc.now,
    )
    batch.add(inc.session, message)
    if direction == "in" and inc.match.via != "references":  # found by what it answers: nothing is missing
        await_answered(inc.session, mail, ticket)
    stored: set[str] = set()  # the same bytes twice in one mail: one blob (pending rows are not in get())
    old_images = quoted_only_cids(mail.html) if is_reply else set()
    rows: list[tuple[Attachment, bytes]] = []
    for att in mail.attachments:
        if att.inline and att.content_id and att.content_id.lower() in old_images:
            continue  # an image of the quoted older mail, already on the ticket or not ours to keep
        if att.sha256 not in stored:
            keep_blob(inc.session, att.sha256, att.payload)
        stored.add(att.sha256)
        row = Attachment(message_pk=message.id, filename=att.filename, content_type=att.content_type,  # type: ignore[arg-type]  # flushed above
                         size=len(att.payload), sha256=att.sha256, content_id=att.content_id, inline=att.inline)
        # Written at once, for its id: a notification that leaves the file out names the id that fetches it.
        rows.append((batch.add(inc.session, row), att.payload))
    ticket.updated_at = inc.now
    return message, [File(row.id, row.filename, row.content_type, data, row.content_id, row.inline)
                     for row, data in rows]


AWAIT_AT_MOST = 20  # a References header can be long; the nearest ancestors are the ones still on their way


def await_answered(session: Session, mail: ParsedMail, ticket: Ticket) -> None:
    """A mail that answers mail not stored yet (it overtook it, from another mailbox or instance) records those
    Message-IDs on its ticket: when they come, however far up the thread, they join it (``rules.match``)."""
    refs = list(dict.fromkeys(r[:998] for r in (mail.in_reply_to, *reversed(mail.references)) if r))[:AWAIT_AT_MOST]
    if not refs:
        return
    assert ticket.id is not None  # stored: written by batch.add, or loaded
    stored = set(session.exec(select(Message.message_id).where(col(Message.message_id).in_(refs))))
    batch.add_rows(session, (Awaited(message_id=ref, ticket_id=ticket.id) for ref in refs if ref not in stored))


def message_context(inc: Incoming, text: str) -> dict[str, Any]:
    return {"from_name": inc.sender.address.name, "from_email": inc.sender.address.email, "text": text}


def add_participants(inc: Incoming, ticket: Ticket, new_ticket: bool = False) -> list[str]:
    """People on To/CC of a ticket's mail (not us, not the requester) may write to the ticket from now on and
    receive its answers; who may bring them is ``rules.participants``. The sender, when not the requester, has
    already been let in by ``rules.match`` and joins too."""
    assert ticket.id is not None  # stored: written by batch.add, or loaded
    requester = inc.session.get(Customer, ticket.requester_id)
    known = set() if new_ticket else {
        p.email for p in inc.session.exec(select(Participant).where(Participant.ticket_id == ticket.id))}
    trusted = [inc.sender.address] if inc.sender.customer is not None and \
        inc.sender.customer.id != ticket.requester_id else []
    reason = participants.vouched(participants.Circumstances(
        new_ticket=new_ticket, new_contact=inc.sender.is_new, via=inc.match.via,
        answers_our_mail=not new_ticket and answers_our_mail(inc.session, inc.mail, ticket)))
    limit = inc.config.limits.max_participants
    choice = participants.choose(
        [*inc.mail.to, *inc.mail.cc], trusted=trusted, known=known, reason=reason, room=max(0, limit - len(known)),
        skip=lambda email: inc.is_ours(email) or bool(requester and email == requester.email),
        colleague=lambda email: company_colleague(inc.session, requester, email))
    batch.add_rows(inc.session, [Participant(ticket_id=ticket.id, email=person.email, name=person.name or None,
                                             added_at=inc.now) for person in choice.added])
    added = [p.email for p in choice.added]
    if added:
        batch.event(inc.session, ticket_id=ticket.id, actor=inc.sender.address.email, what="participants",
                    new=", ".join(added), via_message_id=inc.mail.message_id, at=inc.now)
    note = participants.refusal_note(choice, limit)
    if note:
        batch.event(inc.session, ticket_id=ticket.id, actor=SYSTEM_ACTOR, what="participants-not-added", new=note,
                    via_message_id=inc.mail.message_id, at=inc.now)
    return added


def answers_our_mail(session: Session, mail: ParsedMail, ticket: Ticket) -> bool:
    """The mail's threading headers name a mail we sent on this ticket: only its people received that id."""
    refs = list(dict.fromkeys(r[:998] for r in (mail.in_reply_to, *mail.references) if r))[-100:]
    if not refs:
        return False
    return session.exec(select(Outbox.id).where(Outbox.ticket_id == ticket.id,
                                                col(Outbox.message_id).in_(refs)).limit(1)).first() is not None


def company_colleague(session: Session, requester: Customer | None, email: str) -> bool:
    """An address of the requester's company (by its registered domains): they may write to the ticket anyway."""
    if requester is None or requester.company_id is None:
        return False
    company = find_company_by_domain(session, email)
    return company is not None and company.id == requester.company_id


def event(inc: Incoming, ticket: Ticket, what: str, old: str | None = None, new: str | None = None,
          actor: str | None = None) -> None:
    batch.event(inc.session, ticket_id=ticket.id, actor=actor or inc.sender.address.email, what=what, old=old,
                new=new, via_message_id=inc.mail.message_id, at=inc.now)
