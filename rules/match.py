"""Which ticket a mail belongs to, in layers, and whether its sender may write to it.

Layers, strongest first: a reply address we signed for this sender; the threading headers against every
Message-ID we stored or sent; the ticket tag in the subject; last, a stored reply that answers this mail (it
arrived first, by another mailbox: the conversation's ticket is the reply's). Knowing a ticket number or a
Message-ID is not permission: only the ticket's people (requester, participants, colleagues from the same
company, agents) may add to it; anyone else gets a new ticket linked to the old one.

A merged ticket leads to the ticket it was merged into (the *working* ticket, where state and commands go), but
the mail stays in the *thread* it was written to: the merged ticket's own conversation, whose people receive
the answers. When an agent's mail names two different tickets (the signed reply address one, the subject tag
another, as happens when a mail client autocompletes an old reply address), the match says so instead of
guessing: a command must reach the ticket the agent meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.parsers.message import ParsedMail
from ticketd.parsers.subject import SubjectInfo
from ticketd.rules.auth import AuthPolicy, signed_recipient
from ticketd.rules.identify import Sender
from ticketd.storage.models import Awaited, Customer, Message, Outbox, Participant, Ticket


@dataclass(frozen=True)
class Match:
    ticket: Ticket | None  # the working ticket the mail may be added to (merges followed)
    via: str | None = None  # "signed-address" | "references" | "subject-tag" | "answered-by"
    refused: Ticket | None = None  # found, but the sender takes no part in it
    thread: Ticket | None = None  # the conversation it was written to: ``ticket``, or one merged into it
    conflict: tuple[int, int] | None = None  # (reply address's number, subject tag's number) naming two tickets

    @property
    def conversation(self) -> Ticket | None:
        return self.thread or self.ticket


def _by_number(session: Session, number: int) -> Ticket | None:
    return session.exec(select(Ticket).where(Ticket.number == number)).first()


# Built once, executed with parameters on the transaction's connection: building a statement (and its cache key)
# for every mail cost more than running it. The rows these read are written by plain INSERTs (storage.batch),
# never left pending in the session, so skipping the ORM's autoflush misses nothing.
_IDS: sa.BindParameter[list[str]] = sa.bindparam("ids", expanding=True)
_MESSAGE_BY_ID = select(Message.ticket_id).where(col(Message.message_id).in_(_IDS)).limit(1)
_OUTBOX_BY_ID = select(Outbox.ticket_id).where(col(Outbox.message_id).in_(_IDS),
                                               col(Outbox.ticket_id).is_not(None)).limit(1)
_ANSWERS = sa.union_all(  # a stored mail answering this one, or one naming it as awaited: rank says which
    sa.select(col(Message.ticket_id).label("ticket_id"), sa.literal(0).label("rank"))
    .where(col(Message.in_reply_to).in_(_IDS), col(Message.direction) == "in"),
    sa.select(col(Awaited.ticket_id).label("ticket_id"), sa.literal(1).label("rank"))
    .where(col(Awaited.message_id).in_(_IDS))).subquery()
_ANSWERED_BY = sa.select(_ANSWERS.c.ticket_id).order_by(_ANSWERS.c.rank).limit(1)


def _by_references(session: Session, mail: ParsedMail) -> Ticket | None:
    refs = [r for r in (mail.in_reply_to, *reversed(mail.references)) if r]
    if not refs:
        return None
    conn = session.connection()
    found = conn.execute(_MESSAGE_BY_ID, {"ids": refs}).scalar()
    if found is None:
        found = conn.execute(_OUTBOX_BY_ID, {"ids": refs}).scalar()
    return session.get(Ticket, found) if found is not None else None


def answered_by(session: Session, mail: ParsedMail) -> Ticket | None:
    """The ticket of a stored mail that answers this one and overtook it: its In-Reply-To is this one, or it
    named this one further up its References (``Awaited``); or one that answers what this one answers too (a
    sibling reply that overtook it: both answer an original not stored yet)."""
    ids = [i[:998] for i in (mail.message_id, mail.in_reply_to, *mail.references) if i]
    if not ids:
        return None
    # One statement for both questions: nearly every new mail asks them and nearly always hears "none".
    found = session.connection().execute(_ANSWERED_BY, {"ids": ids}).scalar()
    return session.get(Ticket, found) if found is not None else None


def follow_merges(session: Session, ticket: Ticket) -> Ticket:
    seen = {ticket.id}
    while ticket.merged_into_id is not None and ticket.merged_into_id not in seen:
        target = session.get(Ticket, ticket.merged_into_id)
        if target is None:
            break
        seen.add(target.id)
        ticket = target
    return ticket


def takes_part(session: Session, ticket: Ticket, sender: Sender) -> bool:
    if sender.agent is not None:
        return True
    customer = sender.customer
    if customer is None:
        return False
    if ticket.requester_id == customer.id:
        return True
    if session.exec(select(Participant.id).where(Participant.ticket_id == ticket.id,
                                                 Participant.email == customer.email)).first() is not None:
        return True
    if ticket.company_id is not None and customer.company_id == ticket.company_id:
        return True
    requester = session.get(Customer, ticket.requester_id)
    return bool(requester and requester.company_id is not None and requester.company_id == customer.company_id)


def _conflict(session: Session, addressed: Ticket, subject: SubjectInfo) -> tuple[int, int] | None:
    """The subject's tag names another ticket than the signed address (merges followed on both sides)."""
    if subject.ticket_number is None or subject.ticket_number == addressed.number:
        return None
    tagged = _by_number(session, subject.ticket_number)
    if tagged is not None and follow_merges(session, tagged).id == follow_merges(session, addressed).id:
        return None
    return addressed.number, subject.ticket_number


def match_ticket(session: Session, auth: AuthPolicy, mail: ParsedMail, subject: SubjectInfo, sender: Sender,
                 now: datetime) -> Match:
    signed = signed_recipient(mail, auth, sender.address.email, now)
    if signed is not None and signed.ticket_number > 0:
        ticket = _by_number(session, signed.ticket_number)
        if ticket is not None:
            return Match(follow_merges(session, ticket), "signed-address", thread=ticket,
                         conflict=_conflict(session, ticket, subject))
    candidates = [("references", _by_references(session, mail))]
    if subject.ticket_number is not None:
        candidates.append(("subject-tag", _by_number(session, subject.ticket_number)))
    candidates.append(("answered-by", answered_by(session, mail)))
    refused = None
    for via, found in candidates:
        if found is None:
            continue
        working = follow_merges(session, found)
        if takes_part(session, found, sender):
            return Match(working, via, thread=found)
        if working.id != found.id and takes_part(session, working, sender):
            return Match(working, via, thread=working)  # named the merged ticket, but this is their own thread
        refused = refused or working
    return Match(None, refused=refused)
