"""The fast wire form of an outbox row says the same as the full email package's, and never carries CR/LF."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketd.daemon.outgoing import wire
from ticketd.daemon.outgoing.outbox import build_message, format_address
from ticketd.storage.models import Outbox


def row(name: str = "Şener Öztürk", subject: str = "[ACME #7] Talebiniz alındı", body: str = "Merhaba,\nçok iyi\n",
        cc: str = "", reply_to: str = "support+7.abc@acme.example") -> Outbox:
    return Outbox(
        kind="received", to_addrs=format_address(name, "sener@ozturk.example"), cc_addrs=cc, subject=subject,
        body=body, message_id="<ticketd.1@acme.example>",
        headers={"Date": "Mon, 23 Nov 2026 10:00:00 +0000", "In-Reply-To": "<a@b>", "References": "<x@y> <a@b>",
                 "Reply-To": format_address("Acme Support", reply_to),
                 "From": format_address("Ali Veli via Acme Destek", "support@acme.example"),
                 "Auto-Submitted": "auto-replied"})


def fast(r: Outbox) -> bytes:
    return wire.wire_bytes(wire.headers_of(r.to_addrs, r.cc_addrs, r.subject, r.message_id, r.headers), r.body)


def same_meaning(r: Outbox) -> None:
    ours = message_from_bytes(fast(r), policy=policy.default)
    theirs = message_from_bytes(build_message(r).as_bytes(), policy=policy.default)
    for name in ("From", "To", "Cc", "Subject", "Message-ID", "Reply-To", "In-Reply-To", "References", "Date",
                 "Auto-Submitted"):
        assert str(ours.get(name, "")) == str(theirs.get(name, "")), name
    assert ours.get_content() == theirs.get_content()
    assert ours.get_content_type() == "text/plain" and ours.get_content_charset() == "utf-8"


def test_turkish_names_subject_and_body_read_the_same() -> None:
    same_meaning(row())
    people = [("Çiğdem, Y.", "c@x.example"), ("", "d@x.example")]
    same_meaning(row(cc=", ".join(format_address(n, a) for n, a in people)))
    same_meaning(row(name="Plain Name", subject="A long subject " * 12))


def test_lines_on_the_wire_are_crlf_and_short() -> None:
    raw = fast(row(subject="Uzun konu " * 30, body="x" * 300 + "\n" + "ş" * 200 + "\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78


def test_a_non_ascii_address_needs_the_full_composer() -> None:
    r = row()
    r.to_addrs = "Şener <şener@örnek.example>"
    with pytest.raises((wire.NeedsFullComposer, UnicodeError)):
        fast(r)


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=40), subject=st.text(max_size=200), body=st.text(max_size=300))
def test_no_value_can_start_a_header_of_its_own(name: str, subject: str, body: str) -> None:
    r = row(name=name.replace("\x00", ""), subject=subject, body=body)
    head = fast(r).split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]
    assert names == ["From", "To", "Subject", "Message-ID", "Date", "In-Reply-To", "References", "Reply-To",
                     "Auto-Submitted", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
