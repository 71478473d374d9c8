"""How long `ticketd report` takes and how much memory it needs, on a generated history.

Usage:

    .venv/bin/python tests/benchmarks/report.py [--n 2000] [--months 14] [--runs 3]

A fresh SQLite database in a temporary folder gets ``--n`` tickets over ``--months`` months (tests/history.py:
companies, customers, agents, types, categories, met and missed deadlines, satisfaction answers). Then the
installed `ticketd report --xlsx --charts --csv` runs ``--runs`` times, as an operator would run it, once for
every ticket and once for the busiest company. Printed: wall time per run (median and worst) and the
command's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TICKETD = Path(sys.executable).with_name("ticketd")


def write_config(work: Path) -> Path:
    (work / "secret").write_text(secrets.token_urlsafe(32))
    config = work / "ticketd.toml"
    config.write_text('[helpdesk]\naddress = "support@acme.example"\ntag = "ACME"\ntimezone = "Europe/Istanbul"\n'
                      '[database]\nurl = "sqlite:///ticketd.db"\n[security]\nsecret_file = "secret"\n'
                      '[logging]\nlevel = "warning"\n')
    return config


def run_report(config: Path, out: Path, *scope: str) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one `ticketd report` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([str(TICKETD), "--config", str(config), "report", "--xlsx", str(out / "report.xlsx"),
                           "--charts", str(out / "charts"), "--csv", str(out / "csv"), *scope],
                          capture_output=True, text=True, check=False, env={**os.environ})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ticketd report failed ({proc.returncode}):\n{proc.stderr}")
    # ru_maxrss of the children is the largest child so far: the report is the largest one we run
    return seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="tickets (default 2000)")
    parser.add_argument("--months", type=int, default=14, help="months of history (default 14)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scope (default 3)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from history import generate_history

    from ticketd.daemon.config import load_config
    from ticketd.storage import db

    work = Path(tempfile.mkdtemp(prefix="ticketd-report-bench-"))
    try:
        config_path = write_config(work)
        config = load_config(config_path)
        engine = db.make_engine(config.database.url)
        db.upgrade(engine)
        started = time.perf_counter()
        generate_history(engine, config, n=args.n, months=args.months)
        print(f"=== ticketd report benchmark: {args.n} tickets over {args.months} months, {os.cpu_count()} CPU(s), "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"history generated in {time.perf_counter() - started:.2f} s")
        with engine.connect() as conn:
            busiest = conn.exec_driver_sql(
                "SELECT c.name FROM ticket t JOIN company c ON c.id = t.company_id GROUP BY c.name "
                "ORDER BY count(*) DESC LIMIT 1").scalar()
        for label, scope in (("all tickets", ()), (f"company {busiest}", ("--company", str(busiest)))):
            times, peak = [], 0
            for run in range(args.runs):
                out = work / f"out-{len(scope)}-{run}"
                seconds, rss = run_report(config_path, out, *scope)
                times.append(seconds)
                peak = max(peak, rss)
            print(f"{label:32} median {statistics.median(times):.2f} s, worst {max(times):.2f} s over {args.runs} "
                  f"runs (workbook, 4 charts, CSV; process start included); peak RSS {peak / 1024:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
