"""Action items after they are written: the owner is told, and reminded when the action falls due and once more
when it is overdue.

The reminders are timers like the SLA's (``sweep``): ``remind_at`` holds when the next one is due and is moved
on in the same transaction as the mail it queues, so a crash or a second sweep never sends one twice; instances
sharing a PostgreSQL database take each due action with ``FOR UPDATE SKIP LOCKED``, so one of them fires it.
Both times are business time: the "due" reminder goes out at the due time or, when that falls outside business
hours, at the next opening; the "overdue" one ``[actions] overdue_after`` of business time after the due time
(one business day by default). An action closed meanwhile is reminded of no more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import notify
from ticketd.rules import actions, identify
from ticketd.storage import batch
from ticketd.storage.models import SYSTEM_ACTOR, Action, Agent, Ticket

BATCH = 200


def facts(session: Session, config: Config, action: Action, now: datetime) -> dict[str, Any]:
    ticket = session.get(Ticket, action.ticket_id) if action.ticket_id is not None else None
    return actions.facts(action, identify.agent_by_id(session, action.owner_id), now, config.tz,
                         ticket.number if ticket else None)


def tell_owner(session: Session, config: Config, action: Action, by: Agent | None, now: datetime, *,
               cause: str) -> None:
    """The owner learns of an action someone else gave them (nobody is told of their own)."""
    owner = identify.agent_by_id(session, action.owner_id)
    if owner is None or (by is not None and by.id == owner.id):
        return
    context = {"action": facts(session, config, action, now),
               "by": {"name": by.name if by else "ticketd", "email": by.email if by else ""}}
    ticket = session.get(Ticket, action.ticket_id) if action.ticket_id is not None else None
    if ticket is not None:
        notify.to_agents(session, config, ticket, [owner], "agent_action", context, cause=cause)
    else:
        notify.to_agent(session, config, owner, "agent_action", context, cause=cause)


def tell_owners(session: Session, config: Config, added: Sequence[Action], by: Agent | None, now: datetime) -> None:
    for action in added:
        tell_owner(session, config, action, by, now, cause="agent")


def due_reminders(session: Session, now: datetime) -> list[Action]:
    stmt = (select(Action).where(Action.status == "open", col(Action.remind_at) <= now)
            .order_by(col(Action.id)).limit(BATCH).with_for_update(skip_locked=True))
    return list(session.exec(stmt))


def remind(session: Session, config: Config, action: Action, now: datetime) -> str:
    """Send the reminder that is due ("due" or "overdue") and schedule the next; returns which one went out.
    When the sweep comes late enough that the overdue time has passed too, only the overdue one goes."""
    overdue_at = config.calendar.add(action.due, config.actions.overdue_after)
    stage = "overdue" if action.reminders >= 1 or now >= overdue_at else "due"
    action.reminders = 2 if stage == "overdue" else 1
    action.remind_at = None if stage == "overdue" else overdue_at
    batch.event(session, ticket_id=action.ticket_id, actor=SYSTEM_ACTOR, what="action-reminded",
                old=f"#{action.id}", new=stage, at=now)
    owner = identify.agent_by_id(session, action.owner_id)
    people = [owner] if owner is not None and owner.active else notify.managers(session)
    late = describe_late(config, action.due, now)
    context = {"action": facts(session, config, action, now), "stage": stage, "late": late}
    ticket = session.get(Ticket, action.ticket_id) if action.ticket_id is not None else None
    if ticket is not None:
        notify.to_agents(session, config, ticket, people, "agent_action_reminder", context, cause="timer")
    else:
        for person in people:
            notify.to_agent(session, config, person, "agent_action_reminder", context, cause="timer")
    return stage


def describe_late(config: Config, due: datetime, now: datetime) -> str:
    """Business time since the due time, as "11 h 5 min": what the owner has let pass of working time."""
    seconds = int(config.calendar.between(due, now).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


def sweep_reminders(session: Session, config: Config, now: datetime) -> int:
    fired = 0
    for action in due_reminders(session, now):
        remind(session, config, action, now)
        fired += 1
    return fired
