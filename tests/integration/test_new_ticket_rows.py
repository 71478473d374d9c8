"""What customers' new mail leaves in the database, row by row, through the one path every mail takes.

This file once compared a shortcut for plain new mail with the full pipeline; the shortcut is gone (the
pipeline writes the same rows as cheaply), and what stays is the rows themselves: tickets, messages, events in
the order they happened, outbox rows and participants, with only the values meant to vary (timestamps, random
outgoing Message-IDs and Date headers) masked.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from conftest import Site
from ticketd.daemon import pipeline
from ticketd.storage import db
from ticketd.storage.directory import add_company, upsert_agent, upsert_customer
from ticketd.storage.inbound import store_inbound
from ticketd.storage.models import Customer

pytestmark = pytest.mark.integration

TABLES = ("customer", "ticket", "message", "participant", "event", "outbox", "inbound", "attachment")
MASKED = {"created_at", "updated_at", "at", "added_at", "processed_at", "received_at", "next_attempt_at", "sent_at"}
OUR_ID = re.compile(r"<ticketd\.[0-9a-f]{32}@acme\.example>")


def mail(n: int, sender: str, subject: str, *extra: str, body: str = "Merhaba, yardım lütfen.") -> bytes:
    headers = [f"From: {sender}", "To: Acme Support <support@acme.example>", f"Subject: {subject}",
               *(extra or (f"Message-ID: <fp-{n}@example.org>",)), "MIME-Version: 1.0",
               "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


MAILS = [
    mail(1, "Jane Roe <jane@example.org>", "Printer on fire"),
    mail(2, "Şener Öztürk <sener@musteri.com.tr>", "=?utf-8?q?Modem_=C3=A7al=C4=B1=C5=9Fm=C4=B1yor?=",
         "Message-ID: <fp-2@example.org>", "Cc: Ayla <ayla@musteri.com.tr>, support@acme.example"),
    mail(3, "Çiğdem Yılmaz <cigdem.yilmaz@musteri.com.tr>", "Fatura sorusu"),
    mail(4, "Jane Roe <jane@example.org>", "Second problem, new subject"),
    mail(5, "Noname Person <noname@example.org>", "I have a name now"),
    mail(6, "Jane Roe <jane@example.org>", "Re: Printer on fire", "Message-ID: <fp-6@example.org>",
         "In-Reply-To: <fp-1@example.org>", "References: <fp-1@example.org>"),
    mail(7, "Spammer <blocked@example.org>", "Buy now"),
    mail(8, "Robot <robot@example.org>", "Out of office", "Message-ID: <fp-8@example.org>",
         "Auto-Submitted: auto-replied"),
    mail(9, "No Id <noid@example.org>", "A mail without a Message-ID", "X-Nothing: 1"),
    mail(10, "Jane Roe <jane@example.org>", "Printer on fire", "Message-ID: <fp-1@example.org>"),  # duplicate
]


PROCESS = {  # triage rules, a round-robin group and an expired contract: both paths must decide alike
    "categories": {"tree": ["hardware/modem", "billing/invoice"]},
    "groups": [{"name": "network", "policy": "round-robin"}],
    "rules": [{"name": "urgent-words", "match": {"subject": "(?i)modem|fatura"}, "set": {"priority": "high"},
               "continue": True},
              {"name": "modem", "match": {"subject": "(?i)modem"}, "set": {"category": "hardware/modem",
                                                                           "group": "network"}},
              {"name": "invoices", "match": {"sender_domain": "musteri.com.tr"},
               "set": {"type": "complaint", "category": "billing/invoice", "group": "network"}}],
}


def install(base: Site, where: Path, process: bool = False) -> Site:
    site = base.clone(where)  # the same secret, a database of its own
    if process:
        site.sections.update(PROCESS)
    site.upgrade()
    with db.session_scope(site.engine) as session:
        company = add_company(session, "Müşteri A.Ş.", ["musteri.com.tr"], contract_until=date(2026, 1, 31))
        upsert_customer(session, "cigdem.yilmaz@musteri.com.tr", "Çiğdem Yılmaz", company, language="tr")
        upsert_customer(session, "noname@example.org", "", None)
        session.add(Customer(email="blocked@example.org", name="Spammer", blocked=True))
        upsert_agent(session, "ali@acme.example", "Ali Veli", "agent", ["network"])
        upsert_agent(session, "ayse@acme.example", "Ayşe Demir", "manager", ["network"])
    return site


# Both installations process their mail at this one instant: deadlines are counted from it, and inside business
# hours two different instants give two different deadlines.
PINNED = datetime(2026, 12, 9, 10, 3, 8, 207644, tzinfo=ZoneInfo("Europe/Istanbul"))


def run(site: Site) -> list[str]:
    engine = site.engine
    with db.session_scope(engine) as session:
        for raw in MAILS:
            store_inbound(session, raw, "test")
    return [o.status for o in pipeline.process_pending(engine, site.config(), clock=lambda: PINNED)]


def dump(site: Site) -> dict[str, list[dict[str, Any]]]:
    with site.engine.connect() as conn:
        tables = {name: [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY 1"))]
                  for name in TABLES}
    for rows in tables.values():
        for row in rows:
            for key in list(row):
                if key in MASKED:
                    row[key] = "masked" if row[key] is not None else None
                elif isinstance(row[key], str):
                    row[key] = OUR_ID.sub("<ours>", row[key])
                    row[key] = re.sub(r'"Date": "[^"]*"', '"Date": "masked"', row[key])
                elif isinstance(row[key], dict):  # JSON comes back decoded from PostgreSQL, as text from SQLite
                    row[key] = {k: "masked" if k == "Date" else OUR_ID.sub("<ours>", v) if isinstance(v, str) else v
                                for k, v in row[key].items()}
    return tables


@pytest.mark.parametrize("process", [False, True], ids=["plain", "with-rules-and-assignment"])
def test_new_mail_leaves_its_rows(site: Site, tmp_path: Path, process: bool) -> None:
    one = install(site, tmp_path / "one", process)
    statuses = run(one)

    assert statuses == ["done"] * 6 + ["dropped", "dropped", "done", "dropped"]
    rows = dump(one)
    assert len(rows["outbox"]) == 6 * 3 + 2  # per ticket the ack and two agents (or "assigned" and the assignee)
    tickets = {t["number"]: t for t in rows["ticket"]}
    assert tickets[3]["within_contract"] == 0  # the company's contract ended in January
    if process:
        assert {n: (t["category"], t["priority"], t["assignee_id"] is not None) for n, t in tickets.items()} == {
            1: (None, "normal", False), 2: ("hardware/modem", "high", True), 3: ("billing/invoice", "high", True),
            4: (None, "normal", False), 5: (None, "normal", False), 6: (None, "normal", False)}
        assert sorted(o["kind"] for o in rows["outbox"]).count("assigned") == 2
    assert {p["email"] for p in rows["participant"]} == {"ayla@musteri.com.tr"}
    events = [(e["ticket_id"], e["actor"], e["what"], e["old"], e["new"]) for e in rows["event"]]
    learnt = "tr (learnt from the customer's first mail)"
    queued = [(1, "ticketd", "mail-queued", None, kind) for kind in ("received", "agent_new", "agent_new")]
    assert events[:5] == [(1, "jane@example.org", "created", None, "new"),
                          (1, "jane@example.org", "language", None, learnt), *queued]  # in the order they happened
    two = [e[2:] for e in events if e[0] == 2]
    if process:
        assert two == [("created", None, "new"), ("language", None, learnt),
                       ("rule", None, "urgent-words: subject matches '(?i)modem|fatura'"),
                       ("rule", None, "modem: subject matches '(?i)modem'"),
                       ("contract", None, "out of contract (ended 2026-01-31)"),
                       ("assignee", None, "ali@acme.example"), ("state", "new", "open"),
                       ("participants", None, "ayla@musteri.com.tr"), ("mail-queued", None, "received"),
                       ("mail-queued", None, "assigned"), ("mail-queued", None, "agent_new")]
    else:
        assert two == [("created", None, "new"), ("language", None, learnt),
                       ("contract", None, "out of contract (ended 2026-01-31)"),
                       ("participants", None, "ayla@musteri.com.tr"), ("mail-queued", None, "received"),
                       ("mail-queued", None, "agent_new"), ("mail-queued", None, "agent_new")]
    assert [e[2:] for e in events if e[0] == 1][5:] == [("customer-reply", None, None),
                                                        ("mail-queued", None, "agent_update"),
                                                        ("mail-queued", None, "agent_update")]  # the reply, later
    assert [(m["ticket_id"], m["message_id"], m["inbound_id"]) for m in rows["message"]] == [
        (1, "<fp-1@example.org>", 1), (2, "<fp-2@example.org>", 2), (3, "<fp-3@example.org>", 3),
        (4, "<fp-4@example.org>", 4), (5, "<fp-5@example.org>", 5), (1, "<fp-6@example.org>", 6),
        (6, "<missing.6428ff895a0264cc140a7c9b452a47b1@ticketd.invalid>", 9)]
    assert [(i["status"], i["ticket_id"], i["reason"]) for i in rows["inbound"]] == [
        *[("done", n, None) for n in (1, 2, 3, 4, 5, 1)],
        ("dropped", None, "sender blocked@example.org is blocked as spam"),
        ("dropped", None, "auto_submitted: Auto-Submitted: auto-replied; no ticket to join"),
        ("done", 6, None), ("dropped", None, "duplicate of inbound #1")]
    assert {c["email"]: (c["name"], c["language"], c["company_id"]) for c in rows["customer"]} == {
        "cigdem.yilmaz@musteri.com.tr": ("Çiğdem Yılmaz", "tr", 1), "noname@example.org": ("Noname Person", "en", None),
        "blocked@example.org": ("Spammer", None, None), "jane@example.org": ("Jane Roe", "tr", None),
        "sener@musteri.com.tr": ("Şener Öztürk", "tr", 1), "robot@example.org": ("Robot", None, None),
        "noid@example.org": ("No Id", "en", None)}  # the name learnt from the mail; languages learnt once
