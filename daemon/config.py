"""The TOML configuration, validated once at start.

Every section is a pydantic model with ``extra="forbid"`` so a typo is an error, not a silently ignored key.
Errors are turned into one line per problem, ``section.key: reason``, because an operator reading a failed
``systemctl start`` needs the key, not a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_PATHS = (Path("ticketd.toml"), Path("/etc/ticketd/ticketd.toml"))
LANGUAGES = ("en", "tr")


class ConfigError(Exception):
    """Raised with every problem found, each naming its key; the CLI prints them and exits 2."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be an integer between 1 and 65535")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer")
    return value


Port = Annotated[int, BeforeValidator(_port)]
PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
Email = Annotated[str, BeforeValidator(lambda v: _email(v))]


def _email(value: Any) -> str:
    if not isinstance(value, str) or value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
        raise ValueError("must be an e-mail address like support@example.com")
    if any(c in value for c in " \r\n\t<>,;\"'"):
        raise ValueError("must be a bare e-mail address without spaces, quotes or angle brackets")
    return value.strip().lower()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(section: str, inline: SecretStr | None, file: Path | None, env: str) -> SecretStr | None:
    """Resolve a secret from the environment, a file, or (discouraged) inline, in that order."""
    if os.environ.get(env):
        return SecretStr(os.environ[env])
    if file is not None:
        try:
            return SecretStr(file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"cannot read {file}: {exc.strerror}") from None
    return inline


class HelpdeskConfig(Section):
    name: str = "Support"
    address: Email
    tag: str = "TICKET"
    language: Literal["en", "tr"] = "en"
    timezone: str = "UTC"
    admin: Email | None = None  # told about quarantined mail, dead outgoing mail and mail storms

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("must be letters, digits, '-' or '_' (it goes into subjects as [TAG #123])")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Istanbul)") from None
        return value


class DatabaseConfig(Section):
    url: str = "sqlite:///ticketd.db"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value


TlsMode = Literal["implicit", "starttls", "none"]


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"file {value} does not exist")
    return value


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
        return _existing_file(value)

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
        if value is not None and not _secure_url(value):
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
        secret = _read_secret("oauth2", self.client_secret, self.client_secret_file, "TICKETD_OAUTH2_CLIENT_SECRET")
        refresh = _read_secret("oauth2", None, self.refresh_token_file, "TICKETD_OAUTH2_REFRESH_TOKEN")
        if refresh is None or not refresh.get_secret_value():
            raise ValueError("refresh_token_file: required with provider (a file holding the refresh token), "
                             "or set TICKETD_OAUTH2_REFRESH_TOKEN")
        object.__setattr__(self, "client_secret", secret)
        object.__setattr__(self, "refresh_token", refresh)
        return self

    @property
    def token_argv(self) -> list[str]:
        return shlex.split(self.token_command) if self.token_command else []


def _secure_url(url: str) -> bool:
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
        return _existing_file(value)

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
        pw = _read_secret("imap", self.password, self.password_file, "TICKETD_IMAP_PASSWORD")
        object.__setattr__(self, "password", pw)
        return self


class SmtpConfig(ServerConfig):
    port: Port = 587
    tls: TlsMode = "starttls"

    @model_validator(mode="after")
    def _secret(self) -> SmtpConfig:
        pw = _read_secret("smtp", self.password, self.password_file, "TICKETD_SMTP_PASSWORD")
        object.__setattr__(self, "password", pw)
        return self


class SecurityConfig(Section):
    agent_auth: Literal["signed-reply", "authentication-results", "from-header"] = "signed-reply"
    secret_file: Path | None = None
    trusted_authserv_id: str | None = None
    secret: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _load_secret(self) -> SecurityConfig:
        secret = _read_secret("security", None, self.secret_file, "TICKETD_SECRET")
        if secret is None or len(secret.get_secret_value()) < 16:
            raise ValueError(
                "secret_file: required (a file with at least 16 random characters; `ticketd init` makes one), "
                "or set TICKETD_SECRET"
            )
        object.__setattr__(self, "secret", secret)
        return self


class LimitsConfig(Section):
    max_message_bytes: PositiveInt = 25 * 1024 * 1024
    auto_replies_per_recipient_hour: PositiveInt = 5
    auto_replies_per_recipient_day: PositiveInt = 20
    auto_replies_per_hour: PositiveInt = 500  # all customers together: past this the circuit breaker opens


class AgentConfig(Section):
    email: Email
    name: str
    role: Literal["agent", "manager"] = "agent"
    groups: list[str] = []


class MetricsConfig(Section):
    listen: str | None = None  # "127.0.0.1:9187" serves Prometheus metrics there; unset: no endpoint

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9187")
        return value


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(Section):
    helpdesk: HelpdeskConfig
    database: DatabaseConfig = DatabaseConfig()
    imap: ImapConfig | None = None
    smtp: SmtpConfig | None = None
    security: SecurityConfig
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    oauth2: OAuth2Config | None = None
    agents: list[AgentConfig] = []
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _link_oauth2(self) -> Config:
        """Hand the shared [oauth2] section to each server that logs in with XOAUTH2."""
        for name, server in (("imap", self.imap), ("smtp", self.smtp)):
            if server is None or server.auth != "xoauth2":
                continue
            if self.oauth2 is None:
                raise ValueError(f'{name}.auth: "xoauth2" needs an [oauth2] section with token_command, '
                                 "or provider, client_id and refresh_token_file")
            if not server.username:
                raise ValueError(f'{name}.username: required with auth = "xoauth2" '
                                 "(the mailbox the token was issued for)")
            server._oauth2 = self.oauth2
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.helpdesk.timezone)


_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
}


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = _MESSAGES.get(error["type"], error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "literal_error":
        message = message.replace("Input should be", "must be")
    # A model-level validator reports "key: reason" itself; lift that key into the location.
    if ": " in message and error["type"] == "value_error" and not loc.endswith(message.split(": ")[0]):
        head, rest = message.split(": ", 1)
        if head.isidentifier():
            loc, message = f"{loc}.{head}" if loc else head, rest
    return f"{loc}: {message}" if loc else message


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate an already-parsed TOML document, relative paths resolved against the file's folder."""
    if source is not None:
        data = _resolve_paths(data, source.parent)
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None


_PATH_KEYS = {("imap", "password_file"), ("smtp", "password_file"), ("security", "secret_file"),
              ("imap", "cafile"), ("smtp", "cafile"),
              ("oauth2", "client_secret_file"), ("oauth2", "refresh_token_file")}


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for section, key in _PATH_KEYS:
        value = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, str) and not Path(value).is_absolute():
            out[section][key] = str(base / value)
    db = out.get("database")
    if isinstance(db, dict) and isinstance(db.get("url"), str) and db["url"].startswith("sqlite:///"):
        path = db["url"].removeprefix("sqlite:///")
        if path and not path.startswith("/") and path != ":memory:":
            out["database"]["url"] = f"sqlite:///{base / path}"
    return out


def find_config_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    if os.environ.get("TICKETD_CONFIG"):
        return Path(os.environ["TICKETD_CONFIG"])
    for candidate in DEFAULT_PATHS:
        if candidate.is_file():
            return candidate
    return DEFAULT_PATHS[0]


def load_config(path: Path) -> Config:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found (run `ticketd init` to create one)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(data, path.resolve())
