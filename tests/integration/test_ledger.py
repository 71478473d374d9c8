"""Costs, time worked and each step's evidence, through the real pipeline (mail enters as through `ticketd
deliver`, on SQLite and PostgreSQL): what agents write becomes exact entries, `tickets show --json` lists them,
refusals change nothing, and the totals the workbook shows are the ones the test adds up from the database."""

from __future__ import annotations

import hashlib
import json
import secrets
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import DATA, Desk, body_of, decode, mail_to, reply_to

pytestmark = pytest.mark.integration

ALI, AYSE, JANE = "ali@acme.example", "ayse@acme.example", "jane@example.org"


def open_ticket(desk: Desk, agent: str = ALI) -> Any:
    """A customer's ticket and the notification ``agent`` got for it (both agents get one while unassigned)."""
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    return mail_to(desk.new_mail(), agent)


def notifications(desk: Desk) -> dict[str, Any]:
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    mails = desk.new_mail()
    return {agent: mail_to(mails, agent) for agent in (ALI, AYSE)}


def command(desk: Desk, notification: Any, suffix: str, body: str = "", sender: str = ALI) -> list[Any]:
    desk.deliver(reply_to(notification, sender, body, subject_suffix=suffix))
    return desk.new_mail()


def command_with_files(notification: Any, sender: str, suffix: str, body: str,
                       files: list[tuple[str, str, bytes]]) -> bytes:
    """An agent's answer from a mail client: commands in the subject, maybe no words at all, files attached."""
    msg = EmailMessage()
    original = notification.message
    msg["From"], msg["To"] = sender, original["Reply-To"] or original["From"]
    msg["Subject"] = f"Re: {original['Subject']} {suffix}".rstrip()
    msg["Message-ID"] = f"<{secrets.token_hex(8)}@client.example>"
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = original["Message-ID"]
    msg.set_content(body or "\n")
    for name, ctype, data in files:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype, subtype, filename=name)
    return msg.as_bytes()


def show(desk: Desk, *args: str) -> str:
    out, err = decode(desk.site.cli("tickets", "show", *args))
    assert not err.strip() or "Traceback" not in err, err
    return out


def exact(text: str) -> Any:
    """`tickets show --json` as a script that keeps amounts exact reads it."""
    return json.loads(text, parse_float=Decimal)


def test_cost_lines_add_up_per_currency_and_show_exactly(desk: Desk) -> None:
    notification = open_ticket(desk)
    body = ("We replaced the modem.\n\nCost: 1.250,50 TRY\nCost: 300 TRY; replacement modem\n"
            "Cost: 1,250.50 EUR; courier\nCost: 300 TRY; replacement modem")
    [relay] = command(desk, notification, "", body)
    assert "Cost" not in body_of(relay) and "We replaced the modem." in body_of(relay)
    ticket = desk.ticket(1)
    assert [(c["amount"], c["currency"], c["reason"], c["by"]) for c in ticket["costs"]] == [
        (1250.5, "TRY", None, ALI), (300, "TRY", "replacement modem", ALI), (1250.5, "EUR", "courier", ALI),
        (300, "TRY", "replacement modem", ALI)]  # the same line twice is two entries
    assert ticket["cost_total"] == {"EUR": 1250.5, "TRY": 1850.5}
    assert ticket["cost"] == "1250.50 EUR, 1850.50 TRY"  # the old text field: the totals
    events = [e for e in ticket["events"] if e["what"] == "cost-added"]
    assert [e["new"] for e in events] == ["1250.50 TRY", "300.00 TRY; replacement modem", "1250.50 EUR; courier",
                                          "300.00 TRY; replacement modem"]
    assert {e["actor"] for e in events} == {ALI}

    shown = show(desk, "1", "--json")
    data = exact(shown)
    assert data["cost_total"] == {"EUR": Decimal("1250.5"), "TRY": Decimal("1850.5")}
    assert '"amount": 1250.5,' in shown  # a JSON number, the amount itself
    text = show(desk, "1")
    assert "1250.50 TRY" in text and "total: 1250.50 EUR, 1850.50 TRY" in text


@pytest.mark.parametrize(("body", "message"), [
    ("Cost: about 150 TRY", "is not an amount with its currency"),
    ("Cost: 150 ABC", "'ABC' is not an ISO 4217 currency code"),
    ("Cost: 150 TRL", "'TRL' is not a currency in use today; did you mean TRY?"),
    ("Cost: 1.250 KWD", "1.250 KWD is ambiguous: 1250 or 1.250?"),
    ("Cost: 12.50 JPY", "JPY has no decimal places"),
    ("Cost: $12", "names several currencies"),
    ("Cost: -10 EUR; refund", "would take the ticket's EUR total below zero"),
    ("Time: soon", "'soon' is not a duration"),
    ("Time: 0m", "is no time"),
    ("Time: 25h", "more than 24 hours in one line"),
    ("Time: 30", "has no unit"),
])
def test_nonsense_is_refused_and_nothing_of_the_mail_applied(desk: Desk, body: str, message: str) -> None:
    notification = open_ticket(desk)
    [result] = command(desk, notification, "[take]", "Cost: 100 TRY\nTime: 1h\n" + body)
    assert result.envelope_to == [ALI]
    assert message in body_of(result), body_of(result)
    ticket = desk.ticket(1)
    assert (ticket["costs"], ticket["time"], ticket["assignee"], ticket["cost"]) == ([], [], None, None)


def test_time_per_agent_from_body_lines_and_the_subject(desk: Desk) -> None:
    mails = notifications(desk)
    notification = mails[ALI]
    command(desk, notification, "[time=1h30m]", "Time: 30m")
    command(desk, mails[AYSE], "", "Looked at it too.\nTime: 2h", sender=AYSE)
    command(desk, notification, "[time=-15m]", "")  # Ali corrects himself
    ticket = desk.ticket(1)
    assert [(t["agent"], t["minutes"]) for t in ticket["time"]] == [
        (ALI, 90), (ALI, 30), (AYSE, 120), (ALI, -15)]
    assert ticket["time_minutes"] == 225
    assert [e["new"] for e in ticket["events"] if e["what"] == "time-added"] == ["90", "30", "120", "-15"]
    [refused] = command(desk, notification, "[time=-3h]", "")
    assert "would take your time on ticket #1 below zero (it is 105 minutes)" in body_of(refused)
    text = show(desk, "1")
    assert "time worked: 3h45m" in text


def test_a_commands_only_mail_keeps_its_files_as_the_steps_evidence(desk: Desk) -> None:
    """No words, only commands and files: the message and its files are stored, linked to the step's events,
    and a hostile file name reaches no file name, cell or line as written."""
    notification = open_ticket(desk)
    photo, hostile = b"\x89PNG fake photo", b"=HYPERLINK(1)"
    raw = command_with_files(notification, ALI, "[take; priority=high]", "", [
        ("modem-photo.png", "image/png", photo), ("../../etc/=cmd\u202egnp.exe", "text/plain", hostile)])
    desk.deliver(raw)
    desk.new_mail()
    ticket = desk.ticket(1)
    stored = ticket["messages"][-1]
    assert stored["kind"] == "agent-reply" and len(stored["attachments"]) == 2
    evidence = ticket["evidence"]
    assert [(e["filename"], e["size"], e["sha256"], e["by"]) for e in evidence] == [
        ("modem-photo.png", len(photo), hashlib.sha256(photo).hexdigest(), ALI),
        ("=cmdgnp.exe", len(hostile), hashlib.sha256(hostile).hexdigest(), ALI)]
    assert {"assignee", "priority", "evidence-added"} <= set(evidence[0]["steps"])
    step = [e for e in ticket["events"] if e["what"] in ("assignee", "priority", "evidence-added")]
    assert all([f["filename"] for f in e["evidence"]] == ["modem-photo.png", "=cmdgnp.exe"] for e in step)
    assert all(e["evidence"] == [] for e in ticket["events"] if e["what"] == "created")
    # the files are the ones stored, fetchable by id
    assert {e["id"] for e in evidence} == {a["id"] for a in stored["attachments"]}
    text = show(desk, "1")
    assert "evidence-added  → modem-photo.png, =cmdgnp.exe" in text and "/etc/" not in text
    assert "[attachment 2] =cmdgnp.exe (13 bytes, sha256 " in text


def test_a_plain_reply_with_files_is_no_step(desk: Desk) -> None:
    notification = open_ticket(desk)
    desk.deliver(command_with_files(notification, ALI, "", "Here is the guide.",
                                    [("guide.pdf", "application/pdf", b"%PDF-1.4 guide")]))
    ticket = desk.ticket(1)
    assert ticket["messages"][-1]["attachments"] and ticket["evidence"] == []


def test_the_workbook_totals_are_the_databases(desk: Desk, tmp_path: Path) -> None:
    """Costs per category, company and month, time per agent, and the evidence sheet, against sums the test
    makes itself from the rows; currencies stay apart."""
    from openpyxl import load_workbook

    mails = notifications(desk)
    notification = mails[ALI]
    command(desk, notification, "[category=hardware/modem; time=45m]", "Cost: 1.250,50 TRY\nCost: 99.99 EUR")
    command(desk, mails[AYSE], "[time=1h]", "", sender=AYSE)
    desk.deliver(command_with_files(notification, ALI, "[note]", "photo", [("a.png", "image/png", b"png"),
                                                                          ("=HYPERLINK(1).png", "image/png", b"x")]))
    with desk.site.engine.connect() as conn:
        costs = conn.execute(sa.text("select currency, amount from cost_entry")).all()
        minutes = dict(conn.execute(sa.text("select a.email, sum(t.minutes) from time_entry t join agent a "
                                            "on a.id = t.agent_id group by a.email")).all())
    by_currency: dict[str, Decimal] = {}
    for currency, amount in costs:
        by_currency[currency] = by_currency.get(currency, Decimal(0)) + Decimal(amount)
    assert by_currency == {"TRY": Decimal("1250.50"), "EUR": Decimal("99.99")}

    out = tmp_path / "r.xlsx"
    desk.site.cli("report", "--xlsx", str(out))
    book = load_workbook(out)
    costs_sheet = [tuple(v for v in row if v is not None) for row in book["Costs"].iter_rows(values_only=True)]
    assert ("Category", "EUR", "TRY") in costs_sheet
    assert ("hardware/modem", Decimal("99.99"), Decimal("1250.50")) in [
        tuple(Decimal(str(v)) if isinstance(v, int | float) else v for v in row) for row in costs_sheet]
    time_sheet = [row for row in book["Time"].iter_rows(values_only=True) if any(row)]
    per_agent = {row[0]: row[2] for row in time_sheet if row[0] in (ALI, AYSE)}
    assert per_agent == minutes == {ALI: 45, AYSE: 60}
    evidence_sheet = [row for row in book["Evidence"].iter_rows(values_only=True) if any(row)]
    assert evidence_sheet[1][0] == 1 and "a.png" in evidence_sheet[1]
    assert hashlib.sha256(b"png").hexdigest() in evidence_sheet[1]
    hostile = [cell for row in book["Evidence"].iter_rows() for cell in row if cell.value == "=HYPERLINK(1).png"]
    assert len(hostile) == 1 and hostile[0].data_type == "s"  # a name, never a formula
    assert evidence_sheet[1][3] == "evidence-added"  # a [note] writes no event of its own: the step is the files


def test_a_ticket_opened_for_a_caller_keeps_the_agents_files_as_evidence(desk: Desk) -> None:
    from ticketd.daemon.outgoing.notify import signed_address

    msg = EmailMessage()
    msg["From"], msg["To"] = f"Ali Veli <{ALI}>", signed_address(desk.site.config(), 0, ALI)
    msg["Subject"] = "Modem dead [customer=mehmet@musteri.com.tr; source=phone; take]"
    msg["Message-ID"] = "<phone-1@acme.example>"
    msg.set_content("Customer called: modem is dead.\nTime: 20m")
    msg.add_attachment(b"%PDF call notes", "application", "pdf", filename="call.pdf")
    outcome = desk.deliver(msg.as_bytes())
    ticket = desk.ticket(outcome.ticket_number)
    [evidence] = ticket["evidence"]
    assert evidence["filename"] == "call.pdf" and {"created", "time-added", "evidence-added"} <= set(evidence["steps"])
    assert ticket["time_minutes"] == 20


def test_erasing_the_customer_erases_the_evidence_files_with_their_links(desk: Desk) -> None:
    """`customers erase` deletes the files on the customer's tickets; their evidence rows go with them (the
    foreign key cascades), on both backends, and the costs stay for the reports."""
    notification = open_ticket(desk)
    desk.deliver(command_with_files(notification, ALI, "[note]", "Cost: 10 EUR; a new modem for Jane Doe",
                                    [("a.png", "image/png", b"p")]))
    assert len(desk.ticket(1)["evidence"]) == 1
    _, err = decode(desk.site.cli("customers", "erase", JANE, "--yes"))
    assert "Traceback" not in err, err
    ticket = desk.ticket(1)
    assert ticket["evidence"] == [] and ticket["cost_total"] == {"EUR": 10}
    assert [c["reason"] for c in ticket["costs"]] == ["a new modem for [erased]"]
    with desk.site.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from evidence")).scalar_one() == 0
