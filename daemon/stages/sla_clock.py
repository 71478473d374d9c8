"""A ticket's SLA deadlines, in business time: set when it opens, moved when its priority changes, and pushed
back by the business time it spends waiting for the customer (``pending`` stops the clock: see
``rules.states.change_state``, through which every state change passes)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from ticketd.daemon.config import Config
from ticketd.rules.sla import Duration
from ticketd.storage.models import Company, Ticket


def due_times(config: Config, plan: str | None, priority: str, start: datetime,
              paused_seconds: int = 0) -> tuple[datetime, datetime]:
    """(first response due, resolution due) for a ticket opened at ``start``."""
    calendar = config.calendar
    first, resolution = config.sla.targets(plan, priority)
    extra = Duration(seconds=paused_seconds)
    first_due, resolution_due = calendar.add(start, first), calendar.add(start, resolution)
    if paused_seconds:
        first_due, resolution_due = calendar.add(first_due, extra), calendar.add(resolution_due, extra)
    return first_due, resolution_due


def reschedule(session: Session, config: Config, ticket: Ticket) -> None:
    """After a priority change: the deadlines the new priority gives, counted from the ticket's opening."""
    company = session.get(Company, ticket.company_id) if ticket.company_id else None
    first_due, resolution_due = due_times(config, company.sla_plan if company else None, ticket.priority,
                                          ticket.created_at, ticket.sla_paused_seconds)
    if ticket.first_response_at is None:
        ticket.first_response_due = first_due
    ticket.resolution_due = resolution_due
