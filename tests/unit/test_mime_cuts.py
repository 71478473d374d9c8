"""Cutting base64 runs out of a mail before parsing it (parsers/mime.py) changes nothing a reader sees.

Every test compares the cut reading with the uncut one. ``big_run_bytes=1`` cuts every run of base64-alphabet
lines, including ordinary words on a line of their own, so the paths that put cut text back (text parts,
forwarded mails, undecodable parts, mail-parser's fallback, bounce readers) are all exercised.
"""

from __future__ import annotations

import base64
import os
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketd.parsers import message
from ticketd.parsers.message import parse_message
from ticketd.parsers.mime import read_mime
from ticketd.rules.bounces import detect_bounce, is_feedback_report

DATA = Path(__file__).parents[1] / "data"
MAILS = sorted(p for p in DATA.rglob("*.eml"))
NEVER = 1 << 62


def test_the_corpus_is_there() -> None:
    assert len(MAILS) > 800


@pytest.mark.parametrize(("big", "at_least"), [(1, 500), (64, 100)])
def test_every_corpus_mail_reads_the_same_cut_or_not(big: int, at_least: int) -> None:
    cut_somewhere = 0
    for path in MAILS:
        raw = path.read_bytes()
        cut, whole = read_mime(raw, big_run_bytes=big), read_mime(raw, big_run_bytes=NEVER)
        assert not whole.runs
        cut_somewhere += bool(cut.runs)
        assert parse_message(cut) == parse_message(whole), path
        assert detect_bounce(cut) == detect_bounce(whole), path
        assert is_feedback_report(cut) == is_feedback_report(whole), path
    assert cut_somewhere >= at_least  # the comparison is not empty: these mails had something cut


def _mail_with(payload: bytes, crlf: bool, forwarded: bool) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "cem@customer.example", "support@acme.example", "Logs"
    msg.set_content("The logs are attached.")
    msg.add_attachment(payload, "application", "octet-stream", filename="server.log.gz")
    if forwarded:
        outer = EmailMessage()
        outer["From"], outer["To"], outer["Subject"] = "ayse@customer.example", "support@acme.example", "Fw: Logs"
        outer.set_content("See the mail below.")
        outer.add_attachment(msg, filename="forwarded.eml")
        msg = outer
    raw = msg.as_bytes()
    return raw.replace(b"\n", b"\r\n") if crlf else raw


def test_a_big_attachment_is_cut_and_decoded_from_the_raw_bytes() -> None:
    payload = os.urandom(300_000)
    raw = _mail_with(payload, crlf=True, forwarded=False)
    mime = read_mime(raw)
    assert len(mime.runs) == 1 and len(mime.cut) < 2000  # the parser never saw the 400 KB of base64
    parsed = parse_message(mime)
    assert [a.payload for a in parsed.attachments] == [payload]
    assert parsed.text == "The logs are attached."


def test_a_forwarded_mail_keeps_its_big_attachment() -> None:
    payload = os.urandom(200_000)
    raw = _mail_with(payload, crlf=False, forwarded=True)
    cut = parse_message(read_mime(raw))
    assert cut == parse_message(read_mime(raw, big_run_bytes=NEVER))
    assert len(cut.attachments) == 1 and base64.b64encode(payload)[:5000] in cut.attachments[0].payload.replace(
        b"\n", b"")


def test_a_sender_cannot_name_a_run_by_writing_a_token() -> None:
    """Tokens are random per mail and never occur in the raw bytes, so text that looks like one stays text."""
    payload = os.urandom(100_000)
    raw = _mail_with(payload, crlf=False, forwarded=False)
    first = read_mime(raw)
    forged = raw.replace(b"The logs are attached.", f"{first.token}-0".encode())
    second = read_mime(forged)
    assert second.token != first.token
    assert parse_message(second).text == f"{first.token}-0"


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 6000), line=st.sampled_from([76, 64, 60]), pad_cut=st.integers(0, 3),
       crlf=st.booleans(), big=st.sampled_from([1, 200, 4096]))
def test_random_base64_bodies_decode_as_the_stdlib_decodes_them(size: int, line: int, pad_cut: int, crlf: bool,
                                                                big: int) -> None:
    """Any length, line width, line ending and broken padding (the stdlib's own repair must still apply)."""
    data = base64.b64encode(os.urandom(size))
    data = data[:len(data) - pad_cut] if pad_cut < len(data) else data
    nl = b"\r\n" if crlf else b"\n"
    body = nl.join(data[i:i + line] for i in range(0, len(data), line))
    raw = nl.join([
        b"From: cem@customer.example", b"Subject: x", b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="b"', b"", b"--b", b"Content-Type: text/plain", b"", b"Hello",
        b"--b", b"Content-Type: application/octet-stream", b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="f.bin"', b"", body, b"--b--", b"",
    ])
    assert parse_message(read_mime(raw, big_run_bytes=big)) == parse_message(read_mime(raw, big_run_bytes=NEVER))


def test_mail_parsers_fallback_reads_the_cut_copy_of_a_big_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the walk finds no body text, mail-parser reads the mail again: a big one without its base64 runs."""
    monkeypatch.setattr(message, "MAILPARSER_MAX_BYTES", 1000)
    payload = os.urandom(100_000)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "cem@customer.example", "support@acme.example", "Logs"
    msg.set_content(b"The server stopped again.", "application", "plain")  # no text/* part for the walk
    msg.add_attachment(payload, "application", "octet-stream", filename="server.log.gz")
    parsed = parse_message(read_mime(msg.as_bytes()))
    assert parsed.text == "The server stopped again."
    assert "body text recovered by mail-parser, without the large base64 parts" in parsed.decode_notes
    assert [a.payload for a in parsed.attachments if a.filename == "server.log.gz"] == [payload]
