"""Guarantees 1 and 2 of DESIGN.md under SIGKILL at arbitrary points.

500 messages wait in the IMAP inbox: 450 new conversations from distinct customers and 50 replies by those
customers to their own earlier mail (threaded by In-Reply-To/References, appended after the mail they answer).
A reply appends to its conversation's ticket and asks for no acknowledgment (no agents are configured, so it
causes no mail at all); so every customer is owed exactly one `received` acknowledgment and the accounting stays
exact. The daemon (`ticketd run`, IDLE) is SIGKILLed again and again — while it fetches and stores, while it
processes, while it sends — and restarted each time; then it runs until everything is done.

Kill moments come from a seeded RNG (`CRASH_SEED=n` tries another): each run is cut right after its log shows
the targeted step, plus a random slice of time, so the kills land in that step however fast the machine is, and
the work still moves forward between kills. An acknowledgment may reach the SMTP server twice only when a kill
cut its SMTP transaction (the server had taken it, the daemon had not yet recorded it as sent); the test
records those cuts at each kill and checks that they, and only they, came twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import TICKETD, Mailbox, Site
from ticketd.daemon.outgoing import outbox as sender
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

NEW = 450  # new conversations, one customer each
REPLY_EVERY = 9  # after every 9th new conversation, a reply to one appended a few mails earlier
TOTAL = NEW + NEW // REPLY_EVERY  # 500
KILLS = 20
MIN_KILLS = 15
INTAKE_KILLS = 3  # the first runs are cut while they fetch and store
PHASES = ("intake", "processing", "sending")
WORK_EVENTS = {"imap.connected", "inbound.stored", "imap.polled", "inbound.processed", "outbox.sent"}


def new_mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@acme.example\r\nSubject: Problem {n}\r\n"
            f"Message-ID: <crash-{n}@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
            f"Something is broken ({n}).\r\n").encode()


def reply_mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@acme.example\r\nSubject: Re: Problem {n}\r\n"
            f"Message-ID: <crash-{n}-re@example.org>\r\nIn-Reply-To: <crash-{n}@example.org>\r\n"
            f"References: <crash-{n}@example.org>\r\nDate: Mon, 23 Nov 2026 10:05:00 +0000\r\n\r\n"
            f"More detail on problem {n}.\r\n").encode()


def inbox_mails() -> tuple[list[bytes], list[int]]:
    """All mails in inbox order, and the conversations that get a reply."""
    mails, replied = [], []
    for n in range(NEW):
        mails.append(new_mail(n))
        if n % REPLY_EVERY == REPLY_EVERY - 1:
            replied.append(n - 4)
            mails.append(reply_mail(n - 4))
    assert len(mails) == TOTAL
    return mails, replied


class Log:
    """A run's JSON log, read as it grows: the names of its events so far."""

    def __init__(self, path: Path) -> None:
        self.path, self._done = path, 0
        self.names: list[str] = []
        self.first_seen: dict[str, float] = {}  # when the test first saw each event (time.monotonic)

    def events(self) -> list[str]:
        with self.path.open("rb") as f:
            f.seek(self._done)
            chunk = f.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        self._done += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError, KeyError):
                    self.names.append(json.loads(line)["event"])
                    self.first_seen.setdefault(self.names[-1], time.monotonic())
        return self.names

    def text(self) -> str:
        return self.path.read_text(errors="replace")[-3000:]


class State:
    """Counts in the database, and what the daemon was doing if it was killed right now."""

    def __init__(self, engine: sa.Engine) -> None:
        with engine.connect() as conn:
            inbound = dict(conn.execute(sa.text("select status, count(*) from inbound group by status")).all())
            outbox = dict(conn.execute(sa.text("select status, count(*) from outbox group by status")).all())
            self.unsent_ids = set(conn.execute(sa.text("select message_id from outbox where status != 'sent'"))
                                  .scalars())
        self.stored = sum(inbound.values())
        self.new = inbound.get("new", 0)
        self.processed = self.stored - self.new
        self.queued = outbox.get("queued", 0)
        self.unsent = sum(c for s, c in outbox.items() if s != "sent")
        self.sent = outbox.get("sent", 0)

    def remaining(self, phase: str) -> int:
        return {"intake": TOTAL - self.stored, "processing": TOTAL - self.processed,
                "sending": NEW - self.sent}[phase]

    def phase(self, last_event: str | None, inbox_had_mail: bool) -> str:
        """What a daemon killed now was doing, from its last log line and what it left.

        From connecting until `imap.polled` it fetches and stores. After a commit (`inbound.processed`) it
        sends everything due before it goes on: committed mail still queued means it was sending. Else stored
        mail waiting means it was processing, and mail left in the inbox that it was fetching the next chunk.
        """
        if last_event == "inbound.stored" or (last_event == "imap.connected" and inbox_had_mail):
            return "intake"
        if last_event in ("imap.polled", "imap.connected") and self.new:
            return "processing"  # the run's first batch; mail left queued by an earlier run waits for its commit
        if self.queued:
            return "sending"
        if self.new:
            return "processing"
        if self.stored < TOTAL:
            return "intake"
        return "startup" if last_event is None else "idle"


def reached(phase: str, n: int, names: list[str], inbox_empty: bool, engine: sa.Engine) -> bool:
    """Whether a run is where its kill should fall: fetching and storing fresh mail; processing its first batch
    (n=0) or, once the first batch is committed and its mail sent, the second (n=1); sending its n-th mail.

    A batch's `inbound.processed` lines come at its commit, its mail is sent at once, then the next batch is
    processed. Cuts before a run's first commit make no progress, so the kill count does not hang on how many
    batches the work makes; the other runs move the work forward.
    """
    if phase == "intake":
        return "inbound.stored" in names
    if phase == "sending":
        return names.count("outbox.sent") >= n
    if n == 0:
        return "imap.polled" in names or (inbox_empty and "imap.connected" in names)
    return "inbound.processed" in names and not State(engine).queued


def test_repeated_sigkill_loses_and_duplicates_nothing(live_site: Site, mailbox: Mailbox,
                                                        smtp_sink: SmtpSink, tmp_path: Path) -> None:
    mails, replied = inbox_mails()
    client = mailbox.client()
    for raw in mails:
        client.append("INBOX", raw)
    client.logout()
    live_site.sections["imap"].update(idle=True, poll_seconds=5)
    live_site.sections["limits"] = {"auto_replies_per_hour": 10 * TOTAL}  # the breaker is not under test here
    live_site.write()
    engine = live_site.engine
    env = {**os.environ, "TICKETD_CONFIG": str(live_site.config_path)}
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261123")))
    started = time.monotonic()

    kills: list[dict] = []  # per killed run: the targeted phase, the phase it died in, its mails cut mid-send
    batch_seconds = [0.3]  # how long a run takes to process its first batch, as seen so far
    while len(kills) < KILLS:
        state = State(engine)
        if state.remaining("sending") == 0:
            break
        # Which step to cut, and when: right after the step shows in the log, plus a random slice of time.
        if state.remaining("intake") and len(kills) < INTAKE_KILLS:
            phase, extra, after_n = "intake", rng.uniform(0, 0.05), 1
        elif len(kills) % 2:
            phase, extra, after_n = "sending", rng.uniform(0, 0.02), rng.randint(1, 25)
        elif rng.random() < 0.8:  # inside the run's first batch, before its commit: this run makes no progress
            phase, after_n = "processing", 0
            extra = rng.uniform(0.1, 0.7) * sorted(batch_seconds)[len(batch_seconds) // 2]
        else:  # inside the second batch, once the first one is committed and its mail sent
            phase, extra, after_n = "processing", rng.uniform(0.02, 0.2), 1
        inbox_empty = mailbox.count("INBOX") == 0
        log = Log(tmp_path / f"run-{len(kills):02d}.log")
        sink_before = len(smtp_sink.received)
        with log.path.open("wb") as err:
            proc = subprocess.Popen([str(TICKETD), "run"], env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None \
                and not reached(phase, after_n, log.events(), inbox_empty, engine):
            time.sleep(0.005)
        time.sleep(extra)
        assert proc.poll() is None, f"the daemon exited by itself ({proc.returncode}):\n{log.text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(0.2)  # the SMTP server finishes whatever the dead client had completed
        after = State(engine)
        last_event = next((n for n in reversed(log.events()) if n in WORK_EVENTS), None)
        # From the first mail stored (processing cannot start before it; the intake may log its poll after the
        # main loop has begun on what it stored) to the first processed.
        begun = log.first_seen.get("inbound.stored", log.first_seen.get("imap.connected"))
        if begun is not None and log.first_seen.get("inbound.processed", begun) > begun:
            batch_seconds.append(log.first_seen["inbound.processed"] - begun)
        got = {m.message["Message-ID"] for m in smtp_sink.received[sink_before:]}
        # Taken by the server, not recorded as sent: the kill cut these SMTP transactions; they go out again.
        kills.append({"target": phase, "died_in": after.phase(last_event, not inbox_empty),
                      "cut": got & after.unsent_ids, "progress": after.processed - state.processed})
    killing = time.monotonic() - started

    # The final run, until everything is done.
    log = Log(tmp_path / "final.log")
    with log.path.open("wb") as err:
        proc = subprocess.Popen([str(TICKETD), "run"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = State(engine)
            if state.processed == TOTAL and state.unsent == 0 and state.sent == NEW \
                    and "daemon.started" in log.events():  # up, and past installing its SIGTERM handler
                break
            assert proc.poll() is None, log.text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.text()
    finally:
        if proc.poll() is None:
            proc.kill()
    total = time.monotonic() - started
    by_phase = Counter(k["died_in"] for k in kills)
    print(f"\n{len(kills)} kills in {killing:.1f} s ({dict(by_phase)}); everything done after {total:.1f} s")
    print("killed while (targeted→actual, SMTP transactions cut):",
          ", ".join(f"{k['target']}→{k['died_in']} {len(k['cut'])}" for k in kills))
    print("messages processed per killed run:", [k["progress"] for k in kills])
    # Each run that gets to send has committed a batch (50 messages), so the work lasts about 10 such runs.
    assert len(kills) >= MIN_KILLS, f"the work ran out after {len(kills)} kills: retune the kill plan"
    assert all(by_phase[p] for p in PHASES), kills  # kills really landed in every phase of the work

    # Exactly 500 inbound rows, all done: nothing lost, nothing stored twice.
    proc = live_site.cli("inbound", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    inbound = json.loads(proc.stdout)
    assert len(inbound) == TOTAL and Counter(r["status"] for r in inbound) == {"done": TOTAL}
    assert sorted(r["message_id"] for r in inbound) == sorted(
        [f"<crash-{n}@example.org>" for n in range(NEW)] + [f"<crash-{n}-re@example.org>" for n in replied])

    # One ticket per new conversation; each reply went onto its conversation's ticket.
    tickets = json.loads(live_site.cli("tickets", "list", "--json").stdout)
    assert len(tickets) == NEW
    assert sorted(t["requester"] for t in tickets) == sorted(f"c{n}@example.org" for n in range(NEW))
    ticket_of = {r["message_id"]: r["ticket"] for r in inbound}
    assert all(ticket_of[f"<crash-{n}-re@example.org>"] == ticket_of[f"<crash-{n}@example.org>"] for n in replied)
    assert len(set(ticket_of.values())) == NEW

    # One acknowledgment per ticket, queued once, sent.
    outbox = json.loads(live_site.cli("outbox", "list", "--json").stdout)
    assert Counter(o["kind"] for o in outbox) == {"received": NEW}
    assert Counter(o["ticket"] for o in outbox) == {t["number"]: 1 for t in tickets}
    assert {o["status"] for o in outbox} == {"sent"}

    # Every customer got their acknowledgment at the SMTP server — the same mail, even when it came twice.
    received = smtp_sink.received
    per_recipient: dict[str, set[str]] = defaultdict(set)
    for mail in received:
        assert len(mail.envelope_to) == 1
        per_recipient[mail.envelope_to[0]].add(mail.message["Message-ID"])
    assert set(per_recipient) == {f"c{n}@example.org" for n in range(NEW)}
    assert all(len(ids) == 1 for ids in per_recipient.values()), "a customer got two different acknowledgments"
    assert {next(iter(ids)) for ids in per_recipient.values()} == {o["message_id"] for o in outbox}

    # A mail arrives twice only when a kill cut its SMTP transaction: the server had taken it, the daemon died
    # before recording `sent`. Those, and only those, were sent again — the same stored mail, byte for byte.
    times = Counter(m.message["Message-ID"] for m in received)
    duplicates = sum(n - 1 for n in times.values())
    cut = Counter(mid for k in kills for mid in k["cut"])
    print(f"{len(kills)} kills; {duplicates} acknowledgments delivered twice because a kill cut their SMTP "
          "transaction")
    assert {mid: n - 1 for mid, n in times.items() if n > 1} == dict(cut)
    lanes = getattr(sender, "SMTP_LANES", 1)  # connections one sending run uses at once: each can be cut
    assert all(len(k["cut"]) <= lanes for k in kills)
    assert duplicates <= len(kills) * lanes
    for mid in cut:
        assert len({m.raw for m in received if m.message["Message-ID"] == mid}) == 1, mid

    # The server side: the inbox is empty and every message is in Processed.
    assert mailbox.count("INBOX") == 0 and mailbox.count("Processed") == TOTAL
