"""How long `ticketd customers erase` takes on a database full of other people's raw mail, and the retention purge.

Usage:

    .venv/bin/python tests/benchmarks/erase.py [--n 5000] [--kib 40]

A fresh SQLite database in a temporary folder gets ``--n`` stored, processed inbound mails of about ``--kib`` KiB
from other senders (the erase reads every raw message looking for the address), and one person's three mails
through the real pipeline. Printed: the database size, the wall time of the installed `ticketd customers erase`
(its secure_delete transaction, checkpoint and VACUUM included) and of a purge of all that raw mail.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

TICKETD = Path(sys.executable).with_name("ticketd")


def mail(sender: str, text: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@acme.example", "benchmark"
    msg["Message-ID"] = f"<{secrets.token_hex(12)}@client.example>"
    msg.set_content(text)
    return msg.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--kib", type=int, default=40)
    args = parser.parse_args()

    from ticketd.daemon import pipeline
    from ticketd.daemon.config import load_config
    from ticketd.daemon.service.privacy import purge_raw_mail
    from ticketd.storage import db
    from ticketd.storage.inbound import store_inbound
    from ticketd.storage.models import InboundRaw

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "secret").write_text(secrets.token_urlsafe(32))
        config_path = work / "ticketd.toml"
        config_path.write_text('[helpdesk]\naddress = "support@acme.example"\n'
                               f'[database]\nurl = "sqlite:///{work / "ticketd.db"}"\n'
                               '[security]\nsecret_file = "secret"\n[logging]\nlevel = "warning"\n')
        config = load_config(config_path)
        engine = db.make_engine(config.database.url)
        db.upgrade(engine)
        filler = "lorem ipsum dolor sit amet " * (args.kib * 1024 // 27)
        old = datetime.now(UTC) - timedelta(days=400)
        with db.session_scope(engine) as session:
            for i in range(args.n):
                row = store_inbound(session, mail(f"other{i}@example.com", filler), "bench")
                row.status, row.received_at = "done", old
        ids = []
        with db.session_scope(engine) as session:
            for i in range(3):
                ids.append(store_inbound(session, mail("Erin Example <erin@example.org>", f"mine {i}"), "bench").id)
        pipeline.process_pending(engine, config, ids)
        size = (work / "ticketd.db").stat().st_size + sum(
            p.stat().st_size for p in work.glob("ticketd.db-wal"))
        env = {**os.environ, "TICKETD_CONFIG": str(config_path)}
        began = time.perf_counter()
        proc = subprocess.run([str(TICKETD), "customers", "erase", "erin@example.org", "--yes"], env=env,
                              capture_output=True, text=True, check=False)
        erase_seconds = time.perf_counter() - began
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        began = time.perf_counter()
        purged = purge_raw_mail(engine, 30)
        purge_seconds = time.perf_counter() - began
        with engine.connect() as conn:
            left = conn.execute(InboundRaw.__table__.select()).all()  # type: ignore[attr-defined]
        engine.dispose()
        print(f"database: {args.n} other mails of ~{args.kib} KiB, {size / 2**20:.1f} MiB")
        print(f"customers erase (scan, secure_delete, checkpoint, VACUUM): {erase_seconds:.2f} s")
        print(f"  {proc.stdout.strip()}")
        print(f"retention purge of {purged} raw mails: {purge_seconds:.2f} s; rows with raw left: {len(left)}")


if __name__ == "__main__":
    main()
