"""Mail in both directions as people really send it: files and inline images travel (within a budget), every mail
is in the customer's language, and the storm caps hold back only robots' answers, never an agent's work.
Real SQLite and PostgreSQL, real aiosmtpd; mail enters as through `ticketd deliver`."""

from __future__ import annotations

import hashlib
import secrets
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest

from conftest import DATA, Desk, body_of, client_mail, mail_to, reply_to

pytestmark = pytest.mark.integration

ALI, AYSE, CIGDEM, JANE = "ali@acme.example", "ayse@acme.example", "cigdem.yilmaz@musteri.com.tr", "jane@example.org"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + secrets.token_bytes(2000)
PDF = b"%PDF-1.4\n" + secrets.token_bytes(30_000) + b"\n%%EOF\n"


def parts(mail: Any) -> dict[str, tuple[str, str | None, bytes]]:
    """File name → (content type, disposition, bytes) of every non-text part of a received mail."""
    found = {}
    for part in mail.message.walk():
        if part.is_multipart() or part.get_content_maintype() == "text":
            continue
        found[part.get_filename()] = (part.get_content_type(), part.get_content_disposition(),
                                      part.get_payload(decode=True))
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- 1. attachments both ways -----------------------------------------------------------------------------------

def test_the_customers_screenshot_and_file_reach_the_agent_as_real_parts(desk: Desk) -> None:
    desk.deliver(client_mail(f"Çiğdem Yılmaz <{CIGDEM}>", "Modem ışığı kırmızı", "Ekran görüntüsü ekte.",
                               image=PNG, files=[("fatura.pdf", "application/pdf", PDF)]))
    notification = mail_to(desk.new_mail(), ALI)
    found = parts(notification)
    assert sha(found["fatura.pdf"][2]) == sha(PDF) and found["fatura.pdf"][1] == "attachment"
    assert sha(found["ekran.png"][2]) == sha(PNG) and found["ekran.png"][1] == "inline"  # stays inline
    html = notification.message.get_body(("html",)).get_content()
    [image] = [p for p in notification.message.walk() if p.get_content_type() == "image/png"]
    assert f"cid:{image['Content-ID'].strip('<>')}" in html
    assert "Ekran görüntüsü ekte." in html and "<script" not in html  # our text, not the sender's HTML
    assert "Attached: ekran.png (2.0 KiB), fatura.pdf (29.3 KiB)" in body_of(notification)


def test_the_agents_pdf_reaches_the_customer_and_the_quoted_screenshot_does_not(desk: Desk) -> None:
    desk.deliver(client_mail(f"Jane Roe <{JANE}>", "Printer jam", "See the picture.", image=PNG))
    notification = mail_to(desk.new_mail(), ALI)
    quoted_cid = next(p for p in notification.message.walk() if p.get_content_type() == "image/png")["Content-ID"]
    reply = EmailMessage()
    reply["From"], reply["To"] = f"Ali Veli <{ALI}>", notification.message["Reply-To"]
    reply["Subject"] = "Re: " + notification.message["Subject"]
    reply["Message-ID"], reply["In-Reply-To"] = make_msgid(domain="acme.example"), notification.message["Message-ID"]
    reply.set_content("The guide is attached.\n\n> See the picture.\n")
    reply.add_alternative(f"<p>The guide is attached.</p><blockquote><img src=\"cid:{quoted_cid.strip('<>')}\">"
                          "</blockquote>", subtype="html")
    reply.get_payload()[1].add_related(PNG, "image", "png", cid=quoted_cid, filename="ekran.png")  # the quote's
    reply.add_attachment(PDF, "application", "pdf", filename="kılavuz.pdf")
    desk.deliver(reply.as_bytes())
    relay = mail_to(desk.new_mail(), JANE)
    found = parts(relay)
    assert list(found) == ["kılavuz.pdf"] and sha(found["kılavuz.pdf"][2]) == sha(PDF)
    assert "Attached: kılavuz.pdf (29.3 KiB)" in body_of(relay)
    message = desk.ticket(1)["messages"][-1]
    assert [a["filename"] for a in message["attachments"]] == ["kılavuz.pdf"]


def test_files_past_the_budget_are_listed_with_the_command_that_fetches_them(desk: Desk) -> None:
    desk.site.sections["limits"] = {"forward_attachments_bytes": 40_000}
    big = b"%PDF-1.4\n" + secrets.token_bytes(60_000)
    desk.deliver(client_mail(f"Jane Roe <{JANE}>", "Logs", "Two files.",
                               files=[("big log.pdf", "application/pdf", big), ("small.pdf", "application/pdf", PDF)]))
    notification = mail_to(desk.new_mail(), ALI)
    assert list(parts(notification)) == ["small.pdf"]
    text = body_of(notification)
    stored = desk.ticket(1)["messages"][0]["attachments"]
    attachment_id = next(a["id"] for a in stored if a["filename"] == "big log.pdf")
    assert "Not attached (over the 39.1 KiB a mail may carry)" in text
    assert f"  big log.pdf (58.6 KiB): ticketd attachments get {attachment_id} -o big_log.pdf" in text
    got = desk.site.cli("attachments", "get", str(attachment_id), "-o", "-")
    assert got.returncode == 0 and got.stdout == big

    reply = EmailMessage()
    reply["From"], reply["To"] = f"Ali Veli <{ALI}>", notification.message["Reply-To"]
    reply["Subject"], reply["Message-ID"] = "Re: " + notification.message["Subject"], make_msgid()
    reply.set_content("Here is the full log.")
    reply.add_attachment(big, "application", "pdf", filename="full.pdf")
    desk.deliver(reply.as_bytes())
    mails = desk.new_mail()
    relay = mail_to(mails, JANE)
    assert parts(relay) == {} and "full.pdf (58.6 KiB)" in body_of(relay) and "ticketd" not in body_of(relay)
    told = mail_to(mails, ALI)
    assert told.message["X-Ticketd-Kind"] == "agent_files_left_out" and "full.pdf (58.6 KiB)" in body_of(told)


# --- 8. every mail in the customer's language ----------------------------------------------------------------------

TURKISH_STRANGER = ("From: Hakan Şahin <hakan@ornek.com.tr>\r\nTo: support@acme.example\r\n"
                    "Subject: =?iso-8859-9?q?Faturamda_hata_var?=\r\nMessage-ID: <tr-1@ornek.com.tr>\r\n"
                    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-9\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + \
    "Merhaba, bu ay faturam iki kat geldi. Yardımcı olur musunuz?\r\n".encode("iso-8859-9")


@pytest.mark.parametrize("with_file", [False, True], ids=["plain-mail", "with-a-file"])  # fast and full paths
def test_a_turkish_stranger_is_answered_in_turkish_and_it_is_remembered(desk: Desk, with_file: bool) -> None:
    raw = TURKISH_STRANGER
    if with_file:
        raw = client_mail("Hakan Şahin <hakan@ornek.com.tr>", "Faturamda hata var",
                            "Merhaba, bu ay faturam iki kat geldi. Yardımcı olur musunuz?",
                            files=[("fatura.pdf", "application/pdf", PDF)])
    desk.deliver(raw)
    mails = desk.new_mail()
    receipt = mail_to(mails, "hakan@ornek.com.tr")
    assert receipt.message["Subject"] == "[ACME #1] Talebiniz alındı: Faturamda hata var"
    assert receipt.message["Content-Language"] == "tr"
    assert mail_to(mails, ALI).message["Content-Language"] == "en"  # agents read the helpdesk's language
    events = [(e["what"], e["new"]) for e in desk.ticket(1)["events"]]
    assert ("language", "tr (learnt from the customer's first mail)") in events
    out = desk.site.cli("customers", "show", "hakan@ornek.com.tr", "--json")
    assert b'"language": "tr"' in out.stdout
    desk.deliver(reply_to(mail_to(mails, ALI), ALI, "Merhaba Hakan Bey, faturanızı düzelttik."))
    relay = mail_to(desk.new_mail(), "hakan@ornek.com.tr")
    assert relay.message["Subject"].startswith("[ACME #1] Ynt:") and relay.message["Content-Language"] == "tr"


def test_an_english_stranger_and_an_unreadable_one_get_the_helpdesks_language(desk: Desk) -> None:
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    receipt = mail_to(desk.new_mail(), JANE)
    assert receipt.message["Content-Language"] == "en"
    assert receipt.message["Subject"].startswith("[ACME #1] Your request has been received")
    desk.deliver(client_mail("Kai <kai@example.de>", "Drucker", "Hallo, der Drucker druckt seit gestern nicht mehr."))
    german = mail_to(desk.new_mail(), "kai@example.de")
    assert german.message["Content-Language"] == "en"  # no German templates: the helpdesk's language
    out = desk.site.cli("customers", "show", "kai@example.de", "--json")
    assert b'"language": null' in out.stdout


# --- 2. who caused a mail decides whether it is capped ------------------------------------------------------------

def test_an_agents_work_is_never_held_back_by_the_storm_caps(desk: Desk) -> None:
    """Five automatic mails to a customer in an hour is the cap; an agent's actions go past it, every one."""
    desk.site.sections["limits"] = {"auto_replies_per_recipient_hour": 2}
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())  # "received": one of Jane's two capped mails
    notification = mail_to(desk.new_mail(), ALI)
    for suffix in ("[take]", "[assign=ayse]", "[take]", "[priority=high]", "[pending]"):
        desk.deliver(reply_to(notification, ALI, "", subject_suffix=suffix))
    desk.deliver(reply_to(notification, ALI, "Here is how to fix it.", subject_suffix="[resolve]"))
    kinds = [m.message["X-Ticketd-Kind"] for m in desk.new_mail() if JANE in m.envelope_to]
    assert "resolved" in kinds
    statuses = desk.site.cli("outbox", "list", "--json").stdout.decode()
    assert '"status": "suppressed"' not in statuses


def test_a_held_back_answer_is_told_to_the_managers_when_there_is_no_admin(desk: Desk) -> None:
    desk.site.sections["limits"] = {"auto_replies_per_recipient_hour": 2}
    for n in range(3):
        desk.deliver(client_mail(f"Jane Roe <{JANE}>", f"Problem number {n}", "It broke again, differently."))
    mails = desk.new_mail()
    assert [m.message["X-Ticketd-Kind"] for m in mails if JANE in m.envelope_to] == ["received", "received"]
    alert = mail_to([m for m in mails if m.message["X-Ticketd-Kind"] == "admin-alert"], AYSE)  # the manager
    assert f"mail held back for {JANE}" in alert.message["Subject"]
    assert "ticketd outbox retry ID" in body_of(alert)
    third = desk.ticket(3)
    assert [e["old"] for e in third["events"] if e["what"] == "mail-suppressed"] == [
        f"storm cap: 2 automatic mails to {JANE} in an hour"]
