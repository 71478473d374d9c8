"""Who gets a new ticket of a group: nobody (manual), the next in turn (round-robin) or the least loaded.

The turn is read from the tickets themselves (the newest assigned ticket of the group), not kept in a counter:
nothing to get out of step after a crash, a restart or an agent taking a ticket by hand. Only reads: the
caller decides whether to use the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.rules.states import OPEN_STATES
from ticketd.storage.models import Agent, Ticket

__all__ = ["eligible_agents", "pick_assignee"]



def pick_assignee(session: Session, group: str, policy: str) -> Agent | None:
    if policy == "manual":
        return None
    if policy not in ("round-robin", "least-open"):
        raise ValueError(f"unknown assignment policy {policy!r}")
    turn = _in_turn(session, group, eligible_agents(session, group))
    if not turn:
        return None
    if policy == "round-robin":
        return turn[0]
    load = _open_tickets(session, turn)
    return min(turn, key=lambda agent: load.get(agent.id, 0))  # min keeps the first of equals: the turn order


def eligible_agents(session: Session, group: str) -> list[Agent]:
    """Active agents of the group who are not away, by e-mail address: the order the turn goes round in.

    Sorted here, not by the database: ``_in_turn`` compares addresses as Python does, and a PostgreSQL database
    with a linguistic collation (en_US.UTF-8) orders "ali.veli@" after "alice@", where Python puts it before.
    """
    query = select(Agent).where(col(Agent.active), sa.not_(col(Agent.away)))
    return sorted((agent for agent in session.exec(query) if group in (agent.groups or [])), key=lambda a: a.email)


def _in_turn(session: Session, group: str, eligible: Sequence[Agent]) -> list[Agent]:
    """The eligible agents starting with the one after the group's last assignee (by e-mail, wrapping round).

    The last assignee need not be eligible any more (away, left the group): the turn still continues from
    where their address sorts.
    """
    last = _last_assignee_email(session, group)
    if last is None:
        return list(eligible)
    start = next((i for i, agent in enumerate(eligible) if agent.email > last), 0)
    return [*eligible[start:], *eligible[:start]]


def _last_assignee_email(session: Session, group: str) -> str | None:
    query = (select(Ticket.assignee_id).where(col(Ticket.group) == group, col(Ticket.assignee_id).is_not(None))
             .order_by(col(Ticket.id).desc()).limit(1))
    assignee_id = session.exec(query).first()
    agent = session.get(Agent, assignee_id) if assignee_id is not None else None
    return agent.email if agent else None


def _open_tickets(session: Session, agents: Sequence[Agent]) -> dict[int | None, int]:
    """Open tickets per agent across all groups: an agent's load is everything on their desk."""
    query = (select(Ticket.assignee_id, sa.func.count())
             .where(col(Ticket.assignee_id).in_([a.id for a in agents]), col(Ticket.state).in_(sorted(OPEN_STATES)))
             .group_by(col(Ticket.assignee_id)))
    return {assignee_id: count for assignee_id, count in session.exec(query)}
