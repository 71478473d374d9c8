"""Is this mail really from the agent it claims to be from?

The From header proves nothing. Two things do: the mail went to a reply address we signed for this agent
(only someone who received our mail knows it), or the receiving server — identified by its configured
authserv-id — recorded a DKIM or DMARC pass for the agent's domain in ``Authentication-Results``.

Signed addresses are read from To and Cc only. ``Delivered-To``, ``X-Original-To`` and ``Envelope-To`` are
headers like any other: the sender can write them, and ``ticketd deliver`` and IMAP do not tell us which of them
our own MTA added. An agent answering our mail has the signed Reply-To in To, so nothing legitimate is lost.

What this needs of the configuration (the secret, the support address, the trusted authserv-id…) comes in as
one ``AuthPolicy`` value, built once by ``Config.auth``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import authres

from ticketd.parsers.message import ParsedMail
from ticketd.rules.signing import verify_reply_address

AgentAuth = Literal["signed-reply", "authentication-results", "from-header"]


@dataclass(frozen=True)
class AuthPolicy:
    """How an agent's mail is proven: reply addresses signed with ``secret`` on one of ``addresses`` (the
    helpdesk's and each mailbox identity's) and valid ``signed_address_days``; by ``agent_auth``, also the
    trusted receiving server's verdict, or the From header."""

    addresses: tuple[str, ...]
    secret: str = field(repr=False)  # never in a log line
    signed_address_days: int
    agent_auth: AgentAuth = "signed-reply"
    trusted_authserv_id: str | None = None


@dataclass(frozen=True)
class SignedAddress:
    ticket_number: int  # 0: the agent's general address, for mail that opens tickets
    party: str


def _signed(mail: ParsedMail, policy: AuthPolicy, party: str, now: datetime,
            expired: bool) -> SignedAddress | None:
    for address in (a.email for a in (*mail.to, *mail.cc)):
        for base in policy.addresses:
            verified = verify_reply_address(address, base, party, policy.secret, now, policy.signed_address_days)
            if verified is not None and verified.expired == expired:
                return SignedAddress(verified.ticket_number, party)
    return None


def signed_recipient(mail: ParsedMail, policy: AuthPolicy, party: str, now: datetime) -> SignedAddress | None:
    """The first of our reply addresses in To/Cc that was signed for ``party`` and has not expired."""
    return _signed(mail, policy, party, now, expired=False)


def expired_recipient(mail: ParsedMail, policy: AuthPolicy, party: str, now: datetime) -> SignedAddress | None:
    """A reply address in To/Cc really signed for ``party`` but too old (or of the old shape without a day)."""
    return _signed(mail, policy, party, now, expired=True)


def _domain(value: str) -> str:
    """``header.d`` / ``header.from`` as a bare domain: ``@d`` and a local part dropped, case and root dot too."""
    return value.rsplit("@", 1)[-1].strip().rstrip(".").lower()


# Our MTA's header sits at the top, under at most a few of internal relays; past this many, it is not there.
# Each parse costs about 1.4 ms, and anyone may send an agent-looking mail with thousands of these headers.
_MAX_HEADERS = 50


def authentication_results_pass(headers: tuple[str, ...], authserv_id: str, domain: str) -> bool:
    """DKIM pass with ``header.d`` = ``domain``, or DMARC pass with ``header.from`` = ``domain``, in the topmost
    Authentication-Results header whose authserv-id is the trusted one (RFC 8601 §5).

    Headers with other ids are skipped: an internal relay may add its own above ours. Below the topmost trusted
    one nothing counts, because our MTA prepends its header and removes incoming ones with its id, so anything
    further down came with the mail. A header that does not mention the trusted id at all is another server's
    (Microsoft 365 writes none of RFC 8601's authserv-id) and is skipped unread; one that mentions it but does not
    parse ends the search unauthenticated (it may be our MTA's own). Only the topmost ``_MAX_HEADERS`` are read.

    The domain must be equal, not a subdomain: subdomains are often delegated (a newsletter vendor signs for
    ``news.acme.example``), and DMARC pass already is the relaxed, organisational-domain alignment.
    """
    wanted = authserv_id.strip().lower()
    domain = _domain(domain)
    for header in headers[:_MAX_HEADERS]:
        if wanted not in header.lower():
            continue  # cannot carry our authserv-id; skipping it unparsed keeps a flood of headers cheap
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(header)
        except Exception:  # authres raises its own SyntaxError and, on odd input, others: all mean "unreadable"
            return False  # it names our id: perhaps our MTA's own, perhaps not; nothing in it can be trusted
        if (parsed.authserv_id or "").lower() != wanted:
            continue
        for result in parsed.results:
            if (result.result or "").lower() != "pass":
                continue
            key = {"dkim": ("header", "d"), "dmarc": ("header", "from")}.get((result.method or "").lower())
            if key is None:
                continue
            if any((p.type or "").lower() == key[0] and (p.name or "").lower() == key[1]
                   and _domain(p.value or "") == domain for p in result.properties):
                return True
        return False
    return False


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    how: str
    expired: bool = False  # it went to this agent's signed address, but an expired one: they get a fresh one


def authenticate_agent(mail: ParsedMail, policy: AuthPolicy, agent_email: str, on_ticket: bool,
                       now: datetime) -> AuthResult:
    """``on_ticket``: the mail acts on an existing ticket. The agent's ``+0`` address (for opening tickets,
    printed in the help mail) is meant to be shared with callers' forms and colleagues; it must not steer
    tickets it was never signed for."""
    mode = policy.agent_auth
    signed = signed_recipient(mail, policy, agent_email, now)
    if signed is not None and (signed.ticket_number > 0 or not on_ticket):
        return AuthResult(True, "signed reply address")
    if mode == "authentication-results" and policy.trusted_authserv_id:
        domain = agent_email.rsplit("@", 1)[1]
        if authentication_results_pass(mail.authentication_results, policy.trusted_authserv_id, domain):
            return AuthResult(True, f"Authentication-Results from {policy.trusted_authserv_id}")
    if mode == "from-header":
        return AuthResult(True, "From header (agent_auth = from-header)")
    extra = " and no trusted DKIM/DMARC pass" if mode == "authentication-results" else ""
    if signed is not None:
        return AuthResult(False, "sent to the address for opening new tickets, which cannot act on an existing "
                          "ticket" + extra)
    if expired_recipient(mail, policy, agent_email, now) is not None:
        return AuthResult(False, f"sent to a reply address that has expired (valid "
                          f"{policy.signed_address_days} days){extra}", expired=True)
    return AuthResult(False, "not sent to a reply address signed for this agent" + extra)
