"""Many mailboxes on one instance: a few threads serve them all, and several folders of one login stay within the
login's connection cap (the server's own limit set to it refuses one more), the folders past it told of by NOTIFY.

The daemon's threads and its IMAP connections are read from /proc while it runs (tests/benchmarks/mailboxes.py's
sampler, every half second); every mail must become an acknowledged ticket.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from conftest import Mailbox, Site, decode, log_events, start_daemon, stop_daemon, wait_for
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import mailboxes as bench

pytestmark = pytest.mark.integration

WORKERS = 2


def request(to: str, n: int) -> bytes:
    sender = f"musteri{n}.{secrets.token_hex(3)}@example.com.tr"
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: Modem {n}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@example.com.tr>\r\n\r\nModem {n} does not connect.\r\n").encode()


def append(server: Any, user: str, password: str, folder: str, raw: bytes) -> None:
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=30)
    client.login(user, password)
    try:
        client.append(folder, raw)
    finally:
        client.logout()


def customers_answered(sink: SmtpSink) -> set[str]:
    return {mail.envelope_to[0] for mail in sink.received}


def senders(raws: list[bytes]) -> set[str]:
    return {raw.split(b"\r\n", 1)[0].removeprefix(b"From: ").decode() for raw in raws}


def tickets(site: Site) -> list[dict[str, Any]]:
    proc = site.cli("tickets", "list", "--json")
    out, err = decode(proc)
    assert proc.returncode == 0, err
    return list(json.loads(out))


def test_many_mailboxes_are_served_by_a_few_threads(site: Site, dovecot: Any, smtp_sink: SmtpSink, backend: str,
                                                     tmp_path: Path) -> None:
    # 30: more than the database pool's 20 connections, which a lock connection per mailbox used to spend on
    # PostgreSQL (the daemon stalled); the instance's mailbox locks now share one.
    count = 30
    accounts = {f"box{secrets.token_hex(3)}{n:02d}": secrets.token_urlsafe(12) for n in range(count)}
    for user, password in accounts.items():
        dovecot.add_user(user, password)
        (site.dir / user).write_text(password)
    first = next(iter(accounts))
    site.sections["imap"] = {"host": dovecot.host, "port": dovecot.port, "tls": "none", "username": first,
                             "password": accounts[first], "idle": True, "poll_seconds": 60}
    site.sections["mailboxes"] = [{"name": user, "address": f"{user}@acme.example", "username": user,
                                   "password_file": user} for user in accounts]
    site.sections["intake"] = {"workers": WORKERS}
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    mails = {user: request(f"{user}@acme.example", n) for n, user in enumerate(accounts)}
    early = list(accounts)[: count // 2]
    for user in early:  # waiting before the daemon starts
        append(dovecot, user, accounts[user], "INBOX", mails[user])
    log = tmp_path / "daemon.log"
    daemon = start_daemon(site, log=log)
    sampler = bench.Sampler(daemon.pid, dovecot.port).start()
    try:
        wait_for("the waiting mail answered", lambda: len(smtp_sink.received) >= len(early), daemon, 120, log)
        for user in accounts:
            if user not in early:  # arriving while the daemon idles
                append(dovecot, user, accounts[user], "INBOX", mails[user])
        wait_for("every mail answered", lambda: len(smtp_sink.received) >= count, daemon, 120, log)
    finally:
        sampler.stop()
        code = stop_daemon(daemon)
    assert code == 0
    assert customers_answered(smtp_sink) == senders(list(mails.values()))
    assert len(tickets(site)) == count
    peak_threads, peak_connections = sampler.peak()
    print(f"\n{count} mailboxes: at most {peak_threads} threads and {peak_connections} IMAP connections")
    # The main loop and its timers, the intake thread and its workers: one thread per mailbox made 30 more.
    assert peak_threads <= WORKERS + 8, peak_threads
    assert peak_connections <= count, peak_connections
    assert not log_events(log, "imap.error")


def test_folders_of_one_login_stay_within_its_connection_cap_and_are_told_of_by_notify(
        site: Site, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    from servers.dovecot import dovecot_available, start_dovecot

    if not dovecot_available():
        pytest.skip("Dovecot is not installed (make test installs it)")
    user, password = "support", secrets.token_urlsafe(12)
    server = start_dovecot(tmp_path / "dovecot", {user: password})
    try:
        # The server itself refuses a fifth connection of the login from our address: three are the daemon's,
        # one is this test's own for putting mail in.
        server.conf.write_text(server.conf.read_text() + "mail_max_userip_connections = 4\n")
        server.restart()
        folders = ["INBOX", *(f"Desk{n}" for n in range(1, 8))]
        setup = IMAPClient(server.host, port=server.port, ssl=False, timeout=30)
        setup.login(user, password)
        for folder in folders[1:]:
            setup.create_folder(folder)
        setup.logout()
        # Polled only every 300 s: the later mail in the polled folders is answered in time only if the watched
        # connection's NOTIFY tells of it.
        site.sections["imap"] = {"host": server.host, "port": server.port, "tls": "none", "username": user,
                                 "password": password, "idle": True, "poll_seconds": 300}
        site.sections["mailboxes"] = [{"name": folder.lower(), "folder": folder,
                                       "processed_folder": f"Done{n}"} for n, folder in enumerate(folders)]
        site.sections["intake"] = {"connections_per_login": 3}
        site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
        site.upgrade()
        sent = []
        for n, folder in enumerate(folders):
            sent.append(request("support@acme.example", n))
            append(server, user, password, folder, sent[-1])
        log = tmp_path / "daemon.log"
        daemon = start_daemon(site, log=log)
        sampler = bench.Sampler(daemon.pid, server.port).start()
        try:
            wait_for("the waiting mail answered", lambda: len(smtp_sink.received) >= len(folders), daemon, 120, log)
            for n, folder in enumerate(folders, start=len(folders)):  # watched and polled folders alike
                sent.append(request("support@acme.example", n))
                append(server, user, password, folder, sent[-1])
            wait_for("the later mail answered", lambda: len(smtp_sink.received) >= len(sent), daemon, 120, log)

            # A reload that adds a folder starts intake again with it.
            setup = IMAPClient(server.host, port=server.port, ssl=False, timeout=30)
            setup.login(user, password)
            setup.create_folder("Desk8")
            setup.logout()
            site.sections["mailboxes"].append({"name": "desk8", "folder": "Desk8", "processed_folder": "Done8"})
            site.write()
            daemon.send_signal(signal.SIGHUP)
            wait_for("the reload", lambda: bool(log_events(log, "config.reloaded")), daemon, 30, log)
            sent.append(request("support@acme.example", len(sent)))
            append(server, user, password, "Desk8", sent[-1])
            wait_for("mail in the added folder answered", lambda: len(smtp_sink.received) >= len(sent), daemon,
                     60, log)
        finally:
            sampler.stop()
            code = stop_daemon(daemon)
        refused = server.log_file.read_text(errors="replace").count("Maximum number of connections")
    finally:
        server.stop()
    assert code == 0
    assert customers_answered(smtp_sink) == senders(sent)
    assert len(tickets(site)) == len(sent)
    print(f"\n{len(folders) + 1} folders of one login: at most {sampler.peak()[1]} IMAP connections")
    assert sampler.peak()[1] <= 3, sampler.samples
    assert refused == 0
    assert not log_events(log, "imap.error") and not log_events(log, "imap.notify_refused")
    started = log_events(log, "intake.started")
    assert [(e["watched"], e["polled"]) for e in started] == [(2, 6), (2, 7)]  # the rest in turn on the third


def test_notify_tells_of_the_folders_of_a_replaced_list_under_idle(mailbox: Mailbox) -> None:
    """A login's polled folders change when the watched ones do: the new list must be told of under IDLE too."""
    watcher, writer = mailbox.client(), mailbox.client()
    try:
        for folder in ("Desk1", "Desk2", "Desk3"):
            watcher.create_folder(folder)
        watcher.select_folder("INBOX")
        heard = {}
        for folders, folder in ((["Desk1", "Desk2"], "Desk1"), (["Desk2", "Desk3"], "Desk3")):
            assert poller.notify(watcher, folders, replacing=folder == "Desk3")
            watcher.idle()
            writer.append(folder, request("support@acme.example", 1))
            responses = watcher.idle_check(timeout=5)  # Dovecot tells within about half a second
            watcher.idle_done()
            heard[folder] = poller.folders_with_news(responses)
        assert heard == {"Desk1": {"Desk1"}, "Desk3": {"Desk3"}}
    finally:
        watcher.logout()
        writer.logout()


def test_notify_news_told_outside_idle_survives_the_next_select(mailbox: Mailbox, engine: Any) -> None:
    """Out of IDLE, NOTIFY's lines come with the answers of other commands, and imaplib forgets them at the next
    SELECT: the watched connection's own poll must read them first, and the renewal's NOOP must not drop them.
    Losing them left mail in the polled folders for ``poll_seconds`` (seen only with the machine busy)."""
    from ticketd.daemon.config.servers import ImapConfig

    watcher, writer = mailbox.client(), mailbox.client()
    cfg = ImapConfig.model_validate(mailbox.imap_section())
    try:
        for folder in ("Desk1", "Desk2"):
            watcher.create_folder(folder)
        watcher.select_folder("INBOX")
        assert poller.notify(watcher, ["Desk1", "Desk2"])
        assert poller.news_left(watcher) == set()  # both empty now
        writer.append("Desk1", request("support@acme.example", 1))
        for _ in range(20):  # Dovecot tells within about half a second, with the answer of a command
            watcher.search("ALL")
            if "STATUS" in watcher._imap.untagged_responses:  # told, and kept unread
                break
            time.sleep(0.1)
        assert "STATUS" in watcher._imap.untagged_responses
        result = poller.poll_once(watcher, engine, cfg)  # its SELECT would throw it away
        assert result.news == {"Desk1"}
        writer.append("Desk2", request("support@acme.example", 2))
        waiting, told = set(), set()
        for _ in range(20):  # Dovecot tells within about half a second, with the answer of the next command
            mail, news = poller.news(watcher)
            waiting.add(mail)
            told |= news
            if told:
                break
            time.sleep(0.1)
        assert told == {"Desk2"} and waiting == {False}
    finally:
        watcher.logout()
        writer.logout()


def test_notify_tells_what_waits_already_and_news_just_before_idle_is_kept(mailbox: Mailbox) -> None:
    """Mail that came while nobody listened is told of when NOTIFY is set (its STATUS indicator), and a NOTIFY line
    the server sends between our IDLE and its go-ahead is news, not an error that drops the connection."""
    watcher, writer = mailbox.client(), mailbox.client()
    try:
        for folder in ("Desk1", "Desk2"):
            watcher.create_folder(folder)
        writer.append("Desk2", request("support@acme.example", 1))  # before anyone listens
        watcher.select_folder("INBOX")
        assert poller.notify(watcher, ["Desk1", "Desk2"])
        assert poller.news_left(watcher) == {"Desk2"}
        writer.append("Desk1", request("support@acme.example", 2))
        time.sleep(1)  # Dovecot has the line ready; out of IDLE it goes out with the next command's answer
        assert poller.start_idle(watcher) is False  # nothing new in INBOX itself
        _, responses = watcher.idle_done()
        assert poller.folders_with_news(responses) | poller.news_left(watcher) == {"Desk1"}
    finally:
        watcher.logout()
        writer.logout()
