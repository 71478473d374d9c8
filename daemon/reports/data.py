"""The figures of a report, computed once from the database for one scope and period.

Everything the workbook, the charts, the CSV export and the report mail show comes from one ``ReportData``:
they cannot disagree, and the tests check the figures here against their own computation.

Definitions (the workbook's "About" sheet repeats them for its readers):
- a ticket belongs to the month it was opened in, in the helpdesk's time zone;
- first response time: business hours from opening to the first answer to the customer; resolution time:
  business hours from opening to (the last) resolution; both in the helpdesk's business calendar;
- a deadline is *met* when the answer (resolution) came at or before it, *missed* when it came later or has
  not come and the deadline has passed; tickets whose deadline is still ahead count as neither;
- medians and 90th percentiles interpolate linearly between ranks (``statistics.quantiles(method="inclusive")``,
  numpy's default);
- satisfaction counts the resolved tickets' answers: satisfied, not satisfied, no answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from ticketd.daemon.config import Config
from ticketd.daemon.reports import actions as report_actions
from ticketd.daemon.reports import figures
from ticketd.daemon.reports.actions import ActionRow
from ticketd.daemon.reports.figures import AgentFigures, PartyFigures, SatisfactionFigures, SlaFigures, TicketRow
from ticketd.daemon.reports.ledger import LedgerFigures, collect_ledger
from ticketd.daemon.reports.stages import StageFigures, stage_figures
from ticketd.rules.sla import BusinessCalendar
from ticketd.storage.models import Agent, Company, Customer, Ticket


@dataclass(frozen=True)
class Scope:
    since: date | None = None  # first day included (local date)
    until: date | None = None  # last day included (local date)
    company: str | None = None  # company name
    customer: str | None = None  # customer e-mail address


@dataclass
class ReportData:
    scope: Scope
    generated_at: datetime  # local
    timezone: str
    tickets: list[TicketRow]
    months: list[str]  # "YYYY-MM", every month of the period in order, empty ones included
    types: list[str]  # request, complaint, information
    by_month_type: dict[str, dict[str, int]]  # month -> type -> count (every month and type present)
    by_month_category: dict[str, dict[str, int]]  # month -> category ("(none)" for none) -> count
    top_categories: list[tuple[str, int]]  # most frequent first; ties by name
    companies: list[PartyFigures]  # most tickets first
    customers: list[PartyFigures]  # most tickets first
    first_response: SlaFigures  # the whole period
    resolution: SlaFigures
    sla_by_month: dict[str, tuple[SlaFigures, SlaFigures]]  # month -> (first response, resolution)
    satisfaction: SatisfactionFigures
    satisfaction_by_month: dict[str, SatisfactionFigures]
    agents: list[AgentFigures]  # by e-mail
    ledger: LedgerFigures = field(default_factory=LedgerFigures)  # issue 18: costs, time, evidence
    extra: dict[str, Any] = field(default_factory=dict)
    actions: list[ActionRow] = field(default_factory=list)  # issue 18: the period's action items (reports.actions)
    stages: list[StageFigures] = field(default_factory=list)  # issue 18: tickets and time per stage


def collect(session: Session, config: Config, scope: Scope, now: datetime | None = None) -> ReportData:
    """Load the scope's tickets in one query and derive every figure from those rows.

    ``now`` decides which open deadlines have passed; tests pass it so their figures do not depend on the clock.
    """
    now = now or datetime.now(UTC)
    scope, rows = _load(session, config.tz, scope)
    tickets = [_ticket_row(row, config, now) for row in rows]
    books = collect_ledger(session, config.tz, {row["id"]: t for row, t in zip(rows, tickets, strict=True)})
    tickets = [replace(t, time_minutes=books.minutes_by_ticket.get(t.number, 0)) for t in tickets]
    months = _months(scope, tickets)
    categories = [name for name, _ in figures.top_categories(tickets)]
    types = figures.types_of(tickets)
    monthly = figures.by_month(tickets, months)
    return ReportData(
        scope=scope, generated_at=now.astimezone(config.tz), timezone=config.helpdesk.timezone, tickets=tickets,
        months=months, types=types,
        by_month_type=figures.month_table(tickets, months, types, lambda r: r.type),
        by_month_category=figures.month_table(tickets, months, categories, figures.category_of),
        top_categories=figures.top_categories(tickets),
        companies=figures.parties(tickets, lambda r: r.company),
        customers=figures.parties(tickets, lambda r: r.requester),
        first_response=figures.first_response(tickets), resolution=figures.resolution(tickets),
        sla_by_month={m: (figures.first_response(rows), figures.resolution(rows)) for m, rows in monthly.items()},
        satisfaction=figures.satisfaction(tickets),
        satisfaction_by_month={m: figures.satisfaction(rows) for m, rows in monthly.items()},
        agents=figures.agents(tickets, _agent_names(session)),
        actions=report_actions.load(session, config.tz, scope.since, scope.until, now,
                                    [t.number for t in tickets] if scope.company or scope.customer else None),
        stages=stage_figures(session, config.calendar, config.processes, rows, now),
        ledger=books,
    )


def _company(session: Session, name: str) -> tuple[int, str]:
    """Compared in Python: SQLite's lower() folds ASCII only, and company names are Turkish (Müşteri A.Ş.)."""
    wanted = name.strip().casefold()
    for company_id, company_name in session.execute(sa.select(col(Company.id), col(Company.name))):
        if company_name.casefold() == wanted:
            return int(company_id), company_name
    raise ValueError(f"no company called {name!r}")


def _customer(session: Session, email: str) -> tuple[int, str]:
    wanted = email.strip().lower()
    found = session.execute(sa.select(col(Customer.id), col(Customer.email))
                            .where(sa.func.lower(Customer.email) == wanted)).first()
    if found is None:
        raise ValueError(f"no customer called {email!r}")
    return int(found[0]), found[1]


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _load(session: Session, tz: ZoneInfo, scope: Scope) -> tuple[Scope, list[sa.RowMapping]]:
    """Tickets joined to their requester, company and assignee: one query however many tickets there are.

    The scope comes back with the company or customer spelt as stored, so titles do not repeat a reader's typing.
    """
    t, cu, co, ag = (model.__table__ for model in (Ticket, Customer, Company, Agent))  # type: ignore[union-attr]  # SQLModel sets __table__ on table classes without declaring it
    stmt = (sa.select(t, cu.c.email.label("requester_email"), cu.c.name.label("requester_name"),
                      co.c.name.label("company_name"), ag.c.email.label("assignee_email"))
            .select_from(t.join(cu, cu.c.id == t.c.requester_id).outerjoin(co, co.c.id == t.c.company_id)
                         .outerjoin(ag, ag.c.id == t.c.assignee_id))
            .where(t.c.merged_into_id.is_(None)).order_by(t.c.number))
    if scope.since is not None:
        stmt = stmt.where(t.c.created_at >= _local_midnight(scope.since, tz))
    if scope.until is not None:
        stmt = stmt.where(t.c.created_at < _local_midnight(scope.until + timedelta(days=1), tz))
    if scope.company is not None:
        company_id, name = _company(session, scope.company)
        stmt, scope = stmt.where(t.c.company_id == company_id), replace(scope, company=name)
    if scope.customer is not None:
        customer_id, email = _customer(session, scope.customer)
        stmt, scope = stmt.where(t.c.requester_id == customer_id), replace(scope, customer=email)
    return scope, list(session.execute(stmt).mappings())


def _agent_names(session: Session) -> dict[str, str]:
    return {email: name for email, name in session.execute(sa.select(col(Agent.email), col(Agent.name)))}


def _met(due: datetime | None, at: datetime | None, now: datetime) -> bool | None:
    if due is None:
        return None
    if at is not None:
        return at <= due
    return False if now > due else None


def _hours(calendar: BusinessCalendar, start: datetime, end: datetime | None) -> float | None:
    return None if end is None else calendar.between(start, end).total_seconds() / 3600


def _ticket_row(row: sa.RowMapping, config: Config, now: datetime) -> TicketRow:
    tz, calendar = config.tz, config.calendar

    def local(value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(tz).replace(tzinfo=None)

    created = row["created_at"]
    return TicketRow(
        number=row["number"], subject=row["subject"], state=row["state"], type=row["type"],
        category=row["category"] or "", priority=row["priority"], source=row["source"],
        requester=row["requester_email"], requester_name=row["requester_name"] or "",
        company=row["company_name"] or "", assignee=row["assignee_email"] or "", group=row["group"] or "",
        created_at=created.astimezone(tz).replace(tzinfo=None),
        first_response_due=local(row["first_response_due"]), first_response_at=local(row["first_response_at"]),
        resolution_due=local(row["resolution_due"]), resolution_at=local(row["resolution_at"]),
        closed_at=local(row["closed_at"]), within_contract=row["within_contract"],
        root_cause=row["root_cause"] or "", action_plan=row["action_plan"] or "", cost=row["cost"] or "",
        resolution=row["resolution"] or "", satisfaction=row["satisfaction"] or "",
        first_response_hours=_hours(calendar, created, row["first_response_at"]),
        resolution_hours=_hours(calendar, created, row["resolution_at"]),
        first_response_met=_met(row["first_response_due"], row["first_response_at"], now),
        resolution_met=_met(row["resolution_due"], row["resolution_at"], now),
    )


def _month_range(first: date, last: date) -> list[str]:
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _months(scope: Scope, tickets: list[TicketRow]) -> list[str]:
    """The scope's dates where given, else the first or last ticket's month; empty when nothing fixes either end."""
    days = [t.created_at.date() for t in tickets]
    first = scope.since or (min(days) if days else scope.until)
    last = scope.until or (max(days) if days else scope.since)
    return _month_range(first, last) if first and last else []


_LABELS = {
    "en": {"all": "all dates", "from": "from {0}", "until": "until {0}", "date": "%Y-%m-%d"},
    "tr": {"all": "tüm tarihler", "from": "{0} itibarıyla", "until": "{0} tarihine kadar", "date": "%d.%m.%Y"},
}


def scope_label(scope: Scope, language: str) -> str:
    """One line naming the period and the company or customer, for titles, file names' readers and mail subjects."""
    words = _LABELS.get(language, _LABELS["en"])
    since, until = (d.strftime(words["date"]) if d else None for d in (scope.since, scope.until))
    if since and until:
        period = f"{since} – {until}"
    elif since or until:
        period = words["from"].format(since) if since else words["until"].format(until)
    else:
        period = words["all"]
    party = scope.company or scope.customer
    return f"{period}, {party}" if party else period
