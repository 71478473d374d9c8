"""``[[webhooks]]``: where ticket events are POSTed, signed with whose secret, and which events.

Event names are open: every part of ticketd records its own (``ticket.<what>`` of the event table), so a name is
checked for its form, and a name that is one letter off a known one is refused as the typo it almost surely is
(``ticket.stat``), since it would silently never match. ``"*"`` takes every event; a name ending in ``*`` takes
those it begins (``"ticket.action-*"``, ``"ticket.sla.*"``).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from ticketd.daemon.config.fields import PositiveInt, Section, existing_file, read_secret, secure_url

__all__ = ["KNOWN_EVENTS", "WebhookConfig", "event_name_problem", "webhook_event", "webhook_problems"]

# The events ticketd itself writes (rules/, daemon/stages/); other names are allowed, and the near-misses refused.
KNOWN_EVENTS = (
    "ticket.created", "ticket.state", "ticket.assignee", "ticket.group", "ticket.priority", "ticket.type",
    "ticket.category", "ticket.root_cause", "ticket.action_plan", "ticket.cost", "ticket.resolution",
    "ticket.resolution_due", "ticket.merged_into", "ticket.merged_from", "ticket.spam", "ticket.sender_blocked",
    "ticket.sender_unblocked", "ticket.participant-added", "ticket.participant-removed", "ticket.participants",
    "ticket.participants-not-added", "ticket.within_contract", "ticket.satisfaction", "ticket.auto-close",
    "ticket.handed-on", "ticket.bounce", "ticket.mail-queued", "ticket.mail-suppressed",
    "ticket.sla.first_response-overdue", "ticket.sla.resolution-overdue", "ticket.privacy.erased",
)
_NAME = re.compile(r"ticket\.[a-z0-9_:.-]+")
_PREFIX = re.compile(r"ticket\.[a-z0-9_:.-]*\*")
MIN_SECRET = 16


def webhook_event(what: str) -> str:
    """The webhook event of an event row's ``what``: ``ticket.created``, ``ticket.state``, ``ticket.<what>``
    (``sla:resolution-overdue`` becomes ``ticket.sla.resolution-overdue``, so a prefix takes a family)."""
    return "ticket." + what.strip().lower().replace(":", ".").replace(" ", "-")


def event_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an ``events`` entry, or None."""
    if name == "*" or _PREFIX.fullmatch(name):
        return None
    if not _NAME.fullmatch(name):
        return (f"{name!r} is not an event name: write ticket.created, ticket.state, ticket.<what>, "
                "a prefix ending in * (ticket.sla.*) or *")
    if name not in KNOWN_EVENTS:
        close = difflib.get_close_matches(name, KNOWN_EVENTS, n=1, cutoff=0.9)
        if close:
            return f"{name!r} is not an event ticketd writes; did you mean {close[0]!r}?"
    return None


class WebhookConfig(Section):
    url: str
    secret_file: Path
    events: list[str] = Field(min_length=1)
    name: str | None = None  # default: the URL; names a delivery's subscription in `ticketd webhooks list`
    timeout_seconds: PositiveInt = 10
    max_attempts: PositiveInt = 15  # then the delivery is dead and the admin is told
    backoff_seconds: PositiveInt = 30  # the first retry's wait, doubled each time up to backoff_max_seconds
    backoff_max_seconds: PositiveInt = 3600
    secret: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not secure_url(value):
            raise ValueError("must be an https:// URL (http:// only on loopback: localhost, 127.0.0.1, ::1)")
        return value

    @field_validator("secret_file")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        found = existing_file(value)
        assert found is not None
        return found

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        problems = [p for p in (event_name_problem(name) for name in value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _secret(self) -> WebhookConfig:
        secret = read_secret("webhooks", None, self.secret_file, "")  # "": no environment variable; one per hook
        if secret is None or len(secret.get_secret_value()) < MIN_SECRET:
            raise ValueError(f"secret_file: must hold at least {MIN_SECRET} characters (the HMAC key)")
        if self.backoff_max_seconds < self.backoff_seconds:
            raise ValueError("backoff_max_seconds: must not be less than backoff_seconds")
        object.__setattr__(self, "secret", secret)
        if self.name is None:
            object.__setattr__(self, "name", self.url)
        return self

    @property
    def label(self) -> str:
        return self.name or self.url

    def wants(self, event: str) -> bool:
        return any(p == "*" or p == event or (p.endswith("*") and event.startswith(p[:-1])) for p in self.events)


def webhook_problems(hooks: list[WebhookConfig]) -> list[str]:
    """Names must be unique: a delivery row names its subscription."""
    seen: set[str] = set()
    problems = []
    for index, hook in enumerate(hooks):
        if hook.label in seen:
            problems.append(f"webhooks.{index}.name: {hook.label!r} is used by another webhook; give each a name")
        seen.add(hook.label)
    return problems
