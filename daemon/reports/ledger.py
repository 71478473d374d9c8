"""The report's costs, time worked and evidence, for the tickets of its scope.

Entries count with their ticket: its month (the one it was opened in, like every figure of the report), its
category and its company. Costs are summed per currency and never across currencies: a total of lira and euros
is no number. Amounts stay ``Decimal`` up to the cell (openpyxl writes them as exact numbers) and the mail text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from ticketd.daemon.reports.figures import TicketRow
from ticketd.parsers.message import sanitize_filename
from ticketd.storage import batch
from ticketd.storage.models import Agent, Attachment, CostEntry, Event, Evidence, TimeEntry

NONE = ""  # no category, no company: the sheets write their word for it
CHUNK = 5000  # ticket ids per IN list: far under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class CostRow:
    number: int
    at: datetime  # local, naive
    by: str
    amount: Decimal
    currency: str
    reason: str


@dataclass(frozen=True)
class EvidenceRow:
    number: int
    at: datetime  # local, naive: the step's time
    by: str
    steps: str  # the step's events, e.g. "assignee, priority, evidence-added"
    filename: str
    content_type: str
    size: int
    sha256: str
    attachment: int


@dataclass
class LedgerFigures:
    currencies: list[str] = field(default_factory=list)  # every currency of the scope's lines, alphabetical
    costs: list[CostRow] = field(default_factory=list)
    cost_by_month: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # month -> currency -> total
    cost_by_category: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    cost_by_company: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    cost_total: dict[str, Decimal] = field(default_factory=dict)  # currency -> total
    minutes_by_ticket: dict[int, int] = field(default_factory=dict)  # number -> minutes
    minutes_by_agent: dict[str, int] = field(default_factory=dict)  # e-mail -> minutes
    tickets_by_agent: dict[str, int] = field(default_factory=dict)  # e-mail -> tickets they logged time on
    agent_names: dict[str, str] = field(default_factory=dict)
    minutes_by_category: dict[str, int] = field(default_factory=dict)
    minutes_by_company: dict[str, int] = field(default_factory=dict)
    evidence: list[EvidenceRow] = field(default_factory=list)

    @property
    def minutes(self) -> int:
        return sum(self.minutes_by_agent.values())


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _add(table: dict[str, dict[str, Decimal]], key: str, currency: str, amount: Decimal) -> None:
    row = table.setdefault(key, {})
    row[currency] = row.get(currency, Decimal(0)) + amount


def collect_ledger(session: Session, tz: ZoneInfo, tickets: Mapping[int, TicketRow]) -> LedgerFigures:
    """``tickets``: the scope's tickets by id."""
    figures = LedgerFigures()
    ids = sorted(tickets)
    agents = {row[0]: (row[1], row[2]) for row in session.execute(
        sa.select(col(Agent.id), col(Agent.email), col(Agent.name)))}

    def local(value: datetime) -> datetime:
        return value.astimezone(tz).replace(tzinfo=None)

    for chunk in _chunks(ids):
        for c in session.execute(sa.select(CostEntry).where(col(CostEntry.ticket_id).in_(chunk))
                                 .order_by(col(CostEntry.id))).scalars():
            ticket, amount = tickets[c.ticket_id], Decimal(c.amount)
            figures.costs.append(CostRow(ticket.number, local(c.at), agents.get(c.agent_id, ("", ""))[0], amount,
                                         c.currency, c.reason or ""))
            _add(figures.cost_by_month, ticket.month, c.currency, amount)
            _add(figures.cost_by_category, ticket.category, c.currency, amount)
            _add(figures.cost_by_company, ticket.company, c.currency, amount)
            figures.cost_total[c.currency] = figures.cost_total.get(c.currency, Decimal(0)) + amount
        logged: set[tuple[str, int]] = set()
        for t in session.execute(sa.select(TimeEntry).where(col(TimeEntry.ticket_id).in_(chunk))
                                 .order_by(col(TimeEntry.id))).scalars():
            ticket = tickets[t.ticket_id]
            email, name = agents.get(t.agent_id, ("", ""))
            figures.agent_names[email] = name
            figures.minutes_by_ticket[ticket.number] = figures.minutes_by_ticket.get(ticket.number, 0) + t.minutes
            figures.minutes_by_agent[email] = figures.minutes_by_agent.get(email, 0) + t.minutes
            figures.minutes_by_category[ticket.category] = figures.minutes_by_category.get(ticket.category, 0) \
                + t.minutes
            figures.minutes_by_company[ticket.company] = figures.minutes_by_company.get(ticket.company, 0) + t.minutes
            logged.add((email, ticket.number))
        for email, _ in logged:
            figures.tickets_by_agent[email] = figures.tickets_by_agent.get(email, 0) + 1
        figures.evidence += _evidence(session, chunk, tickets, local)
    figures.currencies = sorted(figures.cost_total)
    figures.minutes_by_agent = dict(sorted(figures.minutes_by_agent.items()))
    figures.evidence.sort(key=lambda e: (e.number, e.at, e.attachment))
    return figures


def _evidence(session: Session, ids: list[int], tickets: Mapping[int, TicketRow],
              local: Callable[[datetime], datetime]) -> list[EvidenceRow]:
    batch.flush(session)
    steps: dict[tuple[int, datetime, str | None], list[str]] = {}
    for ticket_id, at, via, what in session.execute(
            sa.select(col(Event.ticket_id), col(Event.at), col(Event.via_message_id), col(Event.what))
            .where(col(Event.ticket_id).in_(ids), col(Event.at).in_(
                sa.select(col(Evidence.at)).where(col(Evidence.ticket_id).in_(ids))))
            .order_by(col(Event.id))):
        steps.setdefault((ticket_id, at, via), []).append(what)
    rows = []
    for e, a in session.execute(sa.select(Evidence, Attachment)
                                .join(Attachment, col(Attachment.id) == Evidence.attachment_id)
                                .where(col(Evidence.ticket_id).in_(ids)).order_by(col(Evidence.id))):
        rows.append(EvidenceRow(tickets[e.ticket_id].number, local(e.at), e.actor,
                                ", ".join(dict.fromkeys(steps.get((e.ticket_id, e.at, e.via_message_id), []))),
                                sanitize_filename(a.filename), a.content_type, a.size, a.sha256, a.id or 0))
    return rows
