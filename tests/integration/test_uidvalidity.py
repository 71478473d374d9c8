"""A rebuilt mailbox (new UIDVALIDITY: every UID means something else now) is rescanned, and the mail it still
holds is recognised by its Message-ID: handled once, not twice. The same mail reaching two of our addresses
is one ticket too."""

from __future__ import annotations

import json

import pytest

from conftest import DATA, Mailbox, Site, decode
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration
FOLDER = "Support"


def uidvalidity(mailbox: Mailbox) -> int:
    c = mailbox.client()
    try:
        return int(c.select_folder(FOLDER, readonly=True)[b"UIDVALIDITY"])
    finally:
        c.logout()


def rebuild_folder(mailbox: Mailbox, *raws: bytes) -> None:
    """What a restored backup or a migrated server does: the folder is new, the mail in it is not."""
    c = mailbox.client()
    try:
        c.delete_folder(FOLDER)
        c.create_folder(FOLDER)
        for raw in raws:
            c.append(FOLDER, raw)
    finally:
        c.logout()


def test_a_uidvalidity_change_rescans_and_handles_each_mail_once(live_site: Site, mailbox: Mailbox,
                                                                 smtp_sink: SmtpSink) -> None:
    live_site.sections["imap"]["folder"] = FOLDER
    first = (DATA / "unknown-sender.eml").read_bytes()
    second = (DATA / "iso-8859-9-body.eml").read_bytes()
    c = mailbox.client()
    c.create_folder(FOLDER)
    c.logout()
    mailbox.append(first, FOLDER)
    before = uidvalidity(mailbox)
    assert live_site.cli("run", "--once").returncode == 0

    rebuild_folder(mailbox, first, second)  # the old mail is back under new UIDs, next to a new one
    assert uidvalidity(mailbox) != before
    proc = live_site.cli("run", "--once")
    _, err = decode(proc)
    assert proc.returncode == 0, err
    assert '"imap.uidvalidity_changed"' in err

    rows = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert [r["status"] for r in rows] == ["done", "dropped", "done"]
    assert rows[1]["reason"] == f"duplicate of inbound #{rows[0]['id']}"
    tickets = json.loads(live_site.cli("tickets", "list", "--json").stdout)
    assert len(tickets) == 2
    assert sorted(m.envelope_to[0] for m in smtp_sink.received) == ["jane@example.org",
                                                                    "sener@ozturk-insaat.com.tr"]
    assert mailbox.count(FOLDER) == 0


def test_the_same_mail_to_two_of_our_addresses_is_one_ticket(live_site: Site, mailbox: Mailbox,
                                                            smtp_sink: SmtpSink) -> None:
    """Sent to support@ and sales@, both delivered into the folder we read (or forwarded into it)."""
    raw = (DATA / "unknown-sender.eml").read_bytes()
    mailbox.append(b"Delivered-To: support@acme.example\r\n" + raw)
    mailbox.append(b"Delivered-To: sales@acme.example\r\n" + raw)
    assert live_site.cli("run", "--once").returncode == 0
    rows = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert [r["status"] for r in rows] == ["done", "dropped"]
    assert len(json.loads(live_site.cli("tickets", "list", "--json").stdout)) == 1
    assert len(smtp_sink.received) == 1
