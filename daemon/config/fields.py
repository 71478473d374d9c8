"""Building blocks of the configuration models: the error type, field validators and secret lookup."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr


class ConfigError(Exception):
    """Raised with every problem found, each naming its key; the CLI prints them and exits 2."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be an integer between 1 and 65535")
    return value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer")
    return value


Port = Annotated[int, BeforeValidator(port)]
PositiveInt = Annotated[int, BeforeValidator(positive_int)]
Email = Annotated[str, BeforeValidator(lambda v: email(v))]


def email(value: Any) -> str:
    if not isinstance(value, str) or value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
        raise ValueError("must be an e-mail address like support@example.com")
    if any(c in value for c in " \r\n\t<>,;\"'"):
        raise ValueError("must be a bare e-mail address without spaces, quotes or angle brackets")
    return value.strip().lower()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(section: str, inline: SecretStr | None, file: Path | None, env: str) -> SecretStr | None:
    """Resolve a secret from the environment, a file, or (discouraged) inline, in that order."""
    if os.environ.get(env):
        return SecretStr(os.environ[env])
    if file is not None:
        try:
            return SecretStr(file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"cannot read {file}: {exc.strerror}") from None
    return inline


CREDENTIAL = "credential:"


def credential_file(name: str, config_dir: Path) -> Path:
    """Where a secret written ``credential:NAME`` is read: systemd's copy while the service runs, else the file
    systemd copies it from, so one config line serves the daemon and an administrator's ``ticketd check``.

    The unit's ``LoadCredential=NAME:/etc/ticketd/credentials/NAME`` hands the service a private copy in
    ``$CREDENTIALS_DIRECTORY`` (its user cannot read /etc/ticketd/credentials, nor should it); a command run from
    a shell has no such variable and reads ``credentials/NAME`` beside the config file, which root can read.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{CREDENTIAL}{name}: must name a file, like {CREDENTIAL}imap-password")
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(folder) / name if folder else config_dir / "credentials" / name


def existing_file(value: Path | None) -> Path | None:
    if value is None:
        return None
    try:
        found = value.is_file()
    except OSError as exc:  # a folder the user may not enter (root's credentials/, run as the service's user)
        raise ValueError(f"cannot read {value}: {exc.strerror}") from None
    if not found:
        raise ValueError(f"file {value} does not exist")
    return value


def existing_dir(value: Path | None) -> Path | None:
    if value is not None and not value.is_dir():
        raise ValueError(f"{value} is not a directory")
    return value


def secure_url(url: str) -> bool:
    """https anywhere; plain http only where nothing leaves the machine (a local proxy, the tests)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    try:
        return parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


