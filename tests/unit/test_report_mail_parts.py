"""The report mail's parts: its period, its numbers in the reader's locale, its config entries, and an outbox row
with attachments composed into the same multipart bytes on every retry."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from ticketd.daemon.config import ConfigError, parse_config
from ticketd.daemon.config.reports import ReportConfig, cron_trigger
from ticketd.daemon.outgoing import wire
from ticketd.daemon.outgoing.outbox import MailAttachment, OutgoingMail, build_message, load_attachments, queue_mail
from ticketd.daemon.outgoing.storm import ALERT_KIND
from ticketd.daemon.reports.data import Scope
from ticketd.daemon.reports.mail import (
    XLSX_TYPE,
    html_body,
    long_date,
    money,
    number,
    percent,
    period_days,
    period_text,
    report_scope,
    send_report,
)
from ticketd.daemon.stages.sweep import Timers
from ticketd.mailtemplates.render import make_environment, render
from ticketd.storage import db
from ticketd.storage.models import Blob, Outbox, OutboxAttachment

IST = ZoneInfo("Europe/Istanbul")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
CID = "monthly.0123456789abcdef@acme.example"


def base(tmp_path: Path, reports: list[dict[str, Any]] | None = None, url: str | None = None) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    return {
        "helpdesk": {"address": "support@acme.example", "tag": "ACME", "timezone": "Europe/Istanbul"},
        "security": {"secret_file": str(tmp_path / "secret")},
        "database": {"url": url or f"sqlite:///{tmp_path / 'ticketd.db'}"},
        "reports": reports or [],
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


# --- the period ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("period", "now", "since", "until"), [
    # 1 Dec 00:30 in Istanbul is still 30 Nov in UTC: the helpdesk's day counts
    ("previous-month", datetime(2026, 11, 30, 21, 30, tzinfo=UTC), date(2026, 11, 1), date(2026, 11, 30)),
    ("previous-month", datetime(2026, 12, 1, 8, tzinfo=IST), date(2026, 11, 1), date(2026, 11, 30)),
    ("previous-month", datetime(2027, 1, 1, 8, tzinfo=IST), date(2026, 12, 1), date(2026, 12, 31)),
    ("previous-month", datetime(2028, 3, 1, 8, tzinfo=IST), date(2028, 2, 1), date(2028, 2, 29)),
    ("previous-month", datetime(2026, 11, 30, 20, 59, tzinfo=UTC), date(2026, 10, 1), date(2026, 10, 31)),
    ("previous-week", datetime(2026, 12, 7, 9, tzinfo=IST), date(2026, 11, 30), date(2026, 12, 6)),
    ("previous-week", datetime(2027, 1, 4, 9, tzinfo=IST), date(2026, 12, 28), date(2027, 1, 3)),
    ("previous-week", datetime(2027, 1, 3, 23, 59, tzinfo=IST), date(2026, 12, 21), date(2026, 12, 27)),
    ("last-30-days", datetime(2027, 1, 1, 8, tzinfo=IST), date(2026, 12, 2), date(2026, 12, 31)),
    ("last-30-days", datetime(2027, 3, 1, 8, tzinfo=IST), date(2027, 1, 30), date(2027, 2, 28)),
    ("month-to-date", datetime(2027, 1, 1, 8, tzinfo=IST), date(2027, 1, 1), date(2027, 1, 1)),
    ("month-to-date", datetime(2026, 12, 31, 20, 59, tzinfo=UTC), date(2026, 12, 1), date(2026, 12, 31)),
    ("month-to-date", datetime(2026, 12, 31, 21, 0, tzinfo=UTC), date(2027, 1, 1), date(2027, 1, 1)),
])
def test_the_period_is_counted_in_the_helpdesks_days(tmp_path: Path, period: str, now: datetime, since: date,
                                                     until: date) -> None:
    config = parse_config(base(tmp_path, [{"name": "r", "schedule": "0 8 1 * *", "recipients": ["gm@acme.example"],
                                           "period": period, "company": "Müşteri A.Ş."}]))
    scope = report_scope(config, config.reports[0], now)
    assert scope == Scope(since=since, until=until, company="Müşteri A.Ş.", customer=None)
    assert period_days(period, now.astimezone(IST).date()) == (since, until)


def test_weekday_numbers_mean_what_they_mean_in_a_crontab() -> None:
    """APScheduler 3 counts Monday as 0; a crontab's "1" is Monday, its 0 and 7 Sunday."""
    after = datetime(2026, 11, 30, 23, 59, tzinfo=IST)  # a Monday
    assert cron_trigger("0 9 * * 1", IST).get_next_fire_time(None, after) == datetime(2026, 12, 7, 9, tzinfo=IST)
    assert cron_trigger("0 9 * * 0", IST).get_next_fire_time(None, after) == datetime(2026, 12, 6, 9, tzinfo=IST)
    assert cron_trigger("0 9 * * 7", IST).get_next_fire_time(None, after) == datetime(2026, 12, 6, 9, tzinfo=IST)
    assert cron_trigger("0 9 * * 1-5", IST).get_next_fire_time(None, after) == datetime(2026, 12, 1, 9, tzinfo=IST)
    assert cron_trigger("0 8 1 * *", IST).get_next_fire_time(None, after) == datetime(2026, 12, 1, 8, tzinfo=IST)


# --- numbers and dates in the reader's locale ---------------------------------------------------------------

def test_numbers_percentages_and_dates_in_english_and_turkish() -> None:
    assert (number(1234, "en"), number(1234, "tr")) == ("1,234", "1.234")
    assert (percent(0.875, "en"), percent(0.875, "tr")) == ("87.5%", "%87,5")
    assert (percent(1.0, "en"), percent(1.0, "tr")) == ("100%", "%100")
    assert (percent(2 / 3, "en"), percent(2 / 3, "tr")) == ("66.7%", "%66,7")
    assert percent(None, "tr") == "–"
    assert (long_date(date(2026, 11, 1), "en"), long_date(date(2026, 11, 1), "tr")) == \
        ("November 1, 2026", "1 Kasım 2026")
    november = Scope(since=date(2026, 11, 1), until=date(2026, 11, 30))
    assert period_text(november, "tr") == "1 Kasım 2026 – 30 Kasım 2026"
    assert period_text(Scope(since=date(2027, 1, 1), until=date(2027, 1, 1)), "en") == "January 1, 2027"


def _context(language: str) -> dict[str, Any]:
    figures = {"tickets": number(1234, language), "complaints": number(56, language), "open": number(7, language),
               "first_response_met": percent(0.875, language), "resolution_met": percent(None, language),
               "satisfied": percent(0.9, language), "answers": number(10, language),
               "top_categories": [{"name": "hardware/modem", "count": number(1001, language)}]}
    costs = money({"TRY": Decimal("1250.50"), "EUR": Decimal("99.99")}, language)
    figures |= {"costs": costs, "costs_by_month": [{"name": "2026-11", "amounts": costs}],
                "costs_by_category": [{"name": "hardware/modem", "amounts": costs}],
                "costs_by_company": [{"name": "Müşteri A.Ş.", "amounts": costs}], "hours_worked": "2.5"}
    return {"helpdesk": {"name": "Acme Destek", "address": "support@acme.example"},
            "report": {"name": "monthly", "schedule": "0 8 1 * *", "period": "previous-month"},
            "period": period_text(Scope(since=date(2026, 11, 1), until=date(2026, 11, 30)), language),
            "since": "", "until": "", "party": "", "figures": figures, "workbook": "ticketd-report-monthly.xlsx",
            "charts": True}


def test_the_report_templates_show_the_prepared_figures() -> None:
    tr = render(make_environment(), "report", "tr", _context("tr"))
    assert tr.subject == "Yardım masası raporu 1 Kasım 2026 – 30 Kasım 2026"
    assert "Talepler:" in tr.body and "1.234" in tr.body and "%87,5" in tr.body and "hardware/modem: 1.001" in tr.body
    assert "tüm firmalar" in tr.body and "ticketd-report-monthly.xlsx" in tr.body
    en = render(make_environment(), "report", "en", _context("en"))
    assert en.subject == "Helpdesk report November 1, 2026 – November 30, 2026"
    assert "1,234" in en.body and "87.5%" in en.body and "90%" in en.body and "all companies" in en.body
    assert "    Müşteri A.Ş.: €99.99 · TRY1,250.50\n" in en.body, en.body  # CLDR's English for the lira
    assert "Maliyetler (her para birimi ayrı, asla toplanmaz): €99,99 · ₺1.250,50" in tr.body, tr.body


def test_money_never_adds_two_currencies() -> None:
    assert money({"TRY": Decimal("1250.50"), "EUR": Decimal("0")}, "tr") == "₺1.250,50"  # a corrected-away one
    assert money({}, "en") == "–"


# --- the [[reports]] entries --------------------------------------------------------------------------------

REPORT = {"name": "monthly", "schedule": "0 8 1 * *", "recipients": ["gm@acme.example"]}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"schedule": "0 8 1 *"}, "reports.0.schedule: not a cron schedule"),
    ({"schedule": "61 8 * * *"}, "reports.0.schedule: not a cron schedule"),
    ({"schedule": "0 8 * * 9"}, "reports.0.schedule: not a cron schedule"),
    ({"recipients": []}, "reports.0.recipients: must list at least one e-mail address"),
    ({"recipients": ["gm at acme"]}, "reports.0.recipients.0: must be an e-mail address"),
    ({"company": "Acme", "customer": "a@b.example"}, "reports.0.customer: give company or customer, not both"),
    ({"period": "yesterday"}, "reports.0.period: must be 'previous-month'"),
    ({"language": "de"}, "reports.0.language: must be 'en' or 'tr'"),
    ({"name": "../x"}, "reports.0.name: must be letters, digits"),
    ({"colour": "blue"}, "reports.0.colour: unknown key"),
])
def test_bad_report_entries_name_their_key(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    found = problems(base(tmp_path, [{**REPORT, **changes}]))
    assert any(p.startswith(expected) for p in found), found


def test_a_report_needs_recipients_and_a_unique_name(tmp_path: Path) -> None:
    missing = {k: v for k, v in REPORT.items() if k != "recipients"}
    assert "reports.0.recipients: required key is missing" in problems(base(tmp_path, [missing]))
    found = problems(base(tmp_path, [REPORT, {**REPORT, "schedule": "0 9 * * 1"}]))
    assert found == ["reports: reports.0 and reports.1 are both named 'monthly'"], found


def test_a_valid_report_entry_has_its_defaults(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path, [{**REPORT, "recipients": ["GM@acme.example", "gm@acme.example"]}]))
    assert config.reports == [ReportConfig(name="monthly", schedule="0 8 1 * *", recipients=("gm@acme.example",))]
    report = config.reports[0]
    assert (report.language, report.period, report.company, report.customer) == (None, "previous-month", None, None)


# --- an outbox row with attachments -------------------------------------------------------------------------

def _row() -> Outbox:
    return Outbox(
        kind="report", to_addrs="gm@acme.example, cfo@acme.example", subject="Yardım masası raporu 1 Kasım 2026",
        body="Kayıtlar: 1.234\n", html=html_body("Kayıtlar: 1.234\n", [(CID, "Aylık kayıtlar")], "tr"),
        message_id="<ticketd.abc@acme.example>",
        headers={"Date": "Tue, 01 Dec 2026 05:00:00 +0000", "From": "Acme Destek <support@acme.example>",
                 "X-Ticketd-Kind": "report"})


ATTACHMENTS = (
    MailAttachment("../../etc/monthly\r\nBcc: victim@x.example.png", "image/png", PNG, CID),
    MailAttachment("stray.png", "image/png", PNG[::-1], "stray.1@acme.example"),  # shown by nothing: a file
    MailAttachment("..\\reports/ticketd-report-monthly\r\n-2026-12-01.xlsx", XLSX_TYPE, b"PK\x03\x04workbook"),
)


def _parts(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_attachments_make_a_multipart_mail_with_inline_charts_and_clean_names() -> None:
    raw = build_message(_row(), ATTACHMENTS).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in raw and b"\r\nBcc:" not in raw
    assert head.count(b"Message-ID:") == 1
    msg = _parts(raw)
    assert msg.get_content_type() == "multipart/mixed"
    alternative, stray, workbook = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.iter_parts()
    assert text.get_content_type() == "text/plain" and text.get_content().splitlines() == ["Kayıtlar: 1.234"]
    assert related.get_content_type() == "multipart/related"
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html" and f'src="cid:{CID}"' in html.get_content()
    assert image.get_content_type() == "image/png" and image["Content-ID"] == f"<{CID}>"
    assert image.get_content_disposition() == "inline" and image.get_content() == PNG
    assert image.get_filename() == "monthly Bcc: victim@x.example.png"
    assert stray.get_content_disposition() == "attachment" and stray.get_filename() == "stray.png"
    assert workbook.get_content_type() == XLSX_TYPE
    assert workbook.get_filename() == "ticketd-report-monthly -2026-12-01.xlsx"
    assert workbook.get_content() == b"PK\x03\x04workbook"
    assert msg["X-Ticketd-Kind"] == "report"


def test_a_retry_sends_the_same_bytes() -> None:
    first = build_message(_row(), ATTACHMENTS).as_bytes()
    assert build_message(_row(), ATTACHMENTS).as_bytes() == first
    assert b'boundary="=_ticketd_' in first
    other = _row()
    other.message_id = "<ticketd.other@acme.example>"
    assert build_message(other, ATTACHMENTS).as_bytes() != first  # boundaries belong to the mail


def test_the_fast_composer_leaves_multipart_mail_to_the_email_package() -> None:
    row = _row()
    headers = wire.headers_of(row.to_addrs, row.cc_addrs, row.subject, row.message_id, row.headers)
    with pytest.raises(wire.NeedsFullComposer):
        wire.wire_bytes(headers, row.body, multipart=True)
    assert wire.wire_bytes(headers, row.body).startswith(b"From:")


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"), ("a\r\nb.xlsx", "a b.xlsx"), ("C:\\Users\\x\\r.xlsx", "r.xlsx"),
    ("..", "attachment"), ("\r\n", "attachment"), ("rapor ş.xlsx", "rapor ş.xlsx"), ("a\x00b\tc", "a b c"),
])
def test_file_names_are_labels_not_paths(name: str, expected: str) -> None:
    assert wire.safe_filename(name) == expected


def test_queued_attachments_share_blobs_and_come_back_in_order(tmp_path: Path, db_url: str) -> None:
    config = parse_config(base(tmp_path, url=db_url))
    engine = db.make_engine(config.database.url)
    db.upgrade(engine)
    mail = OutgoingMail(kind="report", to=[("", "gm@acme.example"), ("", "cfo@acme.example")], subject="Rapor",
                        body="Kayıtlar: 3\n", automatic=False, html=html_body("Kayıtlar: 3\n", [(CID, "x")], "tr"),
                        attachments=ATTACHMENTS)
    with db.session_scope(engine) as session:
        first = queue_mail(session, config, mail)
        second = queue_mail(session, config, mail)  # the same charts next time: no new blobs
    with Session(engine) as session:
        assert len(session.exec(select(Blob)).all()) == 3
        stored = session.exec(select(OutboxAttachment).where(OutboxAttachment.outbox_id == first.id)).all()
        assert [(a.filename, a.inline) for a in stored] == [
            ("monthly Bcc: victim@x.example.png", True), ("stray.png", True),
            ("ticketd-report-monthly -2026-12-01.xlsx", False)]
        loaded = load_attachments(session, [first.id, second.id])  # type: ignore[list-item]
        row = session.get(Outbox, first.id)
        assert row is not None and row.html is not None and row.automatic is False
    assert [a.data for a in loaded[first.id]] == [a.data for a in ATTACHMENTS]  # type: ignore[index]
    raw = build_message(row, loaded[first.id]).as_bytes()  # type: ignore[index]
    assert raw == build_message(row, loaded[first.id]).as_bytes()  # type: ignore[index]
    assert _parts(raw)["To"] == "gm@acme.example, cfo@acme.example"


# --- the scheduler's report jobs ----------------------------------------------------------------------------

def test_report_jobs_follow_the_config(tmp_path: Path, db_url: str) -> None:
    config = parse_config(base(tmp_path, [REPORT, {**REPORT, "name": "weekly", "schedule": "0 9 * * 1"}], db_url))
    engine = db.make_engine(config.database.url)
    db.upgrade(engine)
    timers = Timers(engine, config, lambda: None).start()
    try:
        def jobs() -> list[str]:
            return sorted(job.id for job in timers.scheduler.get_jobs())

        assert jobs() == ["report:monthly", "report:weekly", "sla-sweep"]
        weekly = timers.scheduler.get_job("report:weekly")
        assert weekly is not None
        next_run = weekly.next_run_time.astimezone(IST)
        assert (next_run.weekday(), next_run.hour, next_run.minute) == (0, 9, 0)  # Monday, as a crontab means it
        daily = [{**REPORT, "name": "daily", "schedule": "0 7 * * *"}]
        timers.reconfigure(parse_config(base(tmp_path, daily, db_url)))
        assert jobs() == ["report:daily", "sla-sweep"]
        timers.reconfigure(parse_config(base(tmp_path, url=db_url)))
        assert jobs() == ["sla-sweep"]
    finally:
        timers.stop()


def test_a_failing_report_is_logged_and_told_to_the_admin(tmp_path: Path, db_url: str) -> None:
    data = base(tmp_path, [{**REPORT, "company": "Olmayan A.Ş."}], db_url)
    data["helpdesk"]["admin"] = "admin@acme.example"
    config = parse_config(data)
    engine = db.make_engine(config.database.url)
    db.upgrade(engine)
    assert send_report(engine, config, config.reports[0], datetime(2026, 12, 1, 8, tzinfo=IST)) is None
    with Session(engine) as session:
        [alert] = session.exec(select(Outbox)).all()
    assert alert.kind == ALERT_KIND and alert.recipient == "admin@acme.example"
    assert "report monthly failed" in alert.subject and "Olmayan A.Ş." in alert.body
