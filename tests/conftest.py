"""Shared fixtures: real servers on loopback (Dovecot, aiosmtpd, PostgreSQL), real SQLite, the installed `ticketd`
command.

Every test that uses a database through ``site``, ``db_url`` or ``engine`` runs on each backend, SQLite and
PostgreSQL (test ids ``[sqlite]`` and ``[postgresql]``); ``--backend=sqlite`` or ``--backend=postgresql`` picks one
for a quick local run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ticketd.daemon.config import Config, load_config
from ticketd.daemon.outgoing.smtp_sink import SmtpSink
from ticketd.storage import db

DATA = Path(__file__).parent / "data"
TICKETD = Path(sys.executable).with_name("ticketd")
BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=("both", *BACKENDS), default="both",
                     help="the database backend(s) the database tests run on (default: both, as CI runs them)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend`` is parametrised here, not in its decorator, so that ``--backend`` can narrow it. Module scope:
    a module's tests run on SQLite first, then on PostgreSQL, and module fixtures (a generated history) follow."""
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend")
        metafunc.parametrize("backend", BACKENDS if chosen == "both" else [chosen], indirect=True, scope="module")


# Files whose tests run for minutes (a day of the daemon, storms, SIGKILLs, a minute of outage): handed to the
# workers first. In collection order they came late and the suite ended with one worker alone on one of them
# while the others were idle. A file left out of the list only starts later.
LONG_FILES = ("test_a_day_at_the_helpdesk.py", "test_storms.py", "test_instances.py", "test_crash_safety.py",
              "test_webhooks.py", "test_failures_and_retries.py", "test_intake_flow.py", "test_daemon_lifecycle.py",
              "test_report_mail.py", "test_actions.py", "test_privacy.py", "test_sla_timers.py",
              "test_corpus_intake.py", "test_graph_daemon.py", "test_admin_lookup.py", "test_conversation.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long files first (a stable sort: every file keeps its tests' order, the rest their files' order)."""
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else toml_value(key)


def to_toml(sections: dict[str, Any]) -> str:
    """Sections are tables (``"sla.resolution": {...}`` for nested ones) or lists of tables (``[[rules]]``)."""
    lines = []
    for name, values in sections.items():
        if values is None:
            continue
        for table in values if isinstance(values, list) else [values]:
            lines.append(f"[[{name}]]" if isinstance(values, list) else f"[{name}]")
            lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
            lines.append("")
    return "\n".join(lines)


@dataclass
class Site:
    """One ticketd installation in a temporary folder: its config file, sections and helpers to run it.

    ``new_database`` gives the URL of another empty database on the same backend (for a second installation);
    ``upgrade`` migrates the site's database to the Alembic head.
    """

    dir: Path
    sections: dict[str, Any]
    new_database: Callable[[], str] = field(default=lambda: "sqlite:///ticketd.db", repr=False)
    migrate: Callable[[str], None] = field(default=lambda url: _migrate(url), repr=False)
    _engines: dict[str, sa.Engine] = field(default_factory=dict, repr=False)
    _clones: list[Site] = field(default_factory=list, repr=False)

    @property
    def config_path(self) -> Path:
        return self.dir / "ticketd.toml"

    def write(self) -> Path:
        """Written aside and renamed: a thread or daemon reading it meanwhile never sees half a file."""
        partial = self.config_path.with_name(f".ticketd.toml.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(to_toml(self.sections))
        os.replace(partial, self.config_path)
        return self.config_path

    def config(self) -> Config:
        return load_config(self.write())

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the installed console script, as an operator would."""
        self.write()
        full_env = {**(env or os.environ), "TICKETD_CONFIG": str(self.config_path)}
        return subprocess.run([str(TICKETD), *args], input=input, capture_output=True, timeout=timeout,
                              env=full_env, cwd=self.dir, check=False, text=False)  # type: ignore[return-value]

    def upgrade(self) -> None:
        self.migrate(self.config().database.url)

    @property
    def engine(self) -> sa.Engine:
        """One engine (one pool) per database URL, disposed by ``close``: a PostgreSQL connection left in the pool
        of an engine made on every call would stay open until the garbage collector came by."""
        url = self.config().database.url
        if url not in self._engines:
            self._engines[url] = db.make_engine(url)
        return self._engines[url]

    def clone(self, where: Path) -> Site:
        """Another installation with the same settings and secret in ``where``, on a new empty database."""
        where.mkdir(parents=True, exist_ok=True)
        for name in ("secret",):
            if (self.dir / name).exists():
                (where / name).write_bytes((self.dir / name).read_bytes())
        sections = {name: dict(section) if isinstance(section, dict) else section
                    for name, section in self.sections.items()}
        sections["database"] = {**sections.get("database", {}), "url": self.new_database()}
        clone = Site(where, sections, self.new_database, self.migrate)
        self._clones.append(clone)
        return clone

    def close(self) -> None:
        for clone in self._clones:
            clone.close()
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


def _migrate(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()


def decode(proc: subprocess.CompletedProcess[Any]) -> tuple[str, str]:
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


# --- databases --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """The tests' own PostgreSQL cluster; ``postgres.new_database()`` gives the URL of a fresh migrated database
    (``migrated=False``: an empty one), ``postgres.drop_database(url)`` removes one."""
    from servers.postgres import postgres_available, start_postgres

    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("the PostgreSQL server is not installed; `make test` installs it (apt-get install postgresql)")
        pytest.skip("the PostgreSQL server is not installed (make test installs it); --backend=sqlite runs the rest")
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: see ``pytest_generate_tests``."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres")  # fails (under CI) or skips here when PostgreSQL is missing
    return str(request.param)


def fresh_database(request: pytest.FixtureRequest, backend: str, folder: Path, migrated: bool = False) -> str:
    """A fresh database on ``backend`` for the requesting fixture, dropped when that fixture's scope ends; SQLite's
    is ``folder/t.db``."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 't.db'}"
        if migrated:
            _migrate(url)
        return url
    server = request.getfixturevalue("postgres")
    url = server.new_database(migrated=migrated)
    request.addfinalizer(lambda: server.drop_database(url))
    return url


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The URL of an empty database, as a new installation starts with."""
    return fresh_database(request, backend, tmp_path)


@pytest.fixture
def engine(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine on a fresh database migrated to the Alembic head."""
    engine = db.make_engine(fresh_database(request, backend, tmp_path, migrated=True))
    yield engine
    engine.dispose()


def site_database(request: pytest.FixtureRequest, backend: str) -> tuple[Callable[[], str], Callable[[str], None]]:
    """For a Site: how to get another empty database, and how to migrate one (on PostgreSQL an empty database is
    replaced by a copy of the migrated template, which is what running the migrations would give, only faster)."""
    if backend == "sqlite":
        return (lambda: "sqlite:///ticketd.db"), _migrate
    server = request.getfixturevalue("postgres")

    def empty() -> str:
        url = server.new_database(migrated=False)
        request.addfinalizer(lambda: server.drop_database(url))
        return url

    return empty, server.upgrade


@pytest.fixture
def site(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Site]:
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(32))
    empty, migrate = site_database(request, backend)
    site = Site(tmp_path, {
        "helpdesk": {"name": "Acme Support", "address": "support@acme.example", "tag": "ACME",
                     "language": "en", "timezone": "Europe/Istanbul"},
        "database": {"url": empty()},
        "security": {"secret_file": "secret"},
        "logging": {"format": "json"},
    }, empty, migrate)
    yield site
    site.close()


# --- IMAP -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from servers.dovecot import dovecot_available, start_dovecot

    if not dovecot_available():
        if os.environ.get("CI"):
            pytest.fail("Dovecot is not installed; `make test` installs it (apt-get install dovecot-imapd)")
        pytest.skip("Dovecot is not installed (make test installs it)")
    server = start_dovecot(tmp_path_factory.mktemp("dovecot"))
    yield server
    server.stop()


@dataclass
class Mailbox:
    """A fresh IMAP account on the shared Dovecot, with helpers to put mail in and look at folders."""

    server: Any
    user: str
    password: str

    def client(self):  # type: ignore[no-untyped-def]
        from imapclient import IMAPClient

        c = IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=10)
        c.login(self.user, self.password)
        return c

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        c = self.client()
        try:
            c.append(folder, raw)
        finally:
            c.logout()

    def count(self, folder: str) -> int:
        c = self.client()
        try:
            if not c.folder_exists(folder):
                return 0
            return int(c.select_folder(folder, readonly=True)[b"EXISTS"])
        finally:
            c.logout()

    def imap_section(self, **overrides: Any) -> dict[str, Any]:
        return {"host": self.server.host, "port": self.server.port, "tls": "none", "username": self.user,
                "password": self.password, "poll_seconds": 2, **overrides}


@pytest.fixture
def mailbox(dovecot: Any) -> Mailbox:
    user = f"support{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    dovecot.add_user(user, password)
    return Mailbox(dovecot, user, password)


@pytest.fixture
def live_site(site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> Site:
    """A site wired to the real Dovecot account and the real SMTP sink, database created."""
    site.sections["imap"] = mailbox.imap_section()
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    return site


# --- conversations ------------------------------------------------------------------------------------------

def reply_to(received: Any, sender: str, body: str, subject_suffix: str = "", quote: bool = True,
             cc: str = "", to: str | None = None, message_id: str | None = None) -> bytes:
    """A reply as a mail client builds it: to the Reply-To, threaded, the original quoted Gmail-style."""
    msg = received.message
    original = msg.get_body(("plain",)).get_content() if msg.get_body(("plain",)) else ""
    quoted = "\n".join("> " + line for line in original.splitlines())
    text = body + (f"\n\nOn Mon, 23 Nov 2026 at 10:05, {msg['From']} wrote:\n{quoted}\n" if quote else "\n")
    headers = [
        f"From: {sender}",
        f"To: {to or msg['Reply-To'] or msg['From']}",
        *([f"Cc: {cc}"] if cc else []),
        f"Subject: Re: {msg['Subject']}{(' ' + subject_suffix) if subject_suffix else ''}",
        f"Message-ID: {message_id or '<' + secrets.token_hex(8) + '@client.example>'}",
        f"In-Reply-To: {msg['Message-ID']}",
        f"References: {msg.get('References', '')} {msg['Message-ID']}".replace("  ", " "),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + text.replace("\n", "\r\n")).encode("utf-8")


def client_mail(sender: str, subject: str, text: str, *, to: str = "support@acme.example",
                files: Sequence[tuple[str, str, bytes]] = (), image: bytes | None = None) -> bytes:
    """A new mail as Gmail or Outlook writes one: text and HTML alternatives, an image shown inline by cid (named
    ekran.png), files attached (name, content type, bytes)."""
    from email.message import EmailMessage
    from email.utils import make_msgid

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="client.example")
    msg.set_content(text)
    if image is not None:
        cid = make_msgid(domain="client.example")
        msg.add_alternative(f"<p>{text}</p><p><img src=\"cid:{cid[1:-1]}\"></p>", subtype="html")
        msg.get_payload()[1].add_related(image, "image", "png", cid=cid, filename="ekran.png")
    for name, ctype, data in files:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype, subtype, filename=name)
    return msg.as_bytes()


@dataclass
class Desk:
    """A running helpdesk in-process: mail goes in like `ticketd deliver`, out through the real SMTP sink."""

    site: Site
    sink: SmtpSink
    seen: int = 0

    def deliver(self, raw: bytes, clock: Callable[[], Any] | None = None) -> Any:
        """``clock`` pins the instant the message is processed at (the wall clock otherwise)."""
        from ticketd.daemon import pipeline
        from ticketd.daemon.outgoing import outbox
        from ticketd.storage.inbound import store_inbound

        config = self.site.config()
        engine = self.site.engine
        with db.session_scope(engine) as session:
            row_id = store_inbound(session, raw, "test").id
        outcome = pipeline.process_pending(engine, config, [row_id], **({"clock": clock} if clock else {}))[0]
        outbox.send_due(engine, config)
        return outcome

    def new_mail(self) -> list[Any]:
        """Mail that reached the SMTP server since the last call."""
        mails = self.sink.received[self.seen:]
        self.seen += len(mails)
        return mails

    def ticket(self, number: int) -> dict[str, Any]:
        from sqlmodel import Session, select

        from ticketd.daemon.cli.views import ticket_detail
        from ticketd.storage.models import Ticket

        with Session(self.site.engine) as session:
            return ticket_detail(session, session.exec(select(Ticket).where(Ticket.number == number)).one())


def mail_to(mails: list[Any], address: str) -> Any:
    found = [m for m in mails if address in m.envelope_to]
    assert len(found) == 1, [(m.envelope_to, m.message["Subject"]) for m in mails]
    return found[0]


def body_of(mail: Any) -> str:
    """The text part as a reader sees it (lines end in LF, whatever the wire carried)."""
    return str(mail.message.get_body(("plain",)).get_content()).replace("\r\n", "\n")


@pytest.fixture
def desk(site: Site, smtp_sink: SmtpSink) -> Desk:
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    from ticketd.storage.directory import add_company, upsert_agent, upsert_customer

    with db.session_scope(site.engine) as session:
        company = add_company(session, "Müşteri A.Ş.", ["musteri.com.tr"])
        upsert_customer(session, "cigdem.yilmaz@musteri.com.tr", "Çiğdem Yılmaz", company, language="tr")
        upsert_agent(session, "ali@acme.example", "Ali Veli", "agent", ["network"])
        upsert_agent(session, "ayse@acme.example", "Ayşe Demir", "manager", ["network"])
    return Desk(site, smtp_sink)


def await_mail(sink: SmtpSink, daemon: Any, seconds: float, what: str) -> None:
    """Wait until the SMTP server got mail; on time-out stop the daemon and fail with its log, which says why."""
    import time

    deadline = time.monotonic() + seconds
    while not sink.received and time.monotonic() < deadline:
        if daemon.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.returncode}):\n" + daemon.stderr.read().decode())
        time.sleep(0.1)
    if not sink.received:
        daemon.terminate()
        pytest.fail(f"{what}; daemon log:\n" + daemon.communicate(timeout=10)[1].decode())


def wait_for(what: str, done: Any, daemon: Any, timeout: float = 20, log: Path | None = None) -> None:
    """Poll ``done()`` while the daemon runs; fail with the daemon's log (when kept in a file) if it never holds."""
    import time

    tail = f":\n{log.read_text()}" if log is not None and log.exists() else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        if daemon.poll() is not None:
            tail = f":\n{log.read_text()}" if log is not None and log.exists() else ""
            pytest.fail(f"the daemon exited ({daemon.returncode}) while waiting for {what}{tail}")
        time.sleep(0.1)
    tail = f"; daemon log:\n{log.read_text()}" if log is not None and log.exists() else ""
    pytest.fail(f"timed out waiting for {what}{tail}")


def stop_daemon(daemon: subprocess.Popen[bytes], timeout: float = 15) -> int | None:
    """SIGTERM as systemd sends it; killed if it does not stop in time. Returns its exit code (None if killed)."""
    daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        return None


def start_daemon(site: Site, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`ticketd run` as a service manager starts it; its JSON log is readable from ``stderr``, or kept in ``log``
    (read while it runs). ``env`` is the daemon's whole environment (a fake clock's), else this process's."""
    site.write()
    with contextlib.ExitStack() as files:  # a log file, not a pipe nobody reads: that could fill and block it
        stderr = files.enter_context(log.open("ab")) if log is not None else subprocess.PIPE
        return subprocess.Popen([str(TICKETD), "--config", str(site.config_path), "run"],
                                env=env or dict(os.environ), stdout=subprocess.DEVNULL, stderr=stderr)


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines for one event."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [e for e in (json.loads(line) for line in lines if line.startswith("{")) if e.get("event") == event]
