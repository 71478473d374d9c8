"""The report's definitions, each checked on a few hand-made tickets whose figures can be worked out on paper.

The helpdesk is in Europe/Istanbul (UTC+3 all year) and works Monday to Friday, 09:00-18:00.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from conftest import Site
from ticketd.daemon.config import Config
from ticketd.daemon.reports.data import ReportData, Scope, collect, scope_label
from ticketd.daemon.reports.texts import EN, TR
from ticketd.storage.models import Agent, Company, Customer, Ticket

IST = ZoneInfo("Europe/Istanbul")
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def local(*args: int) -> datetime:
    """An Istanbul wall-clock time as the aware UTC instant the database stores."""
    return datetime(*args, tzinfo=IST).astimezone(UTC)  # type: ignore[misc]


class Desk:
    """A migrated database with two companies, three customers and two agents, and a way to add tickets."""

    def __init__(self, site: Site) -> None:
        site.upgrade()
        self.config: Config = site.config()
        self.engine = site.engine
        self.number = 0
        with Session(self.engine, expire_on_commit=False) as session:
            self.musteri = Company(name="Müşteri A.Ş.")
            self.other = Company(name="Other Ltd")
            session.add_all([self.musteri, self.other])
            session.flush()
            self.cigdem = Customer(email="cigdem@musteri.com.tr", name="Çiğdem", company_id=self.musteri.id)
            self.jane = Customer(email="jane@other.example", name="Jane", company_id=self.other.id)
            self.private = Customer(email="someone@gmail.com", name=None)
            self.ali = Agent(email="ali@acme.example", name="Ali Veli")
            self.ayse = Agent(email="ayse@acme.example", name="Ayşe Demir")
            session.add_all([self.cigdem, self.jane, self.private, self.ali, self.ayse])
            session.commit()

    def ticket(self, created: datetime, customer: Customer | None = None, **fields: Any) -> Ticket:
        customer = customer or self.cigdem
        self.number += 1
        ticket = Ticket(number=self.number, subject=f"Ticket {self.number}", requester_id=customer.id,
                        company_id=customer.company_id, created_at=created, updated_at=created, **fields)
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(ticket)
            session.commit()
        return ticket

    def collect(self, scope: Scope | None = None, now: datetime = NOW) -> ReportData:
        with Session(self.engine) as session:
            return collect(session, self.config, scope or Scope(), now=now)


@pytest.fixture
def desk(site: Site) -> Iterator[Desk]:
    yield Desk(site)


def by_number(data: ReportData) -> dict[int, Any]:
    return {t.number: t for t in data.tickets}


def test_a_ticket_belongs_to_its_local_month(desk: Desk) -> None:
    late_january = desk.ticket(datetime(2026, 1, 31, 20, 30, tzinfo=UTC))  # 23:30 in Istanbul: still January
    february = desk.ticket(datetime(2026, 1, 31, 23, 30, tzinfo=UTC))  # 02:30 on 1 February in Istanbul
    data = desk.collect()
    rows = by_number(data)
    assert rows[late_january.number].month == "2026-01"
    assert rows[february.number].month == "2026-02"
    assert rows[february.number].created_at == datetime(2026, 2, 1, 2, 30)  # naive local, for Excel
    assert data.months == ["2026-01", "2026-02"]
    assert data.by_month_type == {"2026-01": {"request": 1, "complaint": 0, "information": 0},
                                  "2026-02": {"request": 1, "complaint": 0, "information": 0}}
    february_only = desk.collect(Scope(since=date(2026, 2, 1), until=date(2026, 2, 28)))
    assert [t.number for t in february_only.tickets] == [february.number]
    january_only = desk.collect(Scope(until=date(2026, 1, 31)))
    assert [t.number for t in january_only.tickets] == [late_january.number]
    assert january_only.months == ["2026-01"]


def test_empty_months_are_present_with_zeros(desk: Desk) -> None:
    desk.ticket(local(2026, 1, 5, 10, 0), type="complaint", category="billing/invoice")
    desk.ticket(local(2026, 3, 2, 10, 0), category="hardware/modem")
    desk.ticket(local(2026, 3, 3, 10, 0), category="hardware/modem")
    desk.ticket(local(2026, 3, 4, 10, 0), type="information")
    data = desk.collect(Scope(since=date(2025, 12, 15), until=date(2026, 4, 2)))
    assert data.months == ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04"]
    assert data.by_month_type["2026-02"] == {"request": 0, "complaint": 0, "information": 0}
    assert data.by_month_type["2026-03"] == {"request": 2, "complaint": 0, "information": 1}
    assert data.top_categories == [("hardware/modem", 2), ("(none)", 1), ("billing/invoice", 1)]
    assert data.by_month_category["2025-12"] == {"hardware/modem": 0, "(none)": 0, "billing/invoice": 0}
    assert data.by_month_category["2026-01"] == {"hardware/modem": 0, "(none)": 0, "billing/invoice": 1}
    assert set(data.sla_by_month) == set(data.satisfaction_by_month) == set(data.months)
    assert desk.collect(Scope(since=date(2027, 1, 1))).months == ["2027-01"]
    assert desk.collect(Scope(company="Other Ltd")).months == []


def test_met_missed_and_not_yet_due(desk: Desk) -> None:
    due = NOW - timedelta(hours=1)
    ahead = NOW + timedelta(hours=1)
    created = local(2026, 3, 16, 9, 0)
    cases = {  # number: (first response due, first response at) -> verdict
        desk.ticket(created, first_response_due=due, first_response_at=due - timedelta(minutes=1)).number: True,
        desk.ticket(created, first_response_due=due, first_response_at=due).number: True,  # on the second
        desk.ticket(created, first_response_due=due, first_response_at=due + timedelta(seconds=1)).number: False,
        desk.ticket(created, first_response_due=due).number: False,  # no answer, deadline passed
        desk.ticket(created, first_response_due=ahead).number: None,  # no answer yet, deadline ahead
        desk.ticket(created, first_response_due=ahead, first_response_at=NOW).number: True,
        desk.ticket(created, first_response_due=NOW).number: None,  # due right now: not passed yet
        desk.ticket(created).number: None,  # no deadline at all
    }
    data = desk.collect()
    assert {n: t.first_response_met for n, t in by_number(data).items()} == cases
    assert (data.first_response.met, data.first_response.missed) == (3, 2)
    assert data.first_response.met_share == pytest.approx(3 / 5)
    late = desk.collect(now=NOW + timedelta(hours=2))
    assert (late.first_response.met, late.first_response.missed) == (3, 4)


def test_resolution_uses_the_last_resolution_and_counts_reopened_tickets(desk: Desk) -> None:
    created = local(2026, 3, 16, 9, 0)
    due = local(2026, 3, 17, 9, 0)
    reopened = desk.ticket(created, state="open", resolution_due=due, resolution_at=local(2026, 3, 16, 15, 0),
                           satisfaction="not-satisfied")
    late = desk.ticket(created, state="closed", resolution_due=due, resolution_at=local(2026, 3, 17, 10, 0),
                       closed_at=local(2026, 3, 18, 10, 0), satisfaction="satisfied")
    waiting = desk.ticket(created, state="pending", resolution_due=local(2026, 3, 30, 9, 0))
    data = desk.collect()
    rows = by_number(data)
    assert rows[reopened.number].resolution_met is True
    assert rows[reopened.number].resolution_hours == pytest.approx(6.0)
    assert rows[late.number].resolution_met is False
    assert rows[late.number].resolution_hours == pytest.approx(10.0)  # 9 h Monday + 1 h Tuesday
    assert rows[waiting.number].resolution_met is None
    assert (data.resolution.met, data.resolution.missed) == (1, 1)
    # satisfaction counts tickets resolved at least once, even the one the answer reopened
    assert (data.satisfaction.satisfied, data.satisfaction.not_satisfied, data.satisfaction.no_answer) == (1, 1, 0)
    assert data.satisfaction.satisfied_share == pytest.approx(0.5)
    assert data.companies[0].open == 2  # the reopened and the pending one


def test_durations_count_business_hours_only(desk: Desk) -> None:
    friday = local(2026, 3, 13, 17, 0)  # one business hour left that day
    ticket = desk.ticket(friday, first_response_at=local(2026, 3, 16, 10, 0),  # Monday 10:00: 1 h + 1 h
                         resolution_at=local(2026, 3, 17, 12, 0), state="resolved")  # Tuesday 12:00: 1 + 9 + 3 h
    night = desk.ticket(local(2026, 3, 16, 22, 0), first_response_at=local(2026, 3, 17, 8, 30))  # before opening
    rows = by_number(desk.collect())
    assert rows[ticket.number].first_response_hours == pytest.approx(2.0)
    assert rows[ticket.number].resolution_hours == pytest.approx(13.0)
    assert rows[night.number].first_response_hours == 0.0
    assert rows[night.number].resolution_hours is None
    assert rows[ticket.number].first_response_at == datetime(2026, 3, 16, 10, 0)


def monday_answers(desk: Desk, hours: list[float], customer: Customer | None = None,
                   **fields: Any) -> list[Ticket]:
    """Tickets opened Monday 09:00, answered after the given business hours (9 h a day)."""
    opened = local(2026, 3, 9, 9, 0)
    out = []
    for h in hours:
        days, rest = divmod(h, 9)
        out.append(desk.ticket(opened, customer, first_response_at=opened + timedelta(days=days, hours=rest),
                               **fields))
    return out


def test_medians_and_90th_percentiles_interpolate_between_ranks(desk: Desk) -> None:
    monday_answers(desk, [10, 1, 4, 2, 3], desk.cigdem, assignee_id=desk.ali.id)
    monday_answers(desk, [4, 1, 3, 2], desk.jane, assignee_id=desk.ayse.id)
    monday_answers(desk, [5.5], desk.private)
    data = desk.collect()
    ali, ayse = data.agents
    assert (ali.first_response.median_hours, ali.first_response.p90_hours) == (pytest.approx(3), pytest.approx(7.6))
    assert (ayse.first_response.median_hours, ayse.first_response.p90_hours) == (pytest.approx(2.5),
                                                                                pytest.approx(3.7))
    assert ali.resolution.median_hours is None and ali.resolution.p90_hours is None
    values = sorted([10, 1, 4, 2, 3, 4, 1, 3, 2, 5.5])  # ten: median between 5th and 6th, p90 at rank 9.1
    assert data.first_response.median_hours == pytest.approx((values[4] + values[5]) / 2)
    assert data.first_response.p90_hours == pytest.approx(values[8] + 0.1 * (values[9] - values[8]))
    alone = desk.collect(Scope(customer="someone@gmail.com"))
    assert (alone.first_response.median_hours, alone.first_response.p90_hours) == (5.5, 5.5)


def test_scope_by_company_and_customer(desk: Desk) -> None:
    mine = [desk.ticket(local(2026, 3, 2, 10, 0)).number, desk.ticket(local(2026, 3, 3, 10, 0)).number]
    theirs = desk.ticket(local(2026, 3, 2, 11, 0), desk.jane).number
    private = desk.ticket(local(2026, 3, 2, 12, 0), desk.private).number
    musteri = desk.collect(Scope(company="müşteri a.ş."))
    assert [t.number for t in musteri.tickets] == mine
    assert musteri.scope.company == "Müşteri A.Ş."  # as stored, for the workbook's title
    assert [t.number for t in desk.collect(Scope(company="OTHER LTD")).tickets] == [theirs]
    assert [t.number for t in desk.collect(Scope(customer="Someone@Gmail.com")).tickets] == [private]
    everything = desk.collect()
    assert [t.number for t in everything.tickets] == sorted([*mine, theirs, private])
    assert [(p.name, p.tickets) for p in everything.companies] == [("Müşteri A.Ş.", 2), ("Other Ltd", 1)]
    assert [(p.name, p.tickets) for p in everything.customers] == [
        ("cigdem@musteri.com.tr", 2), ("jane@other.example", 1), ("someone@gmail.com", 1)]
    assert by_number(everything)[private].company == ""
    with pytest.raises(ValueError, match="no company called 'Nobody Inc'"):
        desk.collect(Scope(company="Nobody Inc"))
    with pytest.raises(ValueError, match="no customer"):
        desk.collect(Scope(customer="nobody@example.org"))


def test_merged_tickets_are_left_out(desk: Desk) -> None:
    kept = desk.ticket(local(2026, 3, 2, 10, 0))
    desk.ticket(local(2026, 3, 2, 10, 5), state="closed", merged_into_id=kept.id, type="complaint")
    data = desk.collect()
    assert [t.number for t in data.tickets] == [kept.number]
    assert data.by_month_type["2026-03"]["complaint"] == 0
    assert data.companies[0].tickets == 1


def test_parties_and_agents(desk: Desk) -> None:
    at = local(2026, 3, 2, 10, 0)
    desk.ticket(at, desk.jane, type="complaint", state="open", assignee_id=desk.ayse.id)
    desk.ticket(at, desk.jane, state="closed", assignee_id=desk.ayse.id, resolution_at=at, satisfaction="satisfied")
    desk.ticket(at, desk.jane, state="rejected")
    desk.ticket(at, desk.cigdem, state="new")
    data = desk.collect()
    other, musteri = data.companies
    assert (other.name, other.tickets, other.complaints, other.open) == ("Other Ltd", 3, 1, 1)
    assert (other.satisfaction.satisfied, other.satisfaction.no_answer) == (1, 0)
    assert (musteri.tickets, musteri.open, musteri.satisfaction.satisfied_share) == (1, 1, None)
    assert [(a.email, a.name, a.assigned, a.open, a.resolved) for a in data.agents] == [
        ("ayse@acme.example", "Ayşe Demir", 2, 1, 1)]  # Ali has nothing assigned: not listed
    row = data.tickets[0]
    assert (row.assignee, row.requester, row.requester_name, row.category, row.satisfaction) == (
        "ayse@acme.example", "jane@other.example", "Jane", "", "")


def test_scope_labels() -> None:
    scope = Scope(date(2025, 10, 1), date(2026, 11, 30), company="Müşteri A.Ş.")
    assert scope_label(scope, "en") == "2025-10-01 – 2026-11-30, Müşteri A.Ş."
    assert scope_label(scope, "tr") == "01.10.2025 – 30.11.2026, Müşteri A.Ş."
    assert scope_label(Scope(), "en") == "all dates"
    assert scope_label(Scope(), "tr") == "tüm tarihler"
    assert scope_label(Scope(since=date(2026, 1, 1), customer="a@b.example"), "en") == "from 2026-01-01, a@b.example"
    assert scope_label(Scope(until=date(2026, 1, 31)), "tr") == "31.01.2026 tarihine kadar"


def test_workbook_texts_are_complete_in_both_languages() -> None:
    assert set(EN) == set(TR)
    assert all(value.strip() for value in (*EN.values(), *TR.values()))
