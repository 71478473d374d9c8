"""Action items: what an agent must do by when, followed until it is done (or cancelled) with its result.

An action lives on a ticket (a complaint's corrective action, written in an agent's mail) or outside any ticket
(an improvement action decided from the reports, ISO 10002 §8.7, added with ``ticketd actions add``). Both kinds
are one table and one id sequence, so an agent names an action by its number wherever it came from.

Everything here works on plain values and the session, and raises ``ActionError`` with the sentence an agent or
an operator reads; the commands (``rules.commands``) and the CLI turn it into their own refusal. Every change is
an event (``action-added``, ``action-done``, ``action-cancelled``, ``action-result``), on the action's ticket
or, for an improvement action, on none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from ticketd.parsers.commands import suggest
from ticketd.rules.sla import BusinessCalendar, parse_duration
from ticketd.storage import batch
from ticketd.storage.models import Action, Agent, Ticket

STATUSES = ("open", "done", "cancelled")
FLAGS = ("customer", "optional", "required")
KEYS = ("owner", "due")
MAX_WHAT = 1000  # characters: an action is a line, not a report
_ID = re.compile(r"#?(\d{1,9})")


class ActionError(ValueError):
    """A refusal; the message is the sentence for the agent or operator."""


@dataclass(frozen=True)
class ActionLine:
    """``Action: <what>; owner=<agent>; due=<date or duration>[; customer][; optional]`` as written."""

    what: str
    owner: str | None  # None: the sender
    due: str | None
    customer: bool = False  # shown to the customer in the resolved mail's "what we did"
    required: bool = True  # must be done (or cancelled) before the ticket is resolved, with [closing] actions_done


def parse_line(value: str) -> ActionLine:
    """The text up to the first ';' is what is to be done; then ``key=value`` items and bare flags."""
    parts = [part.strip() for part in " ".join(value.split()).split(";")]
    what, items = parts[0], [part for part in parts[1:] if part]
    if not what or "=" in what.split()[0]:
        raise ActionError("an action starts with what is to be done, e.g. "
                          "Action: call the customer back; owner=ali; due=2d")
    if len(what) > MAX_WHAT:
        raise ActionError(f"an action is at most {MAX_WHAT} characters (this one has {len(what)})")
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for item in items:
        key, sep, val = (piece.strip() for piece in item.partition("="))
        key = key.lower()
        known = KEYS if sep else FLAGS
        if key not in known:
            hint = suggest(key, KEYS + FLAGS)
            raise ActionError(f"unknown action item {item!r}" + (f"; did you mean {hint}?" if hint else "")
                              + " (owner=NAME, due=DATE or 3d, and the flags customer, optional)")
        if sep and not val:
            raise ActionError(f"{key}= needs a value")
        if sep and key in fields and fields[key] != val:
            raise ActionError(f"{key} is given twice ({fields[key]!r} and {val!r})")
        if sep:
            fields[key] = val
        else:
            flags.add(key)
    if {"optional", "required"} <= flags:
        raise ActionError("an action is either optional or required, not both")
    return ActionLine(what, fields.get("owner"), fields.get("due"), "customer" in flags, "optional" not in flags)


def plain(what: str) -> ActionLine:
    """An action's text given on its own (``ticketd actions add``): taken as written, ';' and all."""
    what = " ".join(what.split())
    if not what:
        raise ActionError("an action needs a text: what is to be done")
    if len(what) > MAX_WHAT:
        raise ActionError(f"an action is at most {MAX_WHAT} characters (this one has {len(what)})")
    return ActionLine(what, None, None)


def parse_due(text: str | None, now: datetime, calendar: BusinessCalendar, tz: ZoneInfo) -> datetime:
    """A date is the end of that day in the helpdesk's time zone (as ``[due=…]``); a duration (``3d``, ``4h``,
    ``1d4h``) is business time from now, so "2d" on a Friday evening is Tuesday evening, not Sunday."""
    if text is None or not text.strip():
        raise ActionError("an action needs due=YYYY-MM-DD or a business-time duration like 4h or 3d")
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            duration = parse_duration(text)
        except ValueError:
            raise ActionError(f"due {text!r} is neither a date (YYYY-MM-DD) nor a business-time duration "
                              "like 4h, 3d or 1d4h") from None
        return calendar.add(now, duration)
    due = datetime.combine(day, time(23, 59), tzinfo=tz)
    if due < now:
        raise ActionError(f"due {text} is in the past")
    return due


def action_id(text: str) -> int:
    match = _ID.fullmatch(text.strip())
    if match is None:
        raise ActionError(f"{text.strip()!r} is not an action number (the number shown as #N in the ticket)")
    return int(match.group(1))


def find(session: Session, text: str, ticket: Ticket | None = None, *, anywhere: bool = False) -> Action:
    """The action ``text`` names, which must be ``ticket``'s (an agent's mail acts on its own ticket only), or,
    with ``anywhere``, any action (the CLI)."""
    number = action_id(text)
    action = session.get(Action, number)
    if action is None:
        raise ActionError(f"there is no action #{number}")
    if not anywhere and ticket is not None and action.ticket_id != ticket.id:
        if action.ticket_id is None:
            raise ActionError(f"action #{number} is an improvement action, not this ticket's "
                              "(close it with `ticketd actions done`)")
        other = session.get(Ticket, action.ticket_id)
        raise ActionError(f"action #{number} belongs to ticket #{other.number if other else '?'}, not this one")
    return action


def add(session: Session, *, ticket: Ticket | None, line: ActionLine, owner: Agent, due: datetime,
        calendar: BusinessCalendar, actor: str, now: datetime, via_message_id: str | None = None,
        category: str | None = None, source: str | None = None) -> Action:
    """A new open action; its first reminder is due when the action is, at the next business moment."""
    if not owner.active:
        raise ActionError(f"{owner.email} is not an active agent")
    assert owner.id is not None
    action = batch.add(session, Action(
        ticket_id=ticket.id if ticket else None, what=line.what, owner_id=owner.id, due=due,
        customer=line.customer, required=line.required, category=category, source=source, status="open",
        created_by=actor, created_at=now, remind_at=calendar.next_open(due)))
    flags = "".join(("; customer" if line.customer else "", "" if line.required else "; optional"))
    _event(session, action, actor, "action-added", None,
           f"#{action.id}: {line.what}; owner={owner.email}; due={due.isoformat()}{flags}", now, via_message_id)
    if ticket is not None:
        ticket.updated_at = now
    return action


def close(session: Session, action: Action, status: str, *, result: str | None, actor: str, now: datetime,
          via_message_id: str | None = None) -> None:
    """Done or cancelled, once: a closed action is refused rather than closed again over its result."""
    if status not in ("done", "cancelled"):
        raise ActionError(f"an action is closed as done or cancelled, not {status!r}")
    if action.status != "open":
        raise ActionError(f"action #{action.id} is {action.status} already")
    action.status, action.result, action.closed_at, action.closed_by = status, result, now, actor
    action.remind_at = None
    _event(session, action, actor, f"action-{status}", f"#{action.id}", result, now, via_message_id)
    _touch(session, action, now)


def record_result(session: Session, action: Action, text: str, *, closed_here: bool, actor: str, now: datetime,
                  via_message_id: str | None = None) -> None:
    """``Action-Result: N text``: an open action is done with that result; one this same mail closed
    (``closed_here``: its ``[action-done=N]`` in the subject) gets the result written beside it."""
    text = " ".join(text.split())
    if not text:
        raise ActionError(f"Action-Result: {action.id} needs the result after the number")
    if closed_here and action.status != "open" and action.result is None:
        action.result = text
        _event(session, action, actor, "action-result", f"#{action.id}", text, now, via_message_id)
        return
    close(session, action, "done", result=text, actor=actor, now=now, via_message_id=via_message_id)


def split_result(value: str) -> tuple[str, str]:
    """``12 the modem was replaced`` → ("12", "the modem was replaced")."""
    number, _, text = value.strip().partition(" ")
    if not text.strip():
        raise ActionError("Action-Result needs the action's number and then its result, e.g. "
                          "Action-Result: 12 the modem was replaced")
    return number, text


def open_required(session: Session, ticket: Ticket) -> list[int]:
    """The ids of the ticket's required actions still open: what stops it being resolved with actions_done."""
    stmt = (select(Action.id).where(Action.ticket_id == ticket.id, Action.status == "open", col(Action.required))
            .order_by(col(Action.id)))
    return [i for i in session.exec(stmt) if i is not None]


def of_ticket(session: Session, ticket_id: int | None) -> list[Action]:
    return list(session.exec(select(Action).where(Action.ticket_id == ticket_id).order_by(col(Action.id))))


def facts(action: Action, owner: Agent | None, now: datetime, tz: ZoneInfo | None = None,
          ticket_number: int | None = None) -> dict[str, Any]:
    """The stable shape of an action (``tickets show --json``'s ``actions``, ``actions list --json``) with the
    times as ISO 8601; ``tz`` adds ``due_local``, the due time as the templates show it."""
    out: dict[str, Any] = {
        "id": action.id, "ticket": ticket_number, "what": action.what,
        "owner": owner.email if owner else None, "owner_name": owner.name if owner else None,
        "due": action.due.isoformat(), "status": action.status, "result": action.result,
        "customer": action.customer, "required": action.required, "overdue": is_overdue(action, now),
        "category": action.category, "source": action.source,
        "created_by": action.created_by, "created_at": action.created_at.isoformat(),
        "closed_by": action.closed_by, "closed_at": action.closed_at.isoformat() if action.closed_at else None,
        "reminders": action.reminders,
    }
    if tz is not None:
        out["due_local"] = action.due.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    return out


def is_overdue(action: Action, now: datetime) -> bool:
    return action.status == "open" and action.due < now


def _touch(session: Session, action: Action, now: datetime) -> None:
    if action.ticket_id is not None:
        ticket = session.get(Ticket, action.ticket_id)
        if ticket is not None:
            ticket.updated_at = now


def _event(session: Session, action: Action, actor: str, what: str, old: str | None, new: str | None,
           now: datetime, via_message_id: str | None) -> None:
    batch.event(session, ticket_id=action.ticket_id, actor=actor, what=what, old=old, new=new,
                via_message_id=via_message_id, at=now)
