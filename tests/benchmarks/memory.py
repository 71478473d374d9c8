"""Peak memory of `ticketd run --once` over a backlog of big mails (the attack pass: 40 mails of 20 MB).

Run: .venv/bin/python tests/benchmarks/memory.py [COUNT] [MB]. Stores COUNT mails of about MB megabytes each
(a short text and one attachment) in the database (from this process, as `ticketd deliver --no-process` would),
then runs `ticketd run --once` and prints its peak RSS (``ru_maxrss`` of that child alone, from ``wait4``).
Two passes: senders that are known customers with a language on file (the language model is never loaded), and
strangers (the model is mapped at the first one, from the user's cache folder: made there by the first run).
Each pass runs as a shell starts ticketd and again with the C library settings deploy/ticketd.service gives it.
Prints figures; asserts nothing but that every mail was handled.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import bench_pipeline  # beside this script

from ticketd.storage import db
from ticketd.storage.inbound import store_inbound

TICKETD = Path(sys.executable).with_name("ticketd")
CONFIG = bench_pipeline.CONFIG  # the same installation as the pipeline benchmark


def big_mail(n: int, sender: str, megabytes: float) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, "support@acme.example"
    msg["Subject"], msg["Message-ID"] = f"Logs from the server, part {n}", f"<mem-{n}-{secrets.token_hex(4)}@x.example>"
    msg.set_content("Hello, the log files you asked for are attached. The server stopped again this morning.")
    payload = os.urandom(int(megabytes * 1024 * 1024 * 3 / 4))  # base64 makes 4 bytes of every 3
    msg.add_attachment(payload, "application", "octet-stream", filename=f"server-{n}.log.gz")
    return msg.as_bytes()


def run_once(env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """``ticketd run --once``: its own peak RSS (``wait4`` gives this child's usage alone, not the largest of
    every child so far) and what it printed."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([str(TICKETD), "run", "--once"], stdout=out, stderr=subprocess.DEVNULL, env=env,
                                cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, proc.returncode
        out.seek(0)
        return usage.ru_maxrss / 1024, out.read().decode().strip()


def unit_environment() -> dict[str, str]:
    """The C library settings deploy/ticketd.service gives the daemon (``Environment=MALLOC_…``)."""
    unit = (Path(__file__).parents[2] / "deploy" / "ticketd.service").read_text()
    pairs = [line.removeprefix("Environment=").split("=", 1) for line in unit.splitlines()
             if line.startswith("Environment=MALLOC_")]
    return {name: value for name, value in pairs}


def run(folder: Path, count: int, megabytes: float, strangers: bool, extra_env: dict[str, str]) -> None:
    folder.mkdir()
    (folder / "secret").write_text(secrets.token_urlsafe(32))
    (folder / "ticketd.toml").write_text(CONFIG)
    env = {**os.environ, **extra_env, "TICKETD_CONFIG": str(folder / "ticketd.toml")}

    def cli(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([str(TICKETD), *args], input=data, capture_output=True, env=env, cwd=folder,
                              check=False)
        assert proc.returncode == 0, (args, proc.stderr.decode()[-2000:])
        return proc

    cli("db", "upgrade")
    senders = [f"customer{n}@firm.example" for n in range(count)]
    if not strangers:
        (folder / "people.csv").write_text("email,name,company,language\n"
                                           + "".join(f"{s},Customer {n},,en\n" for n, s in enumerate(senders)))
        cli("customers", "import", str(folder / "people.csv"))
    raw_total = 0
    engine = db.make_engine(f"sqlite:///{folder / 'bench.db'}")
    for n, sender in enumerate(senders):
        raw = big_mail(n, sender, megabytes)
        raw_total += len(raw)
        with db.session_scope(engine) as session:
            store_inbound(session, raw, "deliver")
    engine.dispose()
    started = time.perf_counter()
    peak, out = run_once(env, folder)
    elapsed = time.perf_counter() - started
    label = "strangers (language model)" if strangers else "known customers (no language model)"
    label += ", unit's env" if extra_env else ""
    print(f"{label:52} {count} mails, {raw_total / 2**20:.0f} MiB raw: peak RSS {peak:.0f} MiB, "
          f"{elapsed:.1f} s; {out}")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    megabytes = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    which = sys.argv[3] if len(sys.argv) > 3 else "both"
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("plain", {}), ("unit", unit_environment())):
            if which in ("both", "known"):
                run(Path(tmp) / f"known-{name}", count, megabytes, strangers=False, extra_env=extra)
            if which in ("both", "strangers"):
                run(Path(tmp) / f"strangers-{name}", count, megabytes, strangers=True, extra_env=extra)


if __name__ == "__main__":
    main()
