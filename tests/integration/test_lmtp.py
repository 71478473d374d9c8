"""The mail system delivers to the real daemon over LMTP (Python's ``smtplib.LMTP``, as an MTA would speak it):
what is accepted, what is refused, and that nothing is ever acknowledged that is not stored."""

from __future__ import annotations

import json
import smtplib
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import Site, await_mail, client_mail, log_events, reply_to, start_daemon, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink, free_port
from ticketd.storage import db

pytestmark = pytest.mark.integration

CUSTOMER = "zeynep.kaya@musteri.com.tr"


def lmtp_site(site: Site, smtp_sink: SmtpSink, listen: str | None = None, upgrade: bool = True) -> Site:
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.sections["lmtp"] = {"listen": listen or f"127.0.0.1:{free_port()}"}
    if upgrade:
        site.upgrade()
    return site


def connect(site: Site) -> smtplib.LMTP:
    listen = site.sections["lmtp"]["listen"]
    if listen.startswith("unix:"):
        return smtplib.LMTP(listen.removeprefix("unix:"), timeout=15)
    host, _, port = listen.rpartition(":")
    return smtplib.LMTP(host, int(port), timeout=15)


def listening(site: Site) -> bool:
    try:
        connect(site).quit()
        return True
    except OSError:
        return False


@pytest.fixture
def daemon(site: Site, smtp_sink: SmtpSink) -> Iterator[Any]:
    lmtp_site(site, smtp_sink)
    proc = start_daemon(site)
    wait_for("the LMTP listener", lambda: listening(site), proc)
    yield proc
    stop_daemon(proc)


def inbound_rows(site: Site) -> list[Any]:
    with db.session_scope(site.engine) as session:
        return list(session.execute(sa.text("SELECT id, mailbox, recipients, status FROM inbound ORDER BY id")))


def show(site: Site, number: int) -> dict[str, Any]:
    proc = site.cli("tickets", "show", str(number), "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def acks_to(sink: SmtpSink, address: str) -> list[Any]:
    return [m for m in sink.received if address in m.envelope_to]


def test_mail_to_the_support_address_and_to_a_signed_address_becomes_tickets_and_answers(
        site: Site, smtp_sink: SmtpSink, daemon: Any) -> None:
    first = client_mail(f"Zeynep Kaya <{CUSTOMER}>", "Faturam iki kez kesildi", "Kasım faturası iki kez geldi.",
                        files=[("fatura.pdf", "application/pdf", b"%PDF-1.4 fatura")])
    with connect(site) as client:
        assert client.sendmail(CUSTOMER, ["support@acme.example"], first) == {}
    await_mail(smtp_sink, daemon, 20, "no acknowledgment for the mail delivered over LMTP")
    ack = acks_to(smtp_sink, CUSTOMER)[0]
    assert "[ACME #1]" in ack.message["Subject"]
    signed = ack.message["Reply-To"].addresses[0].addr_spec
    assert signed.startswith("support+") and signed.endswith("@acme.example")
    [row] = inbound_rows(site)
    assert (row.mailbox, row.recipients, row.status) == ("lmtp", "support@acme.example", "done")

    answer = reply_to(ack, CUSTOMER, "Bir sorum daha var: iade ne zaman yapılır?")
    with connect(site) as client:
        assert client.sendmail(CUSTOMER, [signed], answer) == {}
    wait_for("the customer's answer on #1", lambda: len(show(site, 1)["messages"]) == 2, daemon)
    ticket = show(site, 1)
    inbound = [m for m in ticket["messages"] if m["direction"] == "in"]
    assert [m["attachments"][0]["filename"] for m in inbound if m["attachments"]] == ["fatura.pdf"]
    assert "iade ne zaman" in inbound[-1]["text"]
    assert [r.recipients for r in inbound_rows(site)] == ["support@acme.example", signed.lower()]
    assert "#2" not in " ".join(m.message["Subject"] for m in smtp_sink.received)  # no second ticket


def test_an_unknown_recipient_is_refused_with_550_and_nothing_is_stored(
        site: Site, smtp_sink: SmtpSink, daemon: Any) -> None:
    mail = client_mail(CUSTOMER, "Merhaba", "Bu adres yok.", to="sales@acme.example")
    for stranger in ("sales@acme.example", "support+1.abcdef@acme.example", "support@elsewhere.example"):
        with connect(site) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(CUSTOMER, [stranger], mail)
        code, text = refused.value.recipients[stranger]
        assert code == 550 and text.startswith(b"5.1.1"), (stranger, code, text)
    assert inbound_rows(site) == []
    # One good recipient among bad ones: the good one is stored, once, and only it is recorded.
    with connect(site) as client:
        refused_now = client.sendmail(CUSTOMER, ["sales@acme.example", "Support@Acme.example"], mail)
    assert set(refused_now) == {"sales@acme.example"}
    assert [r.recipients for r in inbound_rows(site)] == ["support@acme.example"]


def test_several_recipients_get_one_answer_each_after_data_and_the_mail_is_stored_once(
        site: Site, smtp_sink: SmtpSink, daemon: Any) -> None:
    """RFC 2033 §4.2, read off the wire: smtplib's LMTP reads only the first of the replies."""
    mail = client_mail(CUSTOMER, "İki adrese", "Aynı mail iki adrese.")
    with connect(site) as client:
        client.ehlo()  # LHLO: sendmail says it itself, mail() does not
        client.mail(CUSTOMER)
        assert client.rcpt("support@acme.example")[0] == 250
        assert client.rcpt("nobody@acme.example")[0] == 550
        assert client.rcpt("SUPPORT@acme.example")[0] == 250
        code, _ = client.docmd("DATA")
        assert code == 354
        client.send(mail.replace(b"\n.", b"\n..") + b"\r\n.\r\n")
        replies = [client.getreply(), client.getreply()]
    assert [code for code, _ in replies] == [250, 250], replies
    assert all(b"stored as 1" in text for _, text in replies)
    assert len(inbound_rows(site)) == 1
    await_mail(smtp_sink, daemon, 20, "no acknowledgment")
    wait_for("one ticket", lambda: inbound_rows(site)[0].status == "done", daemon)
    assert len(acks_to(smtp_sink, CUSTOMER)) == 1


def test_mail_over_the_size_limit_is_refused_with_552_once_per_recipient(
        site: Site, smtp_sink: SmtpSink) -> None:
    site.sections["limits"] = {"max_message_bytes": 20_000}
    lmtp_site(site, smtp_sink)
    proc = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), proc)
        big = client_mail(CUSTOMER, "Büyük ek", "Ekte.", files=[("scan.pdf", "application/pdf", b"%" * 40_000)])
        with connect(site) as client:
            client.ehlo()
            client.mail(CUSTOMER)
            client.rcpt("support@acme.example")
            client.rcpt("support@acme.example")
            assert client.docmd("DATA")[0] == 354
            client.send(big + b"\r\n.\r\n")
            replies = [client.getreply(), client.getreply()]
            assert [code for code, _ in replies] == [552, 552], replies
            assert client.noop()[0] == 250  # the dialogue goes on: the client was not left waiting
        assert inbound_rows(site) == []
    finally:
        stop_daemon(proc)


def test_a_store_failure_answers_451_and_the_retry_is_processed_once(
        site: Site, smtp_sink: SmtpSink, backend: str, daemon: Any) -> None:
    """The table the raw bytes go to is gone for a moment (a disk or database failure as the daemon sees it)."""
    mail = client_mail(CUSTOMER, "Modem", "Modem çalışmıyor.")
    with db.session_scope(site.engine) as session:
        session.execute(sa.text("ALTER TABLE inbound_raw RENAME TO inbound_raw_away"))
    with connect(site) as client, pytest.raises(smtplib.SMTPDataError) as failed:
        client.sendmail(CUSTOMER, ["support@acme.example"], mail)
    assert failed.value.smtp_code == 451 and failed.value.smtp_error.startswith(b"4.3.0")
    assert inbound_rows(site) == []
    with db.session_scope(site.engine) as session:
        session.execute(sa.text("ALTER TABLE inbound_raw_away RENAME TO inbound_raw"))
    with connect(site) as client:  # the MTA's retry
        assert client.sendmail(CUSTOMER, ["support@acme.example"], mail) == {}
    await_mail(smtp_sink, daemon, 20, "no acknowledgment after the retry")
    wait_for("the retry processed", lambda: [r.status for r in inbound_rows(site)] == ["done"], daemon)
    assert len(acks_to(smtp_sink, CUSTOMER)) == 1


def test_the_database_stopped_answers_451_and_the_retry_after_it_starts_is_processed_once(
        site: Site, smtp_sink: SmtpSink, backend: str, tmp_path: Path) -> None:
    """Must show 1: PostgreSQL itself stopped (a private cluster, so the other tests' database stays up)."""
    if backend != "postgresql":
        pytest.skip("the server stopped is PostgreSQL's; SQLite's failure is shown by the table taken away")
    from servers.postgres import start_postgres

    server = start_postgres()
    try:
        site.sections["database"] = {"url": server.new_database(migrated=True)}
        lmtp_site(site, smtp_sink, upgrade=False)
        log = tmp_path / "daemon.log"
        proc = start_daemon(site, log=log)
        try:
            wait_for("the LMTP listener", lambda: listening(site), proc, log=log)
            mail = client_mail(CUSTOMER, "Bağlantı kesik", "İnternet yok.")
            server.pause()
            with connect(site) as client, pytest.raises(smtplib.SMTPDataError) as failed:
                client.sendmail(CUSTOMER, ["support@acme.example"], mail)
            assert failed.value.smtp_code == 451
            # The main loop meets the outage too (its turn writes the instance's heartbeat row): it waits, it
            # does not exit, and the listener stays up answering 451.
            wait_for("the loop to see the outage", lambda: log_events(log, "database.unavailable"), proc,
                     timeout=30, log=log)
            with connect(site) as client, pytest.raises(smtplib.SMTPDataError) as failed:
                client.sendmail(CUSTOMER, ["support@acme.example"], mail)
            assert failed.value.smtp_code == 451
            server.start()
            deadline = time.monotonic() + 30
            while True:  # the MTA retries until accepted, as Postfix's queue would
                try:
                    with connect(site) as client:
                        assert client.sendmail(CUSTOMER, ["support@acme.example"], mail) == {}
                    break
                except smtplib.SMTPDataError as exc:
                    assert exc.smtp_code == 451 and time.monotonic() < deadline
                    time.sleep(0.5)
            await_mail(smtp_sink, proc, 30, "no acknowledgment after the database came back")
            wait_for("the retry processed", lambda: [r.status for r in inbound_rows(site)] == ["done"], proc)
            assert len(acks_to(smtp_sink, CUSTOMER)) == 1
            assert proc.poll() is None  # the daemon rode it out
            wait_for("the loop to say the database is back", lambda: log_events(log, "database.back"), proc, log=log)
        finally:
            stop_daemon(proc)
    finally:
        site.close()
        server.stop()


def test_the_same_mail_by_imap_and_by_lmtp_is_one_message(
        live_site: Site, smtp_sink: SmtpSink, mailbox: Any) -> None:
    site = lmtp_site(live_site, smtp_sink)
    proc = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), proc)
        mail = client_mail(CUSTOMER, "İki yoldan", "Aynı mail hem kutuya hem LMTP ile.")
        with connect(site) as client:
            client.sendmail(CUSTOMER, ["support@acme.example"], mail)
        mailbox.append(mail)
        await_mail(smtp_sink, proc, 20, "no acknowledgment")
        wait_for("both copies stored and handled",
                 lambda: [r.status for r in inbound_rows(site)] in (["done", "done"], ["done", "dropped"]), proc)
        assert len(acks_to(smtp_sink, CUSTOMER)) == 1
        assert len([m for m in show(site, 1)["messages"] if m["direction"] == "in"]) == 1
        assert site.cli("tickets", "show", "2").returncode != 0
    finally:
        stop_daemon(proc)


def test_a_unix_socket_left_by_a_killed_daemon_is_replaced_and_only_the_group_may_write(
        site: Site, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path = tmp_path / "run" / "lmtp.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound and never listened on: what a SIGKILLed daemon leaves
    stale.close()
    lmtp_site(site, smtp_sink, listen=f"unix:{path}")
    proc = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), proc)
        assert oct(path.stat().st_mode & 0o777) == "0o660"
        with connect(site) as client:
            assert client.sendmail(CUSTOMER, ["support@acme.example"],
                                   client_mail(CUSTOMER, "Soket", "Unix soketinden.")) == {}
        await_mail(smtp_sink, proc, 20, "no acknowledgment")
        assert CUSTOMER in smtp_sink.received[0].envelope_to
    finally:
        stop_daemon(proc)
    assert not path.exists()  # removed on a clean stop


def test_check_says_whether_the_listener_answers_and_status_shows_the_latency_per_channel(
        site: Site, smtp_sink: SmtpSink) -> None:
    lmtp_site(site, smtp_sink)
    metrics_port = free_port()
    site.sections["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    down = site.cli("check")
    assert down.returncode == 1
    assert b"FAIL lmtp: " in down.stdout and b"is `ticketd run` running?" in down.stdout, down.stdout
    proc = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), proc)
        up = site.cli("check")
        assert b"ok   lmtp: " in up.stdout and b"accepts support@acme.example" in up.stdout, up.stdout
        assert b"ok   imap: not configured (mail arrives over LMTP" in up.stdout, up.stdout
        with connect(site) as client:
            client.sendmail(CUSTOMER, ["support@acme.example"], client_mail(CUSTOMER, "Hız", "Ne kadar sürdü?"))
        site.cli("deliver", input=client_mail("ali.veli@example.org", "By hand", "Delivered from the CLI."))
        wait_for("both acknowledged", lambda: len(smtp_sink.received) == 2, proc)
        status = site.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        latency = json.loads(status.stdout)["acknowledgment_seconds"]
        assert sorted(latency) == ["cli", "lmtp"]
        lmtp = latency["lmtp"]
        assert lmtp["count"] == 1 and 0 <= lmtp["p50"] == lmtp["p95"] == lmtp["max"] < 10
        assert lmtp["buckets"]["+Inf"] == 1 and lmtp["buckets"]["10"] == 1
        text = site.cli("status").stdout.decode()
        assert "arrival to acknowledgment, last 24 h:" in text and "lmtp" in text and " ms" in text, text
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'ticketd_acknowledgment_seconds_count{channel="lmtp"} 1.0' in scraped, scraped
    finally:
        stop_daemon(proc)


def test_without_imap_a_mailbox_is_its_address_and_its_defaults_apply(site: Site, smtp_sink: SmtpSink) -> None:
    """An LMTP-only site with two addresses: mail to complaints@ opens a complaint for the complaints group."""
    site.sections["groups"] = [{"name": "complaints"}]
    site.sections["mailboxes"] = [
        {"name": "support", "address": "support@acme.example"},
        {"name": "complaints", "address": "complaints@acme.example",
         "defaults": {"type": "complaint", "group": "complaints"}}]
    lmtp_site(site, smtp_sink)
    proc = start_daemon(site)
    try:
        wait_for("the LMTP listener", lambda: listening(site), proc)
        mail = client_mail(CUSTOMER, "Kargo hasarlı geldi", "Koli ezik geldi.", to="complaints@acme.example")
        with connect(site) as client:
            assert client.sendmail(CUSTOMER, ["complaints@acme.example"], mail) == {}
        await_mail(smtp_sink, proc, 20, "no acknowledgment")
        [row] = inbound_rows(site)
        assert (row.mailbox, row.recipients) == ("complaints", "complaints@acme.example")
        wait_for("the ticket", lambda: inbound_rows(site)[0].status == "done", proc)
        ticket = show(site, 1)
        assert (ticket["type"], ticket["group"]) == ("complaint", "complaints")
    finally:
        stop_daemon(proc)
