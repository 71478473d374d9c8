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
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

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


# --- bursts answered, loops stopped, alerts bounded (issue 14) -----------------------------------------------

ADMIN = "ops@acme.example"


def store(site: Site, mails: list[bytes]) -> None:
    """As `ticketd deliver --no-process` does, for thousands of mails without a process each."""
    from ticketd.storage import db
    from ticketd.storage.inbound import store_inbound

    with db.session_scope(site.engine) as session:
        for raw in mails:
            store_inbound(session, raw, "deliver")


def run_once(site: Site) -> None:
    proc = site.cli("run", "--once", timeout=900)
    assert proc.returncode == 0, decode(proc)


def first_mail(sender: str, n: int) -> bytes:
    return (f"From: {sender}\r\nTo: support@acme.example\r\nSubject: No internet since this morning ({n})\r\n"
            f"Message-ID: <outage-{n}@{sender.rsplit('@', 1)[1]}>\r\n\r\nMy line is down.\r\n").encode()


def outbox_rows(site: Site) -> list[dict[str, Any]]:
    return json.loads(site.cli("outbox", "list", "--json").stdout)


@pytest.mark.slow
def test_an_outage_burst_of_2000_new_customers_is_answered_in_full(site: Site, smtp_sink: SmtpSink) -> None:
    """Default limits. Before issue 14 the breaker counted volume: 500 receipts, then 1,500 customers heard
    nothing."""
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    customers = [f"user{n}@gmail.com" if n % 3 == 0 else f"user{n}@isp{n % 40}.example" for n in range(2000)]
    store(site, [first_mail(c, n) for n, c in enumerate(customers)])
    run_once(site)
    rows = outbox_rows(site)
    assert Counter((o["kind"], o["status"]) for o in rows) == {("received", "sent"): 2000}
    reached = Counter(to for mail in smtp_sink.received for to in mail.envelope_to)
    assert reached == dict.fromkeys(customers, 1)
    assert sum(1 for c in reached if c.endswith("@gmail.com")) == 667


class OtherDesk:
    """Another ticket system: it answers every mail it gets from a new reply+<n>@ address, threaded to our mail
    (In-Reply-To and References), with no RFC 3834 header (FreeScout #2445, osTicket #6380)."""

    def __init__(self, sink: SmtpSink, mailbox: Mailbox) -> None:
        self.sink, self.mailbox, self.seen, self.sent = sink, mailbox, 0, 0

    def write(self, subject: str, in_reply_to: str | None = None) -> None:
        self.sent += 1
        headers = [f"From: Other Desk <reply+{self.sent}@otherdesk.example>", "To: support@acme.example",
                   f"Subject: {subject}", f"Message-ID: <{secrets.token_hex(8)}@otherdesk.example>"]
        headers += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"] if in_reply_to else []
        self.mailbox.append(("\r\n".join(headers) + f"\r\n\r\nThank you, we opened case #{self.sent} for your "
                             "request.\r\n").encode())

    def answer_new_mail(self) -> None:
        for mail in self.sink.received[self.seen:]:
            if any(to.endswith("@otherdesk.example") for to in mail.envelope_to):
                self.write(f"[Case #{self.sent + 1}] Re: {mail.message['Subject']}", mail.message["Message-ID"])
        self.seen = len(self.sink.received)


@pytest.mark.slow
def test_a_rotating_address_ticket_system_is_answered_at_most_five_times(live_site: Site, mailbox: Mailbox,
                                                                          smtp_sink: SmtpSink) -> None:
    """A simulated day under faked time, default limits: the loop ends, and the admin is told once."""
    if shutil.which("faketime") is None:
        pytest.fail("faketime is not installed; `make test` installs it (apt-get install faketime)")
    live_site.sections["helpdesk"]["admin"] = ADMIN
    live_site.write()
    other = OtherDesk(smtp_sink, mailbox)
    other.write("Please call us back about our order")  # a person there writes once, from reply+1@
    for hour in range(0, 24, 2):
        run_at(live_site, hour)
        other.answer_new_mail()
    to_other = [m for m in smtp_sink.received if any(t.endswith("@otherdesk.example") for t in m.envelope_to)]
    assert 1 <= len(to_other) <= 5
    assert other.sent == len(to_other) + 1  # it answered each of ours; the last of its answers got none
    to_admin = [m for m in smtp_sink.received if ADMIN in m.envelope_to]
    assert len(to_admin) == 1 and "automatic answers stopped for otherdesk.example" in to_admin[0].message["Subject"]
    inbound = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert len(inbound) == other.sent
    assert all(i["status"] == "done" for i in inbound) and "not answered" in inbound[-1]["reason"]


def test_500_forged_agent_mails_in_an_hour_leave_the_receipts_alone(site: Site, smtp_sink: SmtpSink) -> None:
    """Each forged mail in an agent's name used to make an uncapped security alert that counted towards the
    breaker: 500 of them silenced every customer's acknowledgment."""
    from ticketd.storage import db
    from ticketd.storage.directory import upsert_agent

    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.sections["helpdesk"]["admin"] = ADMIN
    site.upgrade()
    with db.session_scope(site.engine) as session:
        upsert_agent(session, "ali@acme.example", "Ali Veli", "manager", ["network"])
    forged = [(f"From: Ali Veli <ali@acme.example>\r\nTo: support@acme.example\r\nSubject: [ACME #1] [resolve]\r\n"
               f"Message-ID: <forged-{n}@evil.example>\r\n\r\nDone.\r\n").encode() for n in range(500)]
    customers = [f"user{n}@gmail.com" for n in range(20)]
    store(site, forged + [first_mail(c, n) for n, c in enumerate(customers)])
    run_once(site)
    to = Counter((mail.envelope_to[0], mail.message["X-Ticketd-Kind"]) for mail in smtp_sink.received)
    assert {c: to[(c, "received")] for c in customers} == dict.fromkeys(customers, 1)
    assert to[("ali@acme.example", "security_alert")] == 3  # [limits] alerts_per_recipient_hour
    assert to[(ADMIN, "admin-alert")] == 1  # "mail held back for ali@acme.example", once in the hour
