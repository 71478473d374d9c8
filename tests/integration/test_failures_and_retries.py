"""Quarantine and retry: a failing message is kept with its error and retried from the CLI; SMTP failures are
retried (4xx) or marked dead (5xx), always with the same Message-ID. Through an SMTP outage (connections refused,
then 4xx, then back) every queued mail is delivered exactly once and each ticket's mail in order; a 5xx for one
recipient kills that mail only, and the admin is told. Retries fall due by the backoff, with the clock moved
ahead by faketime rather than waited for."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
from fakeclock import ahead

from conftest import DATA, TICKETD, Mailbox, Site, decode
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

# A real process whose pipeline breaks on one particular mail (a stand-in for any bug or bad data).
FAIL_ON_ONE = """
import sys
from pathlib import Path
from ticketd.daemon import runner
from ticketd.daemon.service import logs
from ticketd.daemon.outgoing import notify
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


# The database going away while one mail is processed (a stand-in: the failure is raised, and the check that tells
# the database's fault from the mail's is told the server does not answer). `ticketd run --once`, as cron runs it.
DATABASE_GONE_ON_ONE = """
import sys
import sqlalchemy as sa
from ticketd.daemon import pipeline
from ticketd.daemon.cli.main import main
from ticketd.daemon.outgoing import notify

gone = False
real = notify.compose
def compose(session, config, **kwargs):
    global gone
    if any(address == "jane@example.org" for _, address in kwargs["to"]):
        gone = True
        raise sa.exc.OperationalError("UPDATE tickets", {}, Exception("server closed the connection unexpectedly"))
    return real(session, config, **kwargs)
notify.compose = compose
real_reachable = pipeline.reachable
pipeline.reachable = lambda engine: not gone and real_reachable(engine)
sys.argv = ["ticketd", "--config", sys.argv[1], "run", "--once"]
main()
"""


def rows(site: Site, *args: str) -> list[dict]:
    proc = site.cli(*args, "--json")
    assert proc.returncode == 0, decode(proc)
    return json.loads(proc.stdout)


def test_a_failing_message_is_quarantined_and_retried(live_site: Site, mailbox: Mailbox,
                                                      smtp_sink: SmtpSink, backend: str) -> None:
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
    retried = next(t["number"] for t in rows(live_site, "tickets", "list") if t["requester"] == "jane@example.org")
    assert f"inbound {inbound[0]['id']}: done (ticket #{retried})" in out
    # SQLite numbers from the highest; PostgreSQL's sequence does not give back the failed attempts' numbers
    assert retried == 2 if backend == "sqlite" else retried > 1
    assert rows(live_site, "inbound", "list", "--failed") == []
    assert {t["requester"] for t in rows(live_site, "tickets", "list")} == {"jane@example.org",
                                                                           "sener@ozturk-insaat.com.tr"}
    assert len([m for m in smtp_sink.received if m.envelope_to != ["ops@acme.example"]]) == 2


def test_the_database_failing_during_a_mail_quarantines_nothing(live_site: Site, mailbox: Mailbox,
                                                                 smtp_sink: SmtpSink) -> None:
    """Not the mail's fault: it stays new (no "failed" row, no admin alert, nothing half-applied) and the next
    pass handles it. The pass says what happened in one line and exits 75, as for any temporary failure."""
    live_site.sections["helpdesk"]["admin"] = "ops@acme.example"
    for name in ("unknown-sender.eml", "iso-8859-9-body.eml"):
        mailbox.append((DATA / name).read_bytes())
    proc = subprocess.run([sys.executable, "-c", DATABASE_GONE_ON_ONE, str(live_site.write())], capture_output=True,
                          timeout=60, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 75, err
    assert "server closed the connection unexpectedly" in err and "Traceback" not in err
    assert '"inbound.failed"' not in err
    assert [r["status"] for r in rows(live_site, "inbound", "list")] == ["new", "new"]
    assert rows(live_site, "tickets", "list") == []
    assert smtp_sink.received == []  # no alert: nothing was quarantined

    proc = live_site.cli("run", "--once")
    assert proc.returncode == 0, decode(proc)
    assert [r["status"] for r in rows(live_site, "inbound", "list")] == ["done", "done"]
    assert {t["requester"] for t in rows(live_site, "tickets", "list")} == {"jane@example.org",
                                                                           "sener@ozturk-insaat.com.tr"}


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


# --- an SMTP outage: refused, then 4xx, then back ---------------------------------------------------------------

ALI = "ali@acme.example"


def run_at(site: Site, seconds: int) -> None:
    """`ticketd run --once` with the clock that many seconds ahead: how a retry falls due without waiting."""
    if shutil.which("faketime") is None:
        pytest.fail("faketime is not installed; `make test` installs it (apt-get install faketime)")
    env = {**os.environ, "TICKETD_CONFIG": str(site.write())}
    proc = subprocess.run([*ahead(seconds), str(TICKETD), "run", "--once"], capture_output=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, decode(proc)


def customer_mail(n: int) -> bytes:
    return (f"From: Customer {n} <customer{n}@example.org>\r\nTo: support@acme.example\r\n"
            f"Subject: Printer {n} is broken\r\nMessage-ID: <printer-{n}@example.org>\r\n\r\n"
            f"Printer {n} prints nothing.\r\n").encode()


def agent_answer(site: Site, number: int) -> bytes:
    """Ali takes the ticket and answers, to the reply address signed for him: relayed to the customer."""
    from ticketd.daemon.outgoing.notify import signed_address

    return (f"From: Ali Veli <{ALI}>\r\nTo: {signed_address(site.config(), number, ALI)}\r\n"
            f"Subject: Re: [ACME #{number}] Printer is broken [take]\r\n"
            f"Message-ID: <answer-{number}@ali-laptop.example>\r\n\r\nA technician comes tomorrow.\r\n").encode()


def add_agent(site: Site) -> None:
    proc = site.cli("agents", "add", ALI, "--name", "Ali Veli")
    assert proc.returncode == 0, decode(proc)


def arrival_order(sink: SmtpSink) -> dict[int, list[str]]:
    """Per ticket, the Message-IDs in the order the SMTP server took them."""
    order: dict[int, list[str]] = {}
    for mail in sink.received:
        tag = re.search(r"\[ACME #(\d+)\]", mail.message["Subject"])
        if tag:
            order.setdefault(int(tag.group(1)), []).append(mail.message["Message-ID"])
    return order


def queue_order(outbox: list[dict]) -> dict[int, list[str]]:
    """Per ticket, the Message-IDs in the order they were queued."""
    order: dict[int, list[str]] = {}
    for row in sorted(outbox, key=lambda r: r["id"]):
        if row["ticket"] is not None:
            order.setdefault(row["ticket"], []).append(row["message_id"])
    return order


def kinds(order: dict[int, list[str]], outbox: list[dict]) -> dict[int, list[str]]:
    """The same order told by kind (received, agent_new, …), to read in a failure."""
    kind = {r["message_id"]: r["kind"] for r in outbox}
    return {ticket: [kind[m] for m in ids] for ticket, ids in order.items()}


def state(outbox: list[dict]) -> set[tuple[str, str, int]]:
    return {(r["kind"], r["status"], r["attempts"]) for r in outbox}


def test_an_outage_refused_then_4xx_then_back_delivers_every_mail_once_in_order(
        live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    add_agent(live_site)
    port = smtp_sink.port
    smtp_sink.stop()  # the server refuses connections

    for n in (1, 2, 3):
        mailbox.append(customer_mail(n))
    run_at(live_site, 0)
    queued = rows(live_site, "outbox", "list")
    assert sorted(r["kind"] for r in queued) == ["agent_new"] * 3 + ["received"] * 3
    assert all(r["status"] == "failed" and r["attempts"] == 1 and "cannot connect" in r["last_error"]
               for r in queued), queued
    run_at(live_site, 0)  # not due yet: the backoff holds, nothing is tried again
    assert [r["attempts"] for r in rows(live_site, "outbox", "list")] == [1] * 6

    # While it is down, Ali takes each ticket and answers: more mail for the same tickets, to customers too.
    numbers = {t["requester"]: t["number"] for t in rows(live_site, "tickets", "list")}
    for n in (1, 2, 3):
        mailbox.append(agent_answer(live_site, numbers[f"customer{n}@example.org"]))
    run_at(live_site, 0)
    queued = rows(live_site, "outbox", "list")
    assert sorted(r["kind"] for r in queued) == sorted(["agent_new", "received", "agent-reply", "assigned"] * 3)
    # the answers wait behind each customer's acknowledgment instead of being tried before it
    assert state(queued) == {("received", "failed", 1), ("agent_new", "failed", 1), ("agent-reply", "queued", 0),
                             ("assigned", "queued", 0)}

    back = SmtpSink(port=port).start()  # the server is back, but answers "try again later"
    try:
        back.reject("451 4.3.0 try again later")
        run_at(live_site, 600)
        queued = rows(live_site, "outbox", "list")
        assert state(queued) == {("received", "failed", 2), ("agent_new", "failed", 2), ("agent-reply", "queued", 0),
                                 ("assigned", "queued", 0)}
        assert all(r["last_error"].startswith("451") for r in queued if r["attempts"] == 2), queued
        assert back.received == []

        back.reject(None)  # and then it takes mail again
        run_at(live_site, 3600)
        run_at(live_site, 3 * 3600)  # a later run sends nothing again
        sent = rows(live_site, "outbox", "list")
        assert state(sent) == {("received", "sent", 3), ("agent_new", "sent", 3), ("agent-reply", "sent", 1),
                               ("assigned", "sent", 1)}
        got = Counter(m.message["Message-ID"] for m in back.received)
        assert got == {r["message_id"]: 1 for r in sent}  # every mail, exactly once, the same Message-ID
        arrived = arrival_order(back)  # each ticket's mail in the order it was written
        assert arrived == queue_order(sent), kinds(arrived, sent)
        for number in numbers.values():  # the customer hears "received" first, then the agent's answer
            to_customer = [r["kind"] for r in sorted(sent, key=lambda r: r["id"])
                           if r["ticket"] == number and "customer" in r["to"]]
            assert to_customer == ["received", "agent-reply", "assigned"]
    finally:
        back.stop()


def test_a_tickets_mail_keeps_its_order_across_different_retry_schedules(
        live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    """A later mail with a shorter backoff must wait for the ticket's earlier mail still waiting its retry."""
    add_agent(live_site)
    port = smtp_sink.port
    smtp_sink.stop()
    mailbox.append(customer_mail(1))
    run_at(live_site, 0)  # `received` fails: attempt 1, next in 30 s
    run_at(live_site, 60)  # attempt 2 at +60 s, next at +120 s
    run_at(live_site, 180)  # attempt 3 at +180 s, next at +300 s
    mailbox.append(agent_answer(live_site, 1))
    run_at(live_site, 180)  # the answer's relay: attempt 1 at +180 s, next at +210 s
    back = SmtpSink(port=port).start()
    try:
        run_at(live_site, 240)  # the server is back: the answer is due, the acknowledgment not yet
        run_at(live_site, 400)
        sent = rows(live_site, "outbox", "list")
        assert {r["status"] for r in sent} == {"sent"}
        assert kinds(arrival_order(back), sent) == kinds(queue_order(sent), sent)
    finally:
        back.stop()


def test_a_5xx_for_one_recipient_kills_only_that_mail_and_alerts_the_admin(
        live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    live_site.sections["helpdesk"]["admin"] = "ops@acme.example"
    add_agent(live_site)
    smtp_sink.reject_recipient("customer2@example.org", "550 5.1.1 <customer2@example.org>: no such user")
    for n in (1, 2, 3):
        mailbox.append(customer_mail(n))
    assert live_site.cli("run", "--once").returncode == 0

    outbox = rows(live_site, "outbox", "list")
    [dead] = [r for r in outbox if r["status"] == "dead"]
    assert (dead["kind"], dead["attempts"]) == ("received", 1) and "customer2@example.org" in dead["to"]
    assert dead["last_error"].startswith("customer2@example.org: 550"), dead["last_error"]
    assert {r["status"] for r in outbox if r["id"] != dead["id"]} == {"sent"}

    # The others went out unaffected: the other customers' acknowledgments and every agent notification.
    by_recipient = Counter(m.envelope_to[0] for m in smtp_sink.received)
    assert by_recipient["customer1@example.org"] == by_recipient["customer3@example.org"] == 1
    assert by_recipient[ALI] == 3 and "customer2@example.org" not in by_recipient

    # The admin is told which mail could not be delivered and why.
    alerts = [m for m in smtp_sink.received if m.envelope_to == ["ops@acme.example"]]
    assert len(alerts) == 1 and "undeliverable mail" in alerts[0].message["Subject"]
    text = alerts[0].message.get_body(("plain",)).get_content()
    assert f"outbox {dead['id']}" in text and "550" in text
    assert live_site.cli("run", "--once").returncode == 0  # a dead mail is not tried again by itself
    assert next(r for r in rows(live_site, "outbox", "list") if r["id"] == dead["id"])["attempts"] == 1
