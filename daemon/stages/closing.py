"""The end of a ticket's life: the resolved mail with its satisfaction question, the customer's answer, the
reopening when they are not done, rejection, and closing (by the customer, an agent, or time).

ISO 10002 asks that the complainant be told the outcome and asked whether it settles the matter; a ticket
is closed by the customer's yes or by their silence, never only by the agent's word. What a customer writes
back is read as they mean it (``parsers.reply_intent``): a short thank-you settles nothing and unsettles
nothing, a complaint is dissatisfaction, a question is more work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import notify
from ticketd.daemon.outgoing.files import File
from ticketd.parsers.subject import ticket_tag
from ticketd.rules import actions
from ticketd.rules.states import StateChange, change_state
from ticketd.storage import batch
from ticketd.storage.models import SYSTEM_ACTOR, Agent, Customer, Outbox, Ticket


def satisfaction_links(config: Config, ticket: Ticket, customer: Customer) -> tuple[str, str]:
    """One-click mailto links to the customer's signed address; the subject carries the answer as a command."""
    address = notify.signed_address(config, ticket.number, customer.email, mailbox=ticket.mailbox)
    tag = ticket_tag(config.helpdesk.tag, ticket.number)

    def link(answer: str) -> str:
        return f"mailto:{address}?subject=" + quote(f"Re: {tag} {ticket.subject} [{answer}]", safe="")
    return link("satisfied"), link("not-satisfied")


def send_resolved(session: Session, config: Config, ticket: Ticket, text: str, *,
                  files: Sequence[File] = ()) -> Outbox:
    """The outcome and the question: the agent's words (and files), the resolution, and the two answers."""
    customer = notify.requester_of(session, ticket)
    notify.withdraw_assigned(session, ticket, "the ticket was resolved first")
    satisfied, not_satisfied = satisfaction_links(config, ticket, customer)
    days = max(1, round(config.closing.auto_close_after.total_seconds() / 86400))
    did = [{"what": a.what, "result": a.result or ""} for a in actions.of_ticket(session, ticket.id)
           if a.customer and a.status == "done"]  # "what we did": only the actions marked for the customer
    return notify.to_requester(session, config, ticket, "resolved", {
        "text": text, "satisfied_link": satisfied, "not_satisfied_link": not_satisfied, "auto_close_days": days,
        "done_for_customer": did}, cause="agent", files=files)


def send_rejected(session: Session, config: Config, ticket: Ticket, explanation: str, *,
                  files: Sequence[File] = ()) -> Outbox:
    notify.withdraw_assigned(session, ticket, "the ticket was rejected first")
    return notify.to_requester(session, config, ticket, "rejected", {"explanation": explanation}, cause="agent",
                               files=files)


def send_closed(session: Session, config: Config, ticket: Ticket, reason: str, *, cause: str) -> Outbox:
    days = max(1, round(config.closing.reopen_within.total_seconds() / 86400))
    notify.withdraw_assigned(session, ticket, "the ticket was closed first")
    return notify.to_requester(session, config, ticket, "closed", {"reason": reason, "reopen_days": days},
                               cause=cause)


def send_reopened(session: Session, config: Config, ticket: Ticket, how: str, *, cause: str,
                  conversation: Ticket | None = None) -> Outbox:
    """The customer learns their finished ticket is open again, and why (their reply, their answer, an agent)."""
    return notify.to_requester(session, config, ticket, "reopened", {"how": how}, cause=cause,
                               conversation=conversation)


def reopen_watchers(session: Session, ticket: Ticket) -> list[Agent]:
    """Whoever hears of the ticket's mail, and every manager: an unhappy customer is the manager's business too."""
    people = {a.id: a for a in notify.agents_to_notify(session, ticket)}
    people.update({a.id: a for a in notify.managers(session)})
    return sorted(people.values(), key=lambda a: a.email)


def tell_reopened(session: Session, config: Config, ticket: Ticket, how: str, message: dict[str, Any], *,
                  unhappy: bool, cause: str, conversation: Ticket | None = None, files: Sequence[File] = ()) -> None:
    """The agents hear of a reopened ticket: the assignee and the managers when the customer is unhappy, else
    whoever hears of the ticket's mail."""
    watchers = reopen_watchers(session, ticket) if unhappy else notify.agents_to_notify(session, ticket)
    notify.to_agents(session, config, ticket, watchers, "agent_reopened",
                     {"how": how, "message": message, "unhappy": unhappy}, cause=cause, conversation=conversation,
                     files=files)


def record_not_satisfied(session: Session, config: Config, ticket: Ticket, actor: str, via_message_id: str | None,
                         now: datetime) -> StateChange:
    """The customer's complaint about the outcome: not satisfied, and the ticket is open again."""
    batch.event(session, ticket_id=ticket.id, actor=actor, what="satisfaction", old=ticket.satisfaction,
                new="not-satisfied", via_message_id=via_message_id, at=now)
    ticket.satisfaction = "not-satisfied"
    return reopen(session, config, ticket, actor, via_message_id, now)


def reopen(session: Session, config: Config, ticket: Ticket, actor: str, via_message_id: str | None,
           now: datetime) -> StateChange:
    """The customer is not done: open again; the change names the mails that tell it."""
    return change_state(session, ticket, "open", by="customer", actor=actor, now=now, calendar=config.calendar,
                        via_message_id=via_message_id)


def auto_close(session: Session, config: Config, ticket: Ticket, now: datetime) -> None:
    """No answer to the resolved mail within ``closing.auto_close_after``: closed, and the customer told."""
    change = change_state(session, ticket, "closed", by="timer", actor=SYSTEM_ACTOR, now=now,
                          calendar=config.calendar)
    batch.event(session, ticket_id=ticket.id, actor=SYSTEM_ACTOR, what="auto-close",
                new=f"no answer since {notify.local_time(config, ticket.resolution_at)}", at=now)
    if "closed" in change.mails:
        send_closed(session, config, ticket, "auto", cause="timer")
