"""One identity per mailbox: a customer who wrote to complaints@ hears only from complaints@.

Two mailboxes on different domains, each with its own name, signature and reply domain. Mail comes in through
the pipeline as the daemon stores it (with the mailbox it was fetched from) and leaves through the real SMTP
server; every mail of each customer's conversation is checked: From, Reply-To, Message-ID and signature."""

from __future__ import annotations

import json
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from conftest import Desk, Site, body_of, client_mail, mail_to, reply_to
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

ALI = "ali@acme.example"
MEHMET = "mehmet@example.net"
JANE = "jane@example.org"
SUPPORT = "support@acme.example"
COMPLAINTS = "sikayet@acme-sikayet.example"


def two_identities(site: Site, tmp_path: Path) -> None:
    signature = tmp_path / "complaints-signature.txt"
    signature.write_text("Acme Şikayet Birimi\nTel: 0850 000 00 00\n", encoding="utf-8")
    site.sections["helpdesk"]["name"] = "Acme Support"
    site.sections["lmtp"] = {"listen": "127.0.0.1:8024"}  # the mailboxes need a way in; nothing listens here
    site.sections["mailboxes"] = [
        {"name": "support", "address": SUPPORT},
        {"name": "complaints", "address": COMPLAINTS, "display_name": "Acme Şikayet",
         "signature_file": str(signature), "defaults": {"type": "complaint"}}]


def deliver(desk: Desk, raw: bytes, mailbox: str) -> Any:
    """As the intake stores a mail fetched from ``mailbox``, then processed and sent like the daemon does."""
    from ticketd.daemon import pipeline
    from ticketd.daemon.outgoing import outbox
    from ticketd.storage import db
    from ticketd.storage.inbound import store_inbound

    config = desk.site.config()
    with db.session_scope(desk.site.engine) as session:
        row_id = store_inbound(session, raw, mailbox).id
    outcome = pipeline.process_pending(desk.site.engine, config, [row_id])[0]
    outbox.send_due(desk.site.engine, config)
    return outcome


def sender(mail: Any) -> tuple[str, str]:
    return parseaddr(str(mail.message["From"]))


def test_each_conversation_comes_from_the_address_the_customer_wrote_to(desk: Desk, tmp_path: Path,
                                                                       smtp_sink: SmtpSink) -> None:
    two_identities(desk.site, tmp_path)
    complaint = client_mail(f"Mehmet Öz <{MEHMET}>", "Faturam iki kez kesildi", "Aynı ay iki fatura geldi.",
                            to=COMPLAINTS)
    question = client_mail(f"Jane Roe <{JANE}>", "Opening hours", "When are you open on Saturdays?")
    assert deliver(desk, complaint, "complaints").ticket_number == 1
    assert deliver(desk, question, "support").ticket_number == 2
    first = desk.new_mail()
    received_complaint = mail_to(first, MEHMET)
    notification = mail_to([m for m in first if "#1" in m.message["Subject"]], ALI)

    # The agent takes the complaint and answers; the customer asks again; the agent resolves it.
    assert deliver(desk, reply_to(notification, f"Ali Veli <{ALI}>", "Merhaba,\nİkinci faturayı iptal ettik.",
                                  subject_suffix="[take]"), "complaints").status == "done"
    relay = next(m for m in desk.new_mail() if m.envelope_to == [MEHMET] and "Auto-Submitted" not in m.message)
    assert deliver(desk, reply_to(relay, f"Mehmet Öz <{MEHMET}>", "Teşekkürler, iade ne zaman yapılır?"),
                   "complaints").status == "done"
    update = mail_to(desk.new_mail(), ALI)
    outcome = deliver(desk, reply_to(update, f"Ali Veli <{ALI}>", "İade üç iş günü içinde yapılır.\n\n"
                                     "Root-Cause: faturalama işi iki kez çalıştı\nAction-Plan: iş kilitlendi\n",
                                     subject_suffix="[status=resolved]"), "complaints")
    assert outcome.status == "done", outcome
    later = desk.new_mail()

    to_mehmet = [received_complaint, relay, *[m for m in later if MEHMET in m.envelope_to]]
    kinds = [m.message["X-Ticketd-Kind"] for m in to_mehmet]
    assert "received" in kinds and "agent-reply" in kinds and "resolved" in kinds, kinds
    for mail in to_mehmet:
        name, address = sender(mail)
        assert address == COMPLAINTS, (mail.message["X-Ticketd-Kind"], mail.message["From"])
        assert name.startswith(("Acme Şikayet", "Ali Veli via Acme Şikayet")), name
        assert mail.message["Message-ID"].endswith("@acme-sikayet.example>")
        reply = parseaddr(str(mail.message["Reply-To"]))[1]
        assert reply.startswith("sikayet+1.") and reply.endswith("@acme-sikayet.example"), reply
    for mail in (received_complaint, next(m for m in to_mehmet if m.message["X-Ticketd-Kind"] == "resolved")):
        assert "Acme Şikayet Birimi\nTel: 0850 000 00 00" in body_of(mail)
        assert "Acme Support" not in body_of(mail)
    resolved = next(m for m in to_mehmet if m.message["X-Ticketd-Kind"] == "resolved")
    assert "mailto:sikayet+1." in body_of(resolved)  # the satisfaction links answer to the same address
    # The agent's mail about the complaint carries reply addresses on its domain too, and they authenticate.
    assert parseaddr(str(notification.message["Reply-To"]))[1].endswith("@acme-sikayet.example")

    to_jane = [m for m in [*first, *later] if JANE in m.envelope_to]
    assert to_jane and all(sender(m) == ("Acme Support", SUPPORT) for m in to_jane)
    assert all(m.message["Message-ID"].endswith("@acme.example>") for m in to_jane)
    assert "Acme Support" in body_of(to_jane[0]) and "Şikayet" not in body_of(to_jane[0])

    detail = json.loads(desk.site.cli("tickets", "show", "1", "--json").stdout)
    assert detail["state"] == "resolved" and detail["mailbox"] == "complaints"
    assert json.loads(desk.site.cli("tickets", "show", "2", "--json").stdout)["mailbox"] == "support"


def test_mail_to_an_address_of_a_shared_folder_answers_as_that_address(desk: Desk, tmp_path: Path) -> None:
    """Both addresses delivered into one folder (an alias): the address the customer wrote to decides."""
    two_identities(desk.site, tmp_path)
    complaint = client_mail(f"Mehmet Öz <{MEHMET}>", "Kırık ürün", "Ürün kırık geldi.", to=COMPLAINTS)
    assert deliver(desk, complaint, "INBOX").new_ticket
    received = mail_to(desk.new_mail(), MEHMET)
    assert sender(received) == ("Acme Şikayet", COMPLAINTS)
    plain = client_mail(f"Jane Roe <{JANE}>", "Hello", "Hi there.", to="someone-else@elsewhere.example")
    assert deliver(desk, plain, "INBOX").new_ticket  # written to no mailbox of ours (a Bcc): the helpdesk's
    assert sender(mail_to(desk.new_mail(), JANE)) == ("Acme Support", "support@acme.example")


def test_an_agent_opens_a_ticket_as_the_mailbox_they_write_to(desk: Desk, tmp_path: Path) -> None:
    """[customer=…] written to the complaints mailbox's signed address: the customer hears from complaints@."""
    two_identities(desk.site, tmp_path)
    deliver(desk, client_mail(f"Mehmet Öz <{MEHMET}>", "Kırık ürün", "Ürün kırık geldi.", to=COMPLAINTS),
            "complaints")
    notification = mail_to(desk.new_mail(), ALI)
    reply_base = parseaddr(str(notification.message["Reply-To"]))[1]
    assert reply_base.endswith("@acme-sikayet.example")
    help_mail = (f"From: Ali Veli <{ALI}>\r\nTo: {reply_base}\r\nSubject: [help]\r\n"
                 f"Message-ID: <help-1@acme.example>\r\n\r\nhelp\r\n").encode()
    deliver(desk, help_mail, "complaints")
    help_reply = mail_to(desk.new_mail(), ALI)
    new_ticket_address = next(line.split()[-1] for line in body_of(help_reply).splitlines() if "+0." in line)
    opened = (f"From: Ali Veli <{ALI}>\r\nTo: {new_ticket_address}\r\n"
              f"Subject: Telefonla arayan müşteri [customer={JANE}]\r\nMessage-ID: <phone-1@acme.example>\r\n\r\n"
              "Müşteri telefonla aradı: sipariş gecikti.\r\n").encode()
    assert new_ticket_address.startswith("sikayet+0.") and new_ticket_address.endswith("@acme-sikayet.example")
    outcome = deliver(desk, opened, "complaints")
    assert outcome.new_ticket, outcome
    detail = json.loads(desk.site.cli("tickets", "show", str(outcome.ticket_number), "--json").stdout)
    assert detail["mailbox"] == "complaints"
    to_jane = [m for m in desk.new_mail() if JANE in m.envelope_to]
    assert to_jane and all(sender(m)[1] == COMPLAINTS for m in to_jane)
