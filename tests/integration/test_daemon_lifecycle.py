"""The daemon under a service manager: sd_notify READY/WATCHDOG/STOPPING over a real notify socket, and
SIGHUP reloading the config — a bad new config rejected with its reason and the old one kept."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DATA, Mailbox, Site, await_mail, start_daemon
from ticketd.daemon.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration


def start(site: Site, notify_path: Path) -> subprocess.Popen[bytes]:
    return start_daemon(site, {"NOTIFY_SOCKET": str(notify_path)})


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
        messages(sock, "WATCHDOG=1", timeout=5)  # keeps coming while idle

        # A valid change is taken at SIGHUP: new mail is acknowledged under the new name.
        live_site.sections["helpdesk"]["name"] = "Acme Destek"
        live_site.write()
        daemon.send_signal(signal.SIGHUP)
        time.sleep(2)
        mailbox.append((DATA / "unknown-sender.eml").read_bytes())
        await_mail(smtp_sink, daemon, 20, "no mail after the reload")
        assert smtp_sink.received[0].message["From"].addresses[0].display_name == "Acme Destek"

        # A broken change is refused; the daemon keeps running on the old config.
        live_site.sections["imap"]["port"] = 0
        live_site.write()
        daemon.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert daemon.poll() is None
        messages(sock, "WATCHDOG=1", timeout=5)

        daemon.send_signal(signal.SIGTERM)
        messages(sock, "STOPPING=1")
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


def test_unit_file_asks_for_the_hardening_and_notify_protocol() -> None:
    unit = (Path(__file__).parents[2] / "deploy" / "ticketd.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=ticketd",
                 "ConfigurationDirectory=ticketd", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "RestrictAddressFamilies=", "LoadCredential=", "Restart=on-failure", "ExecReload="):
        assert line in unit


def test_daemon_survives_an_imap_server_restart(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink,
                                                tmp_path: Path) -> None:
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    daemon = start(live_site, tmp_path / "unused.sock")
    try:
        deadline = time.monotonic() + 15
        while True:  # until the daemon is connected and idling: then drop its session
            kicked = subprocess.run(["doveadm", "-c", str(mailbox.server.conf), "kick", mailbox.user],
                                    capture_output=True, text=True, check=False)
            if kicked.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert kicked.returncode == 0, kicked.stdout + kicked.stderr
        mailbox.server.restart()  # and be away while it tries to reconnect
        time.sleep(1.0)
        mailbox.append((DATA / "unknown-sender.eml").read_bytes())
        await_mail(smtp_sink, daemon, 20, "no reconnect")  # reconnect backoff starts at 1 s
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    names = [json.loads(line)["event"] for line in daemon.stderr.read().decode().splitlines() if line.startswith("{")]
    assert names.count("imap.connected") >= 2, " ".join(names)


def test_prometheus_metrics_when_enabled(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink,
                                         tmp_path: Path) -> None:
    import urllib.request

    from ticketd.daemon.smtp_sink import free_port

    port = free_port()
    live_site.sections["metrics"] = {"listen": f"127.0.0.1:{port}"}
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    mailbox.append((DATA / "unknown-sender.eml").read_bytes())
    daemon = start(live_site, tmp_path / "unused.sock")
    try:
        await_mail(smtp_sink, daemon, 15, "the mail was not handled")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    lines = set(text.splitlines())
    for expected in ('ticketd_messages_total{status="done"} 1.0', "ticketd_processing_seconds_count 1.0",
                     "ticketd_imap_connected 1.0", "ticketd_inbound_backlog 0.0", "ticketd_outbox_depth 0.0",
                     'ticketd_outgoing_total{status="sent"} 1.0'):
        assert expected in lines, expected


def test_metrics_are_off_by_default(live_site: Site) -> None:
    assert live_site.config().metrics.listen is None
