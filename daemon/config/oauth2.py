"""``[oauth2]``: where the IMAP and SMTP logins get their access token (its own module: it has the most rules)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ticketd.daemon.config.fields import PositiveInt, Section, existing_file, read_secret, secure_url

_REFRESH_FLOW_KEYS = ("provider", "client_id", "client_secret", "client_secret_file", "refresh_token_file", "tenant",
                      "token_url", "scopes")


class OAuth2Config(Section):
    """``[oauth2]``: where IMAP and SMTP get their access token when their ``auth = "xoauth2"``.

    One section serves both servers because a mailbox has one account and one app registration: one refresh
    token, one cached access token and one refresh for both (Microsoft issues one token carrying the IMAP and
    SMTP scopes; Google's https://mail.google.com/ covers both).
    """

    token_command: str | None = None  # run without a shell; prints a bare token or {"access_token", "expires_in"}
    provider: Literal["microsoft", "google", "generic"] | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    refresh_token_file: Path | None = None
    tenant: str | None = None  # microsoft only; "common" when unset
    token_url: str | None = None  # required for generic; overrides the provider's own endpoint
    scopes: tuple[str, ...] | None = None  # the provider's mail scopes when unset
    timeout_seconds: PositiveInt = 30
    # Never a TOML key (refused below): filled from refresh_token_file or TICKETD_OAUTH2_REFRESH_TOKEN.
    refresh_token: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("client_secret_file", "refresh_token_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @field_validator("refresh_token", mode="before")
    @classmethod
    def _no_inline_refresh_token(cls, value: Any) -> Any:
        raise ValueError("not accepted in the config file: put it in refresh_token_file "
                         "or TICKETD_OAUTH2_REFRESH_TOKEN")

    @field_validator("token_command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into a command and its arguments: {exc}") from None
        if not argv:
            raise ValueError("must name a program to run")
        if shutil.which(argv[0]) is None:
            raise ValueError(f"program {argv[0]!r} not found or not executable")
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and (not value or not all(c.isalnum() or c in ".-" for c in value)):
            raise ValueError("must be a tenant ID or domain, like contoso.onmicrosoft.com")
        return value

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        if value is not None and not secure_url(value):
            raise ValueError("must be an https:// URL (http:// only on the loopback address)")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or any(not s or any(c.isspace() for c in s) for s in value)):
            raise ValueError('must be a non-empty list of scopes without spaces, like ["https://mail.google.com/"]')
        return value

    @model_validator(mode="after")
    def _source(self) -> OAuth2Config:
        if self.token_command is not None:
            for key in _REFRESH_FLOW_KEYS:
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: not used with token_command (give one token source, not both)")
            return self
        if self.provider is None:
            raise ValueError('provider: required (microsoft | google | generic), or give token_command')
        if not self.client_id:
            raise ValueError("client_id: required with provider (the app registration's client ID)")
        if self.provider == "generic" and self.token_url is None:
            raise ValueError('token_url: required with provider = "generic"')
        if self.tenant is not None and self.provider != "microsoft":
            raise ValueError('tenant: only for provider = "microsoft"')
        secret = read_secret("oauth2", self.client_secret, self.client_secret_file, "TICKETD_OAUTH2_CLIENT_SECRET")
        refresh = read_secret("oauth2", None, self.refresh_token_file, "TICKETD_OAUTH2_REFRESH_TOKEN")
        if refresh is None or not refresh.get_secret_value():
            raise ValueError("refresh_token_file: required with provider (a file holding the refresh token), "
                             "or set TICKETD_OAUTH2_REFRESH_TOKEN")
        object.__setattr__(self, "client_secret", secret)
        object.__setattr__(self, "refresh_token", refresh)
        return self

    @property
    def token_argv(self) -> list[str]:
        return shlex.split(self.token_command) if self.token_command else []


