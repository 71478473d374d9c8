"""The action items a report covers, and their counts per owner and per category.

An action belongs to a report's period when it was open at some time in it: opened on or before the period's
last day, and still open or closed on or after its first day. So an improvement action opened from one month's
report and done the next month shows in the next month's report as done, with its result. A company's or a
customer's report shows the actions of its own tickets only (an improvement action belongs to no customer).
Statuses and "overdue" (open and past its due time) are as of the report's ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from ticketd.storage.models import Action, Agent, Ticket

NO_CATEGORY = "(none)"


@dataclass(frozen=True)
class ActionRow:
    """One action, times in the helpdesk's zone (naive, for Excel)."""

    id: int
    ticket: int | None  # number; None for an improvement action
    what: str
    owner: str  # e-mail
    category: str  # the action's own (improvement actions), else its ticket's; "" when none
    source: str
    due: datetime
    status: str  # open | done | cancelled
    overdue: bool
    result: str
    customer: bool
    required: bool
    created_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class ActionCounts:
    name: str  # the owner's address, or the category
    open: int
    overdue: int
    done: int
    cancelled: int


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def load(session: Session, tz: ZoneInfo, since: date | None, until: date | None, now: datetime,
         ticket_numbers: Iterable[int] | None = None) -> list[ActionRow]:
    """The period's actions (see the module's rule); ``ticket_numbers``: only those tickets' (a scoped report)."""
    a, t, ag = (model.__table__ for model in (Action, Ticket, Agent))  # type: ignore[union-attr]  # SQLModel sets __table__ without declaring it
    stmt = (sa.select(a, t.c.number.label("ticket_number"), t.c.category.label("ticket_category"),
                      ag.c.email.label("owner_email"))
            .select_from(a.outerjoin(t, t.c.id == a.c.ticket_id).join(ag, ag.c.id == a.c.owner_id))
            .order_by(a.c.id))
    if until is not None:
        stmt = stmt.where(a.c.created_at < _midnight(until + timedelta(days=1), tz))
    if since is not None:
        stmt = stmt.where(sa.or_(a.c.closed_at.is_(None), a.c.closed_at >= _midnight(since, tz)))
    if ticket_numbers is not None:
        stmt = stmt.where(t.c.number.in_(list(ticket_numbers)))

    def local(value: datetime) -> datetime:
        return value.astimezone(tz).replace(tzinfo=None)

    return [ActionRow(
        id=row["id"], ticket=row["ticket_number"], what=row["what"], owner=row["owner_email"],
        category=row["category"] or row["ticket_category"] or "", source=row["source"] or "", due=local(row["due"]),
        status=row["status"], overdue=row["status"] == "open" and row["due"] < now, result=row["result"] or "",
        customer=row["customer"], required=row["required"], created_at=local(row["created_at"]),
        closed_at=local(row["closed_at"]) if row["closed_at"] is not None else None,
    ) for row in session.execute(stmt).mappings()]


def counts(rows: Sequence[ActionRow], key: Callable[[ActionRow], str]) -> list[ActionCounts]:
    """Per owner or category, by name; "overdue" is a part of "open"."""
    names = sorted({key(r) for r in rows})
    out = []
    for name in names:
        mine = [r for r in rows if key(r) == name]
        out.append(ActionCounts(name, sum(r.status == "open" for r in mine), sum(r.overdue for r in mine),
                                sum(r.status == "done" for r in mine), sum(r.status == "cancelled" for r in mine)))
    return out


def by_owner(rows: Sequence[ActionRow]) -> list[ActionCounts]:
    return counts(rows, lambda r: r.owner)


def by_category(rows: Sequence[ActionRow]) -> list[ActionCounts]:
    return counts(rows, lambda r: r.category or NO_CATEGORY)


def totals(rows: Sequence[ActionRow]) -> ActionCounts:
    return ActionCounts("", sum(r.status == "open" for r in rows), sum(r.overdue for r in rows),
                        sum(r.status == "done" for r in rows), sum(r.status == "cancelled" for r in rows))
