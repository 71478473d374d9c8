"""Threading headers we write (issue 14): folded between ids under RFC 5322's 998-character line limit, never
RFC 2047-encoded (an encoded Message-ID threads nothing), and a long References chain keeps its root."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import compat32

from aiosmtplib.email import flatten_message

from ticketd.daemon.outgoing import wire
from ticketd.daemon.outgoing.outbox import build_message, row_headers
from ticketd.storage.models import Outbox

OUTLOOK_ID = "<DM6PR11MB4010A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6E7F@DM6PR11MB4010.namprd11.prod.outlook.com>"
LONGEST = "<" + "a" * (wire.MAX_ID_LENGTH - len("<@x.example>")) + "@x.example>"


def _row(in_reply_to: str, references: str, html: str | None) -> Outbox:
    return Outbox(kind="agent_reply", recipient="jane@example.org", to_addrs="Jane <jane@example.org>", cc_addrs="",
                  subject="Re: [ACME #1] Printer", body="Hello", html=html, message_id="<ticketd.1@acme.example>",
                  headers={"From": "Acme <support@acme.example>", "Date": "Wed, 02 Dec 2026 10:00:00 +0000",
                           "In-Reply-To": in_reply_to, "References": references})


def _both_paths(row: Outbox) -> list[bytes]:
    """The fast composer's bytes and the full one's as aiosmtplib flattens it for sending."""
    return [wire.wire_bytes(row_headers(row), row.body), flatten_message(build_message(row))]


def test_a_long_message_id_goes_out_as_written() -> None:
    row = _row(OUTLOOK_ID, f"<root@example.org> {OUTLOOK_ID}", "<p>Hello</p>")
    for raw in _both_paths(row):
        back = message_from_bytes(raw, policy=compat32)
        assert back["In-Reply-To"].strip() == OUTLOOK_ID, raw[:400]
        assert back["References"].split() == ["<root@example.org>", OUTLOOK_ID]
        assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]


def test_every_header_line_is_under_998_characters() -> None:
    refs = " ".join([LONGEST, *(f"<{i}.{'b' * 300}@x.example>" for i in range(19))])
    row = _row(LONGEST, refs, None)
    for raw in [*_both_paths(row), flatten_message(build_message(_row(LONGEST, refs, "<p>x</p>")))]:
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        assert message_from_bytes(raw, policy=compat32)["In-Reply-To"].strip() == LONGEST


def test_references_keep_the_root_and_the_latest_ids() -> None:
    ids = [f"<{i}@x.example>" for i in range(50)]
    kept = wire.thread_ids([*ids, ids[3], "<" + "c" * 1000 + "@x.example>"])
    assert kept == [ids[0], *ids[-19:]] and len(kept) == wire.MAX_REFERENCES


def test_an_id_too_long_for_any_line_is_left_out() -> None:
    too_long = "<" + "c" * 990 + "@x.example>"
    assert wire.thread_ids(["<root@x.example>", too_long]) == ["<root@x.example>"]
    assert wire.fold_ids("References", f"<a@x.example> {OUTLOOK_ID}").startswith("References: <a@x.example>\r\n ")
