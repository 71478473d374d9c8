"""The TOML configuration, validated once at start.

Every section is a pydantic model with ``extra="forbid"`` so a typo is an error, not a silently ignored key.
Errors are turned into one line per problem, ``section.key: reason``, because an operator reading a failed
``systemctl start`` needs the key, not a traceback.

The sections live in this package's modules (``sla``, ``process``, ``mailboxes``, ``intake``, ``oauth2``,
``reports``, ``servers``, ``fields``), which never import this package back: it imports them. May import only the lower
packages (parsers, storage, rules, mailtemplates); every room imports it.

The rules never see a ``Config``: they take the few values they need as small frozen values of their own
(``auth``, ``sla_clock``, ``triage_rules``, ``web_forms``, ``command_settings``), built here once per loaded
configuration, so a reload builds them afresh and nothing else can go stale.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url

from ticketd.daemon.config.actions import ActionsConfig
from ticketd.daemon.config.fields import (
    CREDENTIAL,
    ConfigError,
    Email,
    PositiveInt,
    Section,
    credential_file,
    existing_dir,
    existing_file,
    read_secret,
)
from ticketd.daemon.config.graph import GraphConfig
from ticketd.daemon.config.intake import IntakeConfig
from ticketd.daemon.config.mailboxes import Identity, Mailbox, MailboxConfig, identity_of, mailbox_problems
from ticketd.daemon.config.oauth2 import OAuth2Config
from ticketd.daemon.config.process import (
    CategoriesConfig,
    ClosingConfig,
    GroupConfig,
    RuleConfig,
    WebFormConfig,
    process_problems,
)
from ticketd.daemon.config.reports import ReportList, cron_schedule
from ticketd.daemon.config.servers import ImapConfig, ServerConfig, SmtpConfig
from ticketd.daemon.config.sla import SlaConfig
from ticketd.daemon.config.stages import ProcessTypeConfig, stage_problems
from ticketd.daemon.config.webhooks import WebhookConfig, webhook_problems
from ticketd.mailtemplates.render import LANGUAGES as TEMPLATE_LANGUAGES
from ticketd.mailtemplates.render import make_environment
from ticketd.parsers.language import LanguageGuesser
from ticketd.parsers.message import is_one_of
from ticketd.rules.auth import AuthPolicy
from ticketd.rules.channels import WebForm
from ticketd.rules.commands import CommandSettings
from ticketd.rules.process import Process
from ticketd.rules.sla import BusinessCalendar
from ticketd.rules.sla_clock import SlaClock
from ticketd.rules.triage import CompiledRule, compile_rules

__all__ = ["Config", "ConfigError", "ImapConfig", "IntakeConfig", "OAuth2Config", "ServerConfig", "SmtpConfig",
           "load_config"]

DEFAULT_PATHS = (Path("ticketd.toml"), Path("/etc/ticketd/ticketd.toml"))
LANGUAGES = ("en", "tr")


class HelpdeskConfig(Section):
    name: str = "Support"
    address: Email
    tag: str = "TICKET"
    language: Literal["en", "tr"] = "en"
    timezone: str = "UTC"
    admin: Email | None = None  # told about quarantined mail, dead outgoing mail and mail storms
    templates_dir: Path | None = None  # operator's templates (en/received.txt.j2 …) used before the packaged ones

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path | None) -> Path | None:
        return existing_dir(value)

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
    password_file: Path | None = None  # PostgreSQL's password, kept out of the URL (or TICKETD_DATABASE_PASSWORD)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if value.startswith("postgresql") and make_url(value).password:
            raise ValueError("carries a password: put it in password_file or TICKETD_DATABASE_PASSWORD instead, "
                             "so it never shows in logs or `ps`")
        return value

    @field_validator("password_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @property
    def connect_url(self) -> str:
        """The URL with the password from its file or the environment: only ever handed to the engine."""
        secret = read_secret("database", None, self.password_file, "TICKETD_DATABASE_PASSWORD")
        if secret is None or not self.url.startswith("postgresql"):
            return self.url
        return make_url(self.url).set(password=secret.get_secret_value()).render_as_string(hide_password=False)


class SecurityConfig(Section):
    agent_auth: Literal["signed-reply", "authentication-results", "from-header"] = "signed-reply"
    secret_file: Path | None = None
    trusted_authserv_id: str | None = None
    # How long a signed reply address authenticates its holder; an older one is refused and a fresh one sent.
    signed_address_days: int = Field(default=90, ge=1, le=3650)
    secret: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _load_secret(self) -> SecurityConfig:
        secret = read_secret("security", None, self.secret_file, "TICKETD_SECRET")
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
    # The circuit breaker: automatic answers in the last hour to mail that itself answered an automatic mail of
    # ours (robots answering each other), to customers together. Fresh requests never count: a burst is answered.
    auto_replies_per_hour: PositiveInt = 100
    # Mail a stranger can make us send to one agent (a security alert for a forged mail in their name, help, the
    # list), per agent per hour; past it the admin hears once an hour instead.
    alerts_per_recipient_hour: PositiveInt = 3
    # Files that ride along with a notification or a relay, per mail; past it the mail lists what was left out.
    forward_attachments_bytes: PositiveInt = 10 * 1024 * 1024
    # People on one ticket besides the requester (rules/participants.py): every answer goes to all of them.
    max_participants: PositiveInt = 20


class AgentConfig(Section):
    email: Email
    name: str
    role: Literal["agent", "manager"] = "agent"
    groups: list[str] = Field(default_factory=list)


class DigestConfig(Section):
    """The morning list per agent: their open tickets, overdue first, and the unassigned ones of their groups."""

    schedule: str | None = None  # crontab, in the helpdesk's time zone; unset: no digest

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else cron_schedule(value, "30 8 * * 1-5")


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


class LmtpConfig(Section):
    """ticketd as the mail system's delivery target (RFC 2033): the MTA hands mail over and keeps it until the
    raw bytes are committed, with no poll interval between delivery and processing."""

    listen: str  # "127.0.0.1:8024", or "unix:/run/ticketd/lmtp.sock" (inside the unit's RuntimeDirectory)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value.startswith("unix:"):
            path = value.removeprefix("unix:")
            if not path.startswith("/") or len(path.encode()) > 107:  # sun_path holds 108 bytes with its NUL
                raise ValueError("a unix socket must be an absolute path of at most 107 bytes, e.g. "
                                 "unix:/run/ticketd/lmtp.sock")
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port (e.g. 127.0.0.1:8024) or unix:/absolute/path")
        return value


class WebformConfig(Section):
    """The complaint form on the web (``daemon/intake/web.py``), served by ``ticketd run`` behind the site's
    reverse proxy. A submission is stored as a mail and takes the mail's path."""

    listen: str  # "127.0.0.1:8025"
    # Submissions per hour from one client address, and to one e-mail address: past it the form says so.
    rate_per_hour: PositiveInt = 5
    max_file_bytes: PositiveInt = 10 * 1024 * 1024
    max_files: PositiveInt = 5
    # A form page is good for this long: a token older than that (a bot replaying an old page) is refused.
    token_hours: PositiveInt = 24
    # The ticket opens only when the customer follows the link mailed to the address they typed (double opt-in).
    confirm_email: bool = False
    # Where the customers reach the form (the reverse proxy's URL): the confirmation link points there.
    public_url: str | None = None
    # Peers whose X-Forwarded-For names the client (the reverse proxy); any other peer is the client itself.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    mailbox: str | None = None  # a [[mailboxes]] name whose defaults the web's tickets take

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8025 (behind the site's reverse proxy)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or any(c in value for c in " \r\n\t<>\"'"):
            raise ValueError("must be the form's address as customers reach it, e.g. https://www.acme.example/destek")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _confirm_needs_url(self) -> WebformConfig:
        if self.confirm_email and self.public_url is None:
            raise ValueError("public_url: required with confirm_email = true (the link in the confirmation mail)")
        return self


class RetentionConfig(Section):
    """How long personal data stays (README "Privacy"): raw mail is only needed to process or retry it."""

    raw_mail_days: int = Field(default=0, ge=0, le=36500, strict=True)  # 0: keep raw mail forever


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(Section):
    helpdesk: HelpdeskConfig
    database: DatabaseConfig = DatabaseConfig()
    imap: ImapConfig | None = None
    mailboxes: list[MailboxConfig] = Field(default_factory=list)
    intake: IntakeConfig = IntakeConfig()
    smtp: SmtpConfig | None = None
    security: SecurityConfig
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    lmtp: LmtpConfig | None = None
    webform: WebformConfig | None = None
    oauth2: OAuth2Config | None = None
    agents: list[AgentConfig] = Field(default_factory=list)
    sla: SlaConfig = SlaConfig()
    categories: CategoriesConfig = CategoriesConfig()
    groups: list[GroupConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    webforms: list[WebFormConfig] = Field(default_factory=list)
    closing: ClosingConfig = ClosingConfig()
    # Issue 18: the organisation's own stages per ticket type; none: the fixed states alone, as before.
    process: dict[Literal["request", "complaint", "information"], ProcessTypeConfig] = Field(default_factory=dict)
    reports: ReportList = Field(default_factory=list)
    digest: DigestConfig = DigestConfig()
    retention: RetentionConfig = RetentionConfig()
    webhooks: list[WebhookConfig] = Field(default_factory=list)  # issue 18: events out
    actions: ActionsConfig = ActionsConfig()  # issue 18: action items' reminders
    source: Path | None = Field(default=None, exclude=True)
    _calendar: BusinessCalendar | None = PrivateAttr(default=None)
    _language_guesser: LanguageGuesser | None = PrivateAttr(default=None)
    _templates: SandboxedEnvironment | None = PrivateAttr(default=None)
    _identity_templates: dict[tuple[Path, ...], SandboxedEnvironment] = PrivateAttr(default_factory=dict)
    _mailbox_smtp: dict[str, SmtpConfig] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_process(self) -> Config:
        """Rules may only name categories of the tree and groups that exist: a typo would route mail nowhere."""
        agent_groups = {group for agent in self.agents for group in agent.groups}
        problems = process_problems(self.categories, self.groups, self.rules, agent_groups)
        problems += mailbox_problems(self.mailboxes, self.imap is not None, self.categories,
                                     {g.name for g in self.groups} | agent_groups, self.lmtp is not None)
        problems += stage_problems({str(k): v for k, v in self.process.items()},
                                   {g.name for g in self.groups} | agent_groups)
        if self.webform and self.webform.mailbox and self.webform.mailbox not in {b.name for b in self.mailboxes}:
            problems.append(f"webform.mailbox: no [[mailboxes]] entry named {self.webform.mailbox!r}")
        problems += webhook_problems(self.webhooks)
        if problems:
            raise ConfigError(problems)
        return self

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

    @property
    def calendar(self) -> BusinessCalendar:
        """The helpdesk's business hours and holidays, in its time zone (built once)."""
        if self._calendar is None:
            self._calendar = self.sla.calendar(self.tz)
        return self._calendar

    @cached_property
    def auth(self) -> AuthPolicy:
        """What proves an agent's mail (``rules.auth``)."""
        secret = self.security.secret.get_secret_value() if self.security.secret else ""
        return AuthPolicy(self.reply_bases(), secret, self.security.signed_address_days,
                          self.security.agent_auth, self.security.trusted_authserv_id)

    @cached_property
    def sla_clock(self) -> SlaClock:
        """The calendar and the targets every deadline is computed from (``rules.sla_clock``)."""
        return SlaClock(self.calendar, self.sla.target_table())

    @cached_property
    def triage_rules(self) -> tuple[CompiledRule, ...]:
        """``[[rules]]`` compiled once: the pipeline asks for them per mail."""
        return compile_rules(rule.rule() for rule in self.rules)

    @cached_property
    def web_forms(self) -> tuple[WebForm, ...]:
        return tuple(form.form() for form in self.webforms)

    @cached_property
    def command_settings(self) -> CommandSettings:
        """This helpdesk's side of the agents' commands (``rules.commands``)."""
        return CommandSettings(
            sla=self.sla_clock, tz=self.tz, group_policies=MappingProxyType({g.name: g.policy for g in self.groups}),
            categories=tuple(self.categories.all()), our_addresses=self.our_addresses(),
            max_participants=self.limits.max_participants, closing_require=MappingProxyType(dict(self.closing.require)),
            templates_dir=self.helpdesk.templates_dir, processes=self.processes)

    @cached_property
    def processes(self) -> Mapping[str, Process]:
        """``[process.<type>]`` as the rules take it: the stages of each ticket type that has them."""
        return MappingProxyType({type_: config.process(type_) for type_, config in self.process.items()})

    @property
    def language_guesser(self) -> LanguageGuesser:
        """Reads the language of a stranger's first mail, among those the templates speak (built once)."""
        if self._language_guesser is None:
            self._language_guesser = LanguageGuesser(TEMPLATE_LANGUAGES, cache_folder())
        return self._language_guesser

    @property
    def templates(self) -> SandboxedEnvironment:
        """The mail templates (``helpdesk.templates_dir`` before the packaged ones), read once per loaded
        configuration: a reload loads a new Config, so templates edited on disk are read again with it, and
        nothing outside the configuration has to be cleared."""
        if self._templates is None:
            self._templates = make_environment(self.helpdesk.templates_dir)
        return self._templates

    def templates_for(self, identity: Identity) -> SandboxedEnvironment:
        """The templates an identity writes with: its own folder first, then the helpdesk's, then ours."""
        if not identity.templates_dirs or identity.templates_dirs == (self.helpdesk.templates_dir,):
            return self.templates
        env = self._identity_templates.get(identity.templates_dirs)
        if env is None:
            env = self._identity_templates[identity.templates_dirs] = make_environment(*identity.templates_dirs)
        return env

    @cached_property
    def identities(self) -> dict[str | None, Identity]:
        """The helpdesk's identity (key None) and each ``[[mailboxes]]`` entry's that has an address."""
        name, address = self.helpdesk.name, self.helpdesk.address
        found: dict[str | None, Identity] = {
            None: Identity(None, name, address, address, name,
                           (self.helpdesk.templates_dir,) if self.helpdesk.templates_dir else ())}
        for box in self.mailboxes:
            if box.address is not None:
                found[box.name] = identity_of(box, name, self.helpdesk.templates_dir)
        return found

    def identity(self, mailbox: str | None) -> Identity:
        """The identity of the mailbox named (a ticket's ``mailbox``); the helpdesk's for None or an unknown
        name (a mailbox removed from the config since: its tickets are answered as the helpdesk)."""
        return self.identities.get(mailbox) or self.identities[None]

    def answering_mailbox(self, came_in: str | None, addresses: Iterable[str]) -> str | None:
        """The identity a new ticket answers as: the mailbox it came in through, if that one has an address;
        else the first mailbox whose address the mail was written to (several addresses delivered to one
        folder); else the helpdesk (None)."""
        if came_in is not None and came_in in self.identities:
            return came_in
        for address in addresses:
            for key, identity in self.identities.items():
                if key is not None and is_one_of(address, {identity.address, identity.reply_base}):
                    return key
        return None

    def transport_for(self, mailbox: str | None) -> SmtpConfig | GraphConfig | None:
        """How mail of a mailbox identity leaves: a Graph mailbox's through Graph; the helpdesk's own through the
        Graph mailbox that has its address, if one does; the rest through ``[smtp]`` (None without it)."""
        graph = self.graph_mailboxes()
        if mailbox in graph:
            return graph[mailbox]
        if mailbox is None or mailbox not in self.identities:
            same = next((g for g in graph.values() if g.mailbox == self.helpdesk.address), None)
            if same is not None:
                return same
        return self.smtp_for(mailbox) if self.smtp is not None else None

    def graph_senders(self) -> list[str | None]:
        """The identities whose mail leaves through Graph (None: the helpdesk's own)."""
        names: list[str | None] = list(self.graph_mailboxes())
        if any(g.mailbox == self.helpdesk.address for g in self.graph_mailboxes().values()):
            names.append(None)
        return names

    def smtp_for(self, mailbox: str | None) -> SmtpConfig:
        """The ``[smtp]`` login a mailbox's mail is sent with: its own ``smtp_username`` when it has one."""
        assert self.smtp is not None
        box = next((b for b in self.mailboxes if b.name == mailbox and b.smtp_username), None)
        if box is None:
            return self.smtp
        if box.name not in self._mailbox_smtp:
            smtp = self.smtp.model_copy(update={"username": box.smtp_username, "password": box.smtp_password()})
            smtp._oauth2 = self.smtp.oauth2
            self._mailbox_smtp[box.name] = smtp
        return self._mailbox_smtp[box.name]

    def reply_bases(self) -> tuple[str, ...]:
        """Every address our signed reply addresses are made of, the helpdesk's first."""
        return tuple(dict.fromkeys(identity.reply_base for identity in self.identities.values()))

    def graph_mailboxes(self) -> dict[str, GraphConfig]:
        """The ``kind = "graph"`` mailboxes by name: read and sent through Microsoft Graph."""
        return {box.name: box.graph for box in self.mailboxes if box.graph is not None}

    def polled_mailboxes(self) -> list[Mailbox]:
        """What the daemon polls over IMAP: each ``[[mailboxes]]`` entry on the ``[imap]`` server, or ``[imap]``
        alone (a Graph mailbox is read by its own intake)."""
        if self.imap is None:
            return []
        if not self.mailboxes:
            return [Mailbox(self.imap.folder, self.imap, None, {})]
        boxes = []
        for box in self.mailboxes:
            if box.kind != "imap":
                continue
            login = {"username": box.username, "password": box.password()} if box.username else {}
            imap = self.imap.model_copy(update={"folder": box.folder, "processed_folder": box.processed_folder,
                                                **login})
            if self.imap.oauth2 is not None:
                imap._oauth2 = self.imap.oauth2
            boxes.append(Mailbox(box.name, imap, box.address, box.defaults.values()))
        return boxes

    def mailbox_defaults(self, name: str) -> dict[str, str]:
        return next((box.defaults.values() for box in self.mailboxes if box.name == name), {})

    def our_addresses(self) -> frozenset[str]:
        """Addresses mail comes in at: never answered (a loop), never a customer."""
        return frozenset({self.helpdesk.address, *(box.address for box in self.mailboxes if box.address),
                          *self.reply_bases()})

    def is_our_address(self, address: str) -> bool:
        """The support address, a mailbox's address, or any +tagged form of them (our signed reply addresses,
        valid, expired or forged): mail to these is ours, and none of them is ever a customer, a participant or
        someone to answer. ``rules.screen.from_ourselves`` judges with the same ``is_one_of``."""
        return is_one_of(address, self.our_addresses())

    def group_policy(self, group: str) -> str:
        return next((g.policy for g in self.groups if g.name == group), "manual")


_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
}


def _describe(error: Mapping[str, Any]) -> str:  # pydantic's ErrorDetails
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


# Keys naming a secret's file: relative to the config's folder, or ``credential:NAME`` (``fields.credential_file``).
_SECRET_KEYS = {("imap", "password_file"), ("smtp", "password_file"), ("security", "secret_file"),
                ("database", "password_file"), ("oauth2", "client_secret_file"), ("oauth2", "refresh_token_file")}
_PATH_KEYS = _SECRET_KEYS | {("imap", "cafile"), ("smtp", "cafile"), ("helpdesk", "templates_dir")}

_MAILBOX_PATH_KEYS = {"password_file": True, "smtp_password_file": True, "signature_file": False,
                      "templates_dir": False}  # key: is a secret's file
_GRAPH_PATH_KEYS = {"client_secret_file": True, "certificate_file": True, "cafile": False}


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    problems: list[str] = []

    def resolve(key: str, value: str, secret: bool) -> str:
        if secret and value.startswith(CREDENTIAL):
            try:
                return str(credential_file(value.removeprefix(CREDENTIAL), base))
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
                return value
        return value if Path(value).is_absolute() else str(base / value)

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for section, key in _PATH_KEYS:
        value = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, str):
            out[section][key] = resolve(f"{section}.{key}", value, (section, key) in _SECRET_KEYS)
    if isinstance(out.get("mailboxes"), list):
        out["mailboxes"] = [dict(box) if isinstance(box, dict) else box for box in out["mailboxes"]]
    for index, box in enumerate(out.get("mailboxes") or []):
        if not isinstance(box, dict):
            continue
        for key, secret in _MAILBOX_PATH_KEYS.items():
            if isinstance(box.get(key), str):
                box[key] = resolve(f"mailboxes.{index}.{key}", box[key], secret)
        if isinstance(box.get("graph"), dict):
            graph = box["graph"] = dict(box["graph"])
            for key, secret in _GRAPH_PATH_KEYS.items():
                if isinstance(graph.get(key), str):
                    graph[key] = resolve(f"mailboxes.{index}.graph.{key}", graph[key], secret)
    if isinstance(out.get("webhooks"), list):  # issue 18: each webhook's secret, a file or credential:NAME
        out["webhooks"] = [dict(hook) if isinstance(hook, dict) else hook for hook in out["webhooks"]]
        for index, hook in enumerate(out["webhooks"]):
            if isinstance(hook, dict) and isinstance(hook.get("secret_file"), str):
                hook["secret_file"] = resolve(f"webhooks.{index}.secret_file", hook["secret_file"], True)
    db = out.get("database")
    if isinstance(db, dict) and isinstance(db.get("url"), str) and db["url"].startswith("sqlite:///"):
        path = db["url"].removeprefix("sqlite:///")
        if path and not path.startswith("/") and path != ":memory:":
            out["database"]["url"] = f"sqlite:///{base / path}"
    if problems:
        raise ConfigError(problems)
    return out


def cache_folder() -> Path | None:
    """Where derived files (the language model's mapped arrays) live: systemd's ``CacheDirectory=`` when the unit
    sets one, else the XDG cache of the user running ticketd; None for a user without a home (the model is then
    loaded into memory). Losing it costs a second at the next stranger's mail."""
    if os.environ.get("CACHE_DIRECTORY"):
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "ticketd"
    try:
        return Path.home() / ".cache" / "ticketd"
    except RuntimeError:  # no HOME and no password entry
        return None


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
