"""The end of a ticket's life: the resolved mail with its satisfaction question, the customer's answer, the
reopening when they are not satisfied, rejection, and closing (by the customer, an agent, or time).

ISO 10002 asks that the complainant be told the outcome and asked whether it settles the matter; a ticket
is closed by the customer's yes or by their silence, never only by the agent's word.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from ticketd.daemon import notify, sla_clock
from ticketd.daemon.config import Config
from ticketd.parsers.subject import ticket_tag
from ticketd.rules import identify
from ticketd.storage.models import SYSTEM_ACTOR, Agent, Customer, Event, Outbox, Ticket, utcnow


def satisfaction_links(config: Config, ticket: Ticket, customer: Customer) -> tuple[str, str]:
    """One-click mailto links to the customer's signed address; the subject carries the answer as a command."""
    address = notify.signed_address(config, ticket.number, customer.email)
    tag = ticket_tag(config.helpdesk.tag, ticket.number)

    def link(answer: str) -> str:
        return f"mailto:{address}?subject=" + quote(f"Re: {tag} {ticket.subject} [{answer}]", safe="")
    return link("satisfied"), link("not-satisfied")


def send_resolved(session: Session, config: Config, ticket: Ticket, text: str) -> Outbox:
    """The outcome and the question: the agent's words, the resolution, and the two answers."""
    customer = session.get(Customer, ticket.requester_id)
    assert customer is not None
    satisfied, not_satisfied = satisfaction_links(config, ticket, customer)
    days = max(1, round(config.closing.auto_close_after.total_seconds() / 86400))
    return notify.to_requester(session, config, ticket, "resolved", {
        "text": text, "satisfied_link": satisfied, "not_satisfied_link": not_satisfied, "auto_close_days": days})


def send_rejected(session: Session, config: Config, ticket: Ticket, explanation: str) -> Outbox:
    return notify.to_requester(session, config, ticket, "rejected", {"explanation": explanation})


def send_closed(session: Session, config: Config, ticket: Ticket, reason: str) -> Outbox:
    return notify.to_requester(session, config, ticket, "closed", {"reason": reason})


def reopen_watchers(session: Session, ticket: Ticket) -> list[Agent]:
    """The assignee and every manager: an unhappy customer is the manager's business too."""
    people = [a for a in identify.agents(session) if a.active and (a.id == ticket.assignee_id or a.role == "manager")]
    return people or notify.agents_to_notify(session, ticket)


def tell_reopened(session: Session, config: Config, ticket: Ticket, how: str, message: dict[str, Any]) -> None:
    notify.to_agents(session, config, ticket, reopen_watchers(session, ticket), "agent_reopened",
                     {"how": how, "message": message})


def record_not_satisfied(session: Session, config: Config, ticket: Ticket, actor: str,
                         via_message_id: str | None) -> None:
    """A plain reply to the resolved mail: the customer is not satisfied, the ticket is open again."""
    now = utcnow()
    for what, old, new in (("satisfaction", ticket.satisfaction, "not-satisfied"), ("state", ticket.state, "open")):
        session.add(Event(ticket_id=ticket.id, actor=actor, what=what, old=old, new=new,
                          via_message_id=via_message_id))
    sla_clock.on_state_change(config, ticket, ticket.state, "open", now)
    ticket.satisfaction, ticket.state, ticket.closed_at, ticket.updated_at = "not-satisfied", "open", None, now


def auto_close(session: Session, config: Config, ticket: Ticket) -> None:
    """No answer to the resolved mail within ``closing.auto_close_after``: closed, and the customer told."""
    now = utcnow()
    session.add(Event(ticket_id=ticket.id, actor=SYSTEM_ACTOR, what="state", old=ticket.state, new="closed"))
    session.add(Event(ticket_id=ticket.id, actor=SYSTEM_ACTOR, what="auto-close",
                      new=f"no answer since {notify.local_time(config, ticket.resolution_at)}"))
    ticket.state, ticket.closed_at, ticket.updated_at = "closed", now, now
    send_closed(session, config, ticket, "auto")
