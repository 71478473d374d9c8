"""SLA timers with a clock the test moves: the real daemon (`ticketd run`, IMAP IDLE) under libfaketime, whose
offset the test rewrites while it runs, and the daemon's own scheduler running the sweep job.

A high-priority complaint opens on Friday just before 16:00 (Istanbul). Business hours are Monday to
Friday 09:00-18:00 and Monday 7 December is a holiday, so the first response (2 business hours) is due Friday
18:00 and the resolution (1 business day) Tuesday 16:00. The agent sets the ticket `pending` on Tuesday 10:00
and the customer answers at 17:00: those 7 business hours do not count, so the resolution is due Wednesday
14:00. Exactly one escalation per deadline reaches the manager and exactly one `delayed` the customer, each at
the right moment.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fakeclock import Clock, require_libfaketime

from conftest import DATA, Mailbox, Site, reply_to, start_daemon, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

IST = ZoneInfo("Europe/Istanbul")
ALI, AYSE, CIGDEM = "ali@acme.example", "ayse@acme.example", "cigdem.yilmaz@musteri.com.tr"
QUIET = 3.0  # real seconds to watch for mail that must not come (the sweep runs every second)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=IST)


def ticket_row(site: Site) -> dict[str, Any]:
    from sqlmodel import Session, select

    from ticketd.daemon.cli.views import ticket_detail
    from ticketd.storage.models import Ticket

    with Session(site.engine) as session:
        return ticket_detail(session, session.exec(select(Ticket)).one())


def all_sent(site: Site) -> bool:
    """Nothing queued: a mail counted as "already there" must not still be on its way."""
    from sqlmodel import Session, select

    from ticketd.storage.models import Outbox

    with Session(site.engine) as session:
        return session.exec(select(Outbox.id).where(Outbox.status == "queued")).first() is None


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(IST)


def near(value: datetime, expected: datetime) -> bool:
    """Equal to the minute, give or take the real seconds the test itself takes between steps."""
    return abs(value - expected) < timedelta(minutes=2)


@pytest.fixture
def sla_site(live_site: Site, tmp_path: Path) -> Site:
    require_libfaketime()
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    live_site.sections["agents"] = [{"email": ALI, "name": "Ali Veli", "role": "agent", "groups": ["network"]},
                                    {"email": AYSE, "name": "Ayşe Demir", "role": "manager", "groups": ["network"]}]
    live_site.sections["sla"] = {"holidays": ["2026-12-07"], "sweep_seconds": 1}
    live_site.sections["sla.first_response"] = {"high": "2h"}
    live_site.sections["sla.resolution"] = {"high": "1d"}
    live_site.sections["rules"] = [{"name": "complaints", "match": {"subject": "(?i)şikayet"},
                                    "set": {"type": "complaint", "priority": "high"}}]
    return live_site


def test_deadlines_in_business_time_across_a_weekend_a_holiday_and_a_pending_period(
        sla_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    clock = Clock(tmp_path / "faketime")
    clock.set(at(4, 15, 58))  # the mail takes a few seconds to arrive: it must open the ticket before 16:00
    log_path = tmp_path / "daemon.log"
    daemon = start_daemon(sla_site, clock.env())

    def mails(kind: str, to: str) -> list[Any]:
        return [m for m in smtp_sink.received if to in m.envelope_to and m.message["X-Ticketd-Kind"] == kind]

    def nothing_new(count: int, why: str) -> None:
        time.sleep(QUIET)
        assert len(smtp_sink.received) == count, (why, [m.message["Subject"] for m in smtp_sink.received[count:]])

    try:
        mailbox.append((DATA / "process" / "complaint-tr.eml").read_bytes())
        wait_for("the acknowledgment", lambda: bool(mails("received", CIGDEM)) and bool(mails("agent_new", ALI)),
                 daemon)
        ticket = ticket_row(sla_site)
        assert ticket["priority"] == "high" and ticket["type"] == "complaint"
        assert near(local(ticket["first_response_due"]), at(4, 18))
        assert near(local(ticket["resolution_due"]), at(8, 16))  # Saturday, Sunday and the Monday holiday skipped

        clock.set(at(4, 17, 55))
        nothing_new(len(smtp_sink.received), "escalated before the first-response deadline")

        clock.set(at(5, 10))  # Saturday: the deadline passed at Friday 18:00
        wait_for("the first-response escalation", lambda: bool(mails("escalation", AYSE)), daemon)
        [escalation] = mails("escalation", AYSE)
        assert "first response" in escalation.message.get_body(("plain",)).get_content().lower()
        assert not mails("escalation", ALI) and not mails("delayed", CIGDEM)

        clock.set(at(8, 10))  # Tuesday: Ali asks the customer for details; the clock stops
        notification = mails("agent_new", ALI)[0]
        count = len(smtp_sink.received)
        mailbox.append(reply_to(notification, ALI, "Modeminizin seri numarasını yazar mısınız?",
                                subject_suffix="[pending]"))
        wait_for("the relay", lambda: bool(mails("agent-reply", CIGDEM)) and all_sent(sla_site), daemon)
        assert ticket_row(sla_site)["state"] == "pending"

        clock.set(at(8, 17))  # past the original resolution deadline (16:00), but pending
        nothing_new(count + 1, "the clock ran while pending")

        relay = mails("agent-reply", CIGDEM)[0]
        mailbox.append(reply_to(relay, CIGDEM, "Seri numarası: ZX-4821"))
        wait_for("the customer's answer, and Ali told of it",
                 lambda: ticket_row(sla_site)["state"] == "open" and all_sent(sla_site), daemon)
        ticket = ticket_row(sla_site)
        assert near(local(ticket["resolution_due"]), at(9, 14))  # 7 business hours later

        count = len(smtp_sink.received)
        clock.set(at(9, 13, 50))
        nothing_new(count, "delayed before the moved deadline")

        clock.set(at(9, 14, 10))
        wait_for("the delayed mail", lambda: bool(mails("delayed", CIGDEM)), daemon)
        wait_for("the resolution escalation", lambda: len(mails("escalation", AYSE)) == 2, daemon)

        clock.set(at(10, 12))  # a day later: nothing fires twice
        nothing_new(len(smtp_sink.received), "a timer fired twice")
        assert len(mails("delayed", CIGDEM)) == 1 and len(mails("escalation", AYSE)) == 2
    finally:
        exit_code = stop_daemon(daemon)
        log_path.write_bytes(daemon.stderr.read() if daemon.stderr else b"")
    assert exit_code == 0
    history = ticket_row(sla_site)["events"]
    fired = [(e["what"], e["at"]) for e in history if e["what"].startswith("sla:")]
    assert [what for what, _ in fired] == ["sla:first_response-overdue", "sla:resolution-overdue"]
    assert near(local(fired[0][1]), at(5, 10)) and near(local(fired[1][1]), at(9, 14, 10))
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert sum(e["event"] == "sweep.fired" for e in events) == 2
