"""Signed reply addresses: ``support+<ticket>.<day>.<mac>@domain``.

The MAC binds the ticket number and the issue day to the person the address was given to, so a reply to it
proves the sender received our mail. That is what authenticates agents' commands without trusting the From
header. The day (days since 1970-01-01, UTC) sits inside the signed part so an address can expire: mail leaks
(forwards, archives, a colleague's inbox), and an address that works forever is a password that never changes.
The local part stays short (``support+12345.20424.0123456789ab`` is 31 characters, RFC 5321 allows 64).

An address of the old shape (``support+<ticket>.<mac>``, no day) is never accepted again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime

_MAC_LEN = 12
_EPOCH = date(1970, 1, 1).toordinal()


def day_number(now: datetime) -> int:
    """The UTC day of ``now`` as a count from 1970-01-01: five digits until the year 2243."""
    return now.date().toordinal() - _EPOCH


def day_date(day: int) -> date:
    return date.fromordinal(day + _EPOCH)


def _mac(secret: str, ticket_number: int, day: int | None, party: str) -> str:
    """``day`` None: the MAC of the old shape, kept only to recognise such an address as really ours."""
    who = party.strip().lower()
    signed = f"{ticket_number}:{who}" if day is None else f"{ticket_number}:{day}:{who}"
    return hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()[:_MAC_LEN]


def reply_address(helpdesk_address: str, ticket_number: int, party: str, secret: str, now: datetime) -> str:
    local, domain = helpdesk_address.split("@", 1)
    day = day_number(now)
    return f"{local}+{ticket_number}.{day}.{_mac(secret, ticket_number, day, party)}@{domain}"


@dataclass(frozen=True)
class ReplyAddress:
    ticket_number: int
    day: int | None  # None: the old shape without a day, which no longer verifies
    mac: str


def parse_reply_address(address: str, helpdesk_address: str) -> ReplyAddress | None:
    """The parts of ``address`` if it has the shape of one of our reply addresses, old or current."""
    local, domain = helpdesk_address.lower().split("@", 1)
    pattern = (re.escape(local) + r"\+(\d{1,12})(?:\.(\d{1,7}))?\.([0-9a-f]{" + str(_MAC_LEN) + "})@"
               + re.escape(domain))
    match = re.fullmatch(pattern, address.strip().lower())
    if match is None:
        return None
    return ReplyAddress(int(match.group(1)), int(match.group(2)) if match.group(2) else None, match.group(3))


@dataclass(frozen=True)
class Verified:
    ticket_number: int
    expired: bool  # signed for this party, but older than the configured validity, or of the old shape
    issued: date | None


def verify_reply_address(address: str, helpdesk_address: str, party: str, secret: str, now: datetime,
                         valid_days: int) -> Verified | None:
    """What ``address`` says when it was signed for ``party``; None when it was not (or is no address of ours).

    An old-shape address that really was ours for ``party`` is reported expired (its MAC covered no day, so it
    never expires by itself): the refusal can then give the agent a fresh one. A day in the future can only
    come from our own clock having been ahead; it is signed, so it is accepted.
    """
    parsed = parse_reply_address(address, helpdesk_address)
    if parsed is None:
        return None
    if not hmac.compare_digest(parsed.mac, _mac(secret, parsed.ticket_number, parsed.day, party)):
        return None
    if parsed.day is None:
        return Verified(parsed.ticket_number, True, None)
    expired = day_number(now) - parsed.day > valid_days
    return Verified(parsed.ticket_number, expired, day_date(parsed.day))
