"""Shared fixtures: real servers on loopback (Dovecot, aiosmtpd), real SQLite, the installed `ticketd` command."""

from __future__ import annotations

import os
import secrets
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
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        if values is None:
            continue
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)


@dataclass
class Site:
    """One ticketd installation in a temporary folder: its config file, sections and helpers to run it."""

    dir: Path
    sections: dict[str, dict[str, Any]]

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
