"""Screening: which mail may be answered automatically.

The rules are plain functions in one ordered list; the first that speaks decides and its reason is recorded
on the inbound row, so an operator can always see why a mail got no acknowledgment. RFC 3834 is the basis:
never answer mail that is itself automatic, and never answer ourselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ticketd.parsers.message import ParsedMail


class Verdict(Enum):
    CONTINUE = "continue"  # a normal mail: ticket and acknowledgment
    NO_AUTOREPLY = "no-autoreply"  # record it, but send nothing automatic back
    DROP = "drop"  # do not record it on any ticket


@dataclass(frozen=True)
class ScreenContext:
    our_addresses: frozenset[str]


@dataclass(frozen=True)
class Screening:
    verdict: Verdict
    rule: str | None = None
    reason: str | None = None


Rule = Callable[[ParsedMail, ScreenContext], str | None]

_ROBOT_LOCALPARTS = ("mailer-daemon", "postmaster", "no-reply", "noreply", "do-not-reply", "donotreply")


def from_ourselves(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    if mail.sender and mail.sender.email in ctx.our_addresses:
        return f"sent by our own address {mail.sender.email}"
    return None


def no_sender(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    return None if mail.sender else "no usable From address"


def auto_submitted(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    value = mail.header("auto-submitted").lower()
    if value and not value.startswith("no"):
        return f"Auto-Submitted: {value}"
    return None


def bulk_precedence(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    value = mail.header("precedence").lower()
    return f"Precedence: {value}" if value in ("bulk", "junk", "list") else None


def robot_sender(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    if mail.sender and mail.sender.email.split("@")[0] in _ROBOT_LOCALPARTS:
        return f"automatic sender {mail.sender.email}"
    return None


RULES: list[tuple[Rule, Verdict]] = [
    (from_ourselves, Verdict.DROP),
    (no_sender, Verdict.DROP),
    (auto_submitted, Verdict.NO_AUTOREPLY),
    (bulk_precedence, Verdict.NO_AUTOREPLY),
    (robot_sender, Verdict.NO_AUTOREPLY),
]


def screen(mail: ParsedMail, ctx: ScreenContext) -> Screening:
    for rule, verdict in RULES:
        reason = rule(mail, ctx)
        if reason:
            return Screening(verdict, rule.__name__, reason)
    return Screening(Verdict.CONTINUE)
