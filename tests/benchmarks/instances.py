"""Throughput of 1, 2 and 3 `ticketd run` instances on one PostgreSQL database, against one on SQLite.

Usage:

    .venv/bin/python tests/benchmarks/instances.py [--n 2000] [--seed 1] [--agents 1]
    .venv/bin/python tests/benchmarks/instances.py --configs pg-1,pg-3 --n 5000 --keep

Options: ``--n`` messages in the corpus; ``--seed`` for the generated mail (tests/benchmarks/mailgen.py);
``--agents`` how many agents the config declares (default 1, each told of every new ticket, so a new request
makes 1 + agents mails); ``--configs`` which configurations to run, in order (default
``sqlite-1,pg-1,pg-2,pg-3``; ``pg-N`` is N instances on PostgreSQL, SQLite serves one); ``--stall-timeout``
gives up a configuration when nothing moved for that many seconds; ``--keep`` keeps the work folder (configs,
SQLite databases, every instance's log) and prints where it is.

Every configuration gets the same corpus, ``mailgen.generate(n, seed)``, delivered alternately to the two
mailboxes of a fresh Dovecot account: support in INBOX (→ Processed) and complaints in the folder
"Complaints" (→ Complaints-Processed, with ``[mailboxes.defaults]``), as tests/integration/test_instances.py
sets them up. All of it is APPENDed before the instances start (a backlog). Each configuration has its own
database (a SQLite file, or a fresh migrated PostgreSQL database of the benchmark's private cluster), its
directory loaded with the CLI as ingest.py does, its own SMTP server and one JSON log file per instance.
Storm caps are lifted as in ingest.py, whose set-up, log and memory helpers this script reuses.

Measured: from the first ``inbound.stored`` log line of any instance to the moment every inbound row is
processed and every outbox row sent (the later of the last ``inbound.processed`` log line and the last mail
accepted by the SMTP server; the run is over when the database shows no inbound row ``new`` and no outbox row
``queued`` or ``failed``); throughput is n / that time. Also per configuration: the acknowledgment latency
(SMTP arrival of a new request's acknowledgment − that message's first ``inbound.stored``, p50/p95; in a
backlog this is mostly queueing), mails sent, each instance's peak RSS (VmHWM just before SIGTERM), the
mailboxes it polled and the messages it processed, warnings and errors from the logs, and a check: inbound
rows == n with none new or failed, tickets == mails that start a conversation, and each acknowledgment
delivered once (a Message-ID the SMTP server saw twice is a duplicate).

A table of all configurations is printed at the end. Nothing is asserted about speed; the exit status is 0
when every configuration ran, whatever the figures. Dovecot, PostgreSQL, the SMTP servers and the instances
(SIGTERM) are stopped and the work folder removed on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, Protocol

import ingest
import mailgen
from aiosmtpd.controller import Controller
from imapclient import IMAPClient

COMPLAINTS = "Complaints"
FOLDERS = ("INBOX", COMPLAINTS)  # mail i goes to FOLDERS[i % 2]
DEFAULT_CONFIGS = "sqlite-1,pg-1,pg-2,pg-3"
MAILBOXES_TOML = f"""
[[mailboxes]]
name = "support"
address = "{mailgen.SUPPORT}"
folder = "INBOX"
processed_folder = "Processed"

[[mailboxes]]
name = "complaints"
address = "complaints@acme.example"
folder = "{COMPLAINTS}"
processed_folder = "Complaints-Processed"

[mailboxes.defaults]
type = "complaint"
priority = "high"
"""


# --- the SMTP side: ingest's timing sink, also keeping each mail's Message-ID ---------------------------------

@dataclass(frozen=True)
class Delivered:
    message_id: str
    in_reply_to: str | None
    to: tuple[str, ...]


@dataclass
class _IdHandler(ingest._TimedHandler):
    delivered: list[Delivered] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        head = bytes(envelope.original_content).split(b"\r\n\r\n", 1)[0]
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.delivered.append(Delivered(str(headers.get("Message-ID") or "").strip(),
                                            str(headers.get("In-Reply-To") or "").strip() or None,
                                            tuple(a.lower() for a in envelope.rcpt_tos)))
        return reply


class IdSink(ingest.TimedSink):
    def __init__(self) -> None:
        super().__init__()
        self.handler: _IdHandler = _IdHandler(None)
        self._controller = Controller(self.handler, hostname=self.host, port=self.port, decode_data=False)

    def delivered(self) -> list[Delivered]:
        with self.handler.lock:
            return list(self.handler.delivered)


# --- the database side: status counts on SQLite (ingest.Db) or PostgreSQL ----------------------------------

class Reader(Protocol):
    con: Any

    def counts(self, table: str) -> Counter[str]: ...

    def close(self) -> None: ...


def scalar(db: Reader, sql: str) -> int:
    return int(db.con.execute(sql).fetchone()[0])


# --- set-up ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    name: str
    backend: str  # sqlite | postgresql
    instances: int


def parse_configs(text: str) -> list[Spec]:
    specs = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        match = re.fullmatch(r"(sqlite|pg)-([1-9][0-9]*)", name)
        if not match:
            raise ValueError(f"{name!r}: a configuration is sqlite-1 or pg-N (N instances on PostgreSQL)")
        count = int(match[2])
        if match[1] == "sqlite" and count != 1:
            raise ValueError(f"{name!r}: SQLite serves one instance (sqlite-1)")
        specs.append(Spec(name, "sqlite" if match[1] == "sqlite" else "postgresql", count))
    if not specs or len({s.name for s in specs}) != len(specs):
        raise ValueError("--configs: one or more distinct configurations, e.g. sqlite-1,pg-1,pg-2,pg-3")
    return specs


def write_config(site: Path, imap_port: int, smtp_port: int, agents: list[tuple[str, str, str, list[str]]],
                 url: str, user: str) -> Path:
    """ingest.write_config's site, on ``url`` and the IMAP login ``user``, with the two ``[[mailboxes]]``."""
    path = ingest.write_config(site, imap_port, smtp_port, agents, url)
    text = path.read_text(encoding="utf-8")
    old = f'username = "{ingest.IMAP_USER}"'
    if text.count(old) != 1:
        raise RuntimeError(f"ingest.write_config's output changed: expected one {old!r}")
    text = text.replace(old, f'username = "{user}"')
    path.write_text(text + MAILBOXES_TOML, encoding="utf-8")
    return path


def append_corpus(server: Any, user: str, password: str, mails: list[mailgen.Mail], chunk: int = 100) -> float:
    """Mail i into FOLDERS[i % 2], in order, by MULTIAPPEND (as tests/integration/test_instances.py does)."""
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=60)
    client.login(user, password)
    started = time.perf_counter()
    try:
        client.create_folder(COMPLAINTS)
        for n, folder in enumerate(FOLDERS):
            batch = [m.raw for i, m in enumerate(mails) if i % 2 == n]
            for start in range(0, len(batch), chunk):
                client.multiappend(folder, batch[start:start + chunk])
    finally:
        client.logout()
    return time.perf_counter() - started


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    world: mailgen.World
    mails: list[mailgen.Mail]
    dovecot: Any
    passwords: dict[str, str]  # IMAP account per configuration
    postgres: Any = None


@dataclass
class Instance:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    memory: dict[str, int] = field(default_factory=dict)
    code: int | None = None


@dataclass
class Result:
    spec: Spec
    seconds: float = float("nan")
    rate: float = 0.0
    ack_p50: float | None = None
    ack_p95: float | None = None
    mails_sent: int = 0
    dup_acks: int = 0
    peak_rss_kib: int = 0
    noisy: int = 0
    ok: bool = False
    wall: float = 0.0


def user_of(spec: Spec) -> str:
    return f"bench-{spec.name}"


def stop_all(instances: list[Instance]) -> None:
    for inst in instances:
        if inst.code is None and inst.proc.poll() is None:
            inst.code = ingest.stop_daemon(inst.proc)
        elif inst.code is None:
            inst.code = inst.proc.returncode


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


# --- one configuration -----------------------------------------------------------------------------------------

def run_config(bench: Bench, spec: Spec) -> Result:
    args, mails = bench.args, bench.mails
    began = time.perf_counter()
    result = Result(spec)
    print(f"\n--- {spec.name}: {spec.instances} instance(s) on {spec.backend}, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    site = bench.work / spec.name
    site.mkdir()
    user = user_of(spec)
    (site / "imap-password").write_text(bench.passwords[user])
    ids = {m.message_id for m in mails}
    roots = {m.message_id for m in mails if m.parent is None}
    agents = ingest.AGENT_POOL[:args.agents]

    with contextlib.ExitStack() as stack:
        sink = IdSink().start()
        stack.callback(sink.stop)
        if spec.backend == "postgresql":
            url = bench.postgres.new_database()
            stack.callback(bench.postgres.drop_database, url)
        else:
            url = "sqlite:///ticketd.db"
        config = write_config(site, bench.dovecot.port, sink.port, agents, url, user)
        took = append_corpus(bench.dovecot, user, bench.passwords[user], mails)
        print(f"APPEND               {len(mails)} messages to INBOX and {COMPLAINTS} in {took:.2f} s", flush=True)
        print(f"directory            {ingest.load_directory(config, bench.world)}", flush=True)
        db: Reader = ingest.PgDb(url) if spec.backend == "postgresql" else ingest.Db(site / "ticketd.db")
        stack.callback(db.close)
        out = ingest.Outgoing(sink, ids, {a[0] for a in agents})

        instances: list[Instance] = []
        stack.callback(stop_all, instances)
        started = time.time()
        for i in range(spec.instances):
            log = site / f"instance-{i + 1}.log"
            instances.append(Instance(f"instance-{i + 1}", ingest.start_daemon(config, log), log))

        def check_alive() -> None:
            for inst in instances:
                if inst.proc.poll() is not None:
                    raise RuntimeError(f"{spec.name} {inst.name} exited with {inst.proc.returncode}; log tail:\n"
                                       f"{ingest.log_tail(inst.log)}")

        def done() -> bool:
            check_alive()
            out.update()
            inbound, outbox = db.counts("inbound"), db.counts("outbox")
            return (sum(inbound.values()) >= len(mails) and inbound["new"] == 0
                    and outbox["queued"] == 0 and outbox["failed"] == 0)

        def progress() -> tuple[Any, ...]:
            return (tuple(sorted(db.counts("inbound").items())), tuple(sorted(db.counts("outbox").items())),
                    out.seen)

        def report() -> str:
            return (f"{time.time() - started:.0f} s: inbound {dict(db.counts('inbound'))}, "
                    f"outbox {dict(db.counts('outbox'))}, acks {len(roots & out.acks.keys())}/{len(roots)}")

        complete = ingest.wait_until(done, progress, instances[0].proc, instances[0].log, args.stall_timeout,
                                     report)
        time.sleep(0.3)  # the SMTP server finishes what it was taking
        out.update()
        for inst in instances:
            inst.memory = ingest.proc_memory(inst.proc.pid)
        inbound, outbox = db.counts("inbound"), db.counts("outbox")
        tickets = scalar(db, "SELECT count(*) FROM ticket")
        stop_all(instances)

    # --- the figures: logs and the SMTP server's timestamps (this machine's clock) ---
    per_log = {inst.name: ingest.log_events(inst.log) for inst in instances}
    stored: dict[str, float] = {}
    last_processed = 0.0
    for events in per_log.values():
        for mid, t in ingest.first_by_message(events, "inbound.stored").items():
            if mid in ids:
                stored[mid] = min(t, stored.get(mid, t))
        last_processed = max([last_processed, *(e["t"] for e in events
                                                if e.get("event") == "inbound.processed" and "t" in e)])
    t0 = min(stored.values()) if stored else started
    end = max(last_processed, out.last_at)
    result.seconds = end - t0
    result.rate = len(mails) / result.seconds if complete and result.seconds > 0 else 0.0
    latencies = [out.acks[m] - stored[m] for m in roots if m in out.acks and m in stored]
    if latencies:
        result.ack_p50, result.ack_p95 = ingest.pct(latencies, 50), ingest.pct(latencies, 95)
    delivered = sink.delivered()
    result.mails_sent = len(delivered)
    agent_set = {a[0] for a in agents}
    ack_ids = Counter(d.message_id for d in delivered
                      if d.in_reply_to in roots and not all(a in agent_set for a in d.to) and ingest.ADMIN not in d.to)
    result.dup_acks = sum(n - 1 for n in ack_ids.values() if n > 1)
    all_ids = Counter(d.message_id for d in delivered)
    dup_any = sum(n - 1 for n in all_ids.values() if n > 1)
    second_acks = out.counts["second mail to a customer for the same message"] - result.dup_acks
    noisy = Counter(f"{e.get('level')} {e.get('event')}" for events in per_log.values() for e in events
                    if e.get("level") in ("warning", "error", "critical"))
    result.noisy = sum(noisy.values())
    result.peak_rss_kib = max((inst.memory.get("VmHWM", 0) for inst in instances), default=0)
    result.ok = (complete and sum(inbound.values()) == len(mails) and inbound["new"] == 0
                 and inbound["failed"] == 0 and tickets == len(roots) and len(out.acks.keys() & roots) == len(roots)
                 and result.dup_acks == 0 and second_acks == 0)
    result.wall = time.perf_counter() - began

    first = (f"first inbound.stored +{t0 - started:.2f} s after the start" if stored
             else "no inbound.stored line: from the start")
    print(f"end to end           {len(mails)} messages in {result.seconds:.2f} s = {result.rate:.1f} msg/s ({first})"
          + ("" if complete else "  !! INCOMPLETE: gave up"))
    print(f"ack latency          p50 {seconds(result.ack_p50)}, p95 {seconds(result.ack_p95)} (SMTP arrival of the "
          f"ack − the request's first inbound.stored, {len(latencies)} of {len(roots)} new requests)")
    print(f"mails sent           {result.mails_sent}: " + ", ".join(f"{k} {v}" for k, v in out.counts.items())
          + f"; outbox {dict(outbox)}")
    for inst in instances:
        events = per_log[inst.name]
        polled = sorted({str(e.get("mailbox")) for e in events if e.get("event") == "imap.polled"})
        processed = sum(1 for e in events if e.get("event") == "inbound.processed" and e.get("message_id") in ids)
        sent = sum(1 for e in events if e.get("event") == "outbox.sent")
        print(f"{inst.name:<20} polled {', '.join(polled) or 'nothing'}; processed {processed}, sent {sent}; "
              f"peak RSS {ingest.mib(inst.memory.get('VmHWM', 0))}; exit {inst.code}")
    print("log warnings/errors  " + (", ".join(f"{k} ×{v}" for k, v in noisy.most_common()) or "none"))
    print(f"check                {'ok' if result.ok else '!! FAILED'}: inbound rows {sum(inbound.values())} of "
          f"{len(mails)} {dict(inbound)}; tickets {tickets} for {len(roots)} new conversations; acks "
          f"{len(out.acks.keys() & roots)} of {len(roots)}, {result.dup_acks} delivered twice, {second_acks} "
          f"second ack(s) for one request; {dup_any} Message-ID(s) delivered more than once in all")
    print(f"wall time            {result.wall:.1f} s for {spec.name} (set-up, run, stop)", flush=True)
    return result


# --- the run ---------------------------------------------------------------------------------------------------

def table(results: list[Result], n: int) -> list[str]:
    head = (f"{'config':<10} {'instances':>9} {'messages':>8} {'seconds':>8} {'msg/s':>7} {'ack p50':>8} "
            f"{'ack p95':>8} {'mails sent':>10} {'dup acks':>8} {'peak RSS':>9} {'warn+err':>8}  check")
    lines = [head]
    for r in results:
        rss = f"{r.peak_rss_kib / 1024:.0f} MiB" if r.peak_rss_kib else "n/a"
        lines.append(f"{r.spec.name:<10} {r.spec.instances:>9} {n:>8} {r.seconds:>8.2f} {r.rate:>7.1f} "
                     f"{seconds(r.ack_p50):>8} {seconds(r.ack_p95):>8} {r.mails_sent:>10} {r.dup_acks:>8} "
                     f"{rss:>9} {r.noisy:>8}  {'ok' if r.ok else 'FAILED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="messages in the corpus (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated mail (default 1)")
    parser.add_argument("--agents", type=int, default=1, choices=range(len(ingest.AGENT_POOL) + 1), metavar="0-6",
                        help="agents declared in the config, each notified of every new ticket (default 1)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"configurations to run, in order: sqlite-1 and pg-N (default {DEFAULT_CONFIGS})")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="give up a configuration when nothing moved for this many seconds (default 120)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configs, databases, logs)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    try:
        specs = parse_configs(args.configs)
    except ValueError as exc:
        parser.error(str(exc))

    sys.path.insert(0, str(ingest.TESTS))
    from servers.dovecot import dovecot_available, start_dovecot
    from servers.postgres import postgres_available, start_postgres

    if not dovecot_available():
        print("Dovecot is not installed (`make test` installs it: apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    needs_pg = any(s.backend == "postgresql" for s in specs)
    if needs_pg and not postgres_available():
        print("the PostgreSQL server is not installed (`make test` installs it: apt-get install postgresql)",
              file=sys.stderr)
        return 2

    began = time.perf_counter()
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="ticketd-instances-"))

    def body(stack: contextlib.ExitStack) -> int:
        stack.callback(lambda: shutil.rmtree(work, ignore_errors=True) if not args.keep else
                       print(f"kept the work folder {work}"))
        started = time.perf_counter()
        world, mails = mailgen.generate(args.n, args.seed)
        roots = sum(m.parent is None for m in mails)
        print(f"=== ticketd instances benchmark: {args.n} messages (seed {args.seed}, {roots} new conversations), "
              f"{args.agents} agent(s), configurations {', '.join(s.name for s in specs)}")
        print(f"generated            {len(mails)} mails in {time.perf_counter() - started:.2f} s: "
              f"{ingest.mail_mix(mails)}")
        print(f"machine              {os.cpu_count()} CPU(s), load average {load_start:.2f} at the start "
              "(other work on the machine skews every figure)", flush=True)
        passwords = {user_of(s): secrets.token_urlsafe(12) for s in specs}
        dovecot = start_dovecot(work / "dovecot", passwords)
        stack.callback(dovecot.stop)
        bench = Bench(args, work, world, mails, dovecot, passwords)
        if needs_pg:
            bench.postgres = start_postgres()
            stack.callback(bench.postgres.stop)

        results = [run_config(bench, spec) for spec in specs]

        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"\n=== {args.n} messages, seed {args.seed}, {args.agents} agent(s); seconds = first inbound.stored → "
              "every inbound row processed and every outbox row sent; ack = SMTP arrival − the request's stored; "
              "peak RSS = the largest instance's VmHWM")
        for line in table(results, args.n):
            print(line)
        print(f"machine: {os.cpu_count()} CPU(s), load average {load_start:.2f} at the start, "
              f"{os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - began:.1f} s in all; benchmark process "
              f"peak RSS {ingest.mib(own)}")
        if args.keep:
            print(f"logs and configs: {work}/<config>/")
        return 0

    return ingest.guarded(body, "the instances, Dovecot and PostgreSQL")


if __name__ == "__main__":
    sys.exit(main())
