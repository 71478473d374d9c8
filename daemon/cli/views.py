"""Rows → the stable JSON shapes of DESIGN.md §7 (scripts depend on these keys; add, never rename)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from ticketd.daemon.cli.ledger_views import ledger_detail
from ticketd.parsers.message import sanitize_filename
from ticketd.rules import actions, process
from ticketd.storage import batch
from ticketd.storage.models import (
    Action,
    Agent,
    Attachment,
    Company,
    Customer,
    Event,
    Inbound,
    Message,
    Outbox,
    Ticket,
)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_dict(session: Session, t: Ticket) -> dict[str, Any]:
    requester = session.get(Customer, t.requester_id)
    company = session.get(Company, t.company_id) if t.company_id else None
    assignee = session.get(Agent, t.assignee_id) if t.assignee_id else None
    return {
        "number": t.number,
        "subject": t.subject,
        "state": t.state,
        "requester": requester.email if requester else None,
        "requester_name": requester.name if requester else None,
        "company": company.name if company else None,
        "assignee": assignee.email if assignee else None,
        "group": t.group,
        "type": t.type,
        "category": t.category,
        "priority": t.priority,
        "source": t.source,
        "mailbox": t.mailbox,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "within_contract": t.within_contract,
        "root_cause": t.root_cause,
        "action_plan": t.action_plan,
        "cost": t.cost,
        "satisfaction": t.satisfaction,
        "first_response_due": iso(t.first_response_due),
        "resolution_due": iso(t.resolution_due),
        "closed_at": iso(t.closed_at),
        "resolution": t.resolution,
        "first_response_at": iso(t.first_response_at),
        "resolution_at": iso(t.resolution_at),
        "first_response_breached_at": iso(t.first_response_breached_at),
        "resolution_breached_at": iso(t.resolution_breached_at),
        # issue 18: the organisation's own stage ([process.<type>]); null without one
        "stage": t.stage,
        "stage_since": iso(t.stage_since),
        "stage_due": iso(t.stage_due),
    }


def ticket_detail(session: Session, t: Ticket) -> dict[str, Any]:
    out = ticket_dict(session, t)
    messages = session.exec(select(Message).where(Message.ticket_id == t.id).order_by(col(Message.id))).all()
    out["messages"] = [
        {
            "direction": m.direction,
            "kind": m.kind,
            "from": m.from_addr,
            "to": m.to_addrs,
            "subject": m.subject,
            "text": m.text,
            "message_id": m.message_id,
            "date": iso(m.date or m.created_at),
            "attachments": [
                {"id": a.id, "filename": sanitize_filename(a.filename), "content_type": a.content_type, "size": a.size,
                 "sha256": a.sha256, "inline": a.inline}
                for a in session.exec(select(Attachment).where(Attachment.message_pk == m.id)).all()
            ],
        }
        for m in messages
    ]
    outgoing = session.exec(select(Outbox).where(Outbox.ticket_id == t.id).order_by(col(Outbox.id))).all()
    out["outgoing"] = [outbox_dict(session, o) for o in outgoing]
    # A merged ticket keeps its own conversation (its customer's mail stays on it): name where to read it.
    out["merged_from"] = list(session.exec(select(Ticket.number).where(Ticket.merged_into_id == t.id)
                                           .order_by(col(Ticket.number))))
    merged_into = session.get(Ticket, t.merged_into_id) if t.merged_into_id else None
    out["merged_into"] = merged_into.number if merged_into else None
    out["actions"] = [action_dict(session, a, number=t.number) for a in actions.of_ticket(session, t.id)]
    # issue 18: child and linked tickets, as numbers, from both sides
    parent = session.get(Ticket, t.parent_id) if t.parent_id else None
    out["parent"] = parent.number if parent else None
    out["children"] = [child.number for child in process.children(session, t)]
    out["links"] = [other.number for other in process.linked(session, t)]
    batch.flush(session)  # events this session wrote
    events = session.exec(select(Event).where(Event.ticket_id == t.id).order_by(col(Event.id))).all()
    out["events"] = [
        {"actor": e.actor, "what": e.what, "old": e.old, "new": e.new, "at": iso(e.at),
         "message_id": e.via_message_id}
        for e in events
    ]
    ledger_detail(session, t, out)  # costs, time worked, each step's evidence (issue 18)
    return out


def inbound_dict(session: Session, row: Inbound) -> dict[str, Any]:
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
    return {
        "id": row.id,
        "message_id": row.message_id,
        "status": row.status,
        "reason": row.reason,
        "ticket": ticket.number if ticket else None,
        "mailbox": row.mailbox,
        "size": row.size,
        "attempts": row.attempts,
        "received_at": iso(row.received_at),
        "raw_purged_at": iso(row.raw_purged_at),  # set: only the parsed text and files remain (README "Privacy")
    }


def outbox_dict(session: Session, row: Outbox) -> dict[str, Any]:
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
    return {
        "id": row.id,
        "to": row.to_addrs,
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "ticket": ticket.number if ticket else None,
        "kind": row.kind,
        "cause": row.cause,
        "message_id": row.message_id,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }


def action_dict(session: Session, row: Action, now: datetime | None = None,
                number: int | None = None) -> dict[str, Any]:
    """``actions`` of ``tickets show --json`` and each row of ``actions list --json``: ``id``, ``ticket`` (number
    or null), ``what``, ``owner`` (email), ``due``, ``status`` (open|done|cancelled), ``result``, ``customer``,
    ``required``, ``overdue`` (open and past due now), ``category``, ``source`` and who opened and closed it."""
    if number is None and row.ticket_id is not None:
        ticket = session.get(Ticket, row.ticket_id)
        number = ticket.number if ticket else None
    return actions.facts(row, session.get(Agent, row.owner_id), now or datetime.now(UTC), ticket_number=number)
