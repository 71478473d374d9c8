"""An agent's desk by mail: subject ``list`` to the support address answers with their open tickets, overdue
first, and the unassigned ones of their groups; ``[digest] schedule`` mails the same every morning.

A browser helpdesk shows this as the agent's queue. Here it is one mail, so it must be complete (nothing an
agent owns is left off) and ordered by what to do first: what is overdue, then by the nearest deadline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import notify
from ticketd.parsers.subject import ticket_tag
from ticketd.rules.states import OPEN_STATES
from ticketd.storage.db import session_scope
from ticketd.storage.models import Agent, Customer, JobRun, Ticket

log = structlog.get_logger("ticketd.digest")

DIGEST_JOB = "digest"


@dataclass(frozen=True)
class Row:
    ticket: Ticket
    due: datetime | None
    overdue: bool


def _due(ticket: Ticket) -> datetime | None:
    """The deadline that matters now: the first response while none was given, then the resolution."""
    if ticket.first_response_at is None and ticket.first_response_due is not None:
        return ticket.first_response_due
    return ticket.resolution_due


def _order(rows: list[Row]) -> list[Row]:
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (not r.overdue, r.due or far, r.ticket.number))


def desk(session: Session, agent: Agent, now: datetime) -> tuple[list[Row], list[Row]]:
    """(the agent's open tickets, the unassigned open tickets of their groups), each overdue first."""
    open_ = col(Ticket.state).in_(sorted(OPEN_STATES))
    mine = session.exec(select(Ticket).where(open_, Ticket.assignee_id == agent.id,
                                             col(Ticket.merged_into_id).is_(None)))
    groups = list(agent.groups or [])
    free: Iterable[Ticket] = session.exec(select(Ticket).where(
        open_, col(Ticket.assignee_id).is_(None), col(Ticket.group).in_(groups),
        col(Ticket.merged_into_id).is_(None))) if groups else []

    def rows(tickets: Iterable[Ticket]) -> list[Row]:
        out = []
        for ticket in tickets:
            due = _due(ticket)
            out.append(Row(ticket, due, due is not None and due <= now and ticket.state != "pending"))
        return _order(out)
    return rows(mine), rows(free)


def _lines(session: Session, config: Config, rows: list[Row], agent: Agent, now: datetime) -> list[dict[str, object]]:
    """Each ticket with a reply address signed for this agent and this ticket: the list's own address is the
    agent's ``+0`` one, which opens tickets but may not act on an existing one (rules/auth.py)."""
    out = []
    for row in rows:
        t = row.ticket
        requester = session.get(Customer, t.requester_id)
        out.append({"tag": ticket_tag(config.helpdesk.tag, t.number), "subject": t.subject, "state": t.state,
                    "priority": t.priority, "overdue": row.overdue, "due": notify.local_time(config, row.due),
                    "requester": (requester.name or requester.email) if requester else "", "group": t.group or "",
                    "reply": notify.signed_address(config, t.number, agent.email, now, t.mailbox)})
    return out


def send_list(session: Session, config: Config, agent: Agent, now: datetime, why: str, cause: str) -> None:
    """``why``: "list" (the agent asked) or "digest" (the morning mail)."""
    mine, free = desk(session, agent, now)
    notify.to_agent(session, config, agent, "agent_list", {
        "why": why, "mine": _lines(session, config, mine, agent, now),
        "free": _lines(session, config, free, agent, now),
        "overdue": sum(1 for r in mine + free if r.overdue), "groups": list(agent.groups or []),
        "at": notify.local_time(config, now), "helpdesk_tag": config.helpdesk.tag,
    }, cause=cause)


def send_digests(engine: sa.Engine, config: Config, now: datetime) -> int:
    """The morning digest to every agent at work; once per scheduled minute however many instances run it
    (the first to insert the job's row sends it). Returns how many were queued."""
    try:
        with session_scope(engine) as session:
            session.add(JobRun(job=DIGEST_JOB, slot=f"{now.astimezone(UTC):%Y-%m-%dT%H:%M}"))
            session.flush()
            agents = [a for a in session.exec(select(Agent).order_by(Agent.email)) if a.active and not a.away]
            for agent in agents:
                send_list(session, config, agent, now, "digest", cause="timer")
    except IntegrityError:
        log.info("digest.sent_elsewhere", detail="another instance queued it")
        return 0
    log.info("digest.queued", agents=len(agents))
    return len(agents)
