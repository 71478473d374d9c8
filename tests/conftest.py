"""Shared fixtures: real servers on loopback (Dovecot, aiosmtpd), real SQLite, the installed `ticketd` command."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ticketd.daemon.config import Config, load_config
from ticketd.daemon.smtp_sink import SmtpSink
from ticketd.storage import db

DATA = Path(__file__).parent / "data"
TICKETD = Path(sys.executable).with_name("ticketd")


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
    """One ticketd installation in a temporary folder: its config file, sections and helpers to run it."""

    dir: Path
    sections: dict[str, Any]

    @property
    def config_path(self) -> Path:
        return self.dir / "ticketd.toml"

    def write(self) -> Path:
        self.config_path.write_text(to_toml(self.sections))
        return self.config_path

    def config(self) -> Config:
        return load_config(self.write())

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the installed console script, as an operator would."""
        self.write()
        full_env = {**os.environ, "TICKETD_CONFIG": str(self.config_path), **(env or {})}
        return subprocess.run([str(TICKETD), *args], input=input, capture_output=True, timeout=timeout,
                              env=full_env, cwd=self.dir, check=False, text=False)  # type: ignore[return-value]

    def upgrade(self) -> None:
        db.upgrade(db.make_engine(self.config().database.url))

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return db.make_engine(self.config().database.url)


def decode(proc: subprocess.CompletedProcess[Any]) -> tuple[str, str]:
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def site(tmp_path: Path) -> Site:
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(32))
    return Site(tmp_path, {
        "helpdesk": {"name": "Acme Support", "address": "support@acme.example", "tag": "ACME",
                     "language": "en", "timezone": "Europe/Istanbul"},
        "database": {"url": "sqlite:///ticketd.db"},
        "security": {"secret_file": "secret"},
        "logging": {"format": "json"},
    })


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


@dataclass
class Desk:
    """A running helpdesk in-process: mail goes in like `ticketd deliver`, out through the real SMTP sink."""

    site: Site
    sink: SmtpSink
    seen: int = 0

    def deliver(self, raw: bytes) -> Any:
        from ticketd.daemon import outbox, pipeline
        from ticketd.storage.inbound import store_inbound

        config = self.site.config()
        engine = self.site.engine
        with db.session_scope(engine) as session:
            row_id = store_inbound(session, raw, "test").id
        outcome = pipeline.process_pending(engine, config, [row_id])[0]
        outbox.send_due(engine, config)
        return outcome

    def new_mail(self) -> list[Any]:
        """Mail that reached the SMTP server since the last call."""
        mails = self.sink.received[self.seen:]
        self.seen += len(mails)
        return mails

    def ticket(self, number: int) -> dict[str, Any]:
        from sqlmodel import Session, select

        from ticketd.daemon.views import ticket_detail
        from ticketd.storage.models import Ticket

        with Session(self.site.engine) as session:
            return ticket_detail(session, session.exec(select(Ticket).where(Ticket.number == number)).one())


def mail_to(mails: list[Any], address: str) -> Any:
    found = [m for m in mails if address in m.envelope_to]
    assert len(found) == 1, [(m.envelope_to, m.message["Subject"]) for m in mails]
    return found[0]


def body_of(mail: Any) -> str:
    return mail.message.get_body(("plain",)).get_content()


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


def start_daemon(site: Site, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`ticketd run` as a service manager starts it; its JSON log is readable from ``stderr``."""
    site.write()
    return subprocess.Popen([str(TICKETD), "--config", str(site.config_path), "run"],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
