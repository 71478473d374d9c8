"""Bounces are attached to the ticket whose mail bounced, the agents told; never a ticket, never answered."""

from __future__ import annotations

import pytest

from conftest import DATA, Desk, body_of, mail_to

pytestmark = pytest.mark.integration


def dsn_for(message_id: str, recipient: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\nTo: support@acme.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be"
        " delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@acme.example\r\nTo: {recipient}\r\n"
        f"Message-ID: {message_id}\r\nSubject: [ACME #1] Your request has been received\r\n--B--\r\n"
    ).encode()


def test_bounce_of_an_acknowledgment_lands_on_its_ticket(desk: Desk) -> None:
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    ack = mail_to(desk.new_mail(), "jane@example.org")
    outcome = desk.deliver(dsn_for(ack.message["Message-ID"], "jane@example.org"))
    assert (outcome.status, outcome.ticket_number, outcome.new_ticket) == ("done", 1, False)
    ticket = desk.ticket(1)
    assert ticket["messages"][-1]["kind"] == "auto" and "5.1.1" in ticket["messages"][-1]["text"]
    assert any(e["what"] == "bounce" and "jane@example.org" in e["new"] for e in ticket["events"])
    mails = desk.new_mail()
    assert {m.envelope_to[0] for m in mails} == {"ali@acme.example", "ayse@acme.example"}  # agents, no robot
    assert "user unknown" in body_of(mails[0])
    assert len(desk.ticket(1)["messages"]) == 2


@pytest.mark.parametrize("name", ["flanker/bounce/gmail-invalid-address.eml", "flanker/bounce/mailbox-full.eml"])
def test_a_stray_bounce_is_dropped_with_its_reason(desk: Desk, name: str) -> None:
    outcome = desk.deliver((DATA / "corpus" / name).read_bytes())
    assert outcome.status == "dropped" and "matches no mail of ours" in outcome.reason
    assert desk.new_mail() == []


def test_feedback_reports_are_dropped(desk: Desk) -> None:
    outcome = desk.deliver((DATA / "corpus" / "flanker" / "complaints" / "yahoo.eml").read_bytes())
    assert (outcome.status, outcome.reason) == ("dropped", "abuse feedback report (ARF)")
