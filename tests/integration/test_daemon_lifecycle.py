"""The daemon under a service manager: sd_notify READY/WATCHDOG/STOPPING over a real notify socket, the watchdog
pinged every second, SIGHUP reloading the config — a bad new config rejected with its reason and the old one
kept —, the unit file passing `systemd-analyze verify`, and the IMAP server stopped and started under it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from conftest import DATA, TICKETD, Mailbox, Site, await_mail, start_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration


def start(site: Site, notify_path: Path) -> subprocess.Popen[bytes]:
    return start_daemon(site, {**os.environ, "NOTIFY_SOCKET": str(notify_path)})


def messages(sock: socket.socket, until: str, timeout: float = 10) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.extend(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            continue
        if until in got:
            return got
    raise AssertionError(f"{until} not received; got {got}")


def status_starting(sock: socket.socket, prefix: str, timeout: float = 20) -> str:
    """The first STATUS= field that starts with ``prefix``: the daemon's own word that it acted on a signal."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            fields = sock.recv(4096).decode().split("\n")
        except TimeoutError:
            continue
        seen.extend(f for f in fields if f.startswith("STATUS="))
        for field in fields:
            if field.startswith("STATUS=" + prefix):
                return field
    raise AssertionError(f"no STATUS={prefix}...; got {seen}")


def timed(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Every field received for that long, with the time its datagram arrived."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        got.extend((time.monotonic(), field) for field in data.split("\n"))
    return got


def unit_setting(name: str) -> str:
    unit = (Path(__file__).parents[2] / "deploy" / "ticketd.service").read_text()
    return next(line.split("=", 1)[1].strip() for line in unit.splitlines() if line.startswith(name + "="))


def test_sd_notify_and_sighup_reload(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    notify_path = Path("/tmp") / f"ticketd-notify-{tmp_path.name[-20:]}.sock"  # short: AF_UNIX paths are limited
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.5)
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    daemon = start(live_site, notify_path)
    try:
        got = messages(sock, "READY=1")
        assert any(m.startswith("STATUS=") for m in got)

        # While idle it pings the watchdog every second (the IDLE wait's one-second slices): far inside the
        # unit's WatchdogSec, and at most every WatchdogSec/2 as sd_watchdog_enabled(3) asks.
        pings = [t for t, field in timed(sock, 6.0) if field == "WATCHDOG=1"]
        gaps = [b - a for a, b in pairwise(pings)]
        watchdog_sec = float(unit_setting("WatchdogSec"))
        assert len(pings) >= 4, pings
        median = sorted(gaps)[len(gaps) // 2]
        print(f"\nWATCHDOG=1 every {median:.2f} s (longest gap {max(gaps):.2f} s); WatchdogSec={watchdog_sec:g}")
        assert 0.5 <= median <= 1.5, gaps  # about a second
        assert max(gaps) < min(3.0, watchdog_sec / 2), gaps  # never a gap systemd would notice

        # A valid change is taken at SIGHUP: new mail is acknowledged under the new name.
        live_site.sections["helpdesk"]["name"] = "Acme Destek"
        live_site.write()
        daemon.send_signal(signal.SIGHUP)
        status_starting(sock, "configuration reloaded from ")
        mailbox.append((DATA / "unknown-sender.eml").read_bytes())
        await_mail(smtp_sink, daemon, 20, "no mail after the reload")
        assert smtp_sink.received[0].message["From"].addresses[0].display_name == "Acme Destek"

        # A broken change is refused; the daemon keeps running on the old config.
        live_site.sections["imap"]["port"] = 0
        live_site.write()
        daemon.send_signal(signal.SIGHUP)
        rejected_status = status_starting(sock, "config reload rejected (")
        assert "imap.port: must be an integer between 1 and 65535" in rejected_status
        assert "running on the previous configuration" in rejected_status
        # ...and `systemctl status` keeps saying so while the daemon goes on with the old config.
        assert "(config reload rejected: imap.port" in status_starting(sock, "processing mail for ")
        assert daemon.poll() is None

        daemon.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        messages(sock, "STOPPING=1")
        assert time.monotonic() - asked < 3  # SIGTERM is honoured within the wait's one-second slices
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        sock.close()
        notify_path.unlink(missing_ok=True)
    events = [json.loads(line) for line in daemon.stderr.read().decode().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "config.reloaded" in names
    rejected = next(e for e in events if e["event"] == "config.reload_rejected")
    assert "imap.port: must be an integer between 1 and 65535" in rejected["problems"]


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check of the unit: unknown directives, bad values and missing binaries are findings.

    `verify` also checks that every Exec* binary exists, so the copy it checks runs the `ticketd` this test run
    installed instead of the path the unit names; everything else is the shipped unit, byte for byte.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed; `make test` installs it (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed (make test installs it)")
    shipped = (Path(__file__).parents[2] / "deploy" / "ticketd.service").read_text()
    binary = unit_setting("ExecStart").split()[0]
    assert binary.endswith("/ticketd") and shipped.count(f"={binary} ") == 2  # ExecStartPre and ExecStart

    def findings(text: str) -> tuple[int, list[str]]:
        unit = tmp_path / "ticketd.service"
        unit.write_text(text.replace(f"={binary} ", f"={TICKETD} "))
        proc = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, check=False)
        # Only what it says about our unit: a machine's own units may have findings of their own.
        return proc.returncode, [line for line in (proc.stdout + proc.stderr).splitlines() if "ticketd" in line]

    assert findings(shipped) == (0, [])
    # The check can fail: a misspelt directive and a bad value are each reported (systemd only warns about them,
    # so the lines are what counts, not the exit code).
    broken = shipped.replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nProtectSystm=strict")
    assert any("ProtectSystm" in line for line in findings(broken)[1])
    broken = shipped.replace("Type=notify", "Type=notifyy")
    assert any("notifyy" in line for line in findings(broken)[1])


def test_unit_file_asks_for_the_hardening_and_notify_protocol() -> None:
    unit = (Path(__file__).parents[2] / "deploy" / "ticketd.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=ticketd",
                 "ConfigurationDirectory=ticketd", "CacheDirectory=ticketd",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "RestrictAddressFamilies=", "LoadCredential=", "Restart=on-failure", "ExecReload="):
        assert line in unit


def customer_mail(n: int) -> bytes:
    return (f"From: Customer {n} <customer{n}@example.org>\r\nTo: support@acme.example\r\n"
            f"Subject: Outage question {n}\r\nMessage-ID: <outage-{n}@example.org>\r\n\r\nHello ({n}).\r\n").encode()


def deliver_to_maildir(mailbox: Mailbox, raw: bytes) -> None:
    """What the MTA's local delivery does while the IMAP server is down: a file in the account's Maildir/new."""
    home = (mailbox.server.base_dir / "mail" / mailbox.user).resolve()  # the test server's maildir:…/%u
    owner = (home / "new").stat()
    name = f"{time.time_ns()}.P{os.getpid()}.ticketd-test"
    tmp = home / "tmp" / name
    tmp.write_bytes(raw)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.rename(home / "new" / name)


def log_events(path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{") and line.endswith("}")]


def acknowledged(sink: SmtpSink) -> Counter[str]:
    return Counter(m.envelope_to[0] for m in sink.received)


def test_daemon_survives_an_imap_server_restart(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink,
                                                tmp_path: Path) -> None:
    """Dovecot stopped and started under the running daemon: it reconnects, and nothing is lost — not the mail
    it was handling when the server went away, not the mail delivered while it was down, not the mail appended
    right after it came back; and IDLE works again afterwards."""
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    log = tmp_path / "daemon.log"
    live_site.write()
    with log.open("wb") as err:
        daemon = subprocess.Popen([str(TICKETD), "--config", str(live_site.config_path), "run"],
                                  stdout=subprocess.DEVNULL, stderr=err)

    def wait_for(customers: int, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while len(acknowledged(smtp_sink)) < customers and time.monotonic() < deadline:
            assert daemon.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        assert len(acknowledged(smtp_sink)) >= customers, f"{what}; daemon log:\n{log.read_text()[-3000:]}"

    server = mailbox.server
    try:
        mailbox.append(customer_mail(0))
        wait_for(1, 20, "the daemon did not handle mail before the outage")
        time.sleep(0.5)  # back in IDLE

        mailbox.append(customer_mail(1))  # the daemon may still be handling this one when the server goes away
        server.stop()
        try:
            deliver_to_maildir(mailbox, customer_mail(2))  # delivered while the IMAP server is down
            deadline = time.monotonic() + 15
            while log_events(log).count("imap.error") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)  # at least two reconnects refused: it keeps trying, with backoff
            assert log_events(log).count("imap.error") >= 2, log.read_text()[-3000:]
        finally:
            server.start()
        mailbox.append(customer_mail(3))  # right after the server is back
        wait_for(4, 30, "no reconnect, or mail lost")  # the reconnect backoff is short after a few failures

        time.sleep(1.0)
        mailbox.append(customer_mail(4))  # and IDLE sees new mail again
        wait_for(5, 15, "no pick-up through IDLE after the reconnect")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    names = log_events(log)
    assert names.count("imap.connected") >= 2, " ".join(names)
    assert acknowledged(smtp_sink) == {f"customer{n}@example.org": 1 for n in range(5)}  # each once
    inbound = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert sorted(r["message_id"] for r in inbound) == [f"<outage-{n}@example.org>" for n in range(5)]
    assert {r["status"] for r in inbound} == {"done"}
    assert len(json.loads(live_site.cli("tickets", "list", "--json").stdout)) == 5
    assert mailbox.count("INBOX") == 0 and mailbox.count("Processed") == 5


def test_prometheus_metrics_when_enabled(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink,
                                         tmp_path: Path) -> None:
    import urllib.request

    from ticketd.daemon.outgoing.smtp_sink import free_port

    port = free_port()
    live_site.sections["metrics"] = {"listen": f"127.0.0.1:{port}"}
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    mailbox.append((DATA / "unknown-sender.eml").read_bytes())
    daemon = start(live_site, tmp_path / "unused.sock")
    expected = {'ticketd_messages_total{status="done"} 1.0', "ticketd_processing_seconds_count 1.0",
                'ticketd_imap_connected{mailbox="INBOX"} 1.0', "ticketd_inbound_backlog 0.0",
                "ticketd_outbox_depth 0.0", 'ticketd_outgoing_total{status="sent"} 1.0'}
    lines: set[str] = set()

    def scraped() -> bool:  # the SMTP server has the mail a moment before the sender counts it: scrape until then
        lines.clear()
        lines.update(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                     .splitlines())
        return expected <= lines
    try:
        await_mail(smtp_sink, daemon, 15, "the mail was not handled")
        wait_for("the metrics of the handled mail", scraped, daemon, timeout=10)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert expected <= lines, expected - lines


def test_metrics_are_off_by_default(live_site: Site) -> None:
    assert live_site.config().metrics.listen is None


class SilentSmtpServer:
    """Accepts connections and never greets: the SMTP server that hangs, the worst case for a sender."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


def test_a_hanging_smtp_server_does_not_starve_the_watchdog(live_site: Site, mailbox: Mailbox,
                                                            tmp_path: Path) -> None:
    """Without a pause after the first failed connection, every batch waited out the SMTP timeout again and
    the daemon went minutes without READY or WATCHDOG, past WatchdogSec: systemd would kill it forever."""
    server = SilentSmtpServer()
    live_site.sections["smtp"] = {"host": "127.0.0.1", "port": server.port, "tls": "none", "timeout_seconds": 3}
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    client = mailbox.client()
    for n in range(200):  # four batches, each with mail to send
        client.append("INBOX", (f"From: c{n}@example.org\r\nTo: support@acme.example\r\nSubject: Help {n}\r\n"
                                f"Message-ID: <hang-{n}@example.org>\r\n\r\nPlease help.\r\n").encode())
    client.logout()
    notify_path = Path("/tmp") / f"ticketd-notify-{tmp_path.name[-20:]}.sock"
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.5)
    started = time.monotonic()
    log = tmp_path / "daemon.log"  # a file, not a pipe: 200 mails log more than a pipe holds unread
    with log.open("wb") as err:
        daemon = subprocess.Popen([str(TICKETD), "--config", str(live_site.write()), "run"], stderr=err,
                                  env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, stdout=subprocess.DEVNULL)
    try:
        got = timed(sock, 25.0)
        ready = [t for t, field in got if field == "READY=1"]
        assert ready, "no READY=1; daemon log:\n" + log.read_text()[-3000:]
        pings = [started] + [t for t, field in got if field in ("READY=1", "WATCHDOG=1")]
        longest = max(b - a for a, b in pairwise(pings))
        print(f"\nREADY after {ready[0] - started:.1f} s; longest silence {longest:.1f} s; "
              f"{len(server.accepted)} SMTP connections tried")
        assert longest < 10, longest  # one connect timeout plus a batch, not one per batch
        assert len(server.accepted) <= 4  # one sending run's connections, then a pause
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        server.close()
        sock.close()
        notify_path.unlink(missing_ok=True)
    outbox = json.loads(live_site.cli("outbox", "list", "--json").stdout)
    assert len(outbox) == 200 and {o["status"] for o in outbox} <= {"failed", "queued"}  # kept for later
    assert {r["status"] for r in json.loads(live_site.cli("inbound", "list", "--json").stdout)} == {"done"}
