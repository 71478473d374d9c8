"""An agent leaves (``ticketd agents deactivate EMAIL --reassign``): their open tickets are handed on by each
ticket's group policy, exactly as ``[assign=<group>]`` would, and everyone concerned is told.

Without ``--reassign`` the tickets keep their assignee, and mail on them reaches the group or the managers
(``notify.agents_to_notify``): nothing falls through either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import notify
from ticketd.rules.commands import CommandContext, assign_group
from ticketd.rules.states import OPEN_STATES
from ticketd.storage import batch
from ticketd.storage.models import SYSTEM_ACTOR, Agent, Ticket


@dataclass(frozen=True)
class Handed:
    number: int
    to: str  # the new assignee's address, or "group <name>" / "the managers" when nobody was chosen


def hand_on(session: Session, config: Config, leaving: Agent, now: datetime) -> list[Handed]:
    tickets = session.exec(select(Ticket).where(Ticket.assignee_id == leaving.id,
                                                col(Ticket.state).in_(sorted(OPEN_STATES)),
                                                col(Ticket.merged_into_id).is_(None)).order_by(col(Ticket.number)))
    handed = []
    by = {"name": config.helpdesk.name, "email": config.helpdesk.address}
    for ticket in list(tickets):
        ctx = CommandContext(session, config.command_settings, SYSTEM_ACTOR, None, ticket, None, now)
        if ticket.group:
            assign_group(ctx, ticket, ticket.group)
        else:
            ctx.change("assignee", leaving.email, None)
            ticket.assignee_id = None
        batch.event(session, ticket_id=ticket.id, actor=SYSTEM_ACTOR, what="handed-on",
                    new=f"{leaving.email} is no longer active", at=now)
        session.flush()
        message = notify.last_customer_message(session, ticket)
        notify.tell_assigned(session, config, ticket, now, cause="agent")
        chosen = ctx.effects.assigned
        people = [chosen] if chosen is not None else notify.agents_to_notify(session, ticket)
        notify.to_agents(session, config, ticket, people, "agent_new", {"by": by, "message": message}, cause="agent")
        to = chosen.email if chosen else (f"group {ticket.group}" if ticket.group else "the managers")
        handed.append(Handed(ticket.number, to))
    return handed
