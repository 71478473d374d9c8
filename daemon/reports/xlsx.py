"""The report as an Excel workbook, and its Tickets sheet as a CSV file.

Dates are real Excel date-times and shares are fractions under a percent format, so a reader can sort, filter
and compute with every cell; the texts shown are the only thing a language changes. The workbook must open in
LibreOffice as well as Excel, so only plain openpyxl features are used (number formats, bold, freeze panes,
an autofilter, embedded PNGs).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from ticketd.daemon.reports import ledger_sheets
from ticketd.daemon.reports import sheets as report_sheets
from ticketd.daemon.reports.data import ReportData
from ticketd.daemon.reports.figures import TicketRow
from ticketd.daemon.reports.sheets import (
    DATE_FORMAT,
    HOURS_FORMAT,
    Column,
    display,
    fit_columns,
    starts_formula,
    write_table,
)
from ticketd.daemon.reports.texts import Words

# The Tickets sheet's columns: TicketRow's fields in order, with the month after the opening time for pivots.
TICKET_COLUMNS = [f.name for f in fields(TicketRow)]
TICKET_COLUMNS.insert(TICKET_COLUMNS.index("created_at") + 1, "month")
CODED = {"state": "state", "type": "type", "priority": "priority", "source": "source", "satisfaction": "satisfaction"}
HOURS = {"first_response_hours", "resolution_hours"}
VERDICTS = {"first_response_met", "resolution_met", "within_contract"}


def verdict(value: bool | None, words: Words) -> str:
    return words("none") if value is None else words("yes" if value else "no")


def ticket_values(row: TicketRow, words: Words) -> list[Any]:
    """One Tickets row as cells: datetimes and hours stay numbers, codes and verdicts become words."""
    values: list[Any] = []
    for name in TICKET_COLUMNS:
        value = getattr(row, name)
        if name in CODED:
            value = words.code(CODED[name], value)
        elif name in VERDICTS:
            value = verdict(value, words)
        values.append(value)
    return values


def ticket_columns(words: Words) -> list[Column]:
    def fmt(name: str) -> str | None:
        if name in HOURS:
            return HOURS_FORMAT
        return DATE_FORMAT if name.endswith(("_at", "_due")) else None
    return [Column(words(f"col.{name}"), fmt(name)) for name in TICKET_COLUMNS]


def _tickets_sheet(ws: Worksheet, data: ReportData, words: Words) -> None:
    columns = ticket_columns(words)
    write_table(ws, 1, columns, [ticket_values(t, words) for t in data.tickets])
    ws.freeze_panes = "B2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(1, len(data.tickets) + 1)}"
    fit_columns(ws)


def _sheets() -> Iterator[tuple[str, report_sheets.Sheet]]:
    """The summary sheets in order, the ledger's (costs, time, evidence) before the charts."""
    for key, draw in report_sheets.SHEETS:
        if key == "charts":
            yield from ledger_sheets.SHEETS
        yield key, draw


def write_workbook(data: ReportData, path: Path, charts: dict[str, Path] | None = None,
                   language: str = "en") -> Path:
    """Write the workbook to ``path`` (its folder is created) and return the path."""
    words = Words(language)
    workbook = Workbook()
    tickets = workbook.active
    assert tickets is not None
    tickets.title = words("sheet.tickets")
    _tickets_sheet(tickets, data, words)
    for key, draw in _sheets():
        if (key == "charts" and not charts) or (key == "stages" and not data.stages):
            continue  # no stages without [process]: the workbook is as before
        draw(workbook.create_sheet(words(f"sheet.{key}")), data, words, charts or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def csv_field(value: Any) -> str:
    """A cell as CSV text; a text that a spreadsheet would run as a formula gets OWASP's leading apostrophe.

    Only texts: a number such as -1.5 is written as itself, so the column still sorts and sums.
    """
    text = display(value)
    if isinstance(value, str) and starts_formula(text):
        return "'" + text
    return text


def write_csv(data: ReportData, directory: Path) -> Path:
    """directory/tickets.csv: the English Tickets sheet as text, with a BOM so Excel reads Turkish letters."""
    words = Words("en")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tickets.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(column.header for column in ticket_columns(words))
        for row in data.tickets:
            writer.writerow(csv_field(value) for value in ticket_values(row, words))
    return path
