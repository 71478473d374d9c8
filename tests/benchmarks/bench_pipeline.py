"""Pipeline throughput on SQLite: parse → identify → ticket → queue ack, for a backlog and for single mails.

Run: .venv/bin/python tests/benchmarks/bench_pipeline.py [N]. Prints messages per second, per-message latency
percentiles and peak memory. Network is left out on purpose (no IMAP, no SMTP): this measures our own work.
"""

from __future__ import annotations

import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ticketd.daemon import pipeline
from ticketd.daemon.config import load_config
from ticketd.storage import db
from ticketd.storage.inbound import store_inbound

CONFIG = """[helpdesk]
address = "support@acme.example"
tag = "ACME"
[database]
url = "sqlite:///bench.db"
[security]
secret_file = "secret"
[limits]
auto_replies_per_hour = 1000000   # measure the pipeline, not the circuit breaker
[logging]
level = "warning"
format = "json"
"""


def make_mail(i: int) -> bytes:
    return (f"From: Customer {i % 300} <customer{i % 300}@firm{i % 40}.example>\r\n"
            f"To: support@acme.example\r\nSubject: =?UTF-8?B?TW9kZW0gw6dhbMSxxZ9txLF5b3I=?= {i}\r\n"
            f"Message-ID: <bench-{i}@firm.example>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0300\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + "Merhaba, modem bağlantısı kopuyor. Lütfen yardım edin.\r\n" * 20).encode()


def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ticketd-bench-"))
    (work / "secret").write_text(secrets.token_urlsafe(32))
    (work / "ticketd.toml").write_text(CONFIG.replace("bench.db", str(work / "bench.db")))
    config = load_config(work / "ticketd.toml")
    from ticketd.daemon.service import logs

    logs.configure("warning", "json")
    engine = db.make_engine(config.database.url)
    db.upgrade(engine)

    # A backlog, as after an outage: everything stored, then processed in batches.
    with db.session_scope(engine) as session:
        for i in range(n):
            store_inbound(session, make_mail(i), "bench")
    # The language model loads once per process, at the first stranger's mail (0.6-0.8 s): a daemon pays it
    # once in its life, so it is kept out of the per-message figures and printed on its own.
    loaded = time.perf_counter()
    config.language_guesser.guess("warm up")
    load_seconds = time.perf_counter() - loaded
    start = time.perf_counter()
    outcomes = pipeline.process_pending(engine, config)
    elapsed = time.perf_counter() - start
    assert len(outcomes) == n and {o.status for o in outcomes} == {"done"}, outcomes[:3]

    # Mail arriving one at a time: store, then process alone, as under IDLE at a low rate.
    latencies = []
    for i in range(n, n + max(100, n // 5)):
        t0 = time.perf_counter()
        with db.session_scope(engine) as session:
            row_id = store_inbound(session, make_mail(i), "bench").id
        outcome = pipeline.process_pending(engine, config, [row_id])[0]
        assert outcome.status == "done", outcome
        latencies.append(time.perf_counter() - t0)
    q = statistics.quantiles(latencies, n=100)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"backlog messages     {n}")
    print(f"backlog elapsed      {elapsed:.2f} s")
    print(f"backlog throughput   {n / elapsed:.1f} messages/s (process only, batches of {pipeline.BATCH_SIZE})")
    print(f"single-message latency p50/p95/p99  {q[49] * 1000:.1f} / {q[94] * 1000:.1f} / {q[98] * 1000:.1f} ms"
          f" (store + process, {len(latencies)} messages)")
    print(f"language model load  {load_seconds:.2f} s (once per process, not in the figures above)")
    print(f"peak RSS             {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
