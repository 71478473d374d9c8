"""Quarantine and retry: a failing message is kept with its error and retried from the CLI; SMTP failures are
retried (4xx) or marked dead (5xx), always with the same Message-ID."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA, Mailbox, Site, decode
from ticketd.daemon.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

# A real process whose pipeline breaks on one particular mail (a stand-in for any bug or bad data).
FAIL_ON_ONE = """
import sys
from pathlib import Path
from ticketd.daemon import logs, notify, runner
from ticketd.daemon.config import load_config
from ticketd.storage import db

real = notify.compose
def compose(session, config, **kwargs):
    if any(address == "jane@example.org" for _, address in kwargs["to"]):  # her acknowledgment
        raise RuntimeError("simulated bug while opening the ticket")
    return real(session, config, **kwargs)
notify.compose = compose
config = load_config(Path(sys.argv[1]))
logs.configure("info", "json")
runner.run_once(db.make_engine(config.database.url), config)
"""


def rows(site: Site, *args: str) -> list[dict]:
    proc = site.cli(*args, "--json")
    assert proc.returncode == 0, decode(proc)
    return json.loads(proc.stdout)


def test_a_failing_message_is_quarantined_and_retried(live_site: Site, mailbox: Mailbox,
                                                      smtp_sink: SmtpSink) -> None:
    live_site.sections["helpdesk"]["admin"] = "ops@acme.example"
    for name in ("unknown-sender.eml", "iso-8859-9-body.eml"):
        mailbox.append((DATA / name).read_bytes())
    proc = subprocess.run([sys.executable, "-c", FAIL_ON_ONE, str(live_site.write())], capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    failed_log = [json.loads(line) for line in proc.stderr.decode().splitlines() if '"inbound.failed"' in line]
    assert failed_log and failed_log[0]["message_id"] == "<t-2.jane@example.org>"

    inbound = rows(live_site, "inbound", "list")
    assert [r["status"] for r in inbound] == ["failed", "done"]  # the bad one did not stop the next
    assert inbound[0]["reason"] == "RuntimeError: simulated bug while opening the ticket"
    assert [r["id"] for r in rows(live_site, "inbound", "list", "--failed")] == [inbound[0]["id"]]
    assert len(rows(live_site, "tickets", "list")) == 1  # nothing half-applied from the failed one
    assert mailbox.count("INBOX") == 0  # stored, so moved: the database holds it now
    alerts = [m for m in smtp_sink.received if m.envelope_to == ["ops@acme.example"]]
    assert len(alerts) == 1 and "quarantined mail" in alerts[0].message["Subject"]
    assert "ticketd inbound retry" in alerts[0].message.get_body(("plain",)).get_content()

    proc = live_site.cli("inbound", "retry", str(inbound[0]["id"]))
    out, err = decode(proc)
    assert proc.returncode == 0, (out, err)
    assert f"inbound {inbound[0]['id']}: done (ticket #2)" in out
    assert rows(live_site, "inbound", "list", "--failed") == []
    assert {t["requester"] for t in rows(live_site, "tickets", "list")} == {"jane@example.org",
                                                                           "sener@ozturk-insaat.com.tr"}
    assert len([m for m in smtp_sink.received if m.envelope_to != ["ops@acme.example"]]) == 2


def test_smtp_4xx_is_retried_with_the_same_message_id(live_site: Site, mailbox: Mailbox,
                                                      smtp_sink: SmtpSink) -> None:
    mailbox.append((DATA / "unknown-sender.eml").read_bytes())
    smtp_sink.reject("451 4.3.0 try again later")
    assert live_site.cli("run", "--once").returncode == 0
    [queued] = rows(live_site, "outbox", "list", "--failed")
    assert (queued["status"], queued["attempts"], queued["ticket"]) == ("failed", 1, 1)
    assert queued["last_error"].startswith("451")

    smtp_sink.reject(None)
    proc = live_site.cli("outbox", "retry", "--all-failed")
    assert proc.returncode == 0 and b"sent 1 mail(s)" in proc.stdout, decode(proc)
    [sent] = rows(live_site, "outbox", "list")
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 2, None)
    assert [m.message["Message-ID"] for m in smtp_sink.received] == [queued["message_id"]]


def test_smtp_5xx_is_dead_at_once(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    mailbox.append((DATA / "unknown-sender.eml").read_bytes())
    smtp_sink.reject("554 5.7.1 rejected")
    assert live_site.cli("run", "--once").returncode == 0
    [dead] = rows(live_site, "outbox", "list", "--failed")
    assert (dead["status"], dead["attempts"]) == ("dead", 1)
    assert live_site.cli("run", "--once").returncode == 0  # a dead mail is not tried again by itself
    assert rows(live_site, "outbox", "list")[0]["attempts"] == 1


def test_smtp_down_keeps_mail_queued(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    mailbox.append((DATA / "unknown-sender.eml").read_bytes())
    smtp_sink.stop()
    assert live_site.cli("run", "--once").returncode == 0
    [row] = rows(live_site, "outbox", "list")
    assert row["status"] == "failed" and "cannot connect" in row["last_error"]
    assert len(rows(live_site, "tickets", "list")) == 1  # intake does not depend on SMTP
