"""`ticketd init`: a site's files where deploy/ticketd.service expects them, or all in one folder to try ticketd
out, with the config rendered from the documented example that ships with ticketd (``ticketd.deploy``).

The example is the one text of the config: ``init`` changes only the values the command line gives (and the
database's place), so every key stays documented beside its value in the file the operator edits.

The two layouts:

- ``system``: the config in DIR (/etc/ticketd), readable by the service's user, which the unit makes up at each start
  (``DynamicUser=yes``); the secrets in DIR/credentials, root's alone, which systemd hands the service as
  ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``); the database in the unit's ``StateDirectory``
  (/var/lib/ticketd), made by the service itself at its first start (``ExecStartPre=ticketd db upgrade``), so it
  belongs to the service's user and not to root.
- ``local``: everything in DIR, private to whoever runs it, the database made at once.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import tomlkit
from pydantic import ValidationError

from ticketd.daemon.config import HelpdeskConfig

SYSTEM_STATE_DIR = Path("/var/lib/ticketd")
HEADER = "# Written by `ticketd init` from the documented example that ships with ticketd: every key is explained.\n"

# What each credential the unit loads is for; init makes every one the unit names (LoadCredential=), since the
# service does not start while one is missing.
CREDENTIAL_USES = {
    "secret": "a new random secret; it signs the reply addresses ([security] secret_file)",
    "imap-password": "empty: the IMAP password goes here ([imap] password_file)",
    "smtp-password": "empty: the SMTP password goes here ([smtp] password_file; none if [smtp] username is empty)",
    "oauth2-client-secret": 'empty: the OAuth2 client secret, only with auth = "xoauth2" ([oauth2] client_secret_file)',
    "oauth2-refresh-token": 'empty: the OAuth2 refresh token, only with auth = "xoauth2" ([oauth2] refresh_token_file)',
    "db-password": "empty: PostgreSQL's password, only for PostgreSQL with one ([database] password_file)",
}

# The values the operator must look at before the first start: the example's are Acme's.
TO_CHECK = (("helpdesk", "timezone"), ("imap", "host"), ("imap", "port"), ("imap", "tls"), ("imap", "username"),
            ("smtp", "host"), ("smtp", "port"), ("smtp", "tls"), ("smtp", "username"), ("categories", "tree"),
            ("groups", None), ("rules", None), ("sla", "holidays"))


def example_text() -> str:
    return resources.files("ticketd.deploy").joinpath("ticketd.toml.example").read_text(encoding="utf-8")


def unit_text() -> str:
    return resources.files("ticketd.deploy").joinpath("ticketd.service").read_text(encoding="utf-8")


def unit_path() -> str:
    """Where the installed unit file lies, for the operator to copy to /etc/systemd/system."""
    return str(resources.files("ticketd.deploy").joinpath("ticketd.service"))


def unit_credentials() -> list[str]:
    """The credentials the unit loads (``LoadCredential=ID:PATH``), in its order."""
    return [line.partition("=")[2].partition(":")[0] for line in unit_text().splitlines()
            if line.startswith("LoadCredential=")]


def render(name: str, address: str, tag: str, database: Path) -> str:
    """The example with this site's values; the comments stay where they are."""
    doc = tomlkit.parse(example_text())
    doc["helpdesk"]["name"] = name
    doc["helpdesk"]["address"] = address
    doc["helpdesk"]["tag"] = tag
    doc["database"]["url"] = f"sqlite:///{database}"
    for server in ("imap", "smtp"):  # the login of a support mailbox is most often its address
        doc[server]["username"] = address
    return HEADER + tomlkit.dumps(doc)


def lines_to_check(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, section, line) of each value in ``TO_CHECK``: a key's line, or a table array's first header."""
    section = ""
    wanted = set(TO_CHECK)
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.split("]")[0].strip("[ ")
            if (section, None) in wanted:
                wanted.discard((section, None))
                yield number, section, stripped.split("#")[0].strip()
            continue
        key = stripped.partition("=")[0].strip()
        if "=" in stripped and not stripped.startswith("#") and (section, key) in wanted:
            yield number, section, stripped.split("  #")[0].strip()


@dataclass
class Written:
    """What init did, to be told line by line."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def make_dirs(path: Path, mode: int) -> None:
    """``mkdir -p`` whose new folders all get ``mode`` (not only the last: the umask would make parents 0700)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=mode)
        folder.chmod(mode)


def write_credentials(folder: Path, written: Written) -> None:
    """Every credential the unit loads, 0600 in a 0700 folder; existing ones are kept as they are."""
    make_dirs(folder, 0o700)
    for name in unit_credentials():
        path = folder / name
        use = CREDENTIAL_USES.get(name, "empty: a credential the unit loads")
        if path.exists():
            written.files.append((path, "kept as it was"))
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if name == "secret":
                out.write(secrets.token_urlsafe(32) + "\n")
        written.files.append((path, use))


def write_config(path: Path, text: str, system: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if system:  # the service's user reads it; it holds no secret
        path.chmod(0o644)


def unreadable_by_others(folder: Path) -> bool:
    return not folder.stat().st_mode & stat.S_IXOTH


def helpdesk_problems(**values: str) -> list[str]:
    """The command line's helpdesk values checked as the config will check them, before anything is written."""
    try:
        HelpdeskConfig.model_validate(values)
    except ValidationError as exc:
        return [f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()]
    return []


def report(written: Written, config_path: Path, text: str, system: bool) -> Iterator[str]:
    """What init wrote, each file with its mode; the lines to check; the next commands."""
    width = max(len(str(path)) for path, _ in written.files)
    yield f"ticketd init ({'system' if system else 'local'} layout) wrote:"
    for path, what in written.files:
        yield f"  {str(path).ljust(width)}  {stat.S_IMODE(path.stat().st_mode):04o}  {what}"
    for note in written.notes:
        yield f"  {note}"
    yield "Check these lines of the config before the first start (the example's values are Acme's):"
    for number, section, line in lines_to_check(text):
        yield f"  {config_path}:{number}: " + (line if line.startswith("[") else f"[{section}] {line}")
    credentials = config_path.parent / "credentials"
    yield (f"Secrets: the config names them credential:NAME, read from $CREDENTIALS_DIRECTORY/NAME under systemd "
           f"(the unit's LoadCredential=) and from {credentials}/NAME otherwise.")
    yield "Next:"
    yield f"  write the IMAP and SMTP passwords into {credentials}/imap-password and smtp-password"
    if system:
        yield f"  cp {unit_path()} /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now ticketd"
        yield "  ticketd check"
    else:
        yield f"  ticketd --config {config_path} check"
