"""How long a customer waits for the acknowledgment: over LMTP, over IMAP IDLE and through the web form, at a
steady rate.

Usage:

    .venv/bin/python tests/benchmarks/latency.py [--rate 20] [--seconds 30] [--backend sqlite|postgresql]

One daemon serves both paths at once (``[lmtp] listen`` and ``[imap]`` with IDLE on a private Dovecot); the
SMTP server is the benchmark's, in this process, stamping each mail as its DATA completes. Each phase sends
``rate × seconds`` new requests (each from a new customer, so each opens a ticket and is acknowledged) on a
fixed schedule and measures, per request, from the end of its delivery to its acknowledgment accepted:

- LMTP: from the ``250`` after DATA (what an MTA waits for: the mail is committed by then) to the ack;
- IMAP IDLE: from the end of APPEND to the ack. Dovecot holds every IDLE notification for 500 ms
  (``NOTIFY_DELAY_MSECS``), measured here on another folder and printed as that path's floor;
- the web form: from the start of the POST to the ack (the page answers after the commit, and the daemon may
  acknowledge before that answer reaches the visitor). One client posts one form after another; each form
  page is fetched beforehand, as visitors fetch theirs before they write.

Goals from the issue: LMTP p95 under 100 ms, IDLE p95 under 700 ms, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import smtplib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import requests
from floor import calibration
from ingest import (
    IMAP_USER,
    TimedSink,
    cli,
    idle_notice_delay,
    imap_client,
    log_tail,
    pct,
    pcts,
    proc_cpu,
    start_daemon,
    stop_daemon,
    write_config,
)

from ticketd.daemon.outgoing.smtp_sink import free_port

TESTS = Path(__file__).resolve().parents[1]
GOAL_P95_MS = {"lmtp": 100.0, "imap": 700.0}  # the web form has none of its own


def request(n: int, phase: str) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Müşteri {n} <musteri{n}.{phase}@example.com.tr>"
    msg["To"] = "support@acme.example"
    msg["Subject"] = f"Modem {n} bağlanmıyor"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(f"{phase}{n}", domain="example.com.tr")
    msg.set_content(f"Merhaba,\n\n{n} numaralı modem dün akşamdan beri bağlanmıyor. Işıklar yanıp sönüyor.\n")
    return str(msg["Message-ID"]), msg.as_bytes()


def web_request(n: int, page: str) -> tuple[str, bytes]:
    """A form page's token, and the Message-ID the form server gives the mail it makes of that page's post."""
    token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
    return f"<web.{token.split('.')[1]}@acme.example>", token.encode()


def web_fields(token: str) -> dict[str, str]:
    n = token.split(".")[1][:12].lower()
    return {"token": token, "lang": "tr", "name": f"Müşteri {n}", "email": f"musteri.{n}@example.com.tr",
            "type": "complaint", "subject": f"Modem {n} bağlanmıyor",
            "description": "Merhaba,\n\nModem dün akşamdan beri bağlanmıyor. Işıklar yanıp sönüyor.\n"}


def paced(count: int, rate: float, deliver: Callable[[int], None], lag: list[float]) -> None:
    """Call ``deliver(i)`` on a fixed schedule, recording how far behind it each call started."""
    t0 = time.monotonic() + 0.1
    for i in range(count):
        due = t0 + i / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        lag.append(max(0.0, time.monotonic() - due))
        deliver(i)


def acks_by_request(sink: TimedSink) -> dict[str, float]:
    return {s.in_reply_to: s.at for s in sink.since(0) if s.in_reply_to}


def phase(name: str, mails: list[tuple[str, bytes]], rate: float, send: Callable[[bytes], None],
          sink: TimedSink, daemon: Any, log: Path, timeout: float, from_start: bool = False) -> list[float]:
    """``from_start``: timed from the moment the request is sent (the form's POST: its answer comes after the
    commit, and the daemon may acknowledge before the page reaches the visitor)."""
    delivered: dict[str, float] = {}
    lag: list[float] = []
    failure: list[BaseException] = []

    def deliver(i: int) -> None:
        message_id, raw = mails[i]
        started = time.time()
        send(raw)
        delivered[message_id] = started if from_start else time.time()

    def run() -> None:
        try:
            paced(len(mails), rate, deliver, lag)
        except BaseException as exc:
            failure.append(exc)

    cpu_before = proc_cpu(daemon.pid)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wanted = {m for m, _ in mails}
    deadline = time.monotonic() + len(mails) / rate + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited ({daemon.returncode}):\n{log_tail(log)}")
        if not thread.is_alive() and wanted <= acks_by_request(sink).keys():
            break
        time.sleep(0.25)
    thread.join(timeout=5)
    if failure:
        raise RuntimeError(f"{name} delivery failed: {failure[0]!r}")
    acks = acks_by_request(sink)
    latency = [acks[m] - delivered[m] for m in wanted if m in acks and m in delivered]
    cpu = proc_cpu(daemon.pid) - cpu_before
    p95 = pct(latency, 95) * 1000 if latency else float("inf")
    goal = GOAL_P95_MS.get(name)
    verdict = f"goal p95 < {goal:.0f} ms: {'met' if p95 < goal else 'NOT MET'}" if goal else "no goal set"
    print(f"{name:<5} {len(mails)} requests at {rate:g}/s: schedule lag p50/max {pct(lag, 50) * 1000:.0f} / "
          f"{max(lag) * 1000:.0f} ms; daemon CPU {cpu / max(1, len(mails)) * 1000:.1f} ms per request", flush=True)
    print(f"{name:<5} delivered → ack p50/p95/p99 {pcts(latency)}, max {max(latency, default=0) * 1000:.0f} ms "
          f"({len(latency)} of {len(mails)} acknowledged)   [{verdict}]", flush=True)
    return latency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default 30)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (config, database, log)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    sys.path.insert(0, str(TESTS))
    from servers.dovecot import dovecot_available, start_dovecot
    from servers.postgres import start_postgres

    if not dovecot_available():
        print("Dovecot is not installed (`make test` installs it: apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    count = round(args.rate * args.seconds)
    work = Path(tempfile.mkdtemp(prefix="ticketd-latency-"))
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: shutil.rmtree(work, ignore_errors=True) if not args.keep else
                       print(f"kept the work folder {work}"))
        print(f"=== arrival to acknowledgment on {args.backend}, {count} requests per path at {args.rate:g}/s; "
              f"{os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}, machine speed {calibration():.3f} s",
              flush=True)
        password = secrets.token_urlsafe(12)
        server = start_dovecot(work / "dovecot", {IMAP_USER: password})
        stack.callback(server.stop)
        sink = TimedSink().start()
        stack.callback(sink.stop)
        site = work / "site"
        site.mkdir()
        (site / "imap-password").write_text(password)
        url = "sqlite:///ticketd.db"
        if args.backend == "postgresql":
            cluster = start_postgres()
            stack.callback(cluster.stop)
            url = cluster.new_database()
        config = write_config(site, server.port, sink.port, [], url)
        port, web_port = free_port(), free_port()
        with config.open("a") as f:
            f.write(f'\n[lmtp]\nlisten = "127.0.0.1:{port}"\n')
            f.write(f'\n[webform]\nlisten = "127.0.0.1:{web_port}"\nrate_per_hour = 1000000\n')
        cli(config, "db", "upgrade")
        floor = idle_notice_delay(server, password)
        print(f"IDLE floor: Dovecot told an idle client of an APPEND after {floor * 1000:.0f} ms (another folder)")
        log = site / "daemon.log"
        daemon = start_daemon(config, log)
        stack.callback(stop_daemon, daemon)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                smtplib.LMTP("127.0.0.1", port, timeout=5).quit()
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"the LMTP listener did not come up:\n{log_tail(log)}")
            time.sleep(0.1)
        time.sleep(2)  # IDLE settled on INBOX

        lmtp = smtplib.LMTP("127.0.0.1", port, timeout=30)  # one connection, reused, as Postfix caches them
        stack.callback(lmtp.close)
        lmtp_mails = [request(n, "lmtp") for n in range(count)]
        phase("lmtp", lmtp_mails, args.rate,
              lambda raw: lmtp.sendmail("customer@example.com.tr", ["support@acme.example"], raw),
              sink, daemon, log, timeout=60)

        imap = imap_client(server, password)
        stack.callback(imap.logout)
        imap_mails = [request(n, "imap") for n in range(count)]
        phase("imap", imap_mails, args.rate, lambda raw: imap.append("INBOX", raw), sink, daemon, log, timeout=60)
        web = requests.Session()
        form = f"http://127.0.0.1:{web_port}/?lang=tr"
        web_mails = [web_request(n, web.get(form, timeout=30).text) for n in range(count)]

        def post(token: bytes) -> None:
            answer = web.post(form, data=web_fields(token.decode()), timeout=30)
            if answer.status_code != 200:
                raise RuntimeError(f"the form answered {answer.status_code}: {answer.text[:300]}")

        phase("web", web_mails, args.rate, post, sink, daemon, log, timeout=60, from_start=True)
        status = cli(config, "status")
        print("ticketd status (its own view, from arrival as the daemon saw it):")
        print("\n".join("  " + line for line in status.splitlines()
                        if any(word in line for word in ("lmtp", "imap", "web", "CHANNEL", "arrival"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
