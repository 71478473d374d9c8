"""The loop rule, the circuit breaker as a safety net and the alert cap, mail by mail through the real pipeline
(real database, real SMTP server). The day-long and thousand-mail versions are in test_storms.py."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from conftest import Desk, body_of, mail_to, reply_to
from ticketd.storage.models import Outbox, Participant

pytestmark = pytest.mark.integration

ALI, ADMIN = "ali@acme.example", "ops@acme.example"


def new_request(n: int, sender: str | None = None) -> bytes:
    return (f"From: {sender or f'c{n}@example.org'}\r\nTo: support@acme.example\r\nSubject: help {n}\r\n"
            f"Message-ID: <req-{n}@example.org>\r\n\r\nMy line {n} is down.\r\n").encode()


def kind(mail: Any) -> str:
    return str(mail.message["X-Ticketd-Kind"])


@pytest.fixture
def admin_desk(desk: Desk) -> Desk:
    desk.site.sections["helpdesk"]["admin"] = ADMIN
    return desk


def test_a_stranger_answering_our_receipt_is_recorded_not_answered(admin_desk: Desk) -> None:
    desk = admin_desk
    desk.deliver(new_request(1, "Jane <jane@example.org>"))
    receipt = mail_to(desk.new_mail(), "jane@example.org")
    robot = reply_to(receipt, "reply+1@otherdesk.example", "Thank you, your request #991 was received.",
                     to="support@acme.example")
    outcome = desk.deliver(robot)
    assert (outcome.status, outcome.ticket_number) == ("done", 1)
    assert "answers our automatic 'received' mail" in outcome.reason
    mails = desk.new_mail()
    assert not [m for m in mails if "otherdesk.example" in " ".join(m.envelope_to)]  # nothing back to it
    assert sorted((m.envelope_to[0], kind(m)) for m in mails) == [
        (ALI, "agent_update"), ("ayse@acme.example", "agent_update"), (ADMIN, "admin-alert")]
    assert "automatic answers stopped for otherdesk.example" in mail_to(mails, ADMIN).message["Subject"]
    ticket = desk.ticket(1)
    last = ticket["messages"][-1]
    assert (last["from"], "#991" in last["text"]) == ("reply+1@otherdesk.example", True)
    assert any(e["what"] == "not-answered" for e in ticket["events"])
    with Session(desk.site.engine) as session:  # it takes no part: it hears nothing later either
        assert not session.exec(select(Participant).where(Participant.email == "reply+1@otherdesk.example")).all()


def test_a_stranger_quoting_our_receipts_subject_without_threading_headers_is_not_answered(admin_desk: Desk) -> None:
    desk = admin_desk
    desk.deliver(new_request(1, "Jane <jane@example.org>"))
    receipt = mail_to(desk.new_mail(), "jane@example.org")
    robot = (f"From: reply+2@otherdesk.example\r\nTo: support@acme.example\r\nSubject: RE: {receipt.message['Subject']}"
             "\r\nMessage-ID: <case-2@otherdesk.example>\r\n\r\nWe opened case #2 for your request.\r\n").encode()
    outcome = desk.deliver(robot)
    assert (outcome.status, outcome.ticket_number, outcome.new_ticket) == ("done", 1, False)
    assert "quotes the subject of our automatic 'received' mail" in outcome.reason
    mails = desk.new_mail()
    assert sorted(kind(m) for m in mails) == ["admin-alert", "agent_update", "agent_update"]
    same_tag_new_words = robot.replace(b"Subject: RE: ", b"Subject: RE: [ACME #1] about ").replace(b"case-2", b"x-3")
    assert desk.deliver(same_tag_new_words).new_ticket  # a tag alone proves nothing: a ticket of its own, as before


def test_the_customer_answering_our_receipt_is_handled_as_before(admin_desk: Desk) -> None:
    desk = admin_desk
    desk.deliver(new_request(1, "Jane <jane@example.org>"))
    receipt = mail_to(desk.new_mail(), "jane@example.org")
    outcome = desk.deliver(reply_to(receipt, "Jane <jane@example.org>", "Also: the light is red."))
    assert (outcome.status, outcome.reason) == ("done", None)
    assert sorted(kind(m) for m in desk.new_mail()) == ["agent_update", "agent_update"]


def resolve_and_complain(desk: Desk, n: int) -> list[Any]:
    """Customer n writes, Ali resolves it with no words, the customer answers the "resolved" mail unhappy: the
    "reopened" mail that answers is an automatic answer to a mail that answered our automatic mail."""
    customer = f"c{n}@example.org"
    desk.deliver(new_request(n))
    notification = mail_to([m for m in desk.new_mail() if kind(m) == "agent_new"], ALI)
    desk.deliver(reply_to(notification, ALI, "", subject_suffix="[resolve]"))
    resolved = mail_to(desk.new_mail(), customer)
    assert kind(resolved) == "resolved"
    desk.deliver(reply_to(resolved, customer, "It is still not working."))
    return desk.new_mail()


def test_breaker_counts_answers_to_answers_of_our_automatic_mail_never_fresh_requests(admin_desk: Desk) -> None:
    desk = admin_desk
    desk.site.sections["limits"] = {"auto_replies_per_hour": 2}
    mails = [resolve_and_complain(desk, n) for n in range(3)]
    reopened = [[m for m in mails[n] if m.envelope_to == [f"c{n}@example.org"]] for n in range(3)]
    assert "circuit breaker open" in mail_to(mails[2], ADMIN).message["Subject"]
    assert [[kind(m) for m in mails] for mails in reopened] == [["reopened"], ["reopened"], []]
    with Session(desk.site.engine) as session:
        held = [r for r in session.exec(select(Outbox)) if r.status == "suppressed"]
    assert [(r.recipient, r.kind) for r in held] == [("c2@example.org", "reopened")]
    assert held[0].last_error.startswith("circuit breaker open")
    for n in range(3, 13):  # the breaker is open, and fresh requests are all answered
        desk.deliver(new_request(n))
    receipts = [m for m in desk.new_mail() if kind(m) == "received"]
    assert sorted(m.envelope_to[0] for m in receipts) == sorted(f"c{n}@example.org" for n in range(3, 13))


def test_forged_agent_mail_makes_a_few_alerts_then_one_admin_note(admin_desk: Desk) -> None:
    desk = admin_desk
    for n in range(6):
        desk.deliver((f"From: Ali Veli <{ALI}>\r\nTo: support@acme.example\r\nSubject: [ACME #7] [resolve]\r\n"
                      f"Message-ID: <forged-{n}@evil.example>\r\n\r\nDone.\r\n").encode())
    mails = desk.new_mail()
    alerts = [m for m in mails if m.envelope_to == [ALI]]
    assert [kind(m) for m in alerts] == ["security_alert"] * 3
    assert ["last such alert this hour" in body_of(m) for m in alerts] == [False, False, True]
    [note] = [m for m in mails if m.envelope_to == [ADMIN]]
    assert f"mail held back for {ALI}" in note.message["Subject"]
    desk.deliver(new_request(1))
    assert [kind(m) for m in desk.new_mail() if m.envelope_to == ["c1@example.org"]] == ["received"]
