"""Several daemons on one PostgreSQL database share two mailboxes; SQLite refuses a second daemon.

The big test is the issue's must-show: three instances, two mailboxes (support@ in INBOX, complaints@ in its
own folder), 3,000 stored messages (the benchmark's generated corpus, 100 of its new requests sent to both
mailboxes), one instance killed with SIGKILL mid-run and started again. Everything is read back from the
database and the SMTP server: every row processed once, one ticket per conversation, every reply in its
conversation's ticket, one acknowledgment per ticket, and a mail the SMTP server saw twice only if the kill
cut its transaction (taken by the server, not yet recorded as sent).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import TICKETD, Mailbox, Site, decode, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink
from ticketd.storage import db

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import mailgen

pytestmark = pytest.mark.integration

TOTAL = 3000
CROSS_POSTED = 100  # new requests sent to both mailboxes: two inbound rows, one ticket
COMPLAINTS = "Complaints"


def pg_site(tmp_path: Path, postgres: Any, mailbox: Mailbox, smtp_sink: SmtpSink) -> Site:
    (tmp_path / "secret").write_text("s" * 40)
    return Site(tmp_path, {
        "helpdesk": {"name": "Acme Support", "address": mailgen.SUPPORT, "tag": "ACME", "language": "en",
                     "timezone": "Europe/Istanbul"},
        "database": {"url": postgres.new_database(migrated=True)},
        "imap": mailbox.imap_section(idle=True, poll_seconds=5),
        "mailboxes": [
            {"name": "support", "address": mailgen.SUPPORT, "folder": "INBOX", "processed_folder": "Processed"},
            {"name": "complaints", "address": "complaints@acme.example", "folder": COMPLAINTS,
             "processed_folder": "Complaints-Processed", "defaults": {"type": "complaint", "priority": "high"}},
        ],
        "smtp": {"host": "127.0.0.1", "port": smtp_sink.port, "tls": "none"},
        "security": {"secret_file": "secret"},
        "limits": {"auto_replies_per_recipient_hour": 10**6, "auto_replies_per_recipient_day": 10**6,
                   "auto_replies_per_hour": 10**6},
        "logging": {"format": "json"},
    })


def corpus() -> tuple[list[mailgen.Mail], list[tuple[str, bytes]]]:
    """The generated mail and where each copy goes: alternately to either mailbox; the first ``CROSS_POSTED``
    new requests also to the other one."""
    _, mails = mailgen.generate(TOTAL - CROSS_POSTED, seed=8, colleague_share=0.0)
    folders = ["INBOX", COMPLAINTS]
    deliveries = [(folders[i % 2], m.raw) for i, m in enumerate(mails)]
    roots = [i for i, m in enumerate(mails) if m.parent is None][:CROSS_POSTED]
    deliveries += [(folders[(i + 1) % 2], mails[i].raw) for i in roots]
    return mails, deliveries


def append_all(mailbox: Mailbox, deliveries: list[tuple[str, bytes]]) -> None:
    client = mailbox.client()
    client.create_folder(COMPLAINTS)
    for folder in ("INBOX", COMPLAINTS):
        batch = [raw for f, raw in deliveries if f == folder]
        for start in range(0, len(batch), 100):
            client.multiappend(folder, batch[start:start + 100])
    client.logout()


class Instance:
    def __init__(self, site: Site, name: str) -> None:
        self.log = site.dir / f"{name}.log"
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen([str(TICKETD), "--config", str(site.config_path), "run"],
                                         env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def counts(engine: sa.Engine, sql: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {str(k): int(v) for k, v in conn.execute(sa.text(sql)).all()}


def status(site: Site) -> dict[str, Any]:
    proc = site.cli("status", "--json")
    out, err = decode(proc)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_three_instances_two_mailboxes_and_a_sigkill(tmp_path: Path, postgres: Any, mailbox: Mailbox,
                                                       smtp_sink: SmtpSink) -> None:
    site = pg_site(tmp_path, postgres, mailbox, smtp_sink)
    site.write()
    mails, deliveries = corpus()
    assert len(deliveries) == TOTAL
    append_all(mailbox, deliveries)
    engine = db.make_engine(site.config().database.url)
    instances = [Instance(site, f"instance-{n}") for n in range(3)]
    try:
        wait_for("both mailboxes taken", lambda: sum(1 for m in status(site)["mailboxes"] if m["holder"]) == 2,
                 instances[0].proc, timeout=60)
        seen = status(site)
        assert sum(i["running"] for i in seen["instances"]) == 3

        def shared_out() -> bool:  # the first to start took both mailboxes; it hands one over
            holders = [m["holder"] for m in status(site)["mailboxes"]]
            return None not in holders and len(set(holders)) == 2

        wait_for("the mailboxes shared out", shared_out, instances[0].proc, timeout=30)
        seen = status(site)
        holders = {m["name"]: m["holder"] for m in seen["mailboxes"]}
        assert sorted(len(i["mailboxes"]) for i in seen["instances"]) == [0, 1, 1], seen

        def processed() -> int:
            return sum(v for k, v in counts(engine, "select status, count(*) from inbound group by status").items()
                       if k != "new")

        wait_for("a third of the mail processed", lambda: processed() >= TOTAL // 3, instances[0].proc, timeout=120)
        victim = next(i for i in instances if f":{i.proc.pid}:" in holders["support"])
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        killed_at = datetime.now(UTC)
        with engine.connect() as conn:
            unsent = set(conn.execute(sa.text("select message_id from outbox where status != 'sent'")).scalars())
        time.sleep(2)  # the SMTP server finishes what the dead client had completed (on a loaded machine, too)
        # Not recorded as sent at the kill, taken by the server by now: the SMTP transactions the kill may have
        # cut are among these (so are some the others sent meanwhile); a cut one goes out again.
        cut = {m.message["Message-ID"] for m in list(smtp_sink.received)} & unsent

        survivor = next(i for i in instances if i is not victim)

        def support_taken_over() -> bool:
            return next(m for m in status(site)["mailboxes"] if m["name"] == "support")["holder"] not in (
                None, holders["support"])

        wait_for("the dead instance's mailbox taken over", support_taken_over, survivor.proc, timeout=30)
        taken = [datetime.fromisoformat(e["timestamp"]) for i in instances if i is not victim for e in i.events()
                 if e.get("event") == "mailbox.taken" and e.get("mailbox") == "support"]
        takeover = (max(taken) - killed_at).total_seconds()
        assert 0 < takeover < 5, takeover  # the lock went with the dead instance's connection
        after_kill = status(site)
        assert [i["running"] for i in after_kill["instances"] if i["id"] == holders["support"]] == [False]
        restarted = Instance(site, "instance-restarted")
        instances.append(restarted)

        def drained() -> bool:
            left = counts(engine, "select status, count(*) from inbound group by status").get("new", 0)
            queued = counts(engine, "select status, count(*) from outbox where status in ('queued', 'failed') "
                                    "group by status")
            return left == 0 and processed() == TOTAL and not queued and mailbox.count("INBOX") == 0 \
                and mailbox.count(COMPLAINTS) == 0

        wait_for("all mail processed and sent", drained, survivor.proc, timeout=600)
        assert sum(i["running"] for i in status(site)["instances"]) == 3
    finally:
        for instance in instances:
            if instance.proc.poll() is None:
                stop_daemon(instance.proc)
    for instance in instances:
        failures = [e for e in instance.events() if e.get("level") in ("error", "critical")
                    and e.get("event") not in ("imap.error",)]
        assert not failures, failures[:5]

    inbound = counts(engine, "select status, count(*) from inbound group by status")
    assert inbound == {"done": TOTAL - CROSS_POSTED, "dropped": CROSS_POSTED}, inbound
    with engine.connect() as conn:
        ticket_of = dict(conn.execute(sa.text(
            "select m.message_id, t.number from message m join ticket t on t.id = m.ticket_id "
            "where m.direction = 'in'")).all())
        types = dict(conn.execute(sa.text("select number, type from ticket")).all())
        acks = Counter(conn.execute(sa.text(
            "select ticket_id from outbox where kind = 'received'")).scalars())
        sent_ids = list(conn.execute(sa.text("select message_id from outbox")).scalars())
    roots = [m for m in mails if m.parent is None]
    root_of = {}
    for m in mails:
        root_of[m.message_id] = m.message_id if m.parent is None else root_of[m.parent]
    # one ticket per conversation: every new request its own ticket, every reply in its conversation's ticket
    assert len(types) == len(roots)
    assert len({ticket_of[m.message_id] for m in roots}) == len(roots)
    misplaced = [m.message_id for m in mails if ticket_of[m.message_id] != ticket_of[root_of[m.message_id]]]
    assert not misplaced, misplaced[:5]
    # the mailbox's defaults: a ticket opened by mail to complaints@ is a complaint (the first mail of a
    # conversation to be processed opens it: a cross-posted request's first copy, or a reply that overtook it)
    with engine.connect() as conn:
        opened_by = conn.execute(sa.text(
            "select i.mailbox, t.type, count(*) from ticket t "
            "join message m on m.id = (select min(id) from message where ticket_id = t.id and direction = 'in') "
            "join inbound i on i.id = m.inbound_id group by i.mailbox, t.type")).all()
    assert {(mailbox, kind) for mailbox, kind, _ in opened_by} == {("support", "request"), ("complaints", "complaint")}
    assert sum(n for *_, n in opened_by) == len(roots)
    # one acknowledgment queued per ticket; at the SMTP server a second copy only of a transaction the kill cut
    assert len(acks) == len(roots) and set(acks.values()) == {1}
    delivered = Counter(m.message["Message-ID"] for m in smtp_sink.received)
    twice = {mid for mid, n in delivered.items() if n > 1}
    assert set(delivered) == set(sent_ids)
    assert twice <= cut, twice - cut
    warnings = Counter(e.get("event") for i in instances for e in i.events() if e.get("level") == "warning")
    print(f"\n{TOTAL} inbound rows, {len(roots)} tickets, {len(sent_ids)} mails sent; {len(twice)} delivered twice, "
          f"each among the {len(cut)} in flight at the SIGKILL; support@ taken over {takeover:.1f} s after the kill; "
          f"warnings: {dict(warnings)}")


def test_sqlite_refuses_a_second_instance(live_site: Site, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the lock file is SQLite's; PostgreSQL runs several instances")
    first = subprocess.Popen([str(TICKETD), "--config", str(live_site.write()), "run"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        wait_for("the first instance to poll its mailbox",
                 lambda: any(m["holder"] for m in status(live_site)["mailboxes"]), first, timeout=30)
        shown, _ = decode(live_site.cli("status"))
        instance_line = next(line for line in shown.splitlines() if f":{first.pid}:" in line)
        assert "running" in instance_line and instance_line.endswith("INBOX"), shown
        assert "inbound: 0 waiting, 0 failed" in shown and "outbox: 0 queued" in shown, shown
        for args in (["run"], ["run", "--once"]):
            proc = live_site.cli(*args, timeout=30)
            out, err = decode(proc)
            assert proc.returncode == 2, (out, err)
            assert f"another ticketd instance (pid {first.pid} on" in err
            assert "SQLite serves one instance; to run several, use PostgreSQL" in err
    finally:
        assert stop_daemon(first) == 0
    assert status(live_site)["instances"] == []  # stopped cleanly: no longer listed
    proc = live_site.cli("run", "--once")  # the lock went with the instance
    assert proc.returncode == 0, decode(proc)
