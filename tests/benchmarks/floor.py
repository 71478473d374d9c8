"""What the required libraries and the benchmark's own servers cost per message, before ticketd does anything.

Usage:

    .venv/bin/python tests/benchmarks/floor.py [--n 2000] [--lanes 4] [--seed 1]

ingest.py measures the whole trip. This script measures its parts that ticketd cannot make cheaper, on the
same generated mail, so the end-to-end figure can be read against a ceiling instead of a wish:

- IMAP: FETCH of every mail (BODY.PEEK[] and RFC822.SIZE in chunks of 200, as the daemon fetches) from a
  private Dovecot, imapclient's CPU and Dovecot's;
- parsing: mail-parser's ``parse_from_bytes`` of every mail (the library ticketd's parser builds on);
- SMTP: one short acknowledgment per mail sent with aiosmtplib over ``--lanes`` reused connections to an
  aiosmtpd server in its own process (the benchmark's SMTP server), the client's CPU and the server's.

CPU time is read from /proc (user + system), so waiting is not counted. The ceiling printed for a given
number of agents assumes a new request makes 1 + agents mails (the acknowledgment and one notification per
agent, as in ingest.py) and that every core does nothing but this work, perfectly shared: no database, no
rules, no templates, no logging. A real daemon stays below it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import mailgen
import mailparser

TESTS = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
ACK = (b"From: Acme Destek <support@acme.example>\r\nTo: customer@example.com\r\n"
       b"Subject: [#1042] Your request has been received\r\nMessage-ID: <ack.1042@acme.example>\r\n"
       b"In-Reply-To: <customer.1@example.com>\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
       + b"We have received your request and will answer it as soon as we can.\r\n" * 12)
SINK = """
import sys, time
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        return '250 OK'
controller = Controller(Handler(), hostname='127.0.0.1', port=int(sys.argv[1]))
controller.start()
print('ready', flush=True)
time.sleep(3600)
"""


def calibration() -> float:
    """Seconds this machine takes for a fixed pure-Python loop, the best of three: how fast it is today, printed by
    every end-to-end benchmark so that figures of different runs can be compared."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(2_000_000))
        best = min(best, time.perf_counter() - started)
    return best


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process (and of its reaped children when asked), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / TICK


def tree_cpu(root: int) -> float:
    """CPU of a process tree: the root with its reaped children, plus every live descendant."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    total, todo = cpu_seconds(root, children=True), [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent:
                todo.append(pid)
                try:
                    total += cpu_seconds(pid, children=True)
                except OSError:
                    continue
    return total


def measure(work: Callable[[], None], server_pid: int | None = None) -> tuple[float, float, float]:
    """(wall, own CPU, server CPU) seconds spent by ``work``."""
    own, server, wall = time.process_time(), tree_cpu(server_pid) if server_pid else 0.0, time.perf_counter()
    work()
    return (time.perf_counter() - wall, time.process_time() - own,
            (tree_cpu(server_pid) - server) if server_pid else 0.0)


def imap_fetch(raws: list[bytes], work: Path) -> tuple[float, float, float]:
    sys.path.insert(0, str(TESTS))
    from imapclient import IMAPClient

    from servers.dovecot import start_dovecot

    password = secrets.token_urlsafe(12)
    server = start_dovecot(work / "dovecot", {"support": password})
    try:
        client = IMAPClient(server.host, port=server.port, ssl=False, timeout=60)
        client.login("support", password)
        for i in range(0, len(raws), 100):
            client.multiappend("INBOX", raws[i:i + 100])
        client.select_folder("INBOX")
        uids = client.search("ALL")

        def fetch() -> None:
            for i in range(0, len(uids), 200):
                client.fetch(uids[i:i + 200], ["BODY.PEEK[]", "RFC822.SIZE"])

        master = int((server.run_dir / "master.pid").read_text())
        figures = measure(fetch, master)
        client.logout()
        return figures
    finally:
        server.stop()


def parse(raws: list[bytes]) -> tuple[float, float, float]:
    return measure(lambda: [mailparser.parse_from_bytes(raw) for raw in raws])


def smtp(n: int, lanes: int) -> tuple[float, float, float]:
    with socket.socket() as probe:  # a free port; aiosmtpd's Controller cannot start on port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        if not sink.stdout or sink.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP server did not start")

        async def lane(count: int) -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
            await client.connect()
            for _ in range(count):
                await client.sendmail("support@acme.example", ["customer@example.com"], ACK)
            await client.quit()

        async def send_all() -> None:
            await asyncio.gather(*(lane(n // lanes + (i < n % lanes)) for i in range(lanes)))

        return measure(lambda: asyncio.run(send_all()), sink.pid)
    finally:
        sink.kill()
        sink.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--lanes", type=int, default=4, help="SMTP connections (the daemon uses 4)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    _, mails = mailgen.generate(args.n, args.seed)
    raws = [m.raw for m in mails]
    work = Path(tempfile.mkdtemp(prefix="ticketd-floor-"))
    try:
        rows = {"IMAP FETCH (imapclient | Dovecot)": imap_fetch(raws, work),
                "parse (mail-parser)": parse(raws),
                f"SMTP, one mail ({args.lanes} connections; aiosmtplib | aiosmtpd)": smtp(args.n, args.lanes)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count() or 1
    print(f"=== per-message cost of the fixed parts, {args.n} generated mails, {cores} CPU(s), "
          f"load {os.getloadavg()[0]:.2f} at the end")
    print(f"{'part':58} {'client ms':>10} {'server ms':>10} {'wall/s':>9}")
    per = {}
    for name, (wall, own, server) in rows.items():
        per[name] = (own / args.n * 1000, server / args.n * 1000)
        print(f"{name:58} {per[name][0]:10.3f} {per[name][1]:10.3f} {args.n / wall:9.0f}")
    fixed = sum(sum(v) for k, v in per.items() if not k.startswith("SMTP"))
    fixed_own = sum(v[0] for k, v in per.items() if not k.startswith("SMTP"))
    mail = next(v for k, v in per.items() if k.startswith("SMTP"))
    print(f"\n{'agents':>6} {'mails/request':>14} {'CPU ms/message':>15} {'ceiling msg/s':>22} "
          f"{'daemon side alone':>18}")
    for agents in (0, 1, 3):
        mails_per = 1 + agents
        total = fixed + mails_per * sum(mail)
        own = fixed_own + mails_per * mail[0]
        print(f"{agents:6} {mails_per:14} {total:15.2f} {cores * 1000 / total:15.0f} on {cores} "
              f"{1000 / own:11.0f} on 1")
    print("\nceiling = every core busy with only these parts; 'daemon side alone' = the daemon's share on one core.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
