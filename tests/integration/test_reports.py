"""`ticketd report`'s workbook and CSV over a generated 14-month history of 2,000 tickets.

The figures read back from the workbook are compared with a computation written here from the raw rows (plain
SQL through SQLAlchemy Core, the test's own business-hours count and percentile): if ``collect`` and this file
ever disagree, one of them misreads the definitions. Runs on SQLite and on PostgreSQL. LibreOffice must convert
the workbook without complaint.
"""

from __future__ import annotations

import csv
import math
import os
import secrets
import shutil
import subprocess
import time as clock
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from history import generate_history
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from PIL import Image
from sqlmodel import Session

from conftest import Site, fresh_database
from servers import real_clock_env
from ticketd.daemon.reports.data import ReportData, Scope, collect
from ticketd.daemon.reports.xlsx import write_csv, write_workbook

pytestmark = pytest.mark.integration

IST = ZoneInfo("Europe/Istanbul")
END = date(2026, 11, 30)
NOW = datetime(2026, 11, 30, 18, 30, tzinfo=IST).astimezone(UTC)  # some deadlines of the last day still ahead
TYPES = ("request", "complaint", "information")
SOFFICE_MISSING = "LibreOffice is not installed; `make test` installs it (apt-get install libreoffice-calc-nogui)"


# --- the independent computation ------------------------------------------------------------------------------

def utc(stamp: str | datetime | None) -> datetime | None:
    """Naive UTC as stored: text in SQLite, a ``timestamp without time zone`` in PostgreSQL."""
    if stamp is None:
        return None
    return (datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp).replace(tzinfo=UTC)


def business_hours(start: datetime, end: datetime | None) -> float | None:
    """Monday to Friday 09:00-18:00 in Istanbul, no holidays: the site's calendar, counted day by day."""
    if end is None:
        return None
    total = 0.0
    day = start.astimezone(IST).date()
    while day <= end.astimezone(IST).date():
        if day.weekday() < 5:
            opens = datetime.combine(day, time(9), tzinfo=IST)
            closes = datetime.combine(day, time(18), tzinfo=IST)
            total += max(0.0, (min(closes, end) - max(opens, start)).total_seconds())
        day += timedelta(days=1)
    return total / 3600


def verdict(due: datetime | None, at: datetime | None) -> bool | None:
    if due is None:
        return None
    if at is not None:
        return at <= due
    return False if due < NOW else None


def percentile(values: list[float], q: float) -> float | None:
    """Linear between ranks: position q·(n-1) in the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@dataclass
class Raw:
    """One ticket as the database holds it, with what the definitions derive from it."""

    number: int
    company: str
    requester: str
    assignee: str
    type: str
    category: str
    state: str
    created: datetime
    month: str
    first_hours: float | None
    resolution_hours: float | None
    first_met: bool | None
    resolution_met: bool | None
    resolved: bool
    satisfaction: str


def raw_tickets(engine: sa.Engine) -> list[Raw]:
    """The unmerged tickets, read with plain SQL (no model types: timestamps come back as the database has them)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT t.number, co.name, cu.email, a.email, t.type, t.category, t.state, t.created_at, "
            "t.first_response_due, t.first_response_at, t.resolution_due, t.resolution_at, t.satisfaction "
            "FROM ticket t JOIN customer cu ON cu.id = t.requester_id LEFT JOIN company co ON co.id = t.company_id "
            "LEFT JOIN agent a ON a.id = t.assignee_id WHERE t.merged_into_id IS NULL ORDER BY t.number")).all()
    out = []
    for number, company, requester, assignee, kind, category, state, *stamps, satisfaction in rows:
        created, fr_due, fr_at, res_due, res_at = (utc(s) for s in stamps)
        assert created is not None
        out.append(Raw(number, company or "", requester, assignee or "", kind, category or "(none)", state, created,
                       created.astimezone(IST).strftime("%Y-%m"), business_hours(created, fr_at),
                       business_hours(created, res_at), verdict(fr_due, fr_at), verdict(res_due, res_at),
                       res_at is not None, satisfaction or ""))
    return out


# --- reading the workbook back ----------------------------------------------------------------------------------

def rows_of(ws: Worksheet, top: int = 1) -> list[list[Any]]:
    """The table whose header is at row ``top``: its rows up to the first empty one."""
    out = []
    for values in ws.iter_rows(min_row=top + 1, values_only=True):
        if values[0] is None:
            break
        out.append(list(values))
    return out


def header_row(ws: Worksheet, label: str) -> int:
    return next(cell.row for cell in ws["A"] if cell.value == label)


def sheet_dict(ws: Worksheet) -> list[dict[str, Any]]:
    header = [c.value for c in ws[1]]
    return [dict(zip(header, row, strict=True)) for row in ws.iter_rows(min_row=2, values_only=True)]


# --- fixtures -------------------------------------------------------------------------------------------------

@dataclass
class History:
    site: Site
    raw: list[Raw]


@pytest.fixture(scope="module")
def history(request: pytest.FixtureRequest, backend: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    folder = tmp_path_factory.mktemp("history")
    (folder / "secret").write_text(secrets.token_urlsafe(32))
    site = Site(folder, {
        "helpdesk": {"name": "Acme Support", "address": "support@acme.example", "tag": "ACME", "language": "en",
                     "timezone": "Europe/Istanbul"},
        "database": {"url": fresh_database(request, backend, folder)},
        "security": {"secret_file": "secret"},
    })
    site.upgrade()
    started = clock.perf_counter()
    generate_history(site.engine, site.config(), n=2000, months=14, end=END)
    print(f"history of 2000 tickets generated in {clock.perf_counter() - started:.2f} s")
    yield History(site, raw_tickets(site.engine))
    site.close()


def report(history: History, scope: Scope) -> ReportData:
    with Session(history.site.engine) as session:
        return collect(session, history.site.config(), scope, now=NOW)


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("charts")
    out = {}
    for index, key in enumerate(("monthly", "categories", "sla", "satisfaction")):
        out[key] = folder / f"{key}.png"
        Image.new("RGB", (900, 450), (60 * index, 120, 200)).save(out[key])
    return out


@pytest.fixture(scope="module")
def everything(history: History, charts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = clock.perf_counter()
    data = report(history, Scope())
    took = clock.perf_counter() - started
    print(f"collect over {len(data.tickets)} tickets: {took:.2f} s (tests/benchmarks/report.py measures it)")
    assert len(data.tickets) == len(history.raw)
    folder = tmp_path_factory.mktemp("report")
    write_csv(data, folder / "csv")
    return write_workbook(data, folder / "report.xlsx", charts, "en")


@pytest.fixture(scope="module")
def workbook(everything: Path) -> Workbook:
    """Loaded once (it takes a second): the tests only read it."""
    return load_workbook(everything)


# --- tests ----------------------------------------------------------------------------------------------------

def test_history_is_varied(history: History) -> None:
    raw = history.raw
    assert 1950 <= len(raw) < 2000  # a few were merged into earlier tickets
    assert len({r.month for r in raw}) == 14
    counts = Counter(r.type for r in raw)
    assert counts["request"] > counts["complaint"] > counts["information"] > 0
    for verdicts in ([r.first_met for r in raw], [r.resolution_met for r in raw]):
        assert {True, False} <= set(verdicts)
    assert {"new", "open", "pending", "resolved", "closed", "rejected"} <= {r.state for r in raw}
    assert {"satisfied", "not-satisfied", ""} <= {r.satisfaction for r in raw if r.resolved}
    assert "" in {r.company for r in raw}


def test_monthly_counts_match_the_database(history: History, workbook: Workbook) -> None:
    ws = workbook["Monthly"]
    months = [c.value for c in ws[1]][1:-1]
    assert months == sorted({r.month for r in history.raw})
    expected = Counter((r.type, r.month) for r in history.raw)
    for row in rows_of(ws):
        kind, *counts, total = row
        if kind == "Total":
            assert counts == [sum(1 for r in history.raw if r.month == m) for m in months]
            assert total == len(history.raw)
            continue
        assert counts == [expected[kind, m] for m in months], kind
        assert total == sum(expected[kind, m] for m in months)
    by_category = Counter((r.category, r.month) for r in history.raw)
    found = {row[0]: row[1:-1] for row in rows_of(ws, header_row(ws, "Category")) if row[0] != "Total"}
    assert set(found) == {r.category for r in history.raw}
    for category, counts in found.items():
        assert counts == [by_category[category, m] for m in months], category


def test_sla_and_satisfaction_match_the_database(history: History, workbook: Workbook) -> None:
    sla = workbook["SLA"]
    raw = history.raw
    for label, met_of, hours_of, row in (("First response", "first_met", "first_hours", 2),
                                         ("Resolution", "resolution_met", "resolution_hours", 3)):
        cells = [c.value for c in sla[row]][:6]
        verdicts = Counter(getattr(r, met_of) for r in raw)
        hours = [getattr(r, hours_of) for r in raw if getattr(r, hours_of) is not None]
        assert cells[:3] == [label, verdicts[True], verdicts[False]]
        assert cells[3] == pytest.approx(verdicts[True] / (verdicts[True] + verdicts[False]))
        assert cells[4] == pytest.approx(percentile(hours, 0.5), abs=1e-9)
        assert cells[5] == pytest.approx(percentile(hours, 0.9), abs=1e-9)
    monthly = {row[0]: row for row in rows_of(sla, header_row(sla, "Month"))}
    for month, cells in monthly.items():
        mine = [r for r in raw if r.month == month]
        first = Counter(r.first_met for r in mine)
        resolution = Counter(r.resolution_met for r in mine)
        assert (cells[1], cells[2], cells[6], cells[7]) == (first[True], first[False], resolution[True],
                                                            resolution[False]), month
        assert cells[4] == pytest.approx(percentile([r.first_hours for r in mine if r.first_hours is not None], 0.5))
        assert cells[10] == pytest.approx(
            percentile([r.resolution_hours for r in mine if r.resolution_hours is not None], 0.9))
    satisfaction = workbook["Satisfaction"]
    answers = Counter(r.satisfaction for r in raw if r.resolved)
    assert [c.value for c in satisfaction[2]][1:4] == [answers["satisfied"], answers["not-satisfied"], answers[""]]
    for month, *counts, _share in rows_of(satisfaction, header_row(satisfaction, "Month")):
        mine = Counter(r.satisfaction for r in raw if r.resolved and r.month == month)
        assert counts == [mine["satisfied"], mine["not-satisfied"], mine[""]], month


def test_tickets_parties_and_agents_match_the_database(history: History, workbook: Workbook) -> None:
    tickets = sheet_dict(workbook["Tickets"])
    raw = {r.number: r for r in history.raw}
    assert sorted(t["Number"] for t in tickets) == sorted(raw)
    for row in tickets:
        mine = raw[row["Number"]]
        assert (row["Company"] or "", row["Type"], row["Month"]) == (mine.company, mine.type, mine.month)
        assert isinstance(row["Opened"], datetime)
        assert row["Opened"] == mine.created.astimezone(IST).replace(tzinfo=None)
        assert row["First response met"] == {True: "Yes", False: "No", None: "-"}[mine.first_met]
        if mine.resolution_hours is None:
            assert row["Resolution (business h)"] is None
        else:
            assert row["Resolution (business h)"] == pytest.approx(mine.resolution_hours, abs=1e-9)
    companies = {row["Company"]: row for row in sheet_dict(workbook["Companies"])}
    per_company = Counter(r.company for r in history.raw if r.company)
    assert {name: row["Tickets"] for name, row in companies.items()} == per_company
    agents = {row["Agent"]: row["Assigned"] for row in sheet_dict(workbook["Agents"])}
    assert agents == Counter(r.assignee for r in history.raw if r.assignee)
    top = [(row["Category"], row["Tickets"]) for row in sheet_dict(workbook["Top categories"])]
    assert top == sorted(Counter(r.category for r in history.raw).items(), key=lambda item: (-item[1], item[0]))


def test_workbook_layout(workbook: Workbook) -> None:
    assert workbook.sheetnames == ["Tickets", "Monthly", "Top categories", "Companies", "Customers", "SLA",
                                   "Satisfaction", "Agents", "Actions", "Costs", "Time", "Evidence", "Charts", "About"]
    tickets = workbook["Tickets"]
    assert tickets.freeze_panes == "B2" and tickets.auto_filter.ref.startswith("A1:")
    assert tickets["A1"].font.bold
    assert tickets["M2"].number_format == "yyyy-mm-dd hh:mm"
    assert workbook["SLA"]["D2"].number_format == "0.0%" and 0 < workbook["SLA"]["D2"].value < 1
    assert len(workbook["Charts"]._images) == 4
    about = [c.value for c in workbook["About"]["B"] if c.value]
    assert "Europe/Istanbul" in about and any("business hours" in str(v) for v in about)


def test_company_report_has_only_that_company(history: History, charts: dict[str, Path], tmp_path: Path) -> None:
    with history.site.engine.connect() as conn:
        name, count = conn.execute(sa.text(
            "SELECT c.name, count(*) FROM ticket t JOIN company c ON c.id = t.company_id "
            "WHERE t.merged_into_id IS NULL GROUP BY c.name ORDER BY count(*) DESC, c.name LIMIT 1")).one()
    data = report(history, Scope(company=name.upper()))
    path = write_workbook(data, tmp_path / "company.xlsx", charts, "tr")
    workbook = load_workbook(path)
    assert workbook.sheetnames[0] == "Talepler"
    rows = sheet_dict(workbook["Talepler"])
    assert len(rows) == count
    assert {row["Firma"] for row in rows} == {name}
    assert [row["Firma"] for row in sheet_dict(workbook["Firmalar"])] == [name]


def test_period_report_has_only_that_period(history: History, tmp_path: Path) -> None:
    since, until = date(2026, 3, 1), date(2026, 5, 31)
    expected = {r.number for r in history.raw if since <= r.created.astimezone(IST).date() <= until}
    path = write_workbook(report(history, Scope(since, until)), tmp_path / "spring.xlsx")
    workbook = load_workbook(path)
    assert {row["Number"] for row in sheet_dict(workbook["Tickets"])} == expected
    assert [c.value for c in workbook["Monthly"][1]][1:-1] == ["2026-03", "2026-04", "2026-05"]
    assert "Charts" not in workbook.sheetnames


def shown(value: Any, number_format: str) -> str:
    """A cell as a reader sees it (a whole number of hours comes back from the file as an int)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if number_format == "0.0":
        return f"{value:.1f}"
    return str(value)


def test_csv_has_the_tickets_sheets_rows(everything: Path, workbook: Workbook) -> None:
    path = everything.parent / "csv" / "tickets.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    sheet = workbook["Tickets"]
    expected = [[shown(c.value, c.number_format) for c in row] for row in sheet.iter_rows()]
    assert lines == expected
    assert any("Ş" in cell or "ı" in cell for line in lines for cell in line)


def soffice() -> str:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(SOFFICE_MISSING)
        pytest.skip(SOFFICE_MISSING)
    return found


def convert(binary: str, files: Iterable[Path], out: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--convert-to", "pdf",
                           "--outdir", str(out), *map(str, files)], capture_output=True, text=True, timeout=300,
                          check=False, env=real_clock_env())


def test_libreoffice_converts_the_workbook(everything: Path, tmp_path: Path) -> None:
    binary = soffice()
    proc = convert(binary, [everything], tmp_path / "pdf", tmp_path / "profile")
    pdf = tmp_path / "pdf" / "report.pdf"
    assert proc.returncode == 0, proc.stderr
    assert pdf.is_file(), proc.stdout + proc.stderr
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF")
    assert len(content) > 50_000


def test_per_customer_and_empty_reports(history: History, tmp_path: Path) -> None:
    busiest = Counter(r.requester for r in history.raw).most_common(1)[0]
    data = report(history, Scope(customer=busiest[0].upper()))
    assert len(data.tickets) == busiest[1] and {t.requester for t in data.tickets} == {busiest[0]}
    empty = report(history, Scope(since=date(2030, 1, 1), until=date(2030, 1, 31)))
    path = write_workbook(empty, tmp_path / "empty.xlsx", language="tr")
    write_csv(empty, tmp_path / "csv")
    workbook = load_workbook(path)
    assert workbook["Talepler"].max_row == 1
    assert [c.value for c in workbook["SLA"][2]][1:4] == [0, 0, "-"]
    per_month: dict[str, list[Any]] = defaultdict(list)
    for row in rows_of(workbook["Aylık"]):
        per_month[row[0]] = row[1:]
    assert per_month["Toplam"] == [0, 0]
