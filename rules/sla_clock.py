"""A ticket's SLA deadlines, in business time: set when it opens, moved when its priority changes, and pushed
back by the business time it spends waiting for the customer (``pending`` stops the clock: see
``rules.states.change_state``, through which every state change passes).

The targets and the calendar come in as values (``SlaClock``, built once from the ``[sla]`` section by the
configuration), so the commands that move deadlines need no configuration object and no daemon module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from sqlmodel import Session

from ticketd.rules.sla import BusinessCalendar, Duration
from ticketd.storage.models import Company, Ticket

__all__ = ["PRIORITIES", "SlaClock", "SlaTargets", "due_times", "reschedule"]

PRIORITIES = ("low", "normal", "high", "urgent")
PerPriority = Mapping[str, Duration]


def _frozen(table: Mapping[str, Duration]) -> PerPriority:
    return MappingProxyType(dict(table))


@dataclass(frozen=True)
class SlaTargets:
    """The first response and resolution targets per priority; a plan (a company's contract) names only the
    priorities it changes, the others keep the defaults."""

    first_response: PerPriority
    resolution: PerPriority
    plans: Mapping[str, tuple[PerPriority, PerPriority]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_response", _frozen(self.first_response))
        object.__setattr__(self, "resolution", _frozen(self.resolution))
        object.__setattr__(self, "plans", MappingProxyType(
            {name: (_frozen(first), _frozen(resolution)) for name, (first, resolution) in self.plans.items()}))

    def targets(self, plan: str | None, priority: str) -> tuple[Duration, Duration]:
        """(first response, resolution) for a priority; an unknown plan (a company's stale setting) falls back to
        the defaults instead of failing a ticket."""
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}; priorities are {', '.join(PRIORITIES)}")
        first, resolution = self.first_response[priority], self.resolution[priority]
        chosen = self.plans.get(plan) if plan is not None else None
        if chosen is not None:
            first = chosen[0].get(priority) or first
            resolution = chosen[1].get(priority) or resolution
        return first, resolution


@dataclass(frozen=True)
class SlaClock:
    """The helpdesk's business calendar and its targets: everything a deadline is computed from."""

    calendar: BusinessCalendar
    targets: SlaTargets


def due_times(clock: SlaClock, plan: str | None, priority: str, start: datetime,
              paused_seconds: int = 0) -> tuple[datetime, datetime]:
    """(first response due, resolution due) for a ticket opened at ``start``."""
    calendar = clock.calendar
    first, resolution = clock.targets.targets(plan, priority)
    extra = Duration(seconds=paused_seconds)
    first_due, resolution_due = calendar.add(start, first), calendar.add(start, resolution)
    if paused_seconds:
        first_due, resolution_due = calendar.add(first_due, extra), calendar.add(resolution_due, extra)
    return first_due, resolution_due


def reschedule(session: Session, clock: SlaClock, ticket: Ticket) -> None:
    """After a priority change: the deadlines the new priority gives, counted from the ticket's opening."""
    company = session.get(Company, ticket.company_id) if ticket.company_id else None
    first_due, resolution_due = due_times(clock, company.sla_plan if company else None, ticket.priority,
                                          ticket.created_at, ticket.sla_paused_seconds)
    if ticket.first_response_at is None:
        ticket.first_response_due = first_due
    ticket.resolution_due = resolution_due
