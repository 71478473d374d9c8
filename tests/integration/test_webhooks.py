"""Events out (issue 18, item 6): every ticket event reaches a real HTTP receiver on loopback, signed, once, in
order per ticket, through failures, an outage and a SIGKILL of the daemon; nothing goes out for a change that
was rolled back; `ticketd webhooks` and `ticketd export` as an operator runs them."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from conftest import Desk, Mailbox, Site, decode, log_events, reply_to, start_daemon, stop_daemon, wait_for
from servers.webhook_receiver import WebhookReceiver
from ticketd.daemon.outgoing import webhooks

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-the-receiver-0123456789"
ALI = "ali@acme.example"
DOWN_SECONDS = 60.0  # the receiver's outage: as the issue states it, not shortened


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().up()
    yield server
    server.down()


def hook_section(site: Site, receiver: WebhookReceiver, **overrides: Any) -> dict[str, Any]:
    (site.dir / "webhook-secret").write_text(SECRET)
    return {"name": "dif", "url": receiver.url, "secret_file": "webhook-secret", "events": ["*"],
            "backoff_seconds": 1, "backoff_max_seconds": 4, "max_attempts": 1000, "timeout_seconds": 5,
            **overrides}


def customer_mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@acme.example\r\nSubject: Modem {n} is down\r\n"
            f"Message-ID: <hook-{n}@example.org>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\n"
            f"The modem of line {n} does not connect.\r\n").encode()


def customer_reply(n: int, number: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@acme.example\r\n"
            f"Subject: Re: [ACME #{number}] Modem {n} is down\r\nMessage-ID: <hook-{n}-re@example.org>\r\n"
            f"In-Reply-To: <hook-{n}@example.org>\r\nDate: Fri, 04 Dec 2026 10:10:00 +0000\r\n\r\n"
            "Still down this morning.\r\n").encode()


def agent_mail(number: int, commands: str, tag: str) -> bytes:
    return (f"From: Ali Veli <{ALI}>\r\nTo: support@acme.example\r\nSubject: Re: [ACME #{number}] {commands}\r\n"
            f"Message-ID: <agent-{tag}@acme.example>\r\nDate: Fri, 04 Dec 2026 10:05:00 +0000\r\n\r\n"
            "On it.\r\n").encode()


def scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def all_processed(engine: sa.Engine, stored: int) -> bool:
    return scalar(engine, "select count(*) from inbound where status != 'new'") == stored


def ticket_events(engine: sa.Engine) -> list[tuple[int, int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "select e.id, t.number, e.what from event e join ticket t on t.id = e.ticket_id order by e.id"))]


@pytest.mark.slow
def test_every_event_arrives_once_in_order_signed_through_failures_an_outage_and_a_kill(
        live_site: Site, mailbox: Mailbox, receiver: WebhookReceiver, tmp_path: Path, backend: str) -> None:
    """Must-show 2. The receiver answers the first three deliveries 500, then is down (connection refused) for a
    whole minute while tickets are opened and changed by mail; the daemon is SIGKILLed during that minute with
    deliveries waiting, and restarted. Every event then arrives exactly once (by X-Ticketd-Delivery), in event
    order per ticket, every signature verifies, and the deliveries match the event table one to one.

    On PostgreSQL only: the minute of outage is the same on both, and PostgreSQL, with its row claims and its
    connections of their own, is the backend with more to lose (the suite's time is kept for the rest)."""
    if backend != "postgresql":
        pytest.skip("run on PostgreSQL; SQLite's delivery path is the other tests' (the same code, one connection)")
    site = live_site
    site.sections["webhooks"] = [hook_section(site, receiver)]
    site.sections["agents"] = [{"email": ALI, "name": "Ali Veli"}]
    site.sections["security"]["agent_auth"] = "from-header"  # the agent's mail is trusted on its From here
    engine = site.engine
    receiver.fail_next(3)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(site, log=log)
    stored = 0
    try:
        for n in (1, 2, 3):  # three tickets, one after the other (ticket n is #n)
            mailbox.append(customer_mail(n))
            stored += 1
            wait_for(f"ticket #{n}", lambda n=n: scalar(engine, "select count(*) from ticket") == n,
                     daemon, 60, log)
        wait_for("three 500s, then a delivery accepted",
                 lambda: len(receiver.received) > 3 and receiver.accepted, daemon, 60, log)
        assert [r.status for r in receiver.received[:3]] == [500, 500, 500]

        receiver.down()
        down_at = time.monotonic()
        for number, commands in ((1, "[take]"), (2, "[priority=high]"), (3, "[take; pending]")):
            mailbox.append(agent_mail(number, commands, f"a{number}"))
            stored += 1
        mailbox.append(customer_mail(4))
        stored += 1
        wait_for("the changes processed and waiting as deliveries, tried against the refused port",
                 lambda: all_processed(engine, stored)
                 and scalar(engine, "select count(*) from event where webhook_pending") == 0
                 and scalar(engine, "select count(*) from webhook_delivery where status = 'failed' "
                                    "and last_error like '%ConnectionError%'") > 0,
                 daemon, 60, log)
        waiting = scalar(engine, "select count(*) from webhook_delivery where status != 'sent'")
        assert waiting > 0
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)

        daemon = start_daemon(site, log=log)
        mailbox.append(customer_reply(1, 1))
        mailbox.append(agent_mail(2, "[resolve]", "a2-resolve"))
        stored += 2
        wait_for("the mail after the restart processed", lambda: all_processed(engine, stored), daemon, 60, log)
        assert not receiver.accepted or time.monotonic() - down_at < DOWN_SECONDS
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        refused = [e for e in log_events(log, "webhook.retry_later") if "ConnectionError" in e["error"]]
        accepted_before = len(receiver.accepted)
        receiver.up()  # the same port again

        def all_sent() -> bool:
            return (scalar(engine, "select count(*) from event where webhook_pending") == 0
                    and scalar(engine, "select count(*) from webhook_delivery where status != 'sent'") == 0)

        wait_for("every delivery sent", all_sent, daemon, 90, log)
    finally:
        stop_daemon(daemon)

    assert refused, "the deliveries met the refused port during the outage"
    assert len(receiver.accepted) > accepted_before
    events = ticket_events(engine)
    with engine.connect() as conn:
        deliveries = {r.delivery_id: r for r in conn.execute(sa.text(
            "select delivery_id, event_id, event, status, webhook from webhook_delivery"))}
    # One delivery per ticket event, all sent; the events of all five steps are there.
    assert sorted(d.event_id for d in deliveries.values()) == [e[0] for e in events]
    assert {d.status for d in deliveries.values()} == {"sent"}
    names = {d.event for d in deliveries.values()}
    assert {"ticket.created", "ticket.state", "ticket.assignee", "ticket.priority"} <= names

    # Exactly once: each delivery id accepted once, and every accepted one is a delivery of the table.
    counts = Counter(r.delivery for r in receiver.accepted)
    assert set(counts) == set(deliveries), "every event arrived"
    assert set(counts.values()) == {1}, [d for d, c in counts.items() if c > 1]
    # Signed: every request, refused or accepted, carries the HMAC of its exact body.
    assert all(webhooks.verify(SECRET, r.body, r.signature) for r in receiver.received)
    assert not any(webhooks.verify("another secret of 16+ chars", r.body, r.signature) for r in receiver.received)
    # In order per ticket: the accepted bodies of each ticket come in event order.
    per_ticket: dict[int, list[int]] = defaultdict(list)
    for r in receiver.accepted:
        body = r.payload
        assert body["id"] == r.delivery and body["event"] == r.event == deliveries[r.delivery].event
        per_ticket[body["ticket"]["number"]].append(body["event_id"])
    assert set(per_ticket) == {1, 2, 3, 4}
    for number, ids in per_ticket.items():
        assert ids == sorted(ids), (number, ids)
    last = [r.payload for r in receiver.accepted if r.payload["ticket"]["number"] == 3][-1]
    assert last["ticket"]["state"] == "pending" and last["ticket"]["requester"] == "c3@example.org"


def test_a_refused_command_mail_sends_nothing_and_every_kept_event_goes_once(
        desk: Desk, receiver: WebhookReceiver) -> None:
    """The agent's ``[take; priority=hgh]`` is refused whole: its take, applied inside the savepoint and rolled
    back, leaves no event and so no delivery; the events that stayed each make one delivery, sent in order."""
    desk.site.sections["webhooks"] = [hook_section(desk.site, receiver)]
    from conftest import DATA, mail_to

    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    notification = mail_to(desk.new_mail(), ALI)
    desk.deliver(reply_to(notification, ALI, "", subject_suffix="[take; priority=hgh]"))
    config, engine = desk.site.config(), desk.site.engine
    assert webhooks.fan_out(engine, config.webhooks) > 0
    with requests.Session() as http:
        webhooks.send_due(engine, config, http)  # a ticket's next delivery goes once the one before it is sent
    events = ticket_events(engine)
    assert not [e for e in events if e[2] in ("assignee", "priority")], events
    sent = [r.payload for r in receiver.accepted]
    assert [b["event_id"] for b in sent] == [e[0] for e in events]
    assert sent[0]["event"] == "ticket.created" and sent[0]["ticket"]["number"] == 1
    assert all(webhooks.verify(SECRET, r.body, r.signature) for r in receiver.accepted)


def test_events_filter_dead_deliveries_alert_and_the_cli_lists_and_retries(
        desk: Desk, receiver: WebhookReceiver) -> None:
    """Only the events a webhook names are queued for it; a delivery failing max_attempts times is dead, the
    admin is told, `webhooks list --failed` shows it and `webhooks retry` queues it again."""
    site = desk.site
    site.sections["helpdesk"]["admin"] = "admin@acme.example"
    site.sections["webhooks"] = [hook_section(site, receiver, events=["ticket.created"], max_attempts=1)]
    from conftest import DATA

    receiver.fail_next(1)
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    desk.new_mail()
    config, engine = site.config(), site.engine
    webhooks.fan_out(engine, config.webhooks)
    with requests.Session() as http:
        assert webhooks.send_due(engine, config, http) == 0
    from ticketd.daemon.outgoing import outbox

    outbox.send_due(engine, config)
    [alert] = desk.new_mail()
    assert "undeliverable webhook events" in alert.message["Subject"]
    listed = json.loads(decode(site.cli("webhooks", "list", "--failed", "--json"))[0])
    assert [(d["event"], d["status"], d["ticket"], d["attempts"]) for d in listed] == [
        ("ticket.created", "dead", 1, 1)]
    assert decode(site.cli("webhooks", "retry", str(listed[0]["id"])))[0].startswith("queued 1 webhook delivery")
    with requests.Session() as http:
        assert webhooks.send_due(engine, config, http) == 1
    assert [r.status for r in receiver.received] == [500, 200]
    assert receiver.received[0].delivery == receiver.received[1].delivery  # the same delivery, the same bytes
    assert receiver.received[0].body == receiver.received[1].body
    assert json.loads(decode(site.cli("webhooks", "list", "--failed", "--json"))[0]) == []


def test_export_writes_tickets_messages_events_and_actions_as_json_lines(desk: Desk, tmp_path: Path) -> None:
    from conftest import DATA

    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    added = desk.site.cli("actions", "add", "Train the night shift on modem resets", "--owner", "ali@acme.example",
                          "--due", "3d", "--source", "report 2026-11")
    assert added.returncode == 0, decode(added)
    out = tmp_path / "dif.jsonl"
    proc = desk.site.cli("export", "--since", "2000-01-01", "--jsonl", str(out))
    assert proc.returncode == 0, decode(proc)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = Counter(line["kind"] for line in lines)
    assert kinds["ticket"] == 1 and kinds["message"] >= 1 and kinds["event"] >= 2 and kinds["action"] == 1
    action = next(line for line in lines if line["kind"] == "action")  # an improvement action: no ticket
    assert (action["ticket"], action["what"], action["owner"], action["status"], action["source"]) == (
        None, "Train the night shift on modem resets", "ali@acme.example", "open", "report 2026-11")
    ticket = next(line for line in lines if line["kind"] == "ticket")
    assert ticket["number"] == 1 and ticket["created_at"].endswith("+00:00")
    event = next(line for line in lines if line["kind"] == "event")
    assert event["event"] == "ticket.created" and event["ticket"] == 1
    stdout = desk.site.cli("export", "--since", "2000-01-01T00:00+03:00", "--jsonl", "-")
    assert [json.loads(line) for line in decode(stdout)[0].splitlines()] == lines
    later = desk.site.cli("export", "--since", "2999-01-01", "--jsonl", "-")
    assert later.returncode == 0 and decode(later)[0] == ""

    bad = desk.site.cli("export", "--since", "yesterday", "--jsonl", "-")
    assert bad.returncode == 2 and "--since 'yesterday': not a date" in decode(bad)[1]
    unwritable = desk.site.cli("export", "--since", "2000-01-01", "--jsonl", str(tmp_path / "no" / "such.jsonl"))
    assert unwritable.returncode == 2 and "cannot write it" in decode(unwritable)[1]


def test_two_senders_on_postgresql_send_each_delivery_once_in_order(
        desk: Desk, receiver: WebhookReceiver, backend: str) -> None:
    """Two instances' senders at once over the same deliveries: the row claims (FOR UPDATE SKIP LOCKED, the
    earlier-one test repeated under the lock) let each delivery go once, and a ticket's in order. SQLite serves
    one instance (the database's lock file refuses a second), so there is nothing to share there."""
    import threading

    if backend != "postgresql":
        pytest.skip("one instance per SQLite database")
    desk.site.sections["webhooks"] = [hook_section(desk.site, receiver)]
    for n in range(1, 7):
        desk.deliver(customer_mail(n))
    for number in range(1, 7):  # a second event or more on each ticket
        desk.deliver(customer_reply(number, number))
    config, engine = desk.site.config(), desk.site.engine
    webhooks.fan_out(engine, config.webhooks)
    expected = scalar(engine, "select count(*) from webhook_delivery")
    assert expected >= 12

    def sender() -> None:
        with requests.Session() as http:
            while scalar(engine, "select count(*) from webhook_delivery where status != 'sent'"):
                webhooks.send_due(engine, config, http)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(r.delivery for r in receiver.accepted)
    assert len(counts) == expected and set(counts.values()) == {1}
    per_ticket: dict[int, list[int]] = defaultdict(list)
    for r in receiver.accepted:
        per_ticket[r.payload["ticket"]["number"]].append(r.payload["event_id"])
    assert all(ids == sorted(ids) for ids in per_ticket.values()), per_ticket
