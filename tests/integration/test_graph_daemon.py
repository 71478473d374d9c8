"""A Microsoft 365 mailbox read and answered through Graph by the running daemon, beside an SMTP one.

`ticketd run` as the service runs it, against the local Graph and Entra ID (tests/servers/graph_fake.py) and the
real SMTP server: the complaints@ mailbox lives at Microsoft 365 and is read by delta query and answered through
sendMail; the helpdesk's own mail (support@) leaves by SMTP. Throttling and an expired token on the way are
ridden out; nothing is lost."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from conftest import Site, decode, start_daemon, stop_daemon, wait_for
from servers.graph_fake import GraphFake
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

COMPLAINTS = "sikayet@acme-sikayet.example"
ALI = "ali@acme.example"
CUSTOMER = "mehmet@example.net"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphFake]:
    (tmp_path / "graph-fake").mkdir()
    fake = GraphFake(tmp_path / "graph-fake", page_size=2)
    fake.start()
    fake.add_mailbox(COMPLAINTS)
    yield fake
    fake.stop()


def graph_site(site: Site, graph: GraphFake, smtp_sink: SmtpSink) -> None:
    secret = site.dir / "graph-secret"
    secret.write_text("graph-secret-123\n")
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.sections["mailboxes"] = [{
        "name": "complaints", "kind": "graph", "display_name": "Acme Şikayet",
        "defaults": {"type": "complaint"},
        "graph": graph.section(COMPLAINTS, secret, poll_seconds=1)}]
    site.sections["agents"] = [{"email": ALI, "name": "Ali Veli", "role": "agent"}]
    site.upgrade()


def customer_mail(subject: str, text: str, n: int) -> bytes:
    return (f"From: Mehmet Öz <{CUSTOMER}>\r\nTo: {COMPLAINTS}\r\nSubject: {subject}\r\n"
            f"Message-ID: <complaint-{n}@example.net>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0300\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            f"\r\n{text}\r\n").encode()


def sent_mail(graph: GraphFake) -> list[EmailMessage]:
    return [email.message_from_bytes(s.raw, policy=email.policy.default) for s in graph.sent]  # type: ignore[misc]


def show(site: Site, number: int) -> dict[str, Any]:
    proc = site.cli("tickets", "show", str(number), "--json")
    assert proc.returncode == 0, decode(proc)
    return json.loads(proc.stdout)


def test_a_graph_mailbox_is_read_and_answered_through_graph(site: Site, graph: GraphFake,
                                                            smtp_sink: SmtpSink) -> None:
    graph_site(site, graph, smtp_sink)
    for n in range(1, 4):  # two delta pages
        graph.deliver(COMPLAINTS, customer_mail(f"Fatura hatası {n}", f"Fatura {n} iki kez kesildi.", n))
    graph.throttle(4, retry_after=1, on="/messages")  # a 429 storm as the daemon starts listing and downloading
    log = site.dir / "daemon.log"
    proc = start_daemon(site, log=log)
    try:
        wait_for("three acknowledgments through sendMail",
                 lambda: sum(m["X-Ticketd-Kind"] == "received" for m in sent_mail(graph)) == 3, proc, 60, log)
        acks = sorted((m for m in sent_mail(graph) if m["X-Ticketd-Kind"] == "received"),
                      key=lambda m: str(m["In-Reply-To"]))
        for n, ack in enumerate(acks, start=1):
            assert parseaddr(str(ack["From"])) == ("Acme Şikayet", COMPLAINTS)
            assert str(ack["To"]).endswith(f"<{CUSTOMER}>")
            assert ack["In-Reply-To"] == f"<complaint-{n}@example.net>"
            assert f"<complaint-{n}@example.net>" in str(ack["References"])
            assert str(ack["Message-ID"]).endswith("@acme-sikayet.example>")
        assert all(s.mailbox == COMPLAINTS for s in graph.sent)
        assert graph.contents(COMPLAINTS, "inbox") == [] and len(graph.contents(COMPLAINTS, "Processed")) == 3
        assert not smtp_sink.received or all(CUSTOMER not in m.envelope_to for m in smtp_sink.received)

        # The agent's notification came through Graph too, with a reply address on the mailbox's domain; the
        # agent's answer lands in the same Microsoft 365 mailbox (plus-addressing) and is relayed through Graph.
        notification = next(m for m in sent_mail(graph) if m["X-Ticketd-Kind"] == "agent_new"
                            and "Fatura hatası 1" in str(m["Subject"]))
        reply_address = parseaddr(str(notification["Reply-To"]))[1]
        assert reply_address.startswith("sikayet+") and reply_address.endswith("@acme-sikayet.example")
        graph.expire_tokens()  # the daemon's token dies meanwhile: renewed on the 401, nothing else changes
        tokens_before = len(graph.token_requests)
        answer = (f"From: Ali Veli <{ALI}>\r\nTo: {reply_address}\r\nSubject: Re: {notification['Subject']} [take]\r\n"
                  f"Message-ID: <answer-1@acme.example>\r\nIn-Reply-To: {notification['Message-ID']}\r\n"
                  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n\r\nMerhaba, ikinci faturayı iptal ettik.\r\n").encode()
        graph.deliver(COMPLAINTS, answer)
        wait_for("the agent's answer relayed through Graph",
                 lambda: any(m["X-Ticketd-Kind"] == "agent-reply" for m in sent_mail(graph)), proc, 60, log)
        relay = next(m for m in sent_mail(graph) if m["X-Ticketd-Kind"] == "agent-reply")
        assert parseaddr(str(relay["From"])) == ("Ali Veli via Acme Şikayet", COMPLAINTS)
        assert relay["In-Reply-To"] == "<complaint-1@example.net>"
        assert "ikinci faturayı iptal ettik" in relay.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert len(graph.token_requests) > tokens_before  # a new token was fetched after the expiry
        ticket = show(site, int(next(t for t in (1, 2, 3) if show(site, t)["subject"] == "Fatura hatası 1")))
        assert ticket["mailbox"] == "complaints" and ticket["type"] == "complaint" and ticket["assignee"] == ALI
        assert ticket["source"] == "email"
    finally:
        stop_daemon(proc)


def test_graph_failing_mid_run_loses_nothing(site: Site, graph: GraphFake, smtp_sink: SmtpSink) -> None:
    """Graph answers 503 to the downloads and then cuts a delta page: every mail still becomes one ticket."""
    graph_site(site, graph, smtp_sink)
    for n in range(1, 6):
        graph.deliver(COMPLAINTS, customer_mail(f"Şikayet {n}", f"Metin {n}.", n))
    graph.fail_next(503, count=6, on="/$value")
    graph.drop_next("/delta", after_bytes=40, skip=1)
    log = site.dir / "daemon.log"
    proc = start_daemon(site, log=log)
    try:
        wait_for("five acknowledgments", lambda: sum(m["X-Ticketd-Kind"] == "received"
                                                     for m in sent_mail(graph)) == 5, proc, 90, log)
        time.sleep(2)  # a repeat, if there were one, would be sent within a poll or two
        acks = [m["In-Reply-To"] for m in sent_mail(graph) if m["X-Ticketd-Kind"] == "received"]
        assert sorted(acks) == [f"<complaint-{n}@example.net>" for n in range(1, 6)]
        listed = json.loads(site.cli("tickets", "list", "--json").stdout)
        assert len(listed) == 5
        assert len(graph.contents(COMPLAINTS, "Processed")) == 5
    finally:
        stop_daemon(proc)


def test_check_signs_in_to_each_graph_mailbox(site: Site, graph: GraphFake, smtp_sink: SmtpSink) -> None:
    graph_site(site, graph, smtp_sink)
    graph.deliver(COMPLAINTS, customer_mail("Bekleyen", "Bekliyor.", 1))
    proc = site.cli("check")
    out, err = decode(proc)
    assert proc.returncode == 0, (out, err)
    assert f"Graph mailbox {COMPLAINTS}: folder 'Inbox' holds 1 message(s)" in out
    (site.dir / "graph-secret").write_text("a-wrong-secret\n")
    proc = site.cli("check")
    out, err = decode(proc)
    assert proc.returncode != 0
    assert "graph complaints" in out + err and "invalid_client" in out + err, (out, err)
