"""The smallest pipeline on ticketd's stack, run on the same mail and servers as ingest.py: what this machine allows.

Usage:

    .venv/bin/python tests/benchmarks/minimal.py [--n 2000] [--backend sqlite|postgresql] [--parser mail-parser|stdlib]

ingest.py times the whole daemon; floor.py adds up the costs of the libraries' parts. This script is the
third reading: a real pipeline, end to end, that does only what every helpdesk must do with a mail and nothing
ticketd adds (no identification, rules, language guess, templates, events, SLA, logging, retries). Per chunk of
200 mails, as the daemon fetches:

1. FETCH ``BODY.PEEK[]`` from a private Dovecot (imapclient) and store the raw mail, one INSERT for the chunk;
2. parse every mail (mail-parser, as ticketd; ``--parser stdlib`` for the standard library's parser);
3. thread replies by In-Reply-To with one SELECT for the chunk, open a ticket for each other mail, record every
   message: one INSERT per table for the chunk (SQLAlchemy Core, ``RETURNING`` for the ticket ids);
4. build each new ticket's acknowledgment (``email.message.EmailMessage``) and queue it, one INSERT; commit;
5. send the chunk's acknowledgments over four aiosmtplib connections to an aiosmtpd server in its own
   process (the benchmark's), then mark them sent with one UPDATE.

It prints messages per second from the first FETCH to the last acknowledgment accepted, the pipeline's CPU per
message, and its peak RSS. A daemon that does more per mail stays below this figure on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
import mailgen
import mailparser
import sqlalchemy as sa
from floor import SINK, calibration

TESTS = Path(__file__).resolve().parents[1]
CHUNK = 200
LANES = 4
SUPPORT = "support@acme.example"

META = sa.MetaData()
INBOUND = sa.Table("inbound", META, sa.Column("id", sa.Integer, primary_key=True), sa.Column("uid", sa.Integer),
                   sa.Column("raw", sa.LargeBinary), sa.Column("status", sa.String(10)))
TICKET = sa.Table("ticket", META, sa.Column("id", sa.Integer, primary_key=True), sa.Column("subject", sa.Text),
                  sa.Column("requester", sa.String(320)), sa.Column("created_at", sa.DateTime(timezone=True)))
MESSAGE = sa.Table("message", META, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("ticket_id", sa.Integer, sa.ForeignKey("ticket.id"), index=True),
                   sa.Column("inbound_id", sa.Integer), sa.Column("message_id", sa.String(998), index=True),
                   sa.Column("sender", sa.String(320)), sa.Column("subject", sa.Text), sa.Column("body", sa.Text))
OUTBOX = sa.Table("outbox", META, sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("ticket_id", sa.Integer), sa.Column("recipient", sa.String(320)),
                  sa.Column("raw", sa.LargeBinary), sa.Column("status", sa.String(10)))


def parse(raw: bytes, parser: str) -> tuple[str, list[str], str, str, str]:
    """(Message-ID, the ids it answers: In-Reply-To then References, sender address, subject, text body)."""
    if parser == "stdlib":
        msg = message_from_bytes(raw, policy=policy.default)
        body = msg.get_body(("plain", "html"))
        text = body.get_content() if body is not None else ""
        headers: Any = msg
        sender = parseaddr(str(msg.get("From", "")))[1].lower()
        subject = str(msg.get("Subject", ""))
    else:
        mail = mailparser.parse_from_bytes(raw)
        headers, text, subject = mail.headers, mail.body, mail.subject or ""
        sender = mail.from_[0][1].lower() if mail.from_ else ""
    answers = f"{headers.get('In-Reply-To', '')} {' '.join(reversed(str(headers.get('References', '')).split()))}"
    return str(headers.get("Message-ID", "")).strip(), answers.split(), sender, subject, text


def acknowledgment(number: int, to: str, subject: str, answers: str) -> bytes:
    ack = EmailMessage()
    ack["From"] = f"Acme Destek <{SUPPORT}>"
    ack["To"] = to
    ack["Subject"] = f"[#{number}] Received: {subject}"[:200]
    ack["Message-ID"] = make_msgid(domain="acme.example")
    if answers:
        ack["In-Reply-To"] = answers
    ack.set_content(f"We have received your request #{number} and will answer it as soon as we can.\n")
    return ack.as_bytes()


def process_chunk(engine: sa.Engine, rows: list[tuple[int, bytes]], parser: str) -> list[tuple[int, str, bytes]]:
    """One chunk, one transaction: the raw rows, tickets, messages and queued acknowledgments."""
    with engine.begin() as con:
        inbound_ids = [r.id for r in con.execute(
            sa.insert(INBOUND).returning(INBOUND.c.id, sort_by_parameter_order=True),
            [{"uid": uid, "raw": raw, "status": "new"} for uid, raw in rows])]
        parsed = [parse(raw, parser) for _, raw in rows]
        parents = {i for p in parsed for i in p[1]}
        known = dict(con.execute(sa.select(MESSAGE.c.message_id, MESSAGE.c.ticket_id)
                                 .where(MESSAGE.c.message_id.in_(parents))).all()) if parents else {}
        now = datetime.now(UTC)
        chunk_ids = {p[0] for p in parsed}

        def thread(p: tuple[str, list[str], str, str, str]) -> int | None:
            return next((known[i] for i in p[1] if i in known), None)

        new = [p for p in parsed if thread(p) is None and not any(i in chunk_ids for i in p[1])]

        ticket_ids = [r.id for r in con.execute(
            sa.insert(TICKET).returning(TICKET.c.id, sort_by_parameter_order=True),
            [{"subject": p[3], "requester": p[2], "created_at": now} for p in new])] if new else []
        ticket_of = {p[0]: t for p, t in zip(new, ticket_ids, strict=True)}
        messages = []
        for inbound_id, p in zip(inbound_ids, parsed, strict=True):
            ticket = thread(p) or ticket_of[p[0]]
            known[p[0]] = ticket  # a reply later in the same chunk finds its ticket (mailgen writes parents first)
            messages.append({"ticket_id": ticket, "inbound_id": inbound_id, "message_id": p[0], "sender": p[2],
                             "subject": p[3], "body": p[4]})
        con.execute(sa.insert(MESSAGE), messages)
        acks = [{"ticket_id": t, "recipient": p[2], "raw": acknowledgment(t, p[2], p[3], p[0]),
                 "status": "queued"}
                for p, t in zip(new, ticket_ids, strict=True)]
        ids = [r.id for r in con.execute(sa.insert(OUTBOX).returning(OUTBOX.c.id, sort_by_parameter_order=True),
                                         acks)] if acks else []
        con.execute(sa.update(INBOUND).where(INBOUND.c.id.in_(inbound_ids)).values(status="done"))
    return [(i, a["recipient"], a["raw"]) for i, a in zip(ids, acks, strict=True)]


async def send(clients: list[aiosmtplib.SMTP], queued: list[tuple[int, str, bytes]]) -> list[int]:
    async def lane(client: aiosmtplib.SMTP, items: list[tuple[int, str, bytes]]) -> list[int]:
        for _, to, raw in items:
            await client.sendmail(SUPPORT, [to], raw)
        return [i for i, _, _ in items]

    done = await asyncio.gather(*(lane(c, queued[k::len(clients)]) for k, c in enumerate(clients)))
    return [i for ids in done for i in ids]


async def each(clients: list[aiosmtplib.SMTP], method: str) -> None:
    await asyncio.gather(*(getattr(c, method)() for c in clients))


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS))
    from imapclient import IMAPClient

    from servers.dovecot import start_dovecot
    from servers.postgres import start_postgres

    _, mails = mailgen.generate(args.n, args.seed)
    password = secrets.token_urlsafe(12)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dovecot = start_dovecot(work / "dovecot", {"support": password})
    cluster, sink = None, None
    try:
        cluster = start_postgres() if args.backend == "postgresql" else None
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True)
        if not sink.stdout or sink.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP server did not start")
        if cluster is not None:
            url = cluster.url("postgres")
            engine = sa.create_engine(url)
        else:
            engine = sa.create_engine(f"sqlite:///{work / 'minimal.db'}")
            with engine.connect() as con:
                con.exec_driver_sql("PRAGMA journal_mode=WAL")
        META.drop_all(engine)
        META.create_all(engine)
        client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=60)
        client.login("support", password)
        for i in range(0, len(mails), 100):
            client.multiappend("INBOX", [m.raw for m in mails[i:i + 100]])
        client.select_folder("INBOX")
        uids = client.search("ALL")
        loop = asyncio.new_event_loop()
        clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
                   for _ in range(LANES)]
        loop.run_until_complete(each(clients, "connect"))
        cpu, start, sent = time.process_time(), time.perf_counter(), 0
        for i in range(0, len(uids), CHUNK):
            fetched = client.fetch(uids[i:i + CHUNK], ["BODY.PEEK[]"])
            queued = process_chunk(engine, [(uid, fetched[uid][b"BODY[]"]) for uid in uids[i:i + CHUNK]],
                                   args.parser)
            done = loop.run_until_complete(send(clients, queued))
            with engine.begin() as con:
                con.execute(sa.update(OUTBOX).where(OUTBOX.c.id.in_(done)).values(status="sent"))
            sent += len(done)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        loop.run_until_complete(each(clients, "quit"))
        loop.close()
        client.logout()
        with engine.connect() as con:
            tickets = con.execute(sa.select(sa.func.count()).select_from(TICKET)).scalar_one()
            done = con.execute(sa.select(sa.func.count()).select_from(INBOUND)
                               .where(INBOUND.c.status == "done")).scalar_one()
        engine.dispose()
        return {"wall": wall, "cpu": cpu, "acks": sent, "tickets": tickets, "done": done,
                "expected": sum(m.expects_ack for m in mails)}
    finally:
        if sink is not None:
            sink.kill()
            sink.wait()
        dovecot.stop()
        if cluster is not None:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--parser", choices=("mail-parser", "stdlib"), default="mail-parser")
    args = parser.parse_args(argv)
    speed = calibration()
    work = Path(tempfile.mkdtemp(prefix="ticketd-minimal-"))
    try:
        figures = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = args.n
    print(f"=== minimal pipeline on {args.backend}, parser {args.parser}: {n} generated mails, "
          f"{os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f} at the end")
    print(f"machine speed        {speed:.3f} s for a fixed pure-Python loop (ingest.py prints the same loop)")
    print(f"end to end           {n} messages in {figures['wall']:.2f} s = {n / figures['wall']:.1f} msg/s, "
          f"first fetch → last ack")
    right = figures["tickets"] == figures["acks"] == figures["expected"] and figures["done"] == n
    print(f"check                inbound rows done {figures['done']} of {n}; tickets {figures['tickets']}, acks "
          f"{figures['acks']}, {figures['expected']} expected (ingest.py's count of mails that start a "
          f"conversation): {'ok' if right else 'WRONG'}")
    print(f"CPU                  pipeline {figures['cpu']:.2f} s = {figures['cpu'] / n * 1000:.2f} ms/msg "
          "(its own process; Dovecot, the SMTP server and the database server not counted)")
    print(f"peak RSS             {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB "
          "(this process: the generator's mail included)")
    return 0 if right else 1


if __name__ == "__main__":
    sys.exit(main())
