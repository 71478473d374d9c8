"""Guarantees 1 and 2 of DESIGN.md under SIGKILL at arbitrary points: the daemon is killed again and again
while it fetches, stores, processes and sends; after a clean run every message is processed exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import TICKETD, Mailbox, Site, decode
from ticketd.daemon.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration
N = 40


def mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@acme.example\r\nSubject: Problem {n}\r\n"
            f"Message-ID: <crash-{n}@example.org>\r\n\r\nSomething is broken ({n}).\r\n").encode()


def test_repeated_sigkill_loses_and_duplicates_nothing(live_site: Site, mailbox: Mailbox,
                                                        smtp_sink: SmtpSink) -> None:
    client = mailbox.client()
    for n in range(N):
        client.append("INBOX", mail(n))
    client.logout()
    live_site.write()
    env = {**os.environ, "TICKETD_CONFIG": str(live_site.config_path)}
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([str(TICKETD), "run", "--once"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=10)
    final = live_site.cli("run", "--once")
    assert final.returncode == 0, decode(final)
    assert kills >= 3  # the scenario really interrupted work

    inbound = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert len(inbound) == N and {r["status"] for r in inbound} == {"done"}
    assert len({r["message_id"] for r in inbound}) == N
    tickets = json.loads(live_site.cli("tickets", "list", "--json").stdout)
    assert sorted(t["requester"] for t in tickets) == sorted(f"c{n}@example.org" for n in range(N))
    outbox = json.loads(live_site.cli("outbox", "list", "--json").stdout)
    assert Counter(o["ticket"] for o in outbox if o["kind"] == "received") == {t["number"]: 1 for t in tickets}
    assert {o["status"] for o in outbox} == {"sent"}
    per_recipient = Counter(m.envelope_to[0] for m in smtp_sink.received)
    assert set(per_recipient) == {f"c{n}@example.org" for n in range(N)}  # everyone got an acknowledgment
    repeats = sum(c - 1 for c in per_recipient.values())
    print(f"\n{kills} kills; acknowledgments sent twice because a kill cut their SMTP batch: {repeats}")
    assert all(c <= 1 + kills for c in per_recipient.values())  # a repeat needs a kill mid-send
    assert mailbox.count("INBOX") == 0 and mailbox.count("Processed") == N
