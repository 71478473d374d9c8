"""The scheduled report mail: `ticketd report` run for a ``[[reports]]`` entry and mailed to its recipients.

One mail per run to every recipient: the key figures in the text, the charts inline in an HTML alternative, and
the workbook attached. Numbers and dates are written for the reader's locale here, in Python, so the templates
(which operators may replace) only place ready strings. A run that fails is logged and told to the admin, never
raised: the scheduler's thread also runs the SLA sweep.
"""

from __future__ import annotations

import mimetypes
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ticketd.daemon.config import Config
from ticketd.daemon.config.reports import ReportConfig
from ticketd.daemon.outgoing import notify
from ticketd.daemon.outgoing.outbox import alert_admin, queue_mail
from ticketd.daemon.outgoing.wire import MailAttachment
from ticketd.daemon.reports import actions as report_actions
from ticketd.daemon.reports.data import ReportData, Scope, collect
from ticketd.daemon.reports.texts import TEXTS
from ticketd.rules.states import OPEN_STATES
from ticketd.storage.db import session_scope
from ticketd.storage.models import JobRun, utcnow

log = structlog.get_logger("ticketd.report_mail")

KIND = "report"
LOCALES = {"en": "en_US", "tr": "tr_TR"}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TOP = 3
NOTHING = "–"  # a share of nothing: no deadline passed yet, no satisfaction answer yet


def period_days(period: str, today: date) -> tuple[date, date]:
    """First and last local day covered. A report runs at the start of its period's successor, so "previous"
    means the whole calendar month (Monday-to-Sunday week) before today's."""
    if period == "previous-month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    if period == "previous-week":
        monday = today - timedelta(days=today.weekday() + 7)
        return monday, monday + timedelta(days=6)
    if period == "last-30-days":
        return today - timedelta(days=30), today - timedelta(days=1)
    if period == "month-to-date":
        return today.replace(day=1), today
    raise ValueError(f"unknown report period {period!r}")


def report_scope(config: Config, report: ReportConfig, now: datetime) -> Scope:
    """The days are the helpdesk's: at 00:30 in Istanbul on the 1st it is still the 31st in UTC."""
    since, until = period_days(report.period, now.astimezone(config.tz).date())
    return Scope(since=since, until=until, company=report.company, customer=report.customer)


def locale_of(language: str) -> str:
    return LOCALES.get(language, LOCALES["en"])


@cache
def _percent_pattern(locale: str) -> str:
    """The locale's own percent pattern (the sign before the number in Turkish), with one optional decimal."""
    pattern: str = Locale.parse(locale).percent_formats[None].pattern
    return pattern.replace("#,##0", "#,##0.#", 1)


def number(value: int, language: str) -> str:
    return format_decimal(value, locale=locale_of(language))


def percent(share: float | None, language: str) -> str:
    if share is None:
        return NOTHING
    locale = locale_of(language)
    return format_percent(share, format=_percent_pattern(locale), locale=locale)


def long_date(value: date, language: str) -> str:
    return format_date(value, format="long", locale=locale_of(language))


def period_text(scope: Scope, language: str) -> str:
    """"1 Kasım 2026 – 30 Kasım 2026"; one date when the period is one day."""
    days = dict.fromkeys(day for day in (scope.since, scope.until) if day is not None)
    return " – ".join(long_date(day, language) for day in days)


def figures(data: ReportData, language: str) -> dict[str, Any]:
    """The key figures as the template shows them, already in the reader's notation."""
    complaints = sum(1 for t in data.tickets if t.type == "complaint")
    still_open = sum(1 for t in data.tickets if t.state in OPEN_STATES)
    satisfaction = data.satisfaction
    answers = satisfaction.satisfied + satisfaction.not_satisfied
    actions = report_actions.totals(data.actions)
    since, until = data.scope.since, data.scope.until
    done = [a for a in data.actions if a.status == "done" and a.closed_at is not None
            and (since is None or a.closed_at.date() >= since) and (until is None or a.closed_at.date() <= until)]
    return {
        "actions": {"open": number(actions.open, language), "overdue": number(actions.overdue, language),
                    "done": number(actions.done, language), "cancelled": number(actions.cancelled, language)},
        "actions_done": [{"id": a.id, "what": a.what, "owner": a.owner, "result": a.result} for a in done],
        "tickets": number(len(data.tickets), language),
        "complaints": number(complaints, language),
        "open": number(still_open, language),
        "first_response_met": percent(data.first_response.met_share, language),
        "resolution_met": percent(data.resolution.met_share, language),
        "satisfied": percent(satisfaction.satisfied_share, language),
        "answers": number(answers, language),
        "top_categories": [{"name": name, "count": number(count, language)}
                           for name, count in data.top_categories[:TOP]],
        **ledger_figures(data, language),
    }


def money(amounts: Mapping[str, Decimal], language: str) -> str:
    """One line of totals, currency by currency and never added up: "₺1.250,50 · €99,99"."""
    locale = locale_of(language)
    return " · ".join(format_currency(amount, currency, locale=locale)
                      for currency, amount in sorted(amounts.items()) if amount != 0) or NOTHING


def ledger_figures(data: ReportData, language: str) -> dict[str, Any]:
    """Costs per currency (whole period, per month, category and company) and time worked (issue 18)."""
    books = data.ledger
    none = {"en": "(none)", "tr": "(yok)"}.get(language, "(none)")

    def rows(table: Mapping[str, Mapping[str, Decimal]], keys: list[str]) -> list[dict[str, str]]:
        return [{"name": key or none, "amounts": money(table[key], language)} for key in keys if key in table]

    hours = Decimal(books.minutes) / 60
    return {
        "costs": money(books.cost_total, language),
        "costs_by_month": rows(books.cost_by_month, data.months or sorted(books.cost_by_month)),
        "costs_by_category": rows(books.cost_by_category, sorted(books.cost_by_category)),
        "costs_by_company": rows(books.cost_by_company, sorted(books.cost_by_company)),
        "hours_worked": format_decimal(hours.quantize(Decimal("0.1")), locale=locale_of(language)),
    }


def html_body(text: str, charts: list[tuple[str, str]], language: str) -> str:
    """The text part as it is, then the charts it mentions: both alternatives say the same, the HTML one also
    shows the pictures. ``charts`` holds (content id, alternative text) pairs."""
    images = "".join(f'<p><img src="cid:{escape(cid)}" alt="{escape(alt)}" style="max-width:100%"></p>\n'
                     for cid, alt in charts)
    return (f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8"></head><body>\n'
            f'<pre style="font-family:inherit;white-space:pre-wrap">{escape(text)}</pre>\n{images}</body></html>\n')


def workbook_name(report: ReportConfig, now: datetime, config: Config) -> str:
    return f"ticketd-report-{report.name}-{now.astimezone(config.tz).date().isoformat()}.xlsx"


def _chart_titles(language: str) -> dict[str, str]:
    """The workbook's words for the charts, as the pictures' alternative text."""
    texts = TEXTS.get(language, TEXTS.get("en", {}))
    return {key.removeprefix("chart."): value for key, value in texts.items() if key.startswith("chart.")}


def _render_files(data: ReportData, filename: str, language: str,
                  domain: str) -> tuple[dict[str, MailAttachment], MailAttachment]:
    """Charts and workbook drawn in a scratch folder and read back: the outbox keeps the bytes, not the files."""
    # matplotlib and openpyxl take a while to import: only a daemon with reports pays for them, when one runs
    from ticketd.daemon.reports.charts import draw_charts
    from ticketd.daemon.reports.xlsx import write_workbook

    with tempfile.TemporaryDirectory(prefix="ticketd-report-") as scratch:
        pictures = draw_charts(data, Path(scratch), language)
        workbook = write_workbook(data, Path(scratch) / filename, pictures, language)
        charts = {key: MailAttachment(filename=f"{key}{path.suffix}",
                                      content_type=mimetypes.guess_type(path.name)[0] or "image/png",
                                      data=path.read_bytes(), content_id=f"{key}.{uuid.uuid4().hex[:16]}@{domain}")
                  for key, path in pictures.items()}
        return charts, MailAttachment(filename=filename, content_type=XLSX_TYPE, data=workbook.read_bytes())


def _queue_report(engine: sa.Engine, config: Config, report: ReportConfig, now: datetime) -> int:
    language = report.language or config.helpdesk.language
    scope = report_scope(config, report, now)
    with Session(engine) as session:
        data = collect(session, config, scope, now=now)
    filename = workbook_name(report, now, config)
    charts, workbook = _render_files(data, filename, language, config.helpdesk.address.rsplit("@", 1)[1])
    context = {
        "report": {"name": report.name, "schedule": report.schedule, "period": report.period},
        "period": period_text(scope, language),
        "since": long_date(scope.since, language) if scope.since else "",
        "until": long_date(scope.until, language) if scope.until else "",
        "party": scope.company or scope.customer or "",  # the template says "all companies" in its language
        "figures": figures(data, language),
        "workbook": filename,
        "charts": bool(charts),
    }
    titles = _chart_titles(language)
    with session_scope(engine) as session:
        # Several instances run the same schedule: the first to commit this row sends the report.
        session.add(JobRun(job=f"report:{report.name}", slot=f"{now.astimezone(UTC):%Y-%m-%dT%H:%M}"))
        session.flush()
        mail = notify.compose(session, config, kind=KIND, template="report", language=language, ticket=None,
                              to=[("", address) for address in report.recipients], context=context,
                              reply_party=None, automatic=False, cause="timer")
        shown = [(chart.content_id or "", titles.get(key, key)) for key, chart in charts.items()]
        mail = replace(mail, html=html_body(mail.body, shown, language), attachments=(*charts.values(), workbook))
        row = queue_mail(session, config, mail)
        session.flush()
        assert row.id is not None
        outbox_id = row.id
    log.info("report.queued", report=report.name, outbox_id=outbox_id, tickets=len(data.tickets),
             since=str(scope.since), until=str(scope.until), recipients=len(report.recipients))
    return outbox_id


def send_report(engine: sa.Engine, config: Config, report: ReportConfig, now: datetime | None = None) -> int | None:
    """Queue the report's mail and return its outbox id; the main loop sends it. On failure (an unknown
    company, a full disk) the log and the admin hear of it and None is returned; nothing retries it before the
    next scheduled run, since a report sent hours late under the same schedule would mislead more than help."""
    try:
        return _queue_report(engine, config, report, now or utcnow())
    except IntegrityError:
        log.info("report.sent_elsewhere", report=report.name, detail="another instance queued it")
        return None
    except Exception as exc:
        log.exception("report.failed", report=report.name, error=f"{type(exc).__name__}: {exc}")
        try:
            with session_scope(engine) as session:
                alert_admin(session, config, f"report {report.name} failed",
                                   f"The report {report.name!r} ({report.schedule}) was not sent: "
                                   f"{type(exc).__name__}: {exc}")
        except Exception as alert_exc:  # the database itself may be what failed: the log line must do
            log.error("report.alert_failed", report=report.name, error=str(alert_exc))
        return None
