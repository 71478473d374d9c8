"""Every mail ticketd writes, composed from a template and queued in the caller's transaction.

Customers get mail in their own language, agents in the helpdesk's. Each mail threads into the right
conversation (In-Reply-To/References), carries the ticket tag, and a Reply-To signed for its recipient, so
the recipient's answer comes back authenticated and attached to the ticket.

A ticket merged into another keeps its own conversation: its requester's mail is recorded on it and answered
on it, with its own tag, while the work (state, assignee, deadlines) happens on the ticket it was merged into.
``conversation`` names that thread wherever it differs from the ticket; a customer only ever receives mail of
their own thread, so a merge never shows one customer another's words or address.

Every mail says what caused it (``cause``): only automatic answers to inbound mail are held back by the storm
caps (see ``storm``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing.files import File, html_twin, pack, size_text
from ticketd.daemon.outgoing.outbox import OutgoingMail, queue_mail
from ticketd.mailtemplates.render import render
from ticketd.parsers.subject import ticket_tag
from ticketd.rules import actions, identify
from ticketd.rules.signing import reply_address
from ticketd.storage import batch
from ticketd.storage.models import (
    SYSTEM_ACTOR,
    Agent,
    Company,
    Customer,
    Message,
    Outbox,
    Participant,
    Ticket,
    utcnow,
)

# A change of assignee is told this long after it happens, and a newer change replaces it meanwhile: a ticket
# handed back and forth in a few minutes tells its customer once, with the final name, or not at all when it
# ends with the agent they heard of. The first name a customer hears goes out at once.
ASSIGNED_QUIET = timedelta(minutes=5)


def _secret(config: Config) -> str:
    return config.security.secret.get_secret_value() if config.security.secret else ""


def signed_address(config: Config, ticket_number: int, party: str, now: datetime | None = None,
                   mailbox: str | None = None) -> str:
    """Signed on today's date (the wall clock unless given): it stays valid ``signed_address_days`` from now.
    On the domain of the ticket's ``mailbox`` identity: the answer comes back to the address it was sent from."""
    return reply_address(config.identity(mailbox).reply_base, ticket_number, party, _secret(config), now or utcnow())


def ticket_context(session: Session, config: Config, ticket: Ticket,
                   requester: Customer | None = None) -> dict[str, Any]:
    requester = requester or session.get(Customer, ticket.requester_id)
    company = batch.held(session, Company, ticket.company_id) if ticket.company_id else None
    assignee = identify.agent_by_id(session, ticket.assignee_id) if ticket.assignee_id else None
    return {
        "number": ticket.number, "subject": ticket.subject, "state": ticket.state, "priority": ticket.priority,
        "type": ticket.type, "category": ticket.category or "", "source": ticket.source,
        "company": company.name if company else "",
        "within_contract": ticket.within_contract,
        "contract_until": company.contract_until.date().isoformat() if company and company.contract_until else "",
        "requester_name": (requester.name if requester else "") or "",
        "requester_email": requester.email if requester else "",
        "assignee_name": assignee.name if assignee else "",
        "assignee_email": assignee.email if assignee else "",
        "group": ticket.group or "",
        "created_at": ticket.created_at.astimezone(config.tz).strftime("%Y-%m-%d %H:%M"),
        "root_cause": ticket.root_cause or "", "action_plan": ticket.action_plan or "",
        "resolution": ticket.resolution or "",
        "first_response_due": local_time(config, ticket.first_response_due),
        "resolution_due": local_time(config, ticket.resolution_due),
    }


def local_time(config: Config, at: datetime | None) -> str:
    return at.astimezone(config.tz).strftime("%Y-%m-%d %H:%M") if at is not None else ""


def thread_ids(session: Session, ticket: Ticket) -> tuple[str | None, tuple[str, ...]]:
    """(In-Reply-To, References) that put a new mail at the end of the ticket's conversation."""
    rows = list(session.exec(select(Message.message_id, Message.direction).where(Message.ticket_id == ticket.id)
                             .order_by(col(Message.id))))
    ids = [message_id for message_id, _ in rows]
    last_in = next((message_id for message_id, direction in reversed(rows) if direction == "in"), None)
    return last_in, tuple(ids[:1] + ids[-9:]) if len(ids) > 10 else tuple(ids)


Thread = tuple[str | None, tuple[str, ...]]


def compose(session: Session, config: Config, *, kind: str, template: str, language: str, ticket: Ticket | None,
            to: list[tuple[str, str]], context: dict[str, Any], reply_party: str | None, cause: str,
            automatic: bool = True, from_name: str | None = None, cc: Iterable[tuple[str, str]] = (),
            thread: Thread | None = None, conversation: Ticket | None = None, files: Sequence[File] = (),
            announces: str | None = None, not_before: datetime | None = None) -> OutgoingMail:
    """The mail, rendered and threaded; ``thread`` saves the lookup when the caller knows the conversation.

    ``ticket`` gives the facts the text shows; ``conversation`` (default: the ticket) the tag, the threading
    and the number the reply address is signed for. ``files`` ride along within the budget.
    """
    conversation = conversation or ticket
    identity = config.identity(conversation.mailbox if conversation else None)
    packed = pack(files, config.limits.forward_attachments_bytes)
    ctx = {"helpdesk": identity.context(),
           "attached": list(packed.attached), "left_out": list(packed.left_out),
           "files_budget": size_text(config.limits.forward_attachments_bytes), **context}
    if ticket is not None and conversation is not None:
        ctx.setdefault("ticket", ticket_context(session, config, ticket))
        ctx.setdefault("tag", ticket_tag(config.helpdesk.tag, conversation.number))
        ctx.setdefault("merged_into", ticket_tag(config.helpdesk.tag, ticket.number)
                       if conversation.id != ticket.id else "")
    rendered = render(config.templates_for(identity), template, language, ctx)
    subject = rendered.subject
    references: tuple[str, ...]
    in_reply_to, references = (None, ())
    if conversation is not None:
        subject = f"{ticket_tag(config.helpdesk.tag, conversation.number)} {subject}"
        in_reply_to, references = thread or thread_ids(session, conversation)
    return OutgoingMail(
        kind=kind, to=to, cc=list(cc), subject=subject, body=rendered.body,
        ticket_id=conversation.id if conversation else None, in_reply_to=in_reply_to, references=references,
        reply_to=signed_address(config, conversation.number if conversation else 0, reply_party,
                                mailbox=identity.mailbox) if reply_party else None,
        from_name=from_name, automatic=automatic, cause=cause, language=rendered.language,
        attachments=packed.parts, html=html_twin(rendered.body, packed.parts) if packed.has_inline else None,
        announces=announces, not_before=not_before, mailbox=identity.mailbox,
    )


def queued_event(ticket_id: int, kind: str, status: str, held: str | None, message_id: str) -> dict[str, Any]:
    """The ticket's record of a mail written for it (or held back by the storm caps)."""
    return {"ticket_id": ticket_id, "actor": SYSTEM_ACTOR, "what": "mail-suppressed" if status == "suppressed"
            else "mail-queued", "new": kind, "old": held, "via_message_id": message_id}


def _send(session: Session, config: Config, **kwargs: Any) -> Outbox:
    mail = compose(session, config, **kwargs)
    row = queue_mail(session, config, mail)
    if mail.ticket_id is not None:
        batch.event(session, **queued_event(mail.ticket_id, row.kind, row.status, row.last_error, row.message_id))
    return row


def customer_language(config: Config, customer: Customer | None) -> str:
    return (customer.language if customer and customer.language else None) or config.helpdesk.language


def requester_of(session: Session, ticket: Ticket) -> Customer:
    customer = session.get(Customer, ticket.requester_id)
    assert customer is not None
    return customer


def to_requester(session: Session, config: Config, ticket: Ticket, kind: str,
                 context: dict[str, Any] | None = None, *, cause: str, conversation: Ticket | None = None,
                 files: Sequence[File] = (), announces: str | None = None,
                 not_before: datetime | None = None, thread: Thread | None = None) -> Outbox:
    """An automatic mail to the requester of the conversation (received, assigned, resolved, reopened, …).

    A customer reads about their own ticket only: the facts are the conversation's (its number, its subject),
    never those of the ticket it was merged into, which belong to someone else's request."""
    conversation = conversation or ticket
    customer = requester_of(session, conversation)
    ctx = {"customer": {"name": customer.name or "", "email": customer.email}, **(context or {})}
    return _send(session, config, kind=kind, template=kind, language=customer_language(config, customer),
                 ticket=conversation, to=[(customer.name or "", customer.email)], context=ctx,
                 reply_party=customer.email, cause=cause, files=files, announces=announces, not_before=not_before,
                 thread=thread)


def relay_agent_reply(session: Session, config: Config, ticket: Ticket, agent: Agent, text: str, *,
                      conversation: Ticket | None = None, files: Sequence[File] = ()) -> Outbox:
    """The agent's words to the customer, from the address the customer wrote to (the conversation's mailbox
    identity), CC to the conversation's participants."""
    conversation = conversation or ticket
    customer = requester_of(session, conversation)
    cc = [(p.name or "", p.email) for p in participants(session, conversation)]
    return _send(session, config, kind="agent-reply", template="relay", language=customer_language(config, customer),
                 ticket=conversation, to=[(customer.name or "", customer.email)], cc=cc,
                 context={"text": text, "agent": {"name": agent.name}, "customer": {"name": customer.name or ""}},
                 reply_party=customer.email, automatic=False, cause="agent", files=files,
                 from_name=f"{agent.name} via {config.identity(conversation.mailbox).name}")


def action_lines(session: Session, config: Config, ticket: Ticket, now: datetime | None = None) -> list[dict[str, Any]]:
    """The ticket's actions as the templates show them (``_facts``: "#3 open, due …, owner …")."""
    now = now or utcnow()
    return [actions.facts(a, identify.agent_by_id(session, a.owner_id), now, config.tz, ticket.number)
            for a in actions.of_ticket(session, ticket.id)]


def to_agents(session: Session, config: Config, ticket: Ticket, agents: Iterable[Agent], kind: str,
              context: dict[str, Any], *, cause: str, conversation: Ticket | None = None,
              files: Sequence[File] = (), thread: Thread | None = None) -> list[Outbox]:
    """One mail per agent, each with a reply address signed for that agent (their answers authenticate); the
    ticket's actions ride along, for the facts every agents' mail shows."""
    agents = list(agents)
    if agents and "actions" not in context:
        context = {"actions": action_lines(session, config, ticket), **context}
    rows = []
    for agent in agents:
        rows.append(_send(session, config, kind=kind, template=kind, language=config.helpdesk.language,
                          ticket=ticket, conversation=conversation, to=[(agent.name, agent.email)],
                          reply_party=agent.email, cause=cause, files=files, thread=thread,
                          context={"agent": {"name": agent.name, "email": agent.email}, **context}))
    return rows


def to_agent(session: Session, config: Config, agent: Agent, kind: str, context: dict[str, Any], *, cause: str,
             ticket: Ticket | None = None) -> Outbox:
    return _send(session, config, kind=kind, template=kind, language=config.helpdesk.language, ticket=ticket,
                 to=[(agent.name, agent.email)], reply_party=agent.email, cause=cause,
                 context={"agent": {"name": agent.name, "email": agent.email}, **context})


def last_customer_message(session: Session, ticket: Ticket) -> dict[str, Any]:
    """What the customer last wrote, for an agent who gets the ticket handed over without a word of their own."""
    row = session.exec(select(Message).where(Message.ticket_id == ticket.id, Message.kind == "customer")
                       .order_by(col(Message.id).desc()).limit(1)).first()
    if row is None:
        return {"from_name": "", "from_email": "", "text": ""}
    return {"from_name": row.from_name or "", "from_email": row.from_addr, "text": row.text}


def participants(session: Session, ticket: Ticket) -> list[Participant]:
    return list(session.exec(select(Participant).where(Participant.ticket_id == ticket.id)
                             .order_by(col(Participant.id))))


def agents_to_notify(session: Session, ticket: Ticket, exclude: int | None = None) -> list[Agent]:
    """Who hears of the ticket's mail: the assignee while at work; else (unassigned, away or gone) the agents of
    its group who are at work, else the managers, else every agent at work. A ticket is never left unheard."""
    everyone = [a for a in identify.agents(session) if a.active and a.id != exclude]
    if ticket.assignee_id is not None:
        assignee = next((a for a in everyone if a.id == ticket.assignee_id), None)
        if assignee is not None and not assignee.away:
            return [assignee]
        if ticket.assignee_id == exclude:
            return []
    at_work = [a for a in everyone if not a.away]
    if ticket.group:
        group = [a for a in at_work if ticket.group in (a.groups or [])]
        if group:
            return group
    if ticket.assignee_id is not None or ticket.group:  # their person or group is not there: the managers
        managers = [a for a in everyone if a.role == "manager"]
        if managers:
            return managers
    return at_work


def managers(session: Session) -> list[Agent]:
    return [a for a in identify.agents(session) if a.active and a.role == "manager"]


def withdraw_assigned(session: Session, ticket: Ticket, why: str) -> None:
    """An "assigned to" mail still waiting for its quiet period is dropped: a later one replaces it, or the
    ticket's outcome (resolved, rejected, closed) makes it moot. Only rows still waiting are touched."""
    table = Outbox.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ without declaring it
    session.flush()
    session.connection().execute(
        sa.update(table).where(table.c.ticket_id == ticket.id, table.c.kind == "assigned",
                               table.c.status.in_(("queued", "failed"))).values(status="superseded", last_error=why))


def tell_assigned(session: Session, config: Config, ticket: Ticket, now: datetime, *, cause: str,
                  conversation: Ticket | None = None, thread: Thread | None = None) -> Outbox | None:
    """The customer hears "assigned to X" once per real change, never several within a few minutes.

    The first name goes out at once. A later change waits ``ASSIGNED_QUIET``, and an earlier one still waiting
    is replaced by it; when the ticket is back with the agent the customer last heard of, nothing goes out at
    all. The UPDATE only touches rows still waiting, so a mail another instance is sending right now stays sent.
    """
    conversation = conversation or ticket
    assignee = identify.agent_by_id(session, ticket.assignee_id) if ticket.assignee_id else None
    table = Outbox.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ without declaring it
    mine = sa.and_(table.c.ticket_id == conversation.id, table.c.kind == "assigned")
    withdraw_assigned(session, conversation, "superseded by a later assignment")
    last = session.connection().execute(sa.select(table.c.announces, table.c.sent_at).where(
        mine, table.c.status == "sent").order_by(table.c.id.desc()).limit(1)).first()
    if assignee is None or (last is not None and last.announces == assignee.email):
        return None
    not_before = now + ASSIGNED_QUIET if last is not None else None
    return to_requester(session, config, ticket, "assigned", cause=cause, conversation=conversation,
                        announces=assignee.email, not_before=not_before, thread=thread)
