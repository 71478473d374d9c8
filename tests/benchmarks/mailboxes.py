"""Many mailboxes on one instance: how long a customer waits, and what the daemon holds to watch them all.

Usage:

    .venv/bin/python tests/benchmarks/mailboxes.py [--mailboxes 300] [--rate 5] [--seconds 60] [--backend sqlite]
                                                   [--folders-per-login 1] [--extra-config FILE] [--keep]

A private Dovecot with one account per login (``box000`` …), one daemon (``ticketd run`` as a subprocess, as
``ingest.py`` and ``latency.py`` start it) whose ``[[mailboxes]]`` name each mailbox with its own ``username`` and
``password_file``, and the benchmark's SMTP server stamping each acknowledgment as its DATA completes.
``--folders-per-login K`` puts K mailboxes on each login (its INBOX and folders ``Box1`` …), as a site that
watches several folders of one account does. ``--extra-config`` appends a file of TOML to the daemon's config
(``[intake]`` settings, to compare).

1. The daemon starts; the benchmark waits until its IMAP connections stop changing (``settled``).
2. ``rate × seconds`` new requests, each from a new customer (so each opens a ticket and is acknowledged), are
   APPENDed to random mailboxes on a fixed schedule, each over a connection of its own (login, APPEND, logout).
3. Latency is from the end of each APPEND to its acknowledgment accepted by the SMTP server; where it goes comes
   from the daemon's log (``inbound.stored``, ``inbound.processed``).

Sampled every half second from /proc while it runs: the daemon's threads (``Threads:``), its IMAP connections (its
sockets in ESTABLISHED state to Dovecot's port, from /proc/PID/fd and /proc/PID/net/tcp) and its CPU; its peak
RSS is ``VmHWM`` just before SIGTERM. Goal from the issue: p95 under 3 s and peak RSS under 300 MB for 300
mailboxes at 5 a second for 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from floor import calibration, cpu_seconds
from imapclient import IMAPClient
from ingest import (
    TICKETD,
    TimedSink,
    cli,
    database_url,
    first_by_message,
    guarded,
    log_events,
    log_tail,
    mib,
    pct,
    proc_cpu,
    proc_memory,
    servers_missing,
    start_daemon,
    stop_daemon,
    write_config,
)
from latency import acks_by_request, paced

TESTS = Path(__file__).resolve().parents[1]
GOAL_P95_S, GOAL_RSS_MB = 3.0, 300.0


@dataclass(frozen=True)
class Box:
    name: str
    login: str
    folder: str


def boxes(count: int, per_login: int) -> list[Box]:
    return [Box(f"box{i:03d}", f"box{i // per_login:03d}", "INBOX" if i % per_login == 0 else f"Box{i % per_login}")
            for i in range(count)]


def request(n: int, box: Box) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Müşteri {n} <musteri{n}.{secrets.token_hex(3)}@example.com.tr>"
    msg["To"] = f"{box.name}@acme.example"
    msg["Subject"] = f"Modem {n} bağlanmıyor"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(f"box{n}", domain="example.com.tr")
    msg.set_content(f"Merhaba,\n\n{n} numaralı modem dün akşamdan beri bağlanmıyor. Işıklar yanıp sönüyor.\n")
    return str(msg["Message-ID"]), msg.as_bytes()


# --- what the daemon holds: threads and IMAP connections, from /proc -----------------------------------------

def threads(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def imap_connections(pid: int, port: int) -> int:
    """The process's sockets connected (ESTABLISHED) to ``port``: its sockets' inodes from /proc/PID/fd, matched
    against the connections of its network namespace."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port and parts[9] in inodes:
                    found += 1
    return found


@dataclass
class Sampler:
    """Samples the daemon every ``every`` seconds in a thread of its own; ``mark()`` starts a new window."""

    pid: int
    port: int
    every: float = 0.5
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (time, threads, IMAP connections)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.time(), threads(self.pid), imap_connections(self.pid, self.port)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def peak(self, since: float = 0.0) -> tuple[int, int]:
        window = [s for s in self.samples if s[0] >= since] or [(0.0, 0, 0)]
        return max(s[1] for s in window), max(s[2] for s in window)

    def last(self) -> tuple[int, int]:
        return (self.samples[-1][1], self.samples[-1][2]) if self.samples else (0, 0)


def settle(sampler: Sampler, daemon: Any, log: Path, quiet: float = 5.0, timeout: float = 180.0) -> float:
    """Wait until the daemon's IMAP connections have not changed for ``quiet`` seconds; returns the wait."""
    started = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - started < timeout:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited ({daemon.returncode}):\n{log_tail(log)}")
        now = sampler.last()[1]
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since >= quiet:
            break
        time.sleep(0.25)
    return time.monotonic() - started


def dovecot_cpu(run_dir: Path) -> float:
    """CPU seconds Dovecot has used so far: its master with the processes it reaped, and those still running."""
    try:
        master = int((run_dir / "master.pid").read_text())
        total = cpu_seconds(master, children=True)
    except (OSError, ValueError):
        return 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                total += cpu_seconds(int(stat.parent.name))
    return total


def unwatched_logins(dovecot_log: Path) -> set[str]:
    """Logins whose IMAP process Dovecot could not give an inotify watch (``fs.inotify.max_user_instances``, per
    user id, is shared by every Dovecot process of that uid on the machine): their IDLE hears of new mail only at
    Dovecot's own check, every ``mailbox_idle_check_interval`` (30 s)."""
    text = dovecot_log.read_text(errors="replace") if dovecot_log.exists() else ""
    return set(re.findall(r"imap\(([^)]+)\)<[^>]*><[^>]*>: Warning: Inotify instance limit", text))


# --- the run -------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailboxes", type=int, default=300, help="mailboxes in the config (default 300)")
    parser.add_argument("--rate", type=float, default=5.0, help="new requests per second (default 5)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long mail arrives (default 60)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--folders-per-login", type=int, default=1,
                        help="mailboxes per IMAP login: its INBOX and folders Box1 … (default 1)")
    parser.add_argument("--extra-config", type=Path, help="TOML appended to the daemon's config")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="after the last APPEND, how long to wait for the last acknowledgment (default 120)")
    parser.add_argument("--seed", type=int, default=1, help="which mailbox each mail goes to (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (config, database, log)")
    parser.add_argument("--ticketd", help="the ticketd command to run, as a shell-quoted command line (default: the "
                        "one installed beside this Python); e.g. an older version, for a before/after")
    args = parser.parse_args(argv)
    if args.ticketd:
        TICKETD[:] = shlex.split(args.ticketd)
    if args.mailboxes < 1 or args.rate <= 0 or args.seconds <= 0 or args.folders_per_login < 1:
        parser.error("--mailboxes, --rate, --seconds and --folders-per-login must be positive")
    missing = servers_missing(args.backend)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    from servers.dovecot import start_dovecot
    work = Path(tempfile.mkdtemp(prefix="ticketd-mailboxes-"))
    count = round(args.rate * args.seconds)
    rng = random.Random(args.seed)

    def body(stack: contextlib.ExitStack) -> int:
        stack.callback(lambda: shutil.rmtree(work, ignore_errors=True) if not args.keep else
                       print(f"kept the work folder {work}"))
        print(f"=== {args.mailboxes} mailboxes ({args.folders_per_login} per login) on one Dovecot, one instance "
              f"on {args.backend}; {count} requests at {args.rate:g}/s to random mailboxes; {os.cpu_count()} "
              f"CPU(s), load {os.getloadavg()[0]:.2f}, machine speed {calibration():.3f} s", flush=True)
        mailboxes = boxes(args.mailboxes, args.folders_per_login)
        logins = sorted({b.login for b in mailboxes})
        passwords = {login: secrets.token_urlsafe(12) for login in logins}
        started = time.monotonic()
        server = start_dovecot(work / "dovecot", {"support": (support := secrets.token_urlsafe(12)), **passwords})
        stack.callback(server.stop)
        print(f"dovecot              {len(logins) + 1} accounts, started in {time.monotonic() - started:.1f} s")
        for login in logins:
            folders = [b.folder for b in mailboxes if b.login == login and b.folder != "INBOX"]
            if folders:
                client = IMAPClient(server.host, port=server.port, ssl=False, timeout=60)
                client.login(login, passwords[login])
                for folder in folders:
                    client.create_folder(folder)
                client.logout()
        sink = TimedSink().start()
        stack.callback(sink.stop)
        site = work / "site"
        (site / "passwords").mkdir(parents=True)
        (site / "imap-password").write_text(support)
        for login, password in passwords.items():
            (site / "passwords" / login).write_text(password)
        url = database_url(stack, args.backend)
        config = write_config(site, server.port, sink.port, [], url)
        with config.open("a", encoding="utf-8") as f:
            for box in mailboxes:
                f.write(f'\n[[mailboxes]]\nname = "{box.name}"\naddress = "{box.name}@acme.example"\n'
                        f'folder = "{box.folder}"\nprocessed_folder = "Processed"\nusername = "{box.login}"\n'
                        f'password_file = "passwords/{box.login}"\n')
            if args.extra_config:
                f.write("\n" + args.extra_config.read_text(encoding="utf-8"))
        cli(config, "db", "upgrade")
        log = site / "daemon.log"
        daemon = start_daemon(config, log)
        stack.callback(stop_daemon, daemon)
        sampler = Sampler(daemon.pid, server.port).start()
        stack.callback(sampler.stop)
        waited = settle(sampler, daemon, log)
        held_threads, held_connections = sampler.last()
        print(f"settled              after {waited:.1f} s: {held_threads} threads, {held_connections} IMAP "
              f"connections; RSS {mib(proc_memory(daemon.pid).get('VmRSS', 0))}", flush=True)
        idle_cpu, idle_server = proc_cpu(daemon.pid), dovecot_cpu(server.run_dir)
        time.sleep(10)
        idle_cpu, idle_server = (proc_cpu(daemon.pid) - idle_cpu) / 10, (dovecot_cpu(server.run_dir) - idle_server) / 10
        print(f"idle                 daemon CPU {idle_cpu * 100:.0f} %, Dovecot's {idle_server * 100:.0f} % of one "
              "core with no mail arriving", flush=True)

        mails = [(box, *request(n, box)) for n, box in enumerate(rng.choice(mailboxes) for _ in range(count))]
        appended: dict[str, float] = {}
        login_of = {message_id: box.login for box, message_id, _ in mails}
        append_seconds: list[float] = []
        lag: list[float] = []
        failure: list[BaseException] = []

        def deliver(i: int) -> None:
            box, message_id, raw = mails[i]
            client = IMAPClient(server.host, port=server.port, ssl=False, timeout=60)
            client.login(box.login, passwords[box.login])
            begun = time.time()
            client.append(box.folder, raw)
            appended[message_id] = time.time()
            append_seconds.append(appended[message_id] - begun)
            client.logout()

        def appender() -> None:
            try:
                paced(count, args.rate, deliver, lag)
            except BaseException as exc:
                failure.append(exc)

        phase_start = time.time()
        cpu_before, server_before = proc_cpu(daemon.pid), dovecot_cpu(server.run_dir)
        thread = threading.Thread(target=appender, name="appender", daemon=True)
        thread.start()
        wanted = {m for _, m, _ in mails}
        deadline = time.monotonic() + args.seconds + args.timeout
        shown = time.monotonic()
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}):\n{log_tail(log)}")
            acked = wanted & acks_by_request(sink).keys()
            if not thread.is_alive() and acked == wanted:
                break
            if time.monotonic() - shown >= 10:
                shown = time.monotonic()
                print(f"   .. {len(appended)}/{count} appended, {len(acked)} acknowledged; "
                      f"threads {sampler.last()[0]}, IMAP connections {sampler.last()[1]}", flush=True)
            time.sleep(0.25)
        thread.join(timeout=10)
        if failure:
            raise RuntimeError(f"APPEND failed: {failure[0]!r}")
        cpu = proc_cpu(daemon.pid) - cpu_before
        server_cpu = dovecot_cpu(server.run_dir) - server_before
        wall = time.time() - phase_start
        acks = acks_by_request(sink)
        latency = sorted(acks[m] - appended[m] for m in wanted if m in acks and m in appended)
        peak_threads, peak_connections = sampler.peak()
        phase_threads, phase_connections = sampler.peak(phase_start)
        memory = proc_memory(daemon.pid)
        stopping = time.monotonic()
        code = stop_daemon(daemon)
        stopped = time.monotonic() - stopping
        sampler.stop()

        events = log_events(log)
        stored, processed = first_by_message(events, "inbound.stored"), first_by_message(events, "inbound.processed")
        parts: dict[str, list[float]] = {"APPEND → stored": [], "stored → processed": [], "processed → ack": []}
        for m in wanted:
            if m in appended and m in stored and m in processed and m in acks:
                parts["APPEND → stored"].append(stored[m] - appended[m])
                parts["stored → processed"].append(processed[m] - stored[m])
                parts["processed → ack"].append(acks[m] - processed[m])
        p95 = pct(latency, 95) if latency else float("inf")
        hwm = memory.get("VmHWM", 0)
        print(f"APPEND               {len(appended)} of {count}, each {pct(append_seconds, 50) * 1000:.0f} ms p50; "
              f"behind the schedule p50/max {pct(lag, 50) * 1000:.0f} / {max(lag, default=0) * 1000:.0f} ms")
        print(f"acknowledged         {len(latency)} of {count}" + ("" if len(latency) == count else "  !! MISSING"))
        if latency:
            print(f"APPEND → ack         p50 {pct(latency, 50):.2f} s, p95 {p95:.2f} s, max {latency[-1]:.2f} s   "
                  f"[goal p95 < {GOAL_P95_S:g} s: {'met' if p95 < GOAL_P95_S else 'NOT MET'}]")
        deaf = unwatched_logins(server.log_file)
        if deaf:
            split: dict[bool, list[float]] = {False: [], True: []}
            for m in wanted:
                if m in acks and m in appended:
                    split[login_of[m] in deaf].append(acks[m] - appended[m])
            print(f"unwatched            Dovecot could not watch {len(deaf)} of {len(logins)} logins' sessions with "
                  "inotify (their IDLE hears of mail only at its own check)")
            for unheard, values in split.items():
                if values:
                    print(f"  {'to those' if unheard else 'to the others':<18} {len(values)} mails: p50 "
                          f"{pct(values, 50):.2f} s, p95 {pct(values, 95):.2f} s, max {max(values):.2f} s")
        print("where the time goes  p50 / p95 / max per step, from the daemon's log:")
        for name, values in parts.items():
            if values:
                print(f"  {name:<18} {pct(values, 50):.2f} / {pct(values, 95):.2f} / {max(values):.2f} s")
        print(f"CPU                  daemon {cpu:.1f} s in {wall:.0f} s ({cpu / wall * 100:.0f} % of one core), "
              f"Dovecot {server_cpu:.1f} s (with the benchmark's APPENDs) while mail arrived and was answered")
        print(f"threads              peak {peak_threads} (while mail arrived: {phase_threads})")
        print(f"IMAP connections     peak {peak_connections} (while mail arrived: {phase_connections}) for "
              f"{args.mailboxes} mailboxes on {len(logins)} logins")
        print(f"stop                 {stopped:.1f} s from SIGTERM to exit (every connection logged out)")
        print(f"peak RSS             {mib(hwm)} (VmHWM before SIGTERM; exit code {code})   "
              f"[goal < {GOAL_RSS_MB:g} MB: {'met' if hwm * 1024 < GOAL_RSS_MB * 1e6 else 'NOT MET'}]")
        noisy: dict[str, int] = {}
        for e in events:
            if e.get("level") in ("warning", "error", "critical"):
                noisy[str(e.get("event"))] = noisy.get(str(e.get("event")), 0) + 1
        print("log warnings/errors  " + (", ".join(f"{k} ×{v}" for k, v in sorted(noisy.items())) or "none"))
        print(f"load average         {os.getloadavg()[0]:.2f} at the end")
        if args.keep:
            table = work / "mails.csv"
            with table.open("w", encoding="utf-8") as f:
                f.write("message_id,mailbox,login,folder,appended,stored,acknowledged\n")
                for box, m, _ in mails:
                    f.write(f"{m},{box.name},{box.login},{box.folder},{appended.get(m, '')},{stored.get(m, '')},"
                            f"{acks.get(m, '')}\n")
            with (work / "samples.csv").open("w", encoding="utf-8") as f:
                f.write("time,threads,imap_connections\n")
                f.writelines(f"{at},{count},{connections}\n" for at, count, connections in sampler.samples)
            print(f"daemon log: {log}; each mail's times: {table}; the samples: {work / 'samples.csv'}")
        return 0

    return guarded(body, "the daemon and Dovecot")


if __name__ == "__main__":
    sys.exit(main())
