"""Screening: which mail may be answered automatically.

The rules are plain functions in one ordered list; the first that speaks decides and its reason is recorded
on the inbound row, so an operator can always see why a mail got no acknowledgment. RFC 3834 is the basis:
never answer mail that is itself automatic, and never answer ourselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ticketd.parsers.message import ParsedMail, is_one_of


class Verdict(Enum):
    CONTINUE = "continue"  # a normal mail: ticket and acknowledgment
    NO_AUTOREPLY = "no-autoreply"  # record it, but send nothing automatic back
    DROP = "drop"  # do not record it on any ticket


@dataclass(frozen=True)
class ScreenContext:
    our_addresses: frozenset[str]
    # A configured web form's mailer is automatic by design: its Auto-Submitted or no-reply sender says
    # nothing about the customer it carries, so only the loop rules (DROP) apply to it.
    web_form: bool = False


@dataclass(frozen=True)
class Screening:
    verdict: Verdict
    rule: str | None = None
    reason: str | None = None


Rule = Callable[[ParsedMail, ScreenContext], str | None]

_ROBOT_LOCALPARTS = ("mailer-daemon", "postmaster", "no-reply", "noreply", "do-not-reply", "donotreply")


def from_ourselves(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    """Any ``+`` form of our addresses too (``support+7.<mac>@``): answering one is mail to our own mailbox."""
    if mail.sender and is_one_of(mail.sender.email, ctx.our_addresses):
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


def our_own_message(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    """Our own mail coming back (a forward rule, a list, a misconfigured alias): answering it is a loop."""
    mid = mail.message_id or ""
    if mid.startswith("<ticketd.") and any(mid.endswith("@" + a.split("@")[1] + ">") for a in ctx.our_addresses):
        return f"our own Message-ID {mid}"
    return None


def autoreply_headers(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        value = mail.header(name)
        if value and not (name == "x-auto-response-suppress" and value.lower() == "none"):
            return f"{name}: {value}"
    return None


def mailing_list(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    for name in ("list-id", "list-unsubscribe", "list-post"):
        if mail.header(name):
            return f"mailing list ({name})"
    return None


def empty_return_path(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    value = mail.header("return-path")
    return "empty Return-Path <>" if value and value.replace(" ", "") == "<>" else None


def robot_sender(mail: ParsedMail, ctx: ScreenContext) -> str | None:
    if mail.sender and mail.sender.email.split("@")[0] in _ROBOT_LOCALPARTS:
        return f"automatic sender {mail.sender.email}"
    return None


RULES: list[tuple[Rule, Verdict]] = [
    (from_ourselves, Verdict.DROP),
    (our_own_message, Verdict.DROP),
    (no_sender, Verdict.DROP),
    (auto_submitted, Verdict.NO_AUTOREPLY),
    (autoreply_headers, Verdict.NO_AUTOREPLY),
    (bulk_precedence, Verdict.NO_AUTOREPLY),
    (mailing_list, Verdict.NO_AUTOREPLY),
    (empty_return_path, Verdict.NO_AUTOREPLY),
    (robot_sender, Verdict.NO_AUTOREPLY),
]


def screen(mail: ParsedMail, ctx: ScreenContext) -> Screening:
    for rule, verdict in RULES:
        if ctx.web_form and verdict is not Verdict.DROP:
            continue
        reason = rule(mail, ctx)
        if reason:
            return Screening(verdict, rule.__name__, reason)
    return Screening(Verdict.CONTINUE)
