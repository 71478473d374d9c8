"""No mail storms: against a real out-of-office robot (it answers every mail it gets, through real SMTP into the
real IMAP inbox), ticketd's automatic mail stays within the caps over a simulated day. The day passes with
faketime around the real `ticketd run --once`; the servers keep the real clock."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from fakeclock import ahead

from conftest import TICKETD, Mailbox, Site, decode
from ticketd.daemon.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration
ROBOT = "robot@robot.example"


def robot_mail(subject: str, rfc3834: bool, in_reply_to: str | None = None) -> bytes:
    headers = [f"From: Robot <{ROBOT}>", "To: support@acme.example", f"Subject: {subject}",
               f"Message-ID: <{secrets.token_hex(8)}@robot.example>"]
    if rfc3834:
        headers += ["Auto-Submitted: auto-replied", "X-Autoreply: yes"]
        headers += [f"In-Reply-To: {in_reply_to}"] if in_reply_to else []
    return ("\r\n".join(headers) + "\r\n\r\nI am out of the office until further notice.\r\n").encode()


class Responder:
    """Answers every mail that reaches the robot by putting an out-of-office reply into the support inbox."""

    def __init__(self, sink: SmtpSink, mailbox: Mailbox, rfc3834: bool) -> None:
        self.sink, self.mailbox, self.rfc3834, self.answered = sink, mailbox, rfc3834, 0

    def answer_new_mail(self) -> None:
        for mail in self.sink.received[self.answered:]:
            if ROBOT in mail.envelope_to:
                msg = mail.message
                subject = f"Auto: {msg['Subject']}" if self.rfc3834 else "Thank you for your message"
                self.mailbox.append(robot_mail(subject, self.rfc3834, msg["Message-ID"]))
        self.answered = len(self.sink.received)


def run_at(site: Site, hours: int) -> None:
    env = {**os.environ, "TICKETD_CONFIG": str(site.config_path)}
    proc = subprocess.run([*ahead(hours * 3600), str(TICKETD), "run", "--once"], capture_output=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0, decode(proc)


def simulate_day(site: Site, mailbox: Mailbox, sink: SmtpSink, rfc3834: bool) -> list[dict[str, Any]]:
    if shutil.which("faketime") is None:
        pytest.fail("faketime is not installed; `make test` installs it (apt-get install faketime)")
    site.sections["limits"] = {"auto_replies_per_recipient_hour": 3, "auto_replies_per_recipient_day": 10}
    site.write()
    responder = Responder(sink, mailbox, rfc3834)
    mailbox.append(robot_mail("Please call me back", rfc3834=False))  # the robot's owner writes once
    for hour in range(0, 24, 2):
        for _ in range(2):
            run_at(site, hour)
            responder.answer_new_mail()
    return json.loads(site.cli("outbox", "list", "--json").stdout)


def test_rfc3834_responder_gets_one_acknowledgment(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    outbox = simulate_day(live_site, mailbox, smtp_sink, rfc3834=True)
    assert [(o["to"], o["status"]) for o in outbox] == [(f"Robot <{ROBOT}>", "sent")]
    inbound = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert inbound[0]["status"] == "done" and len(inbound) == 2  # its one auto-reply is recorded, not answered
    assert inbound[1]["ticket"] == 1 and "not answered" in inbound[1]["reason"]


def test_responder_without_headers_is_stopped_by_the_caps(live_site: Site, mailbox: Mailbox,
                                                          smtp_sink: SmtpSink) -> None:
    outbox = simulate_day(live_site, mailbox, smtp_sink, rfc3834=False)
    sent = [o for o in outbox if o["status"] == "sent"]
    assert len(sent) == 10  # the daily cap: then the robot hears nothing more, and the loop ends
    assert all(ROBOT in m.envelope_to for m in smtp_sink.received) and len(smtp_sink.received) == 10
    per_hour = Counter(datetime.fromisoformat(o["created_at"]).strftime("%d %H") for o in sent)
    assert max(per_hour.values()) <= 3
    suppressed = [o for o in outbox if o["status"] == "suppressed"]
    assert suppressed and all("storm cap" in o["last_error"] for o in suppressed)
