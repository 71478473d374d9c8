"""A private, throwaway PostgreSQL cluster for the tests that run on both database backends.

The cluster lives in a temporary directory, listens only on 127.0.0.1 on a free port (no Unix socket), trusts
every loopback connection and trades durability for speed (no fsync). Each test gets its own database:
``new_database()`` copies a template migrated once to the Alembic head, which takes milliseconds where running
the migrations would take most of a second, and ``new_database(migrated=False)`` gives an empty one, as a
fresh SQLite file is.

initdb refuses to run as root, so as root the cluster runs as Debian's ``postgres`` system user, and its data
directory lives outside pytest's 0700 temporary directories. A watchdog process stops the cluster and removes
its files when the test process goes away in any way, even killed, so no postgres is left running.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import real_clock_env

_TIMEOUT = 30.0
_SUPERUSER = "postgres"
TEMPLATE = "ticketd_template"

# Run by a separate Python: blocks until the test process closes the pipe (or dies), then stops the cluster.
_WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.buffer.read()
pg_ctl, data, base, user = sys.argv[1:5]
command = [pg_ctl, "stop", "-D", data, "-m", "immediate", "-s"]
if user:
    command = ["runuser", "-u", user, "--", *command]
subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
shutil.rmtree(base, ignore_errors=True)
"""


def bin_dir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them under /usr/lib/postgresql/<major>/bin)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [p for p in found if (p / "pg_ctl").exists() and (p / "postgres").exists()]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)


def postgres_available() -> bool:
    """Lets callers skip, or fail with a clear message, on machines without the PostgreSQL server."""
    if bin_dir() is None:
        return False
    if os.geteuid() != 0:
        return True
    try:
        pwd.getpwnam(_SUPERUSER)
    except KeyError:
        return False
    return shutil.which("runuser") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    host: str
    port: int
    base_dir: Path  # ours: the data directory, the log; removed by stop()
    bin_dir: Path
    run_as: str | None  # the system user the server runs as when we are root
    _admin: Any = field(default=None, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _names: Any = field(default_factory=lambda: itertools.count(1), repr=False)
    _template_ready: bool = field(default=False, repr=False)
    _copy: str = field(default="", repr=False)  # how a template is copied: see start()

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{_SUPERUSER}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, cwd=self.base_dir, check=False,
                              stdin=subprocess.DEVNULL, timeout=_TIMEOUT * 2, env=real_clock_env())

    def _log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""

    def start(self) -> None:
        proc = self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                         "-t", str(int(_TIMEOUT)), "-o", f"-p {self.port}")
        if proc.returncode == 0:
            try:
                version = self._connection().execute("SHOW server_version_num").fetchone()
                # PostgreSQL 15 copies a template through the WAL by default, all 8 MB of it; copying the files is
                # faster (its checkpoints cost little without fsync)
                self._copy = " STRATEGY FILE_COPY" if version and int(version[0]) >= 150000 else ""
                return
            except Exception as exc:
                problem = f"postgres started but does not answer on {self.host}:{self.port}: {exc}"
        else:
            problem = f"pg_ctl start exited {proc.returncode}: {proc.stdout}{proc.stderr}"
        tail = self._log_tail()
        self.stop()
        raise RuntimeError(f"{problem}\nlog tail:\n{tail}")

    def _connection(self) -> Any:
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(host=self.host, port=self.port, user=_SUPERUSER, dbname="postgres",
                                          autocommit=True, connect_timeout=10)
        return self._admin

    def _execute(self, sql: str) -> None:
        self._connection().execute(sql)  # type: ignore[arg-type]

    def _create_template(self) -> None:
        from ticketd.storage import db

        self._execute(f"CREATE DATABASE {TEMPLATE}")
        engine = db.make_engine(self.url(TEMPLATE))
        try:
            db.upgrade(engine)
        finally:
            engine.dispose()  # a template with an open connection cannot be copied
        self._execute(f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
        self._template_ready = True

    def new_database(self, migrated: bool = True) -> str:
        """A fresh database: migrated to the Alembic head (a copy of the template), or empty. Returns its URL."""
        if migrated and not self._template_ready:
            self._create_template()
        name = f"t_{next(self._names)}"
        self._execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if migrated else "") + self._copy)
        return self.url(name)

    def upgrade(self, url: str) -> None:
        """Migrate a database to the Alembic head: an empty one is replaced by a copy of the template (what the
        migrations would build, in a fraction of the time), any other is upgraded by Alembic."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(host=self.host, port=self.port, user=_SUPERUSER, dbname=name) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                  "WHERE n.nspname = 'public'").fetchone()
        if tables == (0,):
            if not self._template_ready:
                self._create_template()
            self._execute(f"DROP DATABASE {name} WITH (FORCE)")
            self._execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}{self._copy}")
            return
        from ticketd.storage import db

        engine = db.make_engine(url)
        try:
            db.upgrade(engine)
        finally:
            engine.dispose()

    def drop_database(self, url: str) -> None:
        """Connections still open to it (an engine nobody disposed, a daemon) are ended first."""
        name = url.rsplit("/", 1)[1]
        if self._watchdog is not None:  # not after stop()
            self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def pause(self) -> None:
        """Stop the server and keep its files: ``start()`` brings the same cluster back (a database outage)."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        proc = self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-s")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop exited {proc.returncode}: {proc.stdout}{proc.stderr}")

    def stop(self) -> None:
        """Immediate: nothing in this cluster is worth a checkpoint. Its files go too."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        if self.data_dir.exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-s")
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # type: ignore[union-attr]
            self._watchdog.wait(timeout=_TIMEOUT)
            self._watchdog = None
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _config(port: int) -> str:
    return f"""
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 30min
max_wal_size = 1GB
log_min_messages = warning
log_min_error_statement = panic
log_line_prefix = '%m [%p] %d '
"""


def start_postgres() -> PostgresServer:
    """initdb a new cluster in a temporary directory and start it; the caller must stop() it."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin")
    run_as = _SUPERUSER if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="ticketd-postgres-"))
    if run_as:
        pw = pwd.getpwnam(run_as)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    srv = PostgresServer("127.0.0.1", _free_port(), base, binaries, run_as)
    srv._watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(binaries / "pg_ctl"), str(srv.data_dir), str(base), run_as or ""],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=real_clock_env())
    init = srv._run("initdb", "-D", str(srv.data_dir), "--username", _SUPERUSER, "--auth", "trust",
                    "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync", "--no-instructions")
    if init.returncode:
        srv.stop()
        raise RuntimeError(f"initdb exited {init.returncode}:\n{init.stdout}{init.stderr}")
    with open(srv.data_dir / "postgresql.conf", "a") as conf:  # root may write it; postgres reads it
        conf.write(_config(srv.port))
    started = time.monotonic()
    srv.start()
    srv.started_in = time.monotonic() - started  # type: ignore[attr-defined]
    return srv
