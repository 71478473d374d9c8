"""Scheduled report mail with a clock the test moves: the real daemon (`ticketd run`, IMAP IDLE) under libfaketime,
whose offset the test rewrites while it runs, and the daemon's own scheduler running the `[[reports]]` jobs.

The database holds a small history written directly: tickets of two companies in October, November and the first
days of December 2026. Two reports are configured: "monthly" (`0 8 1 * *`, every company, Turkish) to the general
manager, and "weekly-musteri" (`0 9 * * 1`, the previous Monday-to-Sunday week, one company, English) to two
people. On 1 December at 08:00 exactly one monthly mail goes out, its workbook holding November's tickets only; on
Monday 7 December at 09:00 exactly one weekly mail reaches both its recipients, holding that company's tickets of
30 November to 6 December only; later in that week neither report comes again.

The SLA sweep runs every second here: APScheduler sleeps until its next job in real (monotonic) time, so the
one-second job is what makes it notice the test's jumps of the wall clock.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fakeclock import Clock, require_libfaketime
from sqlmodel import Session, select

from conftest import TICKETD, Site, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink
from ticketd.storage.db import session_scope
from ticketd.storage.models import Outbox, Ticket

pytestmark = pytest.mark.integration

IST = ZoneInfo("Europe/Istanbul")
QUIET = 3.0  # real seconds to watch for mail that must not come
GM, ALICE, BOB = "gm@acme.example", "alice@musteri.com.tr", "bob@acme.example"
MUSTERI, BASKA = "Müşteri A.Ş.", "Başka Ltd."
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CATEGORIES = ("hardware/modem", "billing", "network", "hardware/modem", "network")


@dataclass(frozen=True)
class Opened:
    number: int
    at: datetime  # local
    company: str


def history() -> list[Opened]:
    """30 tickets in October and November, the last two days of November included, and three in December."""
    october = [Opened(n, datetime(2026, 10, 2 * n, 10, tzinfo=IST), MUSTERI if n % 2 else BASKA)
               for n in range(1, 13)]
    november_days = (1, 2, 3, 5, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 29, 30, 30)
    november = [Opened(13 + i, datetime(2026, 11, day, 9 + i % 8, tzinfo=IST), MUSTERI if i % 2 else BASKA)
                for i, day in enumerate(november_days)]
    december = [Opened(31, datetime(2026, 12, 2, 11, tzinfo=IST), MUSTERI),
                Opened(32, datetime(2026, 12, 3, 11, tzinfo=IST), BASKA),
                Opened(33, datetime(2026, 12, 7, 8, tzinfo=IST), MUSTERI)]  # the week after the weekly's period
    return october + november + december


def insert_history(site: Site, opened: list[Opened]) -> None:
    from ticketd.storage.directory import add_company, upsert_customer

    with session_scope(site.engine) as session:
        musteri = add_company(session, MUSTERI, ["musteri.com.tr"])
        baska = add_company(session, BASKA, ["baska.example"])
        requesters = {MUSTERI: upsert_customer(session, "cigdem@musteri.com.tr", "Çiğdem Yılmaz", musteri, "tr"),
                      BASKA: upsert_customer(session, "veli@baska.example", "Veli Kaya", baska, "tr")}
        companies = {MUSTERI: musteri, BASKA: baska}
        for ticket in opened:
            created = ticket.at.astimezone(UTC)
            done = ticket.number % 3 != 0  # every third is still open
            late = ticket.number % 5 == 0
            resolved = created + timedelta(days=3 if late else 1) if done else None
            session.add(Ticket(
                number=ticket.number, subject=f"Talep {ticket.number}", requester_id=requesters[ticket.company].id,
                company_id=companies[ticket.company].id, type="complaint" if ticket.number % 4 == 0 else "request",
                category=CATEGORIES[ticket.number % len(CATEGORIES)], state="closed" if done else "open",
                created_at=created, updated_at=created, first_response_due=created + timedelta(hours=4),
                first_response_at=created + timedelta(hours=6 if late else 1),
                resolution_due=created + timedelta(days=2), resolution_at=resolved,
                closed_at=resolved + timedelta(days=1) if resolved else None,
                resolution_breached_at=None if done else created + timedelta(days=2),  # the sweep has been there
                satisfaction=("not-satisfied" if late else "satisfied") if done else None))


def logged(log: Path, event: str) -> bool:
    return any(json.loads(line).get("event") == event for line in log.read_text().splitlines() if line.startswith("{"))


def workbook_tickets(message: EmailMessage) -> tuple[str, list[int], list[str]]:
    """The attached workbook's Tickets sheet: its title, the ticket numbers and their companies."""
    from openpyxl import load_workbook

    [workbook] = [part for part in message.iter_attachments() if part.get_content_type() == XLSX]
    book = load_workbook(io.BytesIO(workbook.get_content()), read_only=True)
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    company = rows[0].index("Firma" if sheet.title == "Talepler" else "Company")
    return sheet.title, [int(row[0]) for row in rows[1:]], [str(row[company]) for row in rows[1:]]


@pytest.fixture
def report_site(live_site: Site) -> Site:
    require_libfaketime()
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    live_site.sections["sla"] = {"sweep_seconds": 1}
    live_site.sections["reports"] = [
        {"name": "monthly", "schedule": "0 8 1 * *", "recipients": [GM], "language": "tr"},
        {"name": "weekly-musteri", "schedule": "0 9 * * 1", "recipients": [ALICE, BOB], "company": MUSTERI,
         "language": "en", "period": "previous-week"},
    ]
    return live_site


def test_reports_go_out_on_their_schedules_with_their_own_tickets(report_site: Site, smtp_sink: SmtpSink,
                                                                  tmp_path: Path) -> None:
    opened = history()
    insert_history(report_site, opened)
    november = [t.number for t in opened if (t.at.year, t.at.month) == (2026, 11)]
    week = [t for t in opened if date(2026, 11, 30) <= t.at.date() <= date(2026, 12, 6)]
    weekly_expected = [t.number for t in week if t.company == MUSTERI]
    assert weekly_expected and any(t.company == BASKA for t in week)  # the company filter has work to do

    clock = Clock(tmp_path / "faketime")
    clock.set(datetime(2026, 11, 30, 23, 59, tzinfo=IST))
    log = tmp_path / "daemon.log"
    report_site.write()

    def reports(name: str | None = None) -> list[Any]:
        found = [m for m in smtp_sink.received if m.message["X-Ticketd-Kind"] == "report"]
        return [m for m in found if name is None or f"ticketd-report-{name}-".encode() in m.raw]

    def nothing_new(why: str) -> None:
        count = len(reports())
        time.sleep(QUIET)
        assert len(reports()) == count, (why, [m.message["Subject"] for m in reports()[count:]])

    with log.open("wb") as err:
        daemon = subprocess.Popen([str(TICKETD), "--config", str(report_site.config_path), "run"],
                                  env=clock.env(), stdout=subprocess.DEVNULL,
                                  stderr=err)
    try:
        # the timers run by the time IMAP is connected
        wait_for("the daemon to start", lambda: logged(log, "imap.connected"), daemon, timeout=60, log=log)
        nothing_new("a report before its time")
        assert not reports()

        clock.set(datetime(2026, 12, 1, 8, 0, 30, tzinfo=IST))
        wait_for("the monthly report", lambda: bool(reports()), daemon, timeout=60, log=log)
        nothing_new("more than one report on 1 December")
        [monthly] = reports()
        assert monthly.envelope_to == [GM] and monthly.message["To"] == GM
        message = monthly.message
        assert message["Subject"] == "Yardım masası raporu 1 Kasım 2026 – 30 Kasım 2026"
        assert message.get_content_type() == "multipart/mixed"
        text = message.get_body(("plain",)).get_content()
        assert re.search(rf"Talepler:\s+{len(november)}\s", text), text
        assert "ticketd-report-monthly-2026-12-01.xlsx" in text
        html = message.get_body(("html",))
        images = [p for p in message.walk() if p.get_content_type() == "image/png"]
        assert len(images) == 4 and all(f"cid:{p['Content-ID'].strip('<>')}" in html.get_content() for p in images)
        title, numbers, _ = workbook_tickets(message)
        assert title == "Talepler" and sorted(numbers) == sorted(november)

        clock.set(datetime(2026, 12, 7, 9, 0, 30, tzinfo=IST))
        wait_for("the weekly report", lambda: len(reports()) == 2, daemon, timeout=60, log=log)
        nothing_new("more than one report on 7 December")
        weekly = reports()[1]
        assert sorted(weekly.envelope_to) == sorted([ALICE, BOB])
        assert weekly.message["Subject"] == "Helpdesk report November 30, 2026 – December 6, 2026"
        assert ALICE in weekly.message["To"] and BOB in weekly.message["To"]
        title, numbers, companies = workbook_tickets(weekly.message)
        assert title == "Tickets" and sorted(numbers) == sorted(weekly_expected)
        assert set(companies) == {MUSTERI}
        assert "ticketd-report-weekly-musteri-2026-12-07.xlsx" in weekly.message.get_body(("plain",)).get_content()

        for later in (datetime(2026, 12, 7, 15, tzinfo=IST), datetime(2026, 12, 10, 9, 0, 30, tzinfo=IST),
                      datetime(2026, 12, 13, 23, 0, tzinfo=IST)):
            clock.set(later)
            nothing_new(f"a report again at {later:%d.%m %H:%M}")
        assert len(reports("monthly")) == 1 and len(reports("weekly-musteri")) == 1
    finally:
        exit_code = stop_daemon(daemon)
    assert exit_code == 0
    with Session(report_site.engine) as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "report")).all()
    assert [(r.status, r.automatic) for r in rows] == [("sent", False), ("sent", False)]
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [e["report"] for e in events if e["event"] == "report.queued"] == ["monthly", "weekly-musteri"]
    assert not [e for e in events if e["event"].startswith("report.") and e["event"] != "report.queued"]
