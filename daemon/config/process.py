"""The complaint process sections of the configuration: categories, groups, triage rules, web forms, closing.

Everything that can be wrong with a rule is found at start, with its key: a regular expression that does not
compile, a category outside the tree or a group nobody is in would otherwise route customers' mail nowhere,
silently, until someone wonders where the tickets went.

The models here validate the operator's text; what the rules compute with are plain values of ``rules``
(``RuleConfig.rule`` → ``rules.triage.Rule``, ``WebFormConfig.form`` → ``rules.channels.WebForm``), so the rules
import nothing of the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from ticketd.daemon.config.fields import Email, Section
from ticketd.parsers.commands import suggest
from ticketd.rules.channels import WebForm
from ticketd.rules.triage import Conditions, Rule

__all__ = [
    "CLOSING_FIELDS",
    "POLICIES",
    "PRIORITIES",
    "TYPES",
    "CategoriesConfig",
    "ClosingConfig",
    "GroupConfig",
    "RuleConfig",
    "RuleMatch",
    "RuleSet",
    "WebFormConfig",
    "process_problems",
]

TYPES = ("request", "complaint", "information")
PRIORITIES = ("low", "normal", "high", "urgent")
POLICIES = ("manual", "round-robin", "least-open")
CLOSING_FIELDS = ("root_cause", "action_plan", "cost", "resolution")

_PATH = re.compile(r"[a-z0-9_-]+(?:/[a-z0-9_-]+)*")
_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_DURATION = re.compile(r"(\d+)\s*([dh])")


def _category_path(value: Any) -> str:
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        raise ValueError("must be a path of lower-case segments (a-z, 0-9, '_', '-') joined by '/', "
                         "like hardware/modem")
    return value


def _one_or_many(value: Any) -> Any:
    """TOML lets an operator write one value or a list; both mean "any of these"."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and not value:
        raise ValueError("must name at least one value (leave the key out to match every mail)")
    return value


def _domain(value: Any) -> str:
    text = value.strip().lower().lstrip("@").strip(".") if isinstance(value, str) else ""
    if not _DOMAIN.fullmatch(text) or "." not in text:
        raise ValueError("must be a domain like example.com")
    return text


def _company(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a company name")
    return " ".join(value.split())


def _regex(value: Any) -> re.Pattern[str]:
    """Compiled once here, so a broken expression stops start-up instead of failing on the first mail."""
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a regular expression in a string")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


def _flag(value: Any) -> bool:
    """Only TOML's true and false: a quoted "false" would be truthy to Python and silently mean yes."""
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    found = _DURATION.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    if found is None or int(found.group(1)) < 1:
        raise ValueError('must be a calendar duration like "5d" (days) or "12h" (hours)')
    amount = int(found.group(1))
    return timedelta(days=amount) if found.group(2) == "d" else timedelta(hours=amount)


def _label(value: Any) -> str:
    """Names show up in the ticket history as ``name: reason``; a colon or line break would garble that."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty name")
    if any(c in value for c in ":\r\n\t"):
        raise ValueError("must not contain ':', tabs or line breaks")
    return value.strip()


CategoryPath = Annotated[str, BeforeValidator(_category_path)]
Domain = Annotated[str, BeforeValidator(_domain)]
CompanyName = Annotated[str, BeforeValidator(_company)]
Regex = Annotated[re.Pattern[str], BeforeValidator(_regex)]
Label = Annotated[str, BeforeValidator(_label)]
Flag = Annotated[bool, BeforeValidator(_flag)]


class CategoriesConfig(Section):
    tree: tuple[CategoryPath, ...] = ()
    _all: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _prefixes(self) -> CategoriesConfig:
        """Every prefix is a category too: a ticket may be filed under "hardware" before anyone knows more."""
        found: set[str] = set()
        for path in self.tree:
            parts = path.split("/")
            found.update("/".join(parts[:n]) for n in range(1, len(parts) + 1))
        self._all = frozenset(found)
        return self

    def known(self, path: str) -> bool:
        return path in self._all

    def all(self) -> list[str]:
        return sorted(self._all)


class GroupConfig(Section):
    name: Label
    policy: Literal["manual", "round-robin", "least-open"] = "manual"


class RuleMatch(Section):
    sender: Annotated[tuple[Email, ...], BeforeValidator(_one_or_many)] | None = None
    sender_domain: Annotated[tuple[Domain, ...], BeforeValidator(_one_or_many)] | None = None
    company: Annotated[tuple[CompanyName, ...], BeforeValidator(_one_or_many)] | None = None
    recipient: Annotated[tuple[Email, ...], BeforeValidator(_one_or_many)] | None = None
    subject: Regex | None = None
    body: Regex | None = None
    has_attachment: Flag | None = None
    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> RuleMatch:
        """Remember the order the operator wrote the keys in, so a match's reason reads the same way."""
        model: RuleMatch = handler(data)
        if isinstance(data, dict):
            model._order = tuple(key for key in data if key in cls.model_fields)
        return model

    def given(self) -> tuple[str, ...]:
        """The keys given, in the order they were written (field order for a model built in code)."""
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        return tuple(sorted(given, key=lambda k: self._order.index(k) if k in self._order else len(self._order)))

    def conditions(self) -> Conditions:
        return Conditions(**{name: getattr(self, name) for name in type(self).model_fields}, order=self.given())


class RuleSet(Section):
    type: Literal["request", "complaint", "information"] | None = None
    category: CategoryPath | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    group: Label | None = None
    assignee: Email | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> RuleSet:
        if not self.values():
            raise ValueError("must set at least one of type, category, priority, group, assignee")
        return self

    def values(self) -> dict[str, str]:
        """Only what the rule sets: a later rule (after ``continue``) may fill in the rest."""
        return {name: value for name in type(self).model_fields if (value := getattr(self, name)) is not None}


class RuleConfig(Section):
    model_config = ConfigDict(populate_by_name=True)

    name: Label
    match: RuleMatch = RuleMatch()
    set_: RuleSet = Field(alias="set")
    continue_: Flag = Field(default=False, alias="continue")

    def rule(self) -> Rule:
        return Rule(self.name, self.match.conditions(), tuple(self.set_.values().items()), self.continue_)


class WebFormConfig(Section):
    sender: Email
    use_reply_to: Flag = True
    email_field: Label = "E-mail"
    name_field: Label = "Name"
    subject_field: Label | None = "Subject"

    def form(self) -> WebForm:
        return WebForm(self.sender, self.use_reply_to, self.email_field, self.name_field, self.subject_field)


# actions_done: every required action of the ticket done or cancelled (rules.actions)
ClosingFact = Literal["root_cause", "action_plan", "cost", "resolution", "actions_done"]


def _default_require() -> dict[str, tuple[ClosingFact, ...]]:
    return {"complaint": ("root_cause", "action_plan")}


class ClosingConfig(Section):
    require: dict[str, tuple[ClosingFact, ...]] = Field(default_factory=_default_require)
    auto_close_after: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(days=5)
    # Mail on a closed ticket within this time reopens it (the customer is not done); later mail opens a new
    # ticket linked to the old one. A thank-you does neither.
    reopen_within: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(days=7)

    @field_validator("require")
    @classmethod
    def _types(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for key in value:
            if key not in TYPES:
                raise ValueError(f"unknown ticket type {key!r} (types: {', '.join(TYPES)})")
        return value


# --- cross-checks that need more than one section -----------------------------------------------------------

def process_problems(categories: CategoriesConfig, groups: list[GroupConfig], rules: list[RuleConfig],
                     agent_groups: set[str]) -> list[str]:
    """One ``key.path: reason`` line per rule naming something that does not exist, and per duplicate name."""
    known_groups = {g.name for g in groups} | set(agent_groups)
    problems = _duplicates("groups", (g.name for g in groups), "group")
    problems += _duplicates("rules", (r.name for r in rules), "rule name")
    for index, rule in enumerate(rules):
        key = f"rules.{index}.set"
        if rule.set_.category is not None and not categories.known(rule.set_.category):
            problems.append(f"{key}.category: " + _unknown("category", rule.set_.category, categories.all()))
        if rule.set_.group is not None and rule.set_.group not in known_groups:
            problems.append(f"{key}.group: " + _unknown("group", rule.set_.group, sorted(known_groups)))
    return problems


def _duplicates(section: str, names: Iterable[str], what: str) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for index, name in enumerate(names):
        if name in seen:
            problems.append(f"{section}.{index}.name: duplicate {what} {name!r} (also {section}.{seen[name]})")
        seen.setdefault(name, index)
    return problems


def _unknown(what: str, value: str, choices: list[str]) -> str:
    hint = suggest(value, choices)
    listed = ", ".join(choices) if choices else "none configured"
    plural = "categories" if what == "category" else f"{what}s"
    return f"unknown {what} {value!r}" + (f"; did you mean {hint}?" if hint else "") + f" ({plural}: {listed})"
