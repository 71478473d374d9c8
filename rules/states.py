"""The ticket state graph of DESIGN.md §4, and the one function through which every state change passes.

Commands, customers' replies, satisfaction answers, merges, spam and the timers all move tickets; when each did
it on its own, some forgot the SLA clock (a pending ticket closed as spam kept its pause) or the timestamps.
``change_state`` does all of it, once: the check against the graph, the audit event, the SLA clock, and the
``resolution_at``/``closed_at`` stamps. It also says which mails the move calls for (``MAILS``, beside the
graph), so the callers that send them no longer each decide it again from the states.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from sqlmodel import Session

from ticketd.parsers.commands import suggest
from ticketd.rules.sla import BusinessCalendar, Duration
from ticketd.storage import batch
from ticketd.storage.models import Ticket

STATES = ("new", "open", "pending", "resolved", "closed", "rejected")

TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "resolved", "closed", "rejected"}),
    "open": frozenset({"pending", "resolved", "closed", "rejected"}),
    "pending": frozenset({"open", "resolved", "closed", "rejected"}),
    "resolved": frozenset({"open", "closed"}),
    "closed": frozenset({"open"}),
    "rejected": frozenset({"open"}),
}

# Who made a move: an agent's command; the customer (their reply, or their satisfaction answer, even when an agent
# records it for them); or ticketd's own timer (auto-close).
Mover = Literal["agent", "customer", "timer"]

# The mails a move calls for, by who made it: the customer's mail of each name ("resolved" asks whether they are
# satisfied, "reopened" says their finished ticket is open again) and "agent_reopened", the agents' news that
# the customer is not done. A move not listed calls for none: waiting (pending) and taking up (open) are the
# agents' own business. A merge or spam closes without the "closed" mail (``rules.commands``).
MAILS: dict[tuple[Mover, str, str], tuple[str, ...]] = {
    ("agent", "new", "resolved"): ("resolved",),
    ("agent", "open", "resolved"): ("resolved",),
    ("agent", "pending", "resolved"): ("resolved",),
    ("agent", "new", "rejected"): ("rejected",),
    ("agent", "open", "rejected"): ("rejected",),
    ("agent", "pending", "rejected"): ("rejected",),
    ("agent", "new", "closed"): ("closed",),
    ("agent", "open", "closed"): ("closed",),
    ("agent", "pending", "closed"): ("closed",),
    ("agent", "resolved", "closed"): ("closed",),
    ("agent", "resolved", "open"): ("reopened",),
    ("agent", "closed", "open"): ("reopened",),
    ("agent", "rejected", "open"): ("reopened",),
    ("customer", "resolved", "closed"): ("closed",),  # satisfied
    ("customer", "resolved", "open"): ("reopened", "agent_reopened"),  # not satisfied, or more to ask
    ("customer", "closed", "open"): ("reopened", "agent_reopened"),
    ("customer", "rejected", "open"): ("reopened", "agent_reopened"),
    ("timer", "resolved", "closed"): ("closed",),  # no answer to the resolved mail
}
OUTCOME_MAILS = ("resolved", "rejected")  # the customer learns the outcome; the agent's words may ride in it


@dataclass(frozen=True)
class StateChange:
    """A move and what it calls for: ``mails`` names the mails (``MAILS``) its caller sends."""

    old: str
    new: str
    changed: bool
    mails: tuple[str, ...] = ()
    by: Mover = "agent"

    def then(self, later: StateChange) -> StateChange:
        """Two moves in one go (the commands of one mail) as one: from this one's old state to the later one's
        new state, calling for what that whole move calls for when made by whoever made the later one."""
        if not later.changed:
            return self
        if not self.changed:
            return later
        return StateChange(self.old, later.new, True, MAILS.get((later.by, self.old, later.new), ()), later.by)

    def without(self, *mails: str) -> StateChange:
        return replace(self, mails=tuple(m for m in self.mails if m not in mails))


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


def change_state(session: Session, ticket: Ticket, target: str, *, by: Mover, actor: str, now: datetime,
                 calendar: BusinessCalendar, via_message_id: str | None = None, force: bool = False) -> StateChange:
    """Move ``ticket`` to ``target`` and say what the move calls for; ``changed`` is False when it was there
    already. ``force`` is for ticketd's own moves that the agents' graph does not offer (a merged or spam ticket
    closes from any state)."""
    old = ticket.state
    if target == old:
        return StateChange(old, old, False, by=by)
    if not force:
        error = transition_error(old, target)
        if error:
            raise StateError(error)
    batch.event(session, ticket_id=ticket.id, actor=actor, what="state", old=old, new=target,
                via_message_id=via_message_id, at=now)
    sla_on_state_change(calendar, ticket, old, target, now)
    ticket.state, ticket.updated_at = target, now
    if target == "resolved":
        ticket.resolution_at = now
    if target in FINISHED:
        ticket.closed_at = now
    if target in OPEN_STATES:
        ticket.closed_at = None
    return StateChange(old, target, True, MAILS.get((by, old, target), ()), by)


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
        if ticket.stage_due is not None:  # a stage's deadline ([process.<type>]) stands still too
            ticket.stage_due = calendar.add(ticket.stage_due, extra)
