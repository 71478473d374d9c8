"""Triage rules as data: each configured rule is compiled once into named checks, then tried in order per mail.

A rule that matched says why (``subject matches '(?i)fatura'; sender_domain musteri.com.tr``) so the ticket's
history explains its type, category and group to the agent who wonders why it landed in their queue.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import getaddresses

from ticketd.daemon.config.process import RuleConfig, RuleMatch
from ticketd.parsers.message import ParsedMail

__all__ = ["CompiledRule", "Triage", "TriageFacts", "compile_rules", "facts_from_mail", "triage"]

_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"]+@[^\s@<>()\[\]\\,;:\"]+")


@dataclass(frozen=True)
class TriageFacts:
    sender: str  # lower-case address
    company: str | None  # company name of the sender, if known
    recipients: tuple[str, ...]  # lower-case To/Cc/Delivered-To/X-Original-To addresses
    subject: str
    body: str
    has_attachment: bool


@dataclass(frozen=True)
class Triage:
    type: str | None = None
    category: str | None = None
    priority: str | None = None
    group: str | None = None
    assignee: str | None = None
    matched: tuple[tuple[str, str], ...] = ()  # (rule name, reason)


Check = Callable[[TriageFacts], str | None]


@dataclass(frozen=True)
class CompiledRule:
    name: str
    continue_: bool
    set_values: tuple[tuple[str, str], ...]
    checks: tuple[tuple[int, Check], ...]  # (place in the operator's wording, check), cheapest first

    def match(self, facts: TriageFacts) -> str | None:
        """The reason this mail matches, or None; checks stop at the first miss, so the regexes run last."""
        reasons: list[tuple[int, str]] = []
        for place, check in self.checks:
            reason = check(facts)
            if reason is None:
                return None
            reasons.append((place, reason))
        if not reasons:
            return "every mail (the rule has no match keys)"
        return "; ".join(reason for _, reason in sorted(reasons))


# --- facts ----------------------------------------------------------------------------------------------------

def facts_from_mail(mail: ParsedMail, company: str | None) -> TriageFacts:
    """Inline images (signature logos) are not attachments here: "has_attachment" means the customer sent a file."""
    headers = [mail.header("delivered-to"), mail.header("x-original-to")]
    recipients = [a.email for a in (*mail.to, *mail.cc)] + _header_addresses(headers)
    return TriageFacts(
        sender=mail.sender.email.lower() if mail.sender else "",
        company=company,
        recipients=tuple(dict.fromkeys(r.lower() for r in recipients)),
        subject=mail.subject,
        body=mail.text,
        has_attachment=any(not a.inline for a in mail.attachments),
    )


def _header_addresses(values: list[str]) -> list[str]:
    pairs = getaddresses([v for v in values if v])
    return [addr.strip().lower() for _, addr in pairs if _ADDRESS.fullmatch(addr.strip())]


# --- compiling ------------------------------------------------------------------------------------------------

def _sender(values: tuple[str, ...]) -> Check:
    wanted = frozenset(values)
    return lambda f: f"sender {f.sender}" if f.sender in wanted else None


def _sender_domain(values: tuple[str, ...]) -> Check:
    def check(facts: TriageFacts) -> str | None:
        domain = facts.sender.rpartition("@")[2]
        hit = next((d for d in values if domain == d or domain.endswith("." + d)), None)
        return f"sender_domain {hit}" if hit else None

    return check


def _company(values: tuple[str, ...]) -> Check:
    wanted = frozenset(v.casefold() for v in values)
    return lambda f: f"company {f.company}" if f.company and f.company.casefold() in wanted else None


def _recipient(values: tuple[str, ...]) -> Check:
    wanted = frozenset(values)

    def check(facts: TriageFacts) -> str | None:
        hit = next((r for r in facts.recipients if r in wanted), None)
        return f"recipient {hit}" if hit else None

    return check


def _pattern(key: str) -> Callable[[re.Pattern[str]], Check]:
    def build(pattern: re.Pattern[str]) -> Check:
        return lambda f: f"{key} matches {pattern.pattern!r}" if pattern.search(getattr(f, key)) else None

    return build


def _attachment(wanted: bool) -> Check:
    return lambda f: f"has_attachment {str(wanted).lower()}" if f.has_attachment == wanted else None


# Cheapest first: set look-ups before a regex over the subject, the body (the longest text) last.
_BUILDERS: dict[str, Callable[..., Check]] = {
    "sender": _sender,
    "sender_domain": _sender_domain,
    "company": _company,
    "recipient": _recipient,
    "has_attachment": _attachment,
    "subject": _pattern("subject"),
    "body": _pattern("body"),
}


def compile_rule(rule: RuleConfig) -> CompiledRule:
    checks = _checks(rule.match)
    return CompiledRule(rule.name, rule.continue_, tuple(rule.set_.values().items()), checks)


def _checks(match: RuleMatch) -> tuple[tuple[int, Check], ...]:
    given = match.given()
    cost = list(_BUILDERS)
    ordered = sorted(given, key=cost.index)
    return tuple((given.index(key), _BUILDERS[key](getattr(match, key))) for key in ordered)


def compile_rules(rules: list[RuleConfig]) -> list[CompiledRule]:
    """Not cached here: the caller keeps the result as long as the configuration it came from (the pipeline
    asks per mail, and gets the list compiled when that configuration was first used)."""
    return [compile_rule(rule) for rule in rules]


# --- deciding -------------------------------------------------------------------------------------------------

def triage(rules: list[CompiledRule], facts: TriageFacts) -> Triage:
    """First match wins; a rule with ``continue`` lets later matches fill in what is still unset, never override."""
    values: dict[str, str] = {}
    matched: list[tuple[str, str]] = []
    for rule in rules:
        reason = rule.match(facts)
        if reason is None:
            continue
        matched.append((rule.name, reason))
        for name, value in rule.set_values:
            values.setdefault(name, value)
        if not rule.continue_:
            break
    return Triage(**values, matched=tuple(matched))
