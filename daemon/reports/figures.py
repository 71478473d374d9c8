"""The sums, shares and percentiles of a report, computed from its ``TicketRow`` list alone.

Nothing here reads the database or the configuration: every figure follows from the rows, so a figure in the
workbook can always be traced back to the rows on its Tickets sheet. The rows and figures are defined here too,
beside what computes them: ``data`` loads the rows and calls this module, never the other way round.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ticketd.rules.states import OPEN_STATES

TYPES = ("request", "complaint", "information")
NO_CATEGORY = "(none)"
DONE_STATES = frozenset({"resolved", "closed"})


@dataclass(frozen=True)
class TicketRow:
    """One ticket with every field a reader may want, times in the helpdesk's zone (naive, for Excel)."""

    number: int
    subject: str
    state: str
    type: str
    category: str  # "" when none
    priority: str
    source: str
    requester: str
    requester_name: str
    company: str  # "" when none
    assignee: str  # e-mail, "" when none
    group: str
    created_at: datetime
    first_response_due: datetime | None
    first_response_at: datetime | None
    resolution_due: datetime | None
    resolution_at: datetime | None
    closed_at: datetime | None
    within_contract: bool | None
    root_cause: str
    action_plan: str
    cost: str
    resolution: str
    satisfaction: str  # "satisfied" | "not-satisfied" | ""
    first_response_hours: float | None  # business hours
    resolution_hours: float | None
    first_response_met: bool | None  # None: not yet due
    resolution_met: bool | None
    time_minutes: int = 0  # issue 18: time worked on it, all agents (``reports.ledger``)

    @property
    def month(self) -> str:
        return self.created_at.strftime("%Y-%m")


@dataclass(frozen=True)
class SlaFigures:
    met: int = 0
    missed: int = 0
    median_hours: float | None = None
    p90_hours: float | None = None

    @property
    def met_share(self) -> float | None:
        total = self.met + self.missed
        return self.met / total if total else None


@dataclass(frozen=True)
class SatisfactionFigures:
    satisfied: int = 0
    not_satisfied: int = 0
    no_answer: int = 0

    @property
    def satisfied_share(self) -> float | None:
        answered = self.satisfied + self.not_satisfied
        return self.satisfied / answered if answered else None


@dataclass(frozen=True)
class PartyFigures:
    """One company or one customer."""

    name: str  # company name, or customer e-mail
    tickets: int
    complaints: int
    open: int  # new, open or pending now
    resolution: SlaFigures
    satisfaction: SatisfactionFigures


@dataclass(frozen=True)
class AgentFigures:
    email: str
    name: str
    assigned: int  # tickets of the period assigned to them
    open: int  # of those, still new/open/pending
    resolved: int  # of those, resolved or closed
    first_response: SlaFigures  # median / p90 of their tickets' first response hours
    resolution: SlaFigures

def percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(median, 90th percentile); ``statistics.quantiles`` needs two values before Python 3.13, so one is itself."""
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[4], cuts[8]


def sla_figures(met: Iterable[bool | None], hours: Iterable[float | None]) -> SlaFigures:
    verdicts = Counter(met)
    median, p90 = percentiles([h for h in hours if h is not None])
    return SlaFigures(met=verdicts[True], missed=verdicts[False], median_hours=median, p90_hours=p90)


def first_response(rows: Sequence[TicketRow]) -> SlaFigures:
    return sla_figures((r.first_response_met for r in rows), (r.first_response_hours for r in rows))


def resolution(rows: Sequence[TicketRow]) -> SlaFigures:
    return sla_figures((r.resolution_met for r in rows), (r.resolution_hours for r in rows))


def satisfaction(rows: Sequence[TicketRow]) -> SatisfactionFigures:
    """Tickets that were resolved at least once: a "not satisfied" answer reopens a ticket, and must still count."""
    answers = Counter(r.satisfaction for r in rows if r.resolution_at is not None)
    answered = answers["satisfied"] + answers["not-satisfied"]
    return SatisfactionFigures(satisfied=answers["satisfied"], not_satisfied=answers["not-satisfied"],
                               no_answer=answers.total() - answered)


def group_by(rows: Iterable[TicketRow], key: Callable[[TicketRow], str]) -> dict[str, list[TicketRow]]:
    groups: dict[str, list[TicketRow]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return groups


def types_of(rows: Sequence[TicketRow]) -> list[str]:
    """The three types always (a chart or table keeps its shape), then any other type the rows carry."""
    return [*TYPES, *sorted({r.type for r in rows} - set(TYPES))]


def category_of(row: TicketRow) -> str:
    return row.category or NO_CATEGORY


def top_categories(rows: Sequence[TicketRow]) -> list[tuple[str, int]]:
    counts = Counter(category_of(r) for r in rows)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def month_table(rows: Sequence[TicketRow], months: Sequence[str], keys: Sequence[str],
                key: Callable[[TicketRow], str]) -> dict[str, dict[str, int]]:
    """month -> key -> count with every month and every key present, zeros included."""
    table = {month: dict.fromkeys(keys, 0) for month in months}
    for row in rows:
        table[row.month][key(row)] += 1
    return table


def by_month(rows: Sequence[TicketRow], months: Sequence[str]) -> dict[str, list[TicketRow]]:
    grouped = group_by(rows, lambda r: r.month)
    return {month: grouped.get(month, []) for month in months}


def party(name: str, rows: Sequence[TicketRow]) -> PartyFigures:
    return PartyFigures(name=name, tickets=len(rows), complaints=sum(r.type == "complaint" for r in rows),
                        open=sum(r.state in OPEN_STATES for r in rows), resolution=resolution(rows),
                        satisfaction=satisfaction(rows))


def parties(rows: Sequence[TicketRow], key: Callable[[TicketRow], str]) -> list[PartyFigures]:
    """Most tickets first, ties by name so two runs list them alike; rows with no party ("") are left out."""
    grouped = group_by(rows, key)
    figures = [party(name, members) for name, members in grouped.items() if name]
    return sorted(figures, key=lambda p: (-p.tickets, p.name.casefold(), p.name))


def agents(rows: Sequence[TicketRow], names: dict[str, str]) -> list[AgentFigures]:
    """Only agents with an assigned ticket in the scope: an idle agent's zeros say nothing about the period."""
    grouped = group_by(rows, lambda r: r.assignee)
    return [AgentFigures(email=email, name=names.get(email, ""), assigned=len(members),
                         open=sum(r.state in OPEN_STATES for r in members),
                         resolved=sum(r.state in DONE_STATES for r in members),
                         first_response=first_response(members), resolution=resolution(members))
            for email, members in sorted(grouped.items()) if email]
