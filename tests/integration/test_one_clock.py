"""One clock per message (Build 0): a ticket opens at the instant its deadlines are counted from, to the
microsecond, at any hour; tests that compare deadlines pin that instant instead of hoping two clock reads agree.
Real SQLite and PostgreSQL; mail enters as through `ticketd deliver`."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from conftest import DATA, Desk, reply_to
from ticketd.rules.sla import parse_duration

pytestmark = pytest.mark.integration

IST = ZoneInfo("Europe/Istanbul")


@pytest.mark.parametrize("at", [
    datetime(2026, 12, 9, 10, 3, 8, 207644, tzinfo=IST),  # Wednesday, inside business hours: every µs counts
    datetime(2026, 12, 9, 20, 0, tzinfo=IST),  # after closing: counting starts at Thursday's opening
    datetime(2026, 12, 12, 11, 0, tzinfo=IST),  # Saturday
], ids=["wednesday-10:03", "wednesday-20:00", "saturday"])
def test_a_ticket_opens_at_the_instant_its_deadlines_count_from(desk: Desk, at: datetime) -> None:
    outcome = desk.deliver((DATA / "unknown-sender.eml").read_bytes(), clock=lambda: at)
    ticket = desk.ticket(outcome.ticket_number)
    calendar, sla = desk.site.config().calendar, desk.site.config().sla
    first, resolution = sla.targets(None, "normal")
    assert datetime.fromisoformat(ticket["created_at"]) == at
    assert datetime.fromisoformat(ticket["first_response_due"]) == calendar.add(at, first)
    assert datetime.fromisoformat(ticket["resolution_due"]) == calendar.add(at, resolution)
    assert {datetime.fromisoformat(e["at"]) for e in ticket["events"] if e["what"] == "created"} == {at}


def test_a_priority_change_counts_from_the_same_opening_instant(desk: Desk) -> None:
    at = datetime(2026, 12, 9, 10, 3, 8, 207644, tzinfo=IST)
    outcome = desk.deliver((DATA / "unknown-sender.eml").read_bytes(), clock=lambda: at)
    notification = next(m for m in desk.new_mail() if "ali@acme.example" in m.envelope_to)

    later = datetime(2026, 12, 9, 11, 30, 1, 5, tzinfo=IST)
    desk.deliver(reply_to(notification, "ali@acme.example", "", subject_suffix="[priority=urgent]"),
                 clock=lambda: later)
    ticket = desk.ticket(outcome.ticket_number)
    calendar = desk.site.config().calendar
    assert datetime.fromisoformat(ticket["resolution_due"]) == calendar.add(at, parse_duration("4h"))
    assert datetime.fromisoformat(ticket["first_response_due"]) == calendar.add(at, parse_duration("1h"))
    priority = next(e for e in ticket["events"] if e["what"] == "priority")
    assert datetime.fromisoformat(priority["at"]) == later
