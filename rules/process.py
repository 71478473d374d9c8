"""The organisation's own stages per ticket type ([process.<type>]), and child and linked tickets.

A stage is the organisation's word for where a ticket stands (review, decision, the unit that fixes it,
completion); the fixed states of DESIGN §4 stay what the timers, the mails and the reports rely on. So each stage
*means* a state, and a move to a stage moves the state through ``commands.set_state`` (and so through
``states.change_state``): the graph, the SLA clock and the mails the move calls for are never bypassed. Only the
moves the configuration allows are taken, and a refusal lists them.

Children and links ([split], [parent=#N], [link=#N]) are recorded as events on both tickets, so each side's
history and the webhooks tell the same story. A parent is resolved or closed only once its children are done,
or when the agent says ``force`` (the forcing is an event naming the children left open).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, or_, select

from ticketd.parsers.commands import suggest
from ticketd.rules.sla import BusinessCalendar, Duration
from ticketd.rules.states import OPEN_STATES
from ticketd.storage import batch
from ticketd.storage.models import Ticket, TicketLink

__all__ = ["Process", "Stage", "children", "enter_stage_fields", "linked", "open_children", "stage_move_error"]


@dataclass(frozen=True)
class Stage:
    name: str
    state: str  # the ticket state the stage means (open, pending, resolved, closed, rejected)
    next: tuple[str, ...] = ()  # the stages a ticket may move on to from here; none: a last stage
    group: str | None = None  # entering the stage hands the ticket to this group (its policy picks the agent)
    target: Duration | None = None  # business time a ticket may stay in the stage before the managers are told


@dataclass(frozen=True)
class Process:
    """One ticket type's stages, the first one where its new tickets start."""

    type: str
    stages: tuple[Stage, ...]

    @property
    def first(self) -> Stage:
        return self.stages[0]

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str | None) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def allowed(self, current: str | None) -> tuple[str, ...]:
        """Where a ticket may go from ``current``; a ticket of the type without a stage yet (it changed type, or
        was opened before the process was configured) may enter the first stage."""
        stage = self.stage(current)
        return stage.next if stage is not None else (self.first.name,)


def stage_move_error(process: Process | None, ticket_type: str, current: str | None, target: str) -> str | None:
    """None when the move is allowed, else the sentence the agent reads (with the allowed moves)."""
    if process is None:
        return f"a {ticket_type} has no stages ([process.{ticket_type}] is not configured)"
    if process.stage(target) is None:
        hint = suggest(target, process.names())
        return (f"unknown stage {target!r}" + (f"; did you mean {hint}?" if hint else "")
                + f" (stages of a {ticket_type}: {', '.join(process.names())})")
    if target == current:
        return None
    allowed = process.allowed(current)
    if target not in allowed:
        where = f"from {current}" if current else "to start"
        return f"a {ticket_type} cannot move from {current or 'no stage'} to {target} ({where}: " \
            f"{', '.join(allowed) or 'none, it is a last stage'})"
    return None


def enter_stage_fields(stage: Stage, calendar: BusinessCalendar, now: datetime) -> dict[str, object]:
    """The ticket columns of a ticket entering ``stage`` at ``now``: its deadline there, a fresh breach mark."""
    return {"stage": stage.name, "stage_since": now,
            "stage_due": calendar.add(now, stage.target) if stage.target else None, "stage_breached_at": None}


def children(session: Session, ticket: Ticket) -> list[Ticket]:
    batch.flush(session)
    return list(session.exec(select(Ticket).where(Ticket.parent_id == ticket.id).order_by(col(Ticket.number))))


def open_children(session: Session, ticket: Ticket) -> list[Ticket]:
    return [child for child in children(session, ticket) if child.state in OPEN_STATES]


def linked(session: Session, ticket: Ticket) -> list[Ticket]:
    """The tickets linked to ``ticket``, from either side of the pair."""
    rows = session.exec(select(TicketLink).where(or_(TicketLink.ticket_id == ticket.id,
                                                     TicketLink.other_id == ticket.id)))
    ids = {row.other_id if row.ticket_id == ticket.id else row.ticket_id for row in rows}
    if not ids:
        return []
    return list(session.exec(select(Ticket).where(col(Ticket.id).in_(ids)).order_by(col(Ticket.number))))


def ancestors(session: Session, ticket: Ticket) -> list[int]:
    """The ids above ``ticket`` (its parent, that one's parent, …); the walk stops at a repeat."""
    found: list[int] = []
    current = ticket
    while current.parent_id is not None and current.parent_id not in found:
        found.append(current.parent_id)
        parent = session.get(Ticket, current.parent_id)
        if parent is None:
            break
        current = parent
    return found


ProcessTable = Mapping[str, Process]
