"""The ticket state graph of DESIGN.md §4, and the one function through which every state change passes.

Commands, customers' replies, satisfaction answers, merges, spam and the timers all move tickets; when each did
it on its own, some forgot the SLA clock (a pending ticket closed as spam kept its pause) or the timestamps.
``change_state`` does all of it, once: the check against the graph, the audit event, the SLA clock, and the
``resolution_at``/``closed_at`` stamps.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from ticketd.parsers.commands import suggest
from ticketd.rules.sla import BusinessCalendar, Duration
from ticketd.storage.models import Event, Ticket

STATES = ("new", "open", "pending", "resolved", "closed", "rejected")

TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "resolved", "closed", "rejected"}),
    "open": frozenset({"pending", "resolved", "closed", "rejected"}),
    "pending": frozenset({"open", "resolved", "closed", "rejected"}),
    "resolved": frozenset({"open", "closed"}),
    "closed": frozenset({"open"}),
    "rejected": frozenset({"open"}),
}

# States in which the customer's reply means "not done yet".
REOPENED_BY_CUSTOMER = frozenset({"pending", "resolved"})
OPEN_STATES = frozenset({"new", "open", "pending"})
FINISHED = frozenset({"closed", "rejected"})  # mail on these opens a new ticket, or reopens within the window


def transition_error(current: str, target: str) -> str | None:
    """None when the move is allowed, else the sentence the agent reads."""
    if target not in STATES:
        hint = suggest(target, STATES)
        return f"unknown state {target!r}" + (f"; did you mean {hint}?" if hint else "") + \
            f" (states: {', '.join(STATES)})"
    if target == current:
        return None
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        return f"a {current} ticket cannot become {target} (from {current}: {allowed})"
    return None


def set_state_allowed(current: str, target: str) -> bool:
    return transition_error(current, target) is None


class StateError(ValueError):
    """A move outside the graph; the message is the sentence for the agent."""


def change_state(session: Session, ticket: Ticket, target: str, *, actor: str, now: datetime,
                 calendar: BusinessCalendar, via_message_id: str | None = None, force: bool = False) -> bool:
    """Move ``ticket`` to ``target``; False when it is there already. ``force`` is for ticketd's own moves that
    the agents' graph does not offer (a merged or spam ticket closes from any state)."""
    old = ticket.state
    if target == old:
        return False
    if not force:
        error = transition_error(old, target)
        if error:
            raise StateError(error)
    session.add(Event(ticket_id=ticket.id, actor=actor, what="state", old=old, new=target,
                      via_message_id=via_message_id, at=now))
    sla_on_state_change(calendar, ticket, old, target, now)
    ticket.state, ticket.updated_at = target, now
    if target == "resolved":
        ticket.resolution_at = now
    if target in FINISHED:
        ticket.closed_at = now
    if target in OPEN_STATES:
        ticket.closed_at = None
    return True


def sla_on_state_change(calendar: BusinessCalendar, ticket: Ticket, old: str, new: str, now: datetime) -> None:
    """Entering ``pending`` stops the SLA clock; leaving it moves the deadlines by the business time it stood."""
    if new == "pending" and old != "pending":
        ticket.sla_paused_at = now
    elif old == "pending" and new != "pending" and ticket.sla_paused_at is not None:
        stood = int(calendar.between(ticket.sla_paused_at, now).total_seconds())
        ticket.sla_paused_at = None
        if stood <= 0:
            return
        ticket.sla_paused_seconds += stood
        extra = Duration(seconds=stood)
        if ticket.first_response_at is None and ticket.first_response_due is not None:
            ticket.first_response_due = calendar.add(ticket.first_response_due, extra)
        if ticket.resolution_due is not None:
            ticket.resolution_due = calendar.add(ticket.resolution_due, extra)
