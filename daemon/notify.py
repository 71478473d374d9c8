"""Every mail ticketd writes, composed from a template and queued in the caller's transaction.

Customers get mail in their own language, agents in the helpdesk's. Each mail threads into the right
conversation (In-Reply-To/References), carries the ticket tag, and a Reply-To signed for its recipient, so
the recipient's answer comes back authenticated and attached to the ticket.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2.sandbox import SandboxedEnvironment
from sqlmodel import Session, select

from ticketd.daemon.config import Config
from ticketd.daemon.outbox import OutgoingMail, queue_mail
from ticketd.daemon.signing import reply_address
from ticketd.daemon.storm import ALERT_KIND, alert_recently_sent
from ticketd.mailtemplates.render import make_environment, render
from ticketd.parsers.subject import ticket_tag
from ticketd.rules import identify
from ticketd.storage.models import SYSTEM_ACTOR, Agent, Company, Customer, Event, Message, Outbox, Participant, Ticket


@cache
def templates(override_dir: Path | None = None) -> SandboxedEnvironment:
    """One environment per template folder; SIGHUP clears the cache so edited templates are read again."""
    return make_environment(override_dir)


def _secret(config: Config) -> str:
    return config.security.secret.get_secret_value() if config.security.secret else ""


def signed_address(config: Config, ticket_number: int, party: str) -> str:
    return reply_address(config.helpdesk.address, ticket_number, party, _secret(config))


def ticket_context(session: Session, config: Config, ticket: Ticket,
                   requester: Customer | None = None) -> dict[str, Any]:
    requester = requester or session.get(Customer, ticket.requester_id)
    company = session.get(Company, ticket.company_id) if ticket.company_id else None
    assignee = session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
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
                             .order_by(Message.id)))
    ids = [message_id for message_id, _ in rows]
    last_in = next((message_id for message_id, direction in reversed(rows) if direction == "in"), None)
    return last_in, tuple(ids[:1] + ids[-9:]) if len(ids) > 10 else tuple(ids)


Thread = tuple[str | None, tuple[str, ...]]


def compose(session: Session, config: Config, *, kind: str, template: str, language: str, ticket: Ticket | None,
            to: list[tuple[str, str]], context: dict[str, Any], reply_party: str | None, automatic: bool = True,
            from_name: str | None = None, cc: Iterable[tuple[str, str]] = (),
            thread: Thread | None = None) -> OutgoingMail:
    """The mail, rendered and threaded; ``thread`` saves the lookup when the caller knows the conversation."""
    ctx = {"helpdesk": {"name": config.helpdesk.name, "address": config.helpdesk.address}, **context}
    if ticket is not None:
        ctx.setdefault("ticket", ticket_context(session, config, ticket))
        ctx.setdefault("tag", ticket_tag(config.helpdesk.tag, ticket.number))
    rendered = render(templates(config.helpdesk.templates_dir), template, language, ctx)
    subject = rendered.subject
    in_reply_to, references = (None, ())
    if ticket is not None:
        subject = f"{ticket_tag(config.helpdesk.tag, ticket.number)} {subject}"
        in_reply_to, references = thread or thread_ids(session, ticket)
    return OutgoingMail(
        kind=kind, to=to, cc=list(cc), subject=subject, body=rendered.body,
        ticket_id=ticket.id if ticket else None, in_reply_to=in_reply_to, references=references,
        reply_to=signed_address(config, ticket.number if ticket else 0, reply_party) if reply_party else None,
        from_name=from_name, automatic=automatic,
    )


def queued_event(ticket_id: int, kind: str, status: str, held: str | None, message_id: str) -> dict[str, Any]:
    """The ticket's record of a mail written for it (or held back by the storm caps)."""
    return {"ticket_id": ticket_id, "actor": SYSTEM_ACTOR, "what": "mail-suppressed" if status == "suppressed"
            else "mail-queued", "new": kind, "old": held, "via_message_id": message_id}


def _send(session: Session, config: Config, **kwargs: Any) -> Outbox:
    mail = compose(session, config, **kwargs)
    row = queue_mail(session, config, mail)
    if mail.ticket_id is not None:
        session.add(Event(**queued_event(mail.ticket_id, row.kind, row.status, row.last_error, row.message_id)))
    return row


def customer_language(config: Config, customer: Customer | None) -> str:
    return (customer.language if customer and customer.language else None) or config.helpdesk.language


def to_requester(session: Session, config: Config, ticket: Ticket, kind: str,
                 context: dict[str, Any] | None = None) -> Outbox:
    """An automatic mail to the ticket's requester (received, assigned, quote, …)."""
    customer = session.get(Customer, ticket.requester_id)
    assert customer is not None
    ctx = {"customer": {"name": customer.name or "", "email": customer.email}, **(context or {})}
    return _send(session, config, kind=kind, template=kind, language=customer_language(config, customer),
                 ticket=ticket, to=[(customer.name or "", customer.email)], context=ctx, reply_party=customer.email)


def relay_agent_reply(session: Session, config: Config, ticket: Ticket, agent: Agent, text: str) -> Outbox:
    """The agent's words to the customer, from the support address, CC to the ticket's participants."""
    customer = session.get(Customer, ticket.requester_id)
    assert customer is not None
    cc = [(p.name or "", p.email) for p in participants(session, ticket)]
    return _send(session, config, kind="agent-reply", template="relay", language=customer_language(config, customer),
                 ticket=ticket, to=[(customer.name or "", customer.email)], cc=cc,
                 context={"text": text, "agent": {"name": agent.name}, "customer": {"name": customer.name or ""}},
                 reply_party=customer.email, automatic=False, from_name=f"{agent.name} via {config.helpdesk.name}")


def to_agents(session: Session, config: Config, ticket: Ticket, agents: Iterable[Agent], kind: str,
              context: dict[str, Any]) -> list[Outbox]:
    """One mail per agent, each with a reply address signed for that agent (their answers authenticate)."""
    rows = []
    for agent in agents:
        rows.append(_send(session, config, kind=kind, template=kind, language=config.helpdesk.language,
                          ticket=ticket, to=[(agent.name, agent.email)], reply_party=agent.email,
                          context={"agent": {"name": agent.name, "email": agent.email}, **context}))
    return rows


def to_agent(session: Session, config: Config, agent: Agent, kind: str, context: dict[str, Any],
             ticket: Ticket | None = None) -> Outbox:
    return _send(session, config, kind=kind, template=kind, language=config.helpdesk.language, ticket=ticket,
                 to=[(agent.name, agent.email)], reply_party=agent.email,
                 context={"agent": {"name": agent.name, "email": agent.email}, **context})


def participants(session: Session, ticket: Ticket) -> list[Participant]:
    return list(session.exec(select(Participant).where(Participant.ticket_id == ticket.id).order_by(Participant.id)))


def agents_to_notify(session: Session, ticket: Ticket, exclude: int | None = None) -> list[Agent]:
    """The assignee; while unassigned, the agents of the ticket's group, or every active agent."""
    if ticket.assignee_id is not None:
        agent = session.get(Agent, ticket.assignee_id)
        return [agent] if agent is not None and agent.active and agent.id != exclude else []
    agents = [a for a in identify.agents(session) if a.active and not a.away and a.id != exclude]
    if ticket.group:
        agents = [a for a in agents if ticket.group in (a.groups or [])]
    return agents


def alert_admin(session: Session, config: Config, topic: str, detail: str) -> Outbox | None:
    """Tell the operator, at most once an hour per topic; without `helpdesk.admin` the log line must do."""
    if not config.helpdesk.admin or alert_recently_sent(session, topic):
        return None
    return _send(session, config, kind=ALERT_KIND, template="admin_alert", language=config.helpdesk.language,
                 ticket=None, to=[("", config.helpdesk.admin)], reply_party=None,
                 context={"topic": topic, "detail": detail})
