"""End-to-end benchmark: a private Dovecot → `ticketd run` (IDLE) → a recording SMTP server, all on loopback.

Usage:

    .venv/bin/python tests/benchmarks/ingest.py [--n 2000] [--latency-n 300] [--rate 20] [--seed 1]
    .venv/bin/python tests/benchmarks/ingest.py --backlog-only --n 10000    # the 10,000-message backlog's RSS

Options: ``--n`` backlog size; ``--latency-n`` and ``--rate`` (messages per second) for the latency phase;
``--backlog-only`` skips the latency phase; ``--agents`` how many agents the config declares (default 3, each
told of every new ticket, so a new request makes 1 + agents mails); ``--seed`` for the generated mail
(tests/benchmarks/mailgen.py: plain and HTML, attachments, replies, Turkish in UTF-8 and ISO-8859-9, known and
unknown senders); ``--stall-timeout`` gives up a phase when nothing moved for that many seconds; ``--keep``
keeps the work folder (config, database, daemon log) and prints where it is; ``--backend postgresql`` runs on a
private PostgreSQL cluster instead of a SQLite file; ``--ticketd`` names another ticketd command (an older
version started from its own source tree) for a before/after on the same machine and the same mail.

Besides the rates, the backlog phase prints the daemon's CPU per message and how busy the machine was, and every
run starts with the seconds a fixed pure-Python loop takes: this machine's speed varies from day to day (the same
code has run 2.6 times slower on one day than on another), so only runs with close loop times compare.

1. Backlog: all ``--n`` mails are APPENDed (MULTIAPPEND) to the inbox before the daemon starts. Throughput is
   measured from the first fetch (the timestamp of the daemon's first ``inbound.stored`` log line) to the
   last acknowledgment accepted by the SMTP server; complete means every inbound row processed and every
   expected acknowledgment received. A new request gets a "received" mail threaded to it (In-Reply-To = the
   customer's Message-ID); a reply that joins its ticket gets none, only the agents are told.
2. Latency: with the daemon idle in IMAP IDLE, ``--latency-n`` mails are APPENDed at ``--rate`` per second from
   a separate thread; latency is the time from the APPEND's completion to the SMTP server receiving the
   acknowledgment, reported as p50/p95/p99 with where the time goes (from the daemon's log).
3. The daemon's peak RSS (VmHWM) is read just before it is stopped with SIGTERM.

Figures are printed next to the targets (>= 400 msg/s end to end, p95 < 500 ms, peak RSS < 150 MB for a
10,000 backlog) with whether each was met; the exit status does not depend on them. Everything lives in a
temporary folder that is removed at the end; Dovecot and the daemon are stopped on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import mailgen
from aiosmtpd.controller import Controller
from floor import calibration
from imapclient import IMAPClient

from ticketd.daemon.outgoing.smtp_sink import SmtpSink, _Handler

TESTS = Path(__file__).resolve().parents[1]
TICKETD = [str(Path(sys.executable).with_name("ticketd"))]  # --ticketd replaces it (an older version, to compare)
AGENT_POOL = [("ali.veli@acme.example", "Ali Veli", "agent", ["network"]),
              ("ayse.demir@acme.example", "Ayşe Demir", "agent", ["billing"]),
              ("murat.kaya@acme.example", "Murat Kaya", "manager", ["network", "billing"]),
              ("selin.aksoy@acme.example", "Selin Aksoy", "agent", ["network"]),
              ("emre.tekin@acme.example", "Emre Tekin", "agent", ["billing"]),
              ("deniz.ucar@acme.example", "Deniz Uçar", "agent", ["installation"])]
ADMIN = "ops@acme.example"
IMAP_USER = "support"
TARGET_RATE, TARGET_P95_MS, TARGET_RSS_MB, TARGET_BACKLOG = 400.0, 500.0, 150.0, 10_000


# --- the SMTP side: when each mail arrived, to whom, and what it answers -----------------------------------

@dataclass(frozen=True)
class Sent:
    at: float  # time.time() when DATA completed
    to: tuple[str, ...]
    in_reply_to: str | None


@dataclass
class _TimedHandler(_Handler):
    """SmtpSink's handler, keeping a timestamped summary instead of the raw mail (30,000 raw mails of a big
    backlog would inflate the benchmark process, not the daemon)."""

    sent: list[Sent] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.time()
        head = bytes(envelope.original_content).split(b"\r\n\r\n", 1)[0]
        irt = str(BytesHeaderParser(policy=policy.compat32).parsebytes(head).get("In-Reply-To") or "").strip()
        with self.lock:
            self.sent.append(Sent(at, tuple(a.lower() for a in envelope.rcpt_tos), irt or None))
        return "250 OK"


class TimedSink(SmtpSink):
    def __init__(self) -> None:
        super().__init__()
        self.handler = _TimedHandler(None)
        self._controller = Controller(self.handler, hostname=self.host, port=self.port, decode_data=False)

    def since(self, start: int) -> list[Sent]:
        with self.handler.lock:
            return self.handler.sent[start:]


class Outgoing:
    """Sorts what the sink received: acks (first customer mail answering a generated Message-ID), agent
    notifications, admin alerts, anything else."""

    def __init__(self, sink: TimedSink, generated: set[str], agents: set[str]) -> None:
        self.sink, self.generated, self.agents = sink, generated, agents
        self.seen = 0
        self.acks: dict[str, float] = {}
        self.agent_first: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.last_at = 0.0

    def update(self) -> None:
        new = self.sink.since(self.seen)
        self.seen += len(new)
        for s in new:
            self.last_at = max(self.last_at, s.at)
            if s.to and all(a in self.agents for a in s.to):
                self.counts["agent notifications"] += 1
                if s.in_reply_to:
                    self.agent_first.setdefault(s.in_reply_to, s.at)
            elif ADMIN in s.to:
                self.counts["admin alerts"] += 1
            elif s.in_reply_to in self.generated and s.in_reply_to not in self.acks:
                self.counts["acks"] += 1
                self.acks[s.in_reply_to] = s.at
            elif s.in_reply_to in self.generated:
                self.counts["second mail to a customer for the same message"] += 1
            else:
                self.counts["other mail to customers"] += 1


# --- the daemon's side: database counts, log, memory ---------------------------------------------------------

class Db:
    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)

    def counts(self, table: str) -> Counter[str]:
        for _ in range(20):
            try:
                return Counter(dict(self.con.execute(f"SELECT status, count(*) FROM {table} GROUP BY status")))
            except sqlite3.OperationalError:  # busy for a moment under the daemon's writes
                time.sleep(0.05)
        return Counter()

    def close(self) -> None:
        self.con.close()


class PgDb:
    def __init__(self, url: str) -> None:
        import psycopg

        self.con = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True,
                                   connect_timeout=10)

    def counts(self, table: str) -> Counter[str]:
        return Counter(dict(self.con.execute(f"SELECT status, count(*) FROM {table} GROUP BY status").fetchall()))

    def close(self) -> None:
        self.con.close()


def log_events(path: Path) -> list[dict[str, Any]]:
    events = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    event = json.loads(line)
                    with contextlib.suppress(KeyError, ValueError, TypeError):
                        event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
                    events.append(event)
    return events


def first_by_message(events: Iterable[dict[str, Any]], name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in events:
        if e.get("event") == name and e.get("message_id") and "t" in e:
            out.setdefault(e["message_id"], e["t"])
    return out


def proc_memory(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of a process in KiB."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), sum(values) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB ({kib * 1024 / 1e6:.1f} MB)"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def pcts(values: list[float]) -> str:
    if not values:
        return "n/a"
    return " / ".join(f"{pct(values, p) * 1000:.0f}" for p in (50, 95, 99)) + " ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


# --- set-up --------------------------------------------------------------------------------------------------

def write_config(work: Path, imap_port: int, smtp_port: int, agents: list[tuple[str, str, str, list[str]]],
                 url: str = "sqlite:///ticketd.db") -> Path:
    (work / "secret").write_text(secrets.token_urlsafe(32))
    tables = "".join(f'\n[[agents]]\nemail = "{e}"\nname = "{n}"\nrole = "{r}"\ngroups = {json.dumps(g)}\n'
                     for e, n, r, g in agents)
    path = work / "ticketd.toml"
    path.write_text(f"""[helpdesk]
name = "Acme Support"
address = "{mailgen.SUPPORT}"
tag = "ACME"
language = "en"
timezone = "Europe/Istanbul"
admin = "{ADMIN}"

[database]
url = "{url}"

[imap]
host = "127.0.0.1"
port = {imap_port}
tls = "none"
username = "{IMAP_USER}"
password_file = "imap-password"
folder = "INBOX"
processed_folder = "Processed"
idle = true
poll_seconds = 60

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"

[security]
secret_file = "secret"

[limits]                            # measure the pipeline, not the storm caps or the circuit breaker
auto_replies_per_recipient_hour = 1000000
auto_replies_per_recipient_day = 1000000
auto_replies_per_hour = 1000000

[logging]
level = "info"
format = "json"
{tables}""", encoding="utf-8")
    return path


def cli(config: Path, *args: str) -> str:
    proc = subprocess.run([*TICKETD, "--config", str(config), *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=config.parent)
    if proc.returncode:
        raise RuntimeError(f"ticketd {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def load_directory(config: Path, world: mailgen.World) -> str:
    """Customers (with their companies and domains) from CSV, other companies by domain: as an operator would."""
    cli(config, "db", "upgrade")
    csv_path = config.parent / "customers.csv"
    world.write_customers_csv(csv_path)
    done = [cli(config, "customers", "import", str(csv_path))]
    for c in world.companies:
        if not c.in_csv:
            args = ["companies", "add", c.name, "--domain", c.domain]
            if c.contract_until:
                args += ["--contract-until", c.contract_until.isoformat()]
            cli(config, *args)
    done.append(f"{sum(not c.in_csv for c in world.companies)} companies added by domain")
    return "; ".join(done)


def imap_client(server: Any, password: str) -> IMAPClient:
    c = IMAPClient(server.host, port=server.port, ssl=False, timeout=60)
    c.login(IMAP_USER, password)
    return c


def append_backlog(server: Any, password: str, mails: list[mailgen.Mail], chunk: int = 100) -> float:
    c = imap_client(server, password)
    started = time.perf_counter()
    try:
        multi = c.has_capability("MULTIAPPEND")
        for i in range(0, len(mails), chunk):
            batch = [m.raw for m in mails[i:i + chunk]]
            if multi:
                c.multiappend("INBOX", batch)
            else:
                for raw in batch:
                    c.append("INBOX", raw)
    finally:
        c.logout()
    return time.perf_counter() - started


def idle_notice_delay(server: Any, password: str, samples: int = 3) -> float:
    """How long the server takes to tell an IDLEing client about an APPEND, in a folder the daemon does not watch.

    Dovecot batches mailbox changes before notifying (500 ms): a floor for mail reaching an idle daemon.
    """
    watcher, writer = imap_client(server, password), imap_client(server, password)
    try:
        if not watcher.folder_exists("Probe"):
            watcher.create_folder("Probe")
        watcher.select_folder("Probe")
        delays = []
        for _ in range(samples):
            watcher.idle()
            time.sleep(0.2)
            writer.append("Probe", b"From: probe@acme.example\r\nSubject: probe\r\n\r\nprobe\r\n")
            appended = time.perf_counter()
            seen = watcher.idle_check(timeout=5)
            delays.append(time.perf_counter() - appended if seen else float("inf"))
            watcher.idle_done()
        return sorted(delays)[len(delays) // 2]
    finally:
        watcher.logout()
        writer.logout()


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:  # the child keeps its own descriptor
        return subprocess.Popen([*TICKETD, "--config", str(config), "run"], cwd=config.parent,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # our Ctrl-C must not stop it before we read its memory


def stop_daemon(daemon: subprocess.Popen[bytes]) -> int | None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
    return daemon.returncode


def log_tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


# --- waiting -------------------------------------------------------------------------------------------------

def wait_until(done: Callable[[], bool], progress: Callable[[], tuple[Any, ...]], daemon: subprocess.Popen[bytes],
               log: Path, stall_timeout: float, report: Callable[[], str]) -> bool:
    """Poll until ``done()``; False when nothing moved for ``stall_timeout`` seconds. Raises if the daemon died."""
    last, moved_at, shown_at = None, time.monotonic(), time.monotonic()
    while True:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}; log tail:\n{log_tail(log)}")
        if done():
            return True
        now, state = time.monotonic(), progress()
        if state != last:
            last, moved_at = state, now
        elif now - moved_at > stall_timeout:
            print(f"   !! nothing moved for {stall_timeout:.0f} s: {report()}", flush=True)
            return False
        if now - shown_at >= 5:
            print(f"   .. {report()}", flush=True)
            shown_at = now
        time.sleep(0.25)  # the figures come from the sink's and the log's timestamps, not from this loop


# --- the run -------------------------------------------------------------------------------------------------

@dataclass
class Run:
    args: argparse.Namespace
    work: Path
    mails: list[mailgen.Mail]
    server: Any = None
    sink: TimedSink | None = None
    daemon: subprocess.Popen[bytes] | None = None
    db: Db | PgDb | None = None
    out: Outgoing | None = None
    idle_delay: float | None = None  # the server's IDLE notice delay, measured before the daemon starts
    lines: list[str] = field(default_factory=list)  # the summary, printed again at the end

    def say(self, text: str = "", summary: bool = False) -> None:
        print(text, flush=True)
        if summary:
            self.lines.append(text)


def mail_mix(mails: list[mailgen.Mail]) -> str:
    kinds = Counter(m.kind for m in mails)
    senders = Counter("known customer" if m.sender.known else "company domain" if m.sender.company else "unknown"
                      for m in mails)
    latin5 = sum(b"charset=iso-8859-9" in m.raw for m in mails)
    size = sum(len(m.raw) for m in mails) / max(1, len(mails)) / 1024
    return (f"{', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; senders: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(senders.items()))}; {latin5} in ISO-8859-9; "
            f"mean size {size:.1f} KiB")


def backlog_phase(run: Run, config: Path, log: Path, password: str) -> dict[str, Any]:
    args, mails = run.args, run.mails[:run.args.n]
    assert run.sink is not None and run.out is not None and run.db is not None
    run.say(f"\n--- backlog: {len(mails)} messages in the inbox before `ticketd run` starts", summary=True)
    run.say(f"mix                  {mail_mix(mails)}")
    seconds = append_backlog(run.server, password, mails)
    run.say(f"APPEND               {len(mails)} messages in {seconds:.2f} s ({len(mails) / seconds:.0f} msg/s)")
    ids = {m.message_id for m in mails}
    expected = {m.message_id for m in mails if m.expects_ack}
    started = time.time()
    run.daemon = start_daemon(config, log)
    out, db, daemon_pid = run.out, run.db, run.daemon.pid

    def report() -> str:
        inbound = db.counts("inbound")
        spent, handled = time.time() - started, sum(inbound.values()) - inbound["new"]
        return (f"{spent:.0f} s: inbound {dict(inbound)}, acks {len(expected & out.acks.keys())}/{len(expected)}, "
                f"mails received by SMTP {out.seen}, {handled / spent:.1f} processed/s since start")

    cpu_at_first_row: list[tuple[float, float, float]] = []  # daemon CPU, machine busy, machine total

    def done() -> bool:
        out.update()
        inbound = db.counts("inbound")
        if not cpu_at_first_row and sum(inbound.values()):
            cpu_at_first_row.append((proc_cpu(daemon_pid), *machine_cpu()))
        return (sum(inbound.values()) >= len(mails) and inbound["new"] == 0
                and expected <= out.acks.keys())

    def progress() -> tuple[Any, ...]:
        return (tuple(sorted(db.counts("inbound").items())), out.seen)

    def drained_now() -> bool:  # the last acks may leave a few agent notifications behind
        out.update()
        return db.counts("outbox")["queued"] == 0

    complete = wait_until(done, progress, run.daemon, log, args.stall_timeout, report)
    cpu_at_done = (proc_cpu(daemon_pid), *machine_cpu())
    drained = wait_until(drained_now, progress, run.daemon, log, args.stall_timeout, report)
    time.sleep(0.3)
    out.update()
    memory = proc_memory(run.daemon.pid)

    events = log_events(log)
    stored = {k: v for k, v in first_by_message(events, "inbound.stored").items() if k in ids}
    processed = {k: v for k, v in first_by_message(events, "inbound.processed").items() if k in ids}
    if stored:
        t0, origin = min(stored.values()), "first inbound.stored log line"
    else:
        t0, origin = started, "daemon start (no inbound.stored line in its log: fallback)"
    acks = [out.acks[m] for m in expected if m in out.acks]
    last_ack = max(acks, default=float("nan"))
    elapsed = last_ack - t0
    rate = len(mails) / elapsed if acks else 0.0
    inbound = db.counts("inbound")
    outbox = db.counts("outbox")
    polls = sum(1 for e in events if e.get("event") == "imap.polled" and e.get("t", 0) <= last_ack)

    run.say(f"first fetch          +{t0 - started:.2f} s after the daemon was started ({origin})")
    if stored:
        run.say(f"stored               {len(stored)}, the last at +{max(stored.values()) - t0:.2f} s "
                f"({polls} IMAP poll(s) until the last ack)")
    if processed:
        run.say(f"processing           first processed at +{min(processed.values()) - t0:.2f} s, last at "
                f"+{max(processed.values()) - t0:.2f} s (after first fetch)")
    if acks:
        run.say(f"acknowledgments      first at +{min(acks) - t0:.2f} s, last at +{last_ack - t0:.2f} s")
    run.say(f"end to end           {len(mails)} messages in {elapsed:.2f} s = {rate:.1f} msg/s, first fetch → "
            f"last ack   [target >= {TARGET_RATE:.0f} msg/s: {verdict(rate >= TARGET_RATE)}]", summary=True)
    run.say(f"acks                 {len(acks)} of {len(expected)} expected ("
            f"{len(mails) - len(expected)} replies joined their tickets and get none)"
            + ("" if complete else "  !! INCOMPLETE"), summary=True)
    run.say(f"mails sent by daemon {out.seen} in all: " + ", ".join(f"{k} {v}" for k, v in out.counts.items())
            + f" (outbox: {dict(outbox)})" + ("" if drained else "  !! outbox not drained"), summary=True)
    run.say(f"outbox drained       +{out.last_at - t0:.2f} s after first fetch")
    run.say(f"inbound rows         {dict(inbound)}", summary=True)
    if cpu_at_first_row:  # from the first stored row seen to every ack seen (both polled: a little coarse)
        (d0, b0, a0), (d1, b1, a1) = cpu_at_first_row[0], cpu_at_done
        run.say(f"CPU                  daemon {d1 - d0:.1f} s = {(d1 - d0) / len(mails) * 1000:.2f} ms/msg; machine "
                f"busy {(b1 - b0) / (a1 - a0) * 100:.0f} % of {os.cpu_count()} CPU(s) meanwhile", summary=True)
    run.say(f"daemon RSS           peak (VmHWM) {mib(memory.get('VmHWM', 0))}, now {mib(memory.get('VmRSS', 0))}"
            f" after {len(mails)} messages", summary=True)
    run.say(f"daemon RSS now       {mib(memory.get('RssAnon', 0))} anonymous, {mib(memory.get('RssFile', 0))} file "
            "pages (libraries, the language model's map: pages the kernel can drop)", summary=True)
    return {"rate": rate, "complete": complete, "hwm": memory.get("VmHWM", 0)}


def latency_phase(run: Run, log: Path, password: str) -> dict[str, Any]:
    args, mails = run.args, run.mails[run.args.n:]
    assert run.daemon is not None and run.out is not None and run.db is not None
    out, db, daemon = run.out, run.db, run.daemon
    run.say(f"\n--- latency: {len(mails)} messages APPENDed at {args.rate:g}/s into the idle daemon (IMAP IDLE)",
            summary=True)
    run.say(f"mix                  {mail_mix(mails)}")
    time.sleep(1.5)  # let it settle into IDLE
    appended: dict[str, float] = {}
    lag: list[float] = []
    failure: list[BaseException] = []

    def appender() -> None:
        try:
            c = imap_client(run.server, password)
            try:
                t0 = time.monotonic() + 0.1
                for i, m in enumerate(mails):
                    due = t0 + i / args.rate
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(wait)
                    lag.append(max(0.0, time.monotonic() - due))
                    c.append("INBOX", m.raw)
                    appended[m.message_id] = time.time()
            finally:
                c.logout()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=appender, name="appender", daemon=True)
    total_before = sum(db.counts("inbound").values())
    thread.start()
    expected = {m.message_id for m in mails if m.expects_ack}
    # A reply joining its ticket is answered by nothing but the agents' notification: none without agents.
    replies = {m.message_id for m in mails if not m.expects_ack} if out.agents else set()

    def done() -> bool:
        out.update()
        inbound = db.counts("inbound")
        return (not thread.is_alive() and sum(inbound.values()) >= total_before + len(mails)
                and inbound["new"] == 0 and expected <= out.acks.keys() and replies <= out.agent_first.keys())

    def progress() -> tuple[Any, ...]:
        return (len(appended), tuple(sorted(db.counts("inbound").items())), out.seen)

    def report() -> str:
        return (f"appended {len(appended)}/{len(mails)}, acks {len(expected & out.acks.keys())}/{len(expected)}, "
                f"inbound {dict(db.counts('inbound'))}")

    complete = wait_until(done, progress, daemon, log, args.stall_timeout, report)
    thread.join(timeout=5)
    if failure:
        raise RuntimeError(f"APPEND failed: {failure[0]!r}")
    out.update()
    ack_lat = [out.acks[m] - appended[m] for m in expected if m in out.acks and m in appended]
    reply_lat = [out.agent_first[m] - appended[m] for m in replies if m in out.agent_first and m in appended]
    p95 = pct(ack_lat, 95) * 1000 if ack_lat else float("inf")
    if run.idle_delay is not None:
        run.say(f"IDLE notice delay    {run.idle_delay * 1000:.0f} ms from APPEND to the server's EXISTS to an IDLE "
                "client (measured on another folder): the floor for mail reaching an idle daemon", summary=True)
    run.say(f"APPEND schedule      lag behind the {args.rate:g}/s schedule p50/max "
            f"{pct(lag, 50) * 1000:.0f} / {max(lag) * 1000:.0f} ms")
    run.say(f"ack latency          p50/p95/p99 {pcts(ack_lat)} (APPEND done → ack at SMTP, {len(ack_lat)} of "
            f"{len(expected)} new requests)   [target p95 < {TARGET_P95_MS:.0f} ms: {verdict(p95 < TARGET_P95_MS)}]"
            + ("" if complete else "  !! INCOMPLETE"), summary=True)
    if replies:
        run.say(f"reply latency        p50/p95/p99 {pcts(reply_lat)} (APPEND done → first agent notification, "
                f"{len(reply_lat)} of {len(replies)} replies)", summary=True)

    events = log_events(log)
    stored, processed = first_by_message(events, "inbound.stored"), first_by_message(events, "inbound.processed")
    parts: dict[str, list[float]] = {"APPEND → stored": [], "stored → processed": [], "processed → ack": []}
    for m in expected:
        if m in appended and m in stored and m in processed and m in out.acks:
            parts["APPEND → stored"].append(stored[m] - appended[m])
            parts["stored → processed"].append(processed[m] - stored[m])
            parts["processed → ack"].append(out.acks[m] - processed[m])
    polls = [e for e in events if e.get("event") == "imap.polled" and e.get("t", 0) >= min(appended.values(),
                                                                                             default=0)]
    run.say("where the time goes  p50/p95/p99 per step, from the daemon's log (clock of this machine):")
    for name, values in parts.items():
        run.say(f"  {name:<20} {pcts(values)}")
    if polls:
        per_poll = [e.get("stored", 0) for e in polls]
        run.say(f"  IMAP polls           {len(polls)} while the phase ran, {sum(per_poll) / len(polls):.1f} "
                f"messages per poll on average (max {max(per_poll)})")
    return {"p95": p95, "complete": complete}



def servers_missing(backend: str) -> str | None:
    """Why the benchmark cannot run here (a server not installed), or None; puts tests/ on the path for the
    fixtures' server modules."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from servers.dovecot import dovecot_available
    from servers.postgres import postgres_available

    if not dovecot_available():
        return "Dovecot is not installed (`make test` installs it: apt-get install dovecot-imapd)"
    if backend == "postgresql" and not postgres_available():
        return "PostgreSQL is not installed (`make test` installs it: apt-get install postgresql)"
    return None


def database_url(stack: contextlib.ExitStack, backend: str) -> str:
    """The site's database: a SQLite file beside its config, or a new database on a private PostgreSQL cluster
    stopped with ``stack``."""
    if backend != "postgresql":
        return "sqlite:///ticketd.db"
    from servers.postgres import start_postgres

    cluster = start_postgres()
    stack.callback(cluster.stop)
    url = str(cluster.new_database())
    stack.callback(cluster.drop_database, url)
    return url


def guarded(run: Callable[[contextlib.ExitStack], int], servers: str) -> int:
    """Run a benchmark's body: whatever it starts (registered on the stack) is stopped on success, on errors,
    on Ctrl-C and on SIGTERM. Exit status: the body's, 1 when a step failed (its message says which), 130."""

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    stack = contextlib.ExitStack()
    try:
        return run(stack)
    except KeyboardInterrupt:
        print(f"\ninterrupted; stopping {servers}", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a daemon died, a CLI step or an APPEND failed: the message says which
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave servers behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="backlog messages (default 2000)")
    parser.add_argument("--latency-n", type=int, default=300, help="messages in the latency phase (default 300)")
    parser.add_argument("--rate", type=float, default=20.0, help="arrival rate of the latency phase, msg/s")
    parser.add_argument("--agents", type=int, default=3, choices=range(len(AGENT_POOL) + 1), metavar="0-6",
                        help="agents declared in the config, each notified of every new ticket (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated mail (default 1)")
    parser.add_argument("--backlog-only", action="store_true", help="skip the latency phase")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="give up a phase when nothing moved for this many seconds (default 120)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (config, database, log)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the database: a SQLite file (default) or a private PostgreSQL cluster")
    parser.add_argument("--ticketd", help="the ticketd command to benchmark, as a shell-quoted command line "
                        "(default: the one installed beside this Python); e.g. an older version, for a before/after")
    args = parser.parse_args(argv)
    if args.ticketd:
        TICKETD[:] = shlex.split(args.ticketd)
    if args.n < 1 or args.latency_n < 0 or args.rate <= 0:
        parser.error("--n must be >= 1, --latency-n >= 0, --rate > 0")
    if args.backlog_only:
        args.latency_n = 0

    missing = servers_missing(args.backend)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    from servers.dovecot import start_dovecot

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ticketd-ingest-"))

    def body(stack: contextlib.ExitStack) -> int:
        stack.callback(lambda: shutil.rmtree(work, ignore_errors=True) if not args.keep else
                       print(f"kept the work folder {work}"))
        started = time.perf_counter()
        world, mails = mailgen.generate(args.n + args.latency_n, args.seed)
        run = Run(args, work, mails)
        run.say(f"=== ticketd end-to-end benchmark on {args.backend}: backlog {args.n}"
                + (f", latency {args.latency_n} at {args.rate:g}/s" if args.latency_n else ", backlog only")
                + f", seed {args.seed}", summary=True)
        run.say(f"generated            {len(mails)} mails in {time.perf_counter() - started:.2f} s")
        run.say(f"machine              {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f} at the start "
                "(other work on the machine skews every figure)", summary=True)
        run.say(f"machine speed        {calibration():.3f} s for a fixed pure-Python loop (figures of runs whose "
                "loops differ are not comparable: the same machine is not always as fast)", summary=True)

        password = secrets.token_urlsafe(12)
        run.server = start_dovecot(work / "dovecot", {IMAP_USER: password})
        stack.callback(run.server.stop)
        run.sink = TimedSink().start()
        stack.callback(run.sink.stop)
        (work / "site").mkdir()
        (work / "site" / "imap-password").write_text(password)
        agents = AGENT_POOL[:args.agents]
        url = database_url(stack, args.backend)
        config = write_config(work / "site", run.server.port, run.sink.port, agents, url)
        run.say(f"directory            {load_directory(config, world)}; {len(agents)} agent(s) in the config, "
                "each new ticket notifies all of them")
        if args.latency_n:
            run.idle_delay = idle_notice_delay(run.server, password)
        run.db = PgDb(url) if args.backend == "postgresql" else Db(work / "site" / "ticketd.db")
        stack.callback(run.db.close)
        run.out = Outgoing(run.sink, {m.message_id for m in mails}, {a[0] for a in agents})
        log = work / "site" / "daemon.log"

        def stop() -> None:
            if run.daemon is not None:
                code = stop_daemon(run.daemon)
                if code not in (0, None):
                    print(f"   !! the daemon exited with {code}")

        stack.callback(stop)
        backlog = backlog_phase(run, config, log, password)
        latency = latency_phase(run, log, password) if args.latency_n else None

        assert run.daemon is not None
        memory = proc_memory(run.daemon.pid)
        code = stop_daemon(run.daemon)
        hwm = memory.get("VmHWM", 0)
        run.say("\n--- daemon", summary=True)
        run.say(f"peak RSS             {mib(hwm)} (VmHWM just before SIGTERM; exit code {code})   "
                f"[target < {TARGET_RSS_MB:.0f} MB for a {TARGET_BACKLOG:,} backlog: "
                f"{verdict(hwm * 1024 < TARGET_RSS_MB * 1e6)}"
                + ("" if args.n == TARGET_BACKLOG else f"; this run's backlog was {args.n:,}: measure with "
                   "--backlog-only --n 10000") + "]", summary=True)
        events = log_events(log)
        noisy = Counter(e.get("event") for e in events if e.get("level") in ("warning", "error", "critical"))
        run.say("log warnings/errors  " + (", ".join(f"{k} ×{v}" for k, v in noisy.most_common()) or "none"),
                summary=True)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run.say(f"benchmark process    peak RSS {mib(own)} (generator, IMAP client and SMTP server; not the daemon)")
        run.say(f"wall time            {time.perf_counter() - began:.1f} s for the whole benchmark; load average "
                f"{os.getloadavg()[0]:.2f} at the end", summary=True)

        print("\n=== summary")
        for line in run.lines:
            print(line.strip("\n"))
        print(f"targets: end to end {verdict(backlog['rate'] >= TARGET_RATE)}"
              + (f", p95 {verdict(latency['p95'] < TARGET_P95_MS)}" if latency else ", p95 not measured")
              + f", peak RSS {verdict(hwm * 1024 < TARGET_RSS_MB * 1e6)}"
              + ("" if args.n == TARGET_BACKLOG else f" (at {args.n:,}, not {TARGET_BACKLOG:,})"))
        if args.keep:
            print(f"daemon log: {log}")
        return 0

    return guarded(body, "the daemon and Dovecot")


if __name__ == "__main__":
    sys.exit(main())
