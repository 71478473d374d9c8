"""End to end through a real Postfix (Debian's, a private instance on loopback) delivering to the running daemon
over LMTP, with the transport entries of deploy/postfix/transport: delivered, bounced, and held while ticketd is
down, then delivered once."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_lmtp import CUSTOMER, acks_to, inbound_rows, listening, lmtp_site

from conftest import Site, await_mail, client_mail, start_daemon, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink, free_port

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[2] / "deploy" / "postfix" / "transport"


@pytest.fixture
def postfix(site: Site, smtp_sink: SmtpSink) -> Iterator[Any]:
    from servers.postfix import postfix_available, start_postfix

    if not postfix_available():
        if os.environ.get("CI"):
            pytest.fail("Postfix is not installed (or we are not root); `make test` installs it (apt-get install "
                        "postfix)")
        pytest.skip("Postfix is not installed, or the tests do not run as root (its master starts as root)")
    port = free_port()
    lmtp_site(site, smtp_sink, listen=f"127.0.0.1:{port}")
    entries = [line for line in RECIPE.read_text().splitlines() if line and not line.startswith("#")]
    assert entries and all("lmtp:inet:127.0.0.1:8024" in line for line in entries), entries
    # The recipe's entries pointed at this test's listener; the whole domain after them, so that an unknown
    # address there meets ticketd's refusal (a site whose domain is the helpdesk's alone).
    transport = "".join(line.replace("127.0.0.1:8024", f"127.0.0.1:{port}") + "\n" for line in entries)
    server = start_postfix(transport + f"acme.example lmtp:inet:127.0.0.1:{port}\n")
    yield server
    server.stop()


def queue_id(postfix: Any, message_id: str) -> str:
    """The queue id Postfix logged for the mail with this Message-ID."""
    found = re.search(r"postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=" + re.escape(message_id), postfix.log())
    assert found, postfix.log_tail()
    return found.group(1)


def delivery_lines(postfix: Any, qid: str) -> list[str]:
    return [line for line in postfix.log().splitlines() if f" {qid}: to=<" in line]


def test_postfix_delivers_to_ticketd_over_lmtp_and_bounces_a_stranger(
        site: Site, smtp_sink: SmtpSink, postfix: Any) -> None:
    daemon = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), daemon)
        mail = client_mail(f"Zeynep Kaya <{CUSTOMER}>", "Sipariş gecikti", "Siparişim bir haftadır gelmedi.",
                           files=[("siparis.pdf", "application/pdf", b"%PDF-1.4 siparis")])
        assert postfix.send(CUSTOMER, ["support@acme.example"], mail) == {}
        await_mail(smtp_sink, daemon, 30, "no acknowledgment for the mail Postfix delivered")
        qid = queue_id(postfix, re.search(rb"Message-ID: (<[^>]+>)", mail).group(1).decode())  # type: ignore[union-attr]
        wait_for("Postfix's delivery logged", lambda: bool(delivery_lines(postfix, qid)), daemon)
        [line] = delivery_lines(postfix, qid)
        assert "relay=127.0.0.1[127.0.0.1]" in line and "status=sent" in line and "stored as 1" in line, line
        [row] = inbound_rows(site)
        assert (row.mailbox, row.recipients) == ("lmtp", "support@acme.example")
        assert len(acks_to(smtp_sink, CUSTOMER)) == 1
        wait_for("Postfix's queue empty", lambda: postfix.queue() == [], daemon)

        stranger = client_mail(CUSTOMER, "Satış", "Fiyat listesi?", to="sales@acme.example")
        assert postfix.send(CUSTOMER, ["sales@acme.example"], stranger) == {}  # Postfix takes it, then bounces
        qid = queue_id(postfix, re.search(rb"Message-ID: (<[^>]+>)", stranger).group(1).decode())  # type: ignore[union-attr]
        wait_for("the bounce", lambda: any("status=bounced" in x for x in delivery_lines(postfix, qid)), daemon)
        [line] = delivery_lines(postfix, qid)
        assert "550 5.1.1" in line and "sales@acme.example" in line, line
        assert len(inbound_rows(site)) == 1  # nothing stored for it
    finally:
        stop_daemon(daemon)


def test_postfix_keeps_the_mail_while_ticketd_is_down_and_it_is_processed_once_after(
        site: Site, smtp_sink: SmtpSink, postfix: Any) -> None:
    site.sections["mailboxes"] = [{"name": "support", "address": "support@acme.example"},
                                  {"name": "complaints", "address": "complaints@acme.example"}]
    mail = client_mail(CUSTOMER, "Fatura itirazı", "Bu ayki fatura yanlış.", to="complaints@acme.example")
    assert postfix.send(CUSTOMER, ["complaints@acme.example"], mail) == {}
    qid = queue_id(postfix, re.search(rb"Message-ID: (<[^>]+>)", mail).group(1).decode())  # type: ignore[union-attr]

    def deferred() -> bool:
        return any("status=deferred" in x for x in delivery_lines(postfix, qid))

    deadline = time.monotonic() + 30
    while not deferred():
        assert time.monotonic() < deadline, postfix.log_tail()
        time.sleep(0.2)
    assert [entry["queue_id"] for entry in postfix.queue()] == [qid]
    assert inbound_rows(site) == []

    daemon = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), daemon)
        postfix.flush()
        await_mail(smtp_sink, daemon, 30, "no acknowledgment after ticketd came back")
        wait_for("the queue empty", lambda: postfix.queue() == [], daemon)
        sent = [x for x in delivery_lines(postfix, qid) if "status=sent" in x]
        assert len(sent) == 1, delivery_lines(postfix, qid)
        wait_for("processed", lambda: [r.status for r in inbound_rows(site)] == ["done"], daemon)
        assert [(r.mailbox, r.recipients) for r in inbound_rows(site)] == [("complaints", "complaints@acme.example")]
        assert len(acks_to(smtp_sink, CUSTOMER)) == 1
    finally:
        stop_daemon(daemon)
