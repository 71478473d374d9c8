"""Parsing real .eml files: decoded headers and bodies, attachments, subjects and file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.parsers.message import header_message_id, message_id_hash, parse_message, sanitize_filename
from ticketd.parsers.subject import parse_subject, strip_prefixes

DATA = Path(__file__).parents[1] / "data"


def test_rfc2047_utf8_subject_and_turkish_name() -> None:
    mail = parse_message((DATA / "known-customer-rfc2047-subject.eml").read_bytes())
    assert mail.subject == "Modem bağlantısı sürekli kopuyor"
    assert mail.sender is not None
    assert (mail.sender.name, mail.sender.email) == ("Çiğdem Yılmaz", "cigdem.yilmaz@musteri.com.tr")
    assert "Işıklar" in mail.text
    assert mail.message_id == "<t-1.cigdem@musteri.com.tr>"
    assert mail.date is not None and mail.date.utcoffset() is not None


def test_iso_8859_9_body_and_header() -> None:
    mail = parse_message((DATA / "iso-8859-9-body.eml").read_bytes())
    assert mail.subject == "Kablo değişimi talebi"
    assert mail.sender is not None and mail.sender.name == "Şener Öztürk"
    assert "Üst kattaki ofisin kabloları değiştirilmeli. İş yerimiz çarşamba günü" in mail.text


def test_attachment_is_decoded_with_hash() -> None:
    path = DATA / "corpus" / "django-helpdesk" / "blank-body-with-attachment.eml"
    mail = parse_message(path.read_bytes())
    assert len(mail.attachments) == 1
    att = mail.attachments[0]
    assert (att.filename, att.content_type) == ("baf", "text/plain")
    assert att.payload.startswith(b"You shouldn't see th") and len(att.payload) == 24
    assert att.sha256 == __import__("hashlib").sha256(att.payload).hexdigest()


def test_header_message_id_and_hash() -> None:
    raw = (DATA / "unknown-sender.eml").read_bytes()
    assert header_message_id(raw) == "<t-2.jane@example.org>"
    assert message_id_hash("<A@B>", b"x") == message_id_hash("<a@b>", b"y")  # same mail, other bytes
    assert message_id_hash(None, b"x") != message_id_hash(None, b"y")  # no Message-ID: the bytes decide
    assert header_message_id(b"Subject: none\r\n\r\nbody") is None


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\x\\evil.exe", "evil.exe"),
    ("a\r\nb.txt", "a_b.txt"),
    ("...", "attachment"),
    (None, "attachment"),
    ("rapor ğüşiöç.pdf", "rapor ğüşiöç.pdf"),
    ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
])
def test_sanitize_filename(name: str | None, expected: str) -> None:
    assert sanitize_filename(name) == expected


@pytest.mark.parametrize(("subject", "number", "title"), [
    ("Re: [ACME #1042] Modem keeps dropping", 1042, "Modem keeps dropping"),
    ("AW: RE: Ynt: Cvp: [acme #7] Fatura", 7, "Fatura"),
    ("İlt: SV: WG: TR: Fwd: Hello", None, "Hello"),
    ("[EXTERNAL] Re: help", None, "[EXTERNAL] Re: help"),
    ("[OTHER #5] not ours", None, "[OTHER #5] not ours"),
    ("", None, "(no subject)"),
])
def test_parse_subject(subject: str, number: int | None, title: str) -> None:
    info = parse_subject(subject, "ACME")
    assert (info.ticket_number, info.title) == (number, title)


def test_strip_prefixes_keeps_words_that_only_look_like_prefixes() -> None:
    assert strip_prefixes("Reset password") == "Reset password"
    assert strip_prefixes("Tracking number") == "Tracking number"


def test_raw_8bit_headers_are_decoded() -> None:
    utf8 = parse_message("From: Öz Ltd <a@b.example>\r\nSubject: Re: [assign=Ayşe Demir]\r\n\r\nx".encode())
    assert utf8.subject == "Re: [assign=Ayşe Demir]" and utf8.sender is not None and utf8.sender.name == "Öz Ltd"
    legacy = parse_message(b"From: a@b.example\r\nSubject: " + "Şikayet".encode("cp1254") + b"\r\n\r\nx")
    assert legacy.subject == "Şikayet"


def test_nul_characters_are_marked_replaced_everywhere() -> None:
    """PostgreSQL's text cannot hold NUL: a mail carrying one in a header, an encoded word or a body is stored
    with U+FFFD in its place, on both backends alike."""
    raw = (b"From: Ali\x00 =?utf-8?q?Veli=00?= <ali@example.org>\r\nTo: support@acme.example\r\n"
           b"Subject: Modem\x00 =?utf-8?q?bozuk=00?=\r\nMessage-ID: <a\x00b@example.org>\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nMerhaba\x00 d\xc3\xbcnya\r\n")
    mail = parse_message(raw)
    assert mail.sender is not None and mail.sender.name == "Ali\ufffd Veli\ufffd"
    assert mail.subject == "Modem\ufffd bozuk\ufffd"
    assert mail.message_id == header_message_id(raw) == "<a\ufffdb@example.org>"
    assert mail.text == "Merhaba\ufffd dünya"
    assert not any("\x00" in v for v in mail.headers.values())
