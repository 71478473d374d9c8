"""Signed reply addresses: ``support+<ticket>.<mac>@domain``.

The MAC binds the ticket number to the person the address was given to, so a reply to it proves the sender
received our mail. That is what authenticates agents' commands without trusting the From header.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_MAC_LEN = 12


def _mac(secret: str, ticket_number: int, party: str) -> str:
    msg = f"{ticket_number}:{party.strip().lower()}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:_MAC_LEN]


def reply_address(helpdesk_address: str, ticket_number: int, party: str, secret: str) -> str:
    local, domain = helpdesk_address.split("@", 1)
    return f"{local}+{ticket_number}.{_mac(secret, ticket_number, party)}@{domain}"


def parse_reply_address(address: str, helpdesk_address: str) -> tuple[int, str] | None:
    """(ticket number, mac) if ``address`` has the shape of one of our reply addresses."""
    local, domain = helpdesk_address.lower().split("@", 1)
    pattern = re.escape(local) + r"\+(\d{1,12})\.([0-9a-f]{" + str(_MAC_LEN) + "})@" + re.escape(domain)
    match = re.fullmatch(pattern, address.strip().lower())
    return (int(match.group(1)), match.group(2)) if match else None


def verify_reply_address(address: str, helpdesk_address: str, party: str, secret: str) -> int | None:
    """The ticket number when ``address`` was signed for ``party``; None otherwise."""
    parsed = parse_reply_address(address, helpdesk_address)
    if parsed is None:
        return None
    number, mac = parsed
    return number if hmac.compare_digest(mac, _mac(secret, number, party)) else None
