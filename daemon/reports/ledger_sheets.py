"""The workbook's Costs, Time and Evidence sheets (issue 18), drawn from ``ReportData.ledger``.

Costs have one column per currency, so a row never adds two currencies: an empty cell is "-", as elsewhere.
Amounts are written as the ``Decimal`` they are (openpyxl stores them as exact numbers), under a format with the
currency's own decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl.worksheet.worksheet import Worksheet

from ticketd.daemon.reports.data import ReportData
from ticketd.daemon.reports.sheets import DATE_FORMAT, Column, Sheet, fit_columns, write_table
from ticketd.daemon.reports.texts import Words

HOURS_2 = "0.00"


def money_format(currency: str) -> str:
    from babel.numbers import get_currency_precision  # loaded with the workbook, which only reports need

    places = get_currency_precision(currency)
    return "#,##0" + ("." + "0" * places if places else "")


def _name(value: str, words: Words, none_key: str) -> str:
    return value or words(none_key)


def _per_currency(ws: Worksheet, top: int, label: str, keys: Sequence[str], table: dict[str, dict[str, Decimal]],
                  currencies: Sequence[str], words: Words, none_key: str) -> int:
    columns = [Column(label), *(Column(c, money_format(c)) for c in currencies)]
    rows: list[list[Any]] = [[_name(key, words, none_key), *(table.get(key, {}).get(c, words("none"))
                                                           for c in currencies)] for key in keys]
    totals = {c: sum((table[k].get(c, Decimal(0)) for k in table), Decimal(0)) for c in currencies}
    return write_table(ws, top, columns, [*rows, [words("total"), *(totals[c] for c in currencies)]])


def _money_cells(ws: Worksheet, top: int, count: int, currencies: Sequence[str]) -> None:
    """write_table formats int, float and datetime cells; a Decimal gets its currency's format here."""
    for row in ws.iter_rows(min_row=top + 1, max_row=top + count, min_col=2, max_col=1 + len(currencies)):
        for cell, currency in zip(row, currencies, strict=True):
            if isinstance(cell.value, Decimal | int | float):
                cell.number_format = money_format(currency)


def _costs(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    books, top = data.ledger, 1
    currencies = books.currencies
    months = [m for m in data.months if m in books.cost_by_month] or sorted(books.cost_by_month)
    for label, keys, table, none_key in (
            (words("month"), months, books.cost_by_month, "none"),
            (words("category"), sorted(books.cost_by_category), books.cost_by_category, "category.none"),
            (words("company"), sorted(books.cost_by_company), books.cost_by_company, "company.none")):
        below = _per_currency(ws, top, label, keys, table, currencies, words, none_key)
        _money_cells(ws, top, len(keys) + 1, currencies)
        top = below
    ws.cell(row=top, column=1, value=words("cost_lines"))
    columns = [Column(words("col.number")), Column(words("at"), DATE_FORMAT), Column(words("by")),
               Column(words("amount")), Column(words("currency")), Column(words("reason"))]
    write_table(ws, top + 1, columns, [[c.number, c.at, c.by, c.amount, c.currency, c.reason] for c in books.costs])
    for offset, c in enumerate(books.costs, start=top + 2):
        ws.cell(row=offset, column=4).number_format = money_format(c.currency)
    ws.freeze_panes = "B2"
    fit_columns(ws)


def _minutes_table(ws: Worksheet, top: int, label: str, table: dict[str, int], words: Words,
                   none_key: str) -> int:
    columns = [Column(label), Column(words("minutes")), Column(words("hours"), HOURS_2)]
    rows = [[_name(key, words, none_key), minutes, minutes / 60] for key, minutes in sorted(table.items())]
    total = sum(table.values())
    return write_table(ws, top, columns, [*rows, [words("total"), total, total / 60]])


def _time(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    books = data.ledger
    columns = [Column(words("agent")), Column(words("name")), Column(words("minutes")),
               Column(words("hours"), HOURS_2), Column(words("tickets"))]
    rows = [[email, books.agent_names.get(email, ""), minutes, minutes / 60, books.tickets_by_agent.get(email, 0)]
            for email, minutes in books.minutes_by_agent.items()]
    top = write_table(ws, 1, columns, [*rows, [words("total"), "", books.minutes, books.minutes / 60, ""]])
    top = _minutes_table(ws, top, words("category"), books.minutes_by_category, words, "category.none")
    _minutes_table(ws, top, words("company"), books.minutes_by_company, words, "company.none")
    ws.freeze_panes = "B2"
    fit_columns(ws)


def _evidence(ws: Worksheet, data: ReportData, words: Words, _charts: dict[str, Path]) -> None:
    columns = [Column(words("col.number")), Column(words("at"), DATE_FORMAT), Column(words("by")),
               Column(words("step")), Column(words("filename")), Column(words("content_type")),
               Column(words("size")), Column(words("sha256")), Column(words("attachment"))]
    write_table(ws, 1, columns, [[e.number, e.at, e.by, e.steps, e.filename, e.content_type, e.size, e.sha256,
                                  e.attachment] for e in data.ledger.evidence])
    ws.freeze_panes = "B2"
    fit_columns(ws)


SHEETS: tuple[tuple[str, Sheet], ...] = (("costs", _costs), ("time", _time), ("evidence", _evidence))
