"""Bidirectional controls in file names (issue 14): "invoice\u202efdp.exe" shows as "invoiceexe.pdf"."""

from __future__ import annotations

import pytest

from ticketd.daemon.outgoing.wire import safe_filename
from ticketd.parsers.message import parse_message, sanitize_filename

CONTROLS = ["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
            "\u200f", "\u061c"]


@pytest.mark.parametrize("control", CONTROLS)
def test_every_bidi_control_is_removed_from_a_file_name(control: str) -> None:
    assert sanitize_filename(f"invoice{control}fdp.exe") == "invoicefdp.exe"
    assert safe_filename(f"invoice{control}fdp.exe") == "invoicefdp.exe"


def test_an_attachment_name_from_the_wire_shows_its_real_extension() -> None:
    raw = (b"From: a@x.example\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe\r\n\r\nMZ\r\n"
           b"--b\r\nContent-Type: application/octet-stream; name=\"=?utf-8?q?report=E2=81=A7gpj.scr?=\"\r\n\r\nMZ\r\n"
           b"--b--\r\n")
    assert [a.filename for a in parse_message(raw).attachments] == ["invoicefdp.exe", "reportgpj.scr"]


def test_letters_of_right_to_left_scripts_stay() -> None:
    assert sanitize_filename("فاتورة.pdf") == "فاتورة.pdf" and sanitize_filename("חשבונית.pdf") == "חשבונית.pdf"
