"""``[imap]`` and ``[smtp]``: the two servers ticketd logs in to, with their secrets and TLS.

A section module of its own (not the package's ``__init__``) because ``mailboxes`` needs ``ImapConfig`` too, and
a section module importing the package that imports it would be an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import PrivateAttr, SecretStr, field_validator, model_validator

from ticketd.daemon.config.fields import Port, PositiveInt, Section, existing_file, read_secret
from ticketd.daemon.config.oauth2 import OAuth2Config

__all__ = ["ImapConfig", "ServerConfig", "SmtpConfig", "TlsMode"]

TlsMode = Literal["implicit", "starttls", "none"]


class ServerConfig(Section):
    host: str
    tls: TlsMode = "implicit"
    auth: Literal["password", "xoauth2"] = "password"  # xoauth2: an OAuth2 access token from [oauth2]
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    cafile: Path | None = None
    timeout_seconds: PositiveInt = 30
    # Set by Config from the shared [oauth2] section when auth = "xoauth2"; not a key of [imap] or [smtp].
    _oauth2: OAuth2Config | None = PrivateAttr(default=None)

    @field_validator("cafile", "password_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @property
    def oauth2(self) -> OAuth2Config | None:
        return self._oauth2


class ImapConfig(ServerConfig):
    port: Port = 993
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    idle: bool = True
    poll_seconds: PositiveInt = 60

    @model_validator(mode="after")
    def _secret(self) -> ImapConfig:
        pw = read_secret("imap", self.password, self.password_file, "TICKETD_IMAP_PASSWORD")
        object.__setattr__(self, "password", pw)
        return self


class SmtpConfig(ServerConfig):
    port: Port = 587
    tls: TlsMode = "starttls"

    @model_validator(mode="after")
    def _secret(self) -> SmtpConfig:
        pw = read_secret("smtp", self.password, self.password_file, "TICKETD_SMTP_PASSWORD")
        object.__setattr__(self, "password", pw)
        return self
