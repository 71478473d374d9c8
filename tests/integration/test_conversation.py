"""Conversations by email: agents answer from their mail client, steer with subject commands, and only the
ticket's people can write to it. The main flow runs through real Dovecot, `ticketd run --once` and aiosmtpd."""

from __future__ import annotations

import json
from email.utils import parseaddr

import pytest

from conftest import DATA, Desk, Mailbox, Site, body_of, decode, mail_to, reply_to
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

CUSTOMER = "cigdem.yilmaz@musteri.com.tr"
ALI = "ali@acme.example"


def run_once(site: Site) -> None:
    proc = site.cli("run", "--once")
    assert proc.returncode == 0, decode(proc)


def test_full_conversation_over_imap(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    csv = live_site.dir / "customers.csv"
    csv.write_text(f"email,name,company,language\n{CUSTOMER},Çiğdem Yılmaz,Müşteri A.Ş.,tr\n", encoding="utf-8")
    assert live_site.cli("customers", "import", str(csv)).returncode == 0
    assert live_site.cli("agents", "add", ALI, "--name", "Ali Veli").returncode == 0
    assert live_site.cli("agents", "add", "ayse@acme.example", "--name", "Ayşe Demir",
                         "--role", "manager").returncode == 0
    seen = 0

    def new_mail() -> list:
        nonlocal seen
        mails, seen = smtp_sink.received[seen:], len(smtp_sink.received)
        return mails

    mailbox.append((DATA / "known-customer-rfc2047-subject.eml").read_bytes())
    run_once(live_site)
    mails = new_mail()
    assert sorted(r for m in mails for r in m.envelope_to) == sorted([CUSTOMER, ALI, "ayse@acme.example"])
    notification = mail_to(mails, ALI)
    assert "Modem bağlantısı sürekli kopuyor" in notification.message["Subject"]
    assert "Işıklar\nyanıp sönüyor" in body_of(notification).replace("\r\n", "\n")
    assert "Müşteri A.Ş." in body_of(notification)

    # The agent takes it and answers in the same mail; the quoted notification must not reach the customer.
    mailbox.append(reply_to(notification, f"Ali Veli <{ALI}>", "Merhaba,\nModemi yeniden başlatır mısınız?\n\nAli",
                            subject_suffix="[take]"))
    run_once(live_site)
    mails = new_mail()
    assert len(mails) == 2 and all(m.envelope_to == [CUSTOMER] for m in mails)
    assigned = next(m for m in mails if "atandı" in m.message["Subject"])
    assert "Ali Veli" in body_of(assigned)
    relay = next(m for m in mails if m is not assigned)
    assert relay.message["From"].addresses[0].display_name == "Ali Veli via Acme Support"
    assert relay.message["From"].addresses[0].addr_spec == "support@acme.example"
    assert "Modemi yeniden başlatır mısınız?" in body_of(relay)
    assert "New ticket" not in body_of(relay) and "Işıklar" not in body_of(relay) and "[take]" not in body_of(relay)
    assert relay.message["In-Reply-To"] == "<t-1.cigdem@musteri.com.tr>"
    assert "Auto-Submitted" not in relay.message  # a person's answer, not an automatic one

    # The customer answers the agent: the assignee gets just the new text.
    mailbox.append(reply_to(relay, f"Çiğdem Yılmaz <{CUSTOMER}>", "Yeniden başlattım, şimdi çalışıyor."))
    run_once(live_site)
    [update] = new_mail()
    assert update.envelope_to == [ALI]
    assert "Yeniden başlattım, şimdi çalışıyor." in body_of(update)
    assert "Modemi yeniden başlatır mısınız?" not in body_of(update)

    mailbox.append(reply_to(update, f"Ali Veli <{ALI}>", "", subject_suffix="[status=resolved]", quote=True))
    run_once(live_site)
    detail = json.loads(live_site.cli("tickets", "show", "1", "--json").stdout)
    assert detail["state"] == "resolved" and detail["assignee"] == ALI
    assert [(m["direction"], m["kind"], m["from"]) for m in detail["messages"]] == [
        ("in", "customer", CUSTOMER), ("out", "agent-reply", ALI), ("in", "customer", CUSTOMER)]
    assert detail["messages"][2]["text"] == "Yeniden başlattım, şimdi çalışıyor."
    changes = [(e["actor"], e["what"], e["old"], e["new"]) for e in detail["events"] if e["what"] != "mail-queued"]
    assert changes == [
        (CUSTOMER, "created", None, "new"),
        ("ticketd", "contract", None, "out of contract (none)"),  # the imported company has no contract date
        (ALI, "assignee", None, ALI),
        (ALI, "state", "new", "open"),
        (CUSTOMER, "customer-reply", None, None),
        (ALI, "state", "open", "resolved"),
    ]
    assert all(e["message_id"] for e in detail["events"])  # every change says through which mail


def test_forged_agent_command_changes_nothing(desk: Desk) -> None:
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    notification = mail_to(desk.new_mail(), ALI)
    forged = reply_to(notification, f"Ali Veli <{ALI}>", "closing", subject_suffix="[status=closed]",
                      to="support@acme.example")  # right From, but not the address signed for Ali
    outcome = desk.deliver(forged)
    assert outcome.status == "dropped" and "unauthenticated" in outcome.reason
    ticket = desk.ticket(1)
    assert ticket["state"] == "new" and len(ticket["messages"]) == 1
    assert any(e["what"] == "security:unauthenticated-agent-mail" for e in ticket["events"])
    [alert] = desk.new_mail()
    assert alert.envelope_to == [ALI] and "refused" in alert.message["Subject"]
    # The same reply to the address signed for someone else (Ayşe's notification) does not pass either.
    desk.deliver((DATA / "iso-8859-9-body.eml").read_bytes())
    ayse_notification = mail_to(desk.new_mail(), "ayse@acme.example")
    outcome = desk.deliver(reply_to(ayse_notification, f"Ali Veli <{ALI}>", "x", subject_suffix="[close]"))
    assert outcome.status == "dropped" and desk.ticket(2)["state"] == "new"


def test_stranger_with_a_copied_tag_gets_a_new_ticket(desk: Desk) -> None:
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    desk.new_mail()
    stranger = (b"From: Eve <eve@evil.example>\r\nTo: support@acme.example\r\n"
                b"Subject: Re: [ACME #1] Question about my invoice\r\nMessage-ID: <eve-1@evil.example>\r\n"
                b"In-Reply-To: <t-2.jane@example.org>\r\n\r\nPlease send me the invoice.\r\n")
    outcome = desk.deliver(stranger)
    assert outcome.new_ticket and outcome.ticket_number == 2
    assert len(desk.ticket(1)["messages"]) == 1
    assert any(e["what"] == "linked" and e["new"] == "#1" for e in desk.ticket(2)["events"])


def test_reply_all_from_a_cc_colleague_joins_the_ticket(desk: Desk) -> None:
    original = (b"From: Jane Doe <jane@example.org>\r\nTo: support@acme.example\r\nCc: Bob <bob@partner.example>\r\n"
                b"Subject: Printer on fire\r\nMessage-ID: <cc-1@example.org>\r\n\r\nIt is on fire.\r\n")
    desk.deliver(original)
    desk.new_mail()
    reply_all = (b"From: Bob <bob@partner.example>\r\nTo: Jane Doe <jane@example.org>, support@acme.example\r\n"
                 b"Subject: Re: Printer on fire\r\nMessage-ID: <cc-2@partner.example>\r\n"
                 b"In-Reply-To: <cc-1@example.org>\r\nReferences: <cc-1@example.org>\r\n\r\n"
                 b"Confirmed, it is still burning.\r\n\r\n> It is on fire.\r\n")
    outcome = desk.deliver(reply_all)
    assert (outcome.status, outcome.ticket_number, outcome.new_ticket) == ("done", 1, False)
    messages = desk.ticket(1)["messages"]
    assert [m["from"] for m in messages] == ["jane@example.org", "bob@partner.example"]
    assert messages[1]["text"] == "Confirmed, it is still burning."
    # The agent's answer goes to the requester with the colleague on CC.
    notification = mail_to(desk.new_mail(), ALI)
    desk.deliver(reply_to(notification, f"Ali Veli <{ALI}>", "We are sending a technician."))
    [relay] = desk.new_mail()
    assert relay.envelope_to == ["jane@example.org", "bob@partner.example"]


def test_help_reply_is_generated_from_the_command_table(desk: Desk) -> None:
    from ticketd.rules.commands import COMMANDS

    desk.deliver(f"From: {ALI}\r\nTo: support@acme.example\r\nSubject: help\r\nMessage-ID: <h@a>\r\n\r\n".encode())
    [help_mail] = desk.new_mail()
    text = body_of(help_mail)
    assert help_mail.envelope_to == [ALI]
    for spec in COMMANDS.values():
        assert spec.syntax in text and spec.help in text
    address = next(line.strip() for line in text.splitlines() if line.strip().startswith("support+0."))
    assert parseaddr(address)[1].endswith("@acme.example")


def test_inline_image_of_the_quoted_mail_is_dropped_new_one_kept(desk: Desk) -> None:
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    ack = mail_to(desk.new_mail(), "jane@example.org")
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    reply = (
        f"From: Jane Doe <jane@example.org>\r\nTo: {ack.message['Reply-To']}\r\nSubject: Re: {ack.message['Subject']}"
        f"\r\nMessage-ID: <img-1@example.org>\r\nIn-Reply-To: {ack.message['Message-ID']}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/related; boundary="R"\r\n\r\n--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n'
        '<p>Here is the screen <img src="cid:screen@jane"></p><div class="gmail_quote">On Mon wrote:'
        '<blockquote><img src="cid:logo@acme"> Your request has been received</blockquote></div>\r\n'
        f"--R\r\nContent-Type: image/png\r\nContent-ID: <screen@jane>\r\nContent-Disposition: inline; "
        f"filename=screen.png\r\nContent-Transfer-Encoding: base64\r\n\r\n{png}\r\n"
        f"--R\r\nContent-Type: image/png\r\nContent-ID: <logo@acme>\r\nContent-Disposition: inline; "
        f"filename=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\n{png}\r\n--R--\r\n"
    ).encode()
    desk.deliver(reply)
    message = desk.ticket(1)["messages"][-1]
    assert [a["filename"] for a in message["attachments"]] == ["screen.png"]
    assert "Here is the screen" in message["text"] and "Your request has been received" not in message["text"]
