"""Is this mail really from the agent it claims to be from?

The From header proves nothing. Two things do: the mail went to a reply address we signed for this agent
(only someone who received our mail knows it), or the receiving server — identified by its configured
authserv-id — recorded a DKIM or DMARC pass for the agent's domain in ``Authentication-Results``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketd.daemon.config import Config
from ticketd.daemon.signing import verify_reply_address
from ticketd.parsers.message import ParsedMail


@dataclass(frozen=True)
class SignedAddress:
    ticket_number: int  # 0: the agent's general address, for mail that opens tickets
    party: str


def signed_recipient(mail: ParsedMail, config: Config, party: str) -> SignedAddress | None:
    """The first of our reply addresses among the recipients that verifies for ``party``."""
    secret = config.security.secret.get_secret_value() if config.security.secret else ""
    candidates = [a.email for a in (*mail.to, *mail.cc)]
    for header in ("delivered-to", "x-original-to", "envelope-to"):
        if mail.header(header):
            candidates.append(mail.header(header).strip("<> ").lower())
    for address in candidates:
        number = verify_reply_address(address, config.helpdesk.address, party, secret)
        if number is not None:
            return SignedAddress(number, party)
    return None


_RESULT = re.compile(r"\b(dkim|dmarc)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)


def authentication_results_pass(mail: ParsedMail, authserv_id: str, domain: str) -> bool:
    """DKIM (header.d) or DMARC (header.from) pass for ``domain`` in the trusted server's topmost header.

    Only the first header carrying the trusted authserv-id counts: the receiving server adds it on top, and
    anything further down could have been written by the sender.
    """
    header = mail.header("authentication-results")
    if not header:
        return False
    if header.split(";", 1)[0].strip().split()[0].lower() != authserv_id.lower():
        return False
    domain = domain.lower()
    for method, result, props in _RESULT.findall(header):
        if result.lower() != "pass":
            continue
        key = "header.d" if method.lower() == "dkim" else "header.from"
        match = re.search(re.escape(key) + r"\s*=\s*([^\s;]+)", props, re.IGNORECASE)
        if match and match.group(1).lower().lstrip("@") == domain:
            return True
    return False


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    how: str


def authenticate_agent(mail: ParsedMail, config: Config, agent_email: str) -> AuthResult:
    mode = config.security.agent_auth
    signed = signed_recipient(mail, config, agent_email)
    if signed is not None:
        return AuthResult(True, "signed reply address")
    if mode == "authentication-results" and config.security.trusted_authserv_id:
        domain = agent_email.rsplit("@", 1)[1]
        if authentication_results_pass(mail, config.security.trusted_authserv_id, domain):
            return AuthResult(True, f"Authentication-Results from {config.security.trusted_authserv_id}")
    if mode == "from-header":
        return AuthResult(True, "From header (agent_auth = from-header)")
    return AuthResult(False, "not sent to a reply address signed for this agent"
                      + (" and no trusted DKIM/DMARC pass" if mode == "authentication-results" else ""))
