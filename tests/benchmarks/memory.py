"""Peak memory of `ticketd run --once` over a backlog of big mails (the attack pass: 40 mails of 20 MB).

Run: .venv/bin/python tests/benchmarks/memory.py [COUNT] [MB] [known|strangers|both]. A child process stores
COUNT mails of about MB megabytes each (a short text and one attachment) in a fresh database, as
`ticketd deliver --no-process` would; then `ticketd run --once` processes them and its peak RSS is printed
(``ru_maxrss`` of that child, from ``wait4``). Two passes: senders that are known customers with a language on
file (the language model is never used), and strangers (the model is mapped at the first one, from the user's
cache folder, made there by the first run ever).

Why the storing is a child of its own: Linux counts in a child's ``ru_maxrss`` the high-water mark of the memory
it was forked from (Python starts children with vfork), so a parent that once held 40 generated mails made every
``run --once`` look 100-250 MiB bigger than it was. This parent never holds more than ~30 MiB, under the ~95 MiB
ticketd needs at rest. Prints figures; asserts nothing but that every mail was handled.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKETD = Path(sys.executable).with_name("ticketd")


def big_mail(n: int, sender: str, megabytes: float) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"] = sender, "support@acme.example"
    msg["Subject"], msg["Message-ID"] = f"Logs from the server, part {n}", f"<mem-{n}-{secrets.token_hex(4)}@x.example>"
    msg.set_content("Hello, the log files you asked for are attached. The server stopped again this morning.")
    payload = os.urandom(int(megabytes * 1024 * 1024 * 3 / 4))  # base64 makes 4 bytes of every 3
    msg.add_attachment(payload, "application", "octet-stream", filename=f"server-{n}.log.gz")
    return msg.as_bytes()


def store(folder: Path, count: int, megabytes: float, strangers: bool) -> None:
    """The child's part: an installation in ``folder`` with COUNT big mails waiting. Prints the raw bytes."""
    import bench_pipeline  # beside this script: the same installation as the pipeline benchmark

    from ticketd.storage import db
    from ticketd.storage.inbound import store_inbound

    folder.mkdir()
    (folder / "secret").write_text(secrets.token_urlsafe(32))
    (folder / "ticketd.toml").write_text(bench_pipeline.CONFIG)
    env = {**os.environ, "TICKETD_CONFIG": str(folder / "ticketd.toml")}

    def cli(*args: str) -> None:
        proc = subprocess.run([str(TICKETD), *args], capture_output=True, env=env, cwd=folder, check=False)
        assert proc.returncode == 0, (args, proc.stderr.decode()[-2000:])

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
    print(raw_total)


def run_once(folder: Path) -> tuple[float, str]:
    """``ticketd run --once``: its own peak RSS and what it printed."""
    env = {**os.environ, "TICKETD_CONFIG": str(folder / "ticketd.toml")}
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([str(TICKETD), "run", "--once"], stdout=out, stderr=subprocess.DEVNULL, env=env,
                                cwd=folder)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, proc.returncode
        out.seek(0)
        return usage.ru_maxrss / 1024, out.read().decode().strip()


def measure(folder: Path, count: int, megabytes: float, strangers: bool) -> None:
    stored = subprocess.run([sys.executable, __file__, "--store", str(folder), str(count), str(megabytes),
                             "strangers" if strangers else "known"], capture_output=True, check=True)
    raw_total = int(stored.stdout.split()[-1])
    started = time.perf_counter()
    peak, out = run_once(folder)
    elapsed = time.perf_counter() - started
    label = "strangers (language model)" if strangers else "known customers (no language model)"
    print(f"{label:38} {count} mails, {raw_total / 2**20:.0f} MiB raw: peak RSS {peak:.0f} MiB, "
          f"{elapsed:.1f} s; {out}")


def main() -> None:
    if sys.argv[1:2] == ["--store"]:
        store(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "strangers")
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    megabytes = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    which = sys.argv[3] if len(sys.argv) > 3 else "both"
    with tempfile.TemporaryDirectory() as tmp:
        if which in ("both", "known"):
            measure(Path(tmp) / "known", count, megabytes, strangers=False)
        if which in ("both", "strangers"):
            measure(Path(tmp) / "strangers", count, megabytes, strangers=True)


if __name__ == "__main__":
    main()
