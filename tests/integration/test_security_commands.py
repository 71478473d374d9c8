"""Who may command a ticket, through the real pipeline (SQLite/PostgreSQL, the SMTP sink, `ticketd check`).

Each test is a finding of issue 14's attack pass or its Authentication-Results measurement, and failed on the
code before its fix: Authentication-Results read by a regex, the ``+0`` address steering any ticket, signed
addresses that never expired and were read from headers the sender writes, and a ``+`` address of ours taken
for a customer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from conftest import DATA, Desk, Site, body_of, decode, mail_to, reply_to
from ticketd.daemon.outgoing.notify import signed_address
from ticketd.storage.models import utcnow

pytestmark = pytest.mark.integration

ALI = "ali@acme.example"
JANE = "jane@example.org"
TRUSTED = "mx.acme.example"


def customer_ticket(desk: Desk) -> Any:
    """Jane's ticket #1, and the notification Ali got for it."""
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    return mail_to(desk.new_mail(), ALI)


def command_mail(to: str, subject: str, headers: Sequence[str] = (), n: int = 1) -> bytes:
    """Ali's mail as his MTA hands it on: any Authentication-Results on top, then his own headers."""
    lines = [*headers, f"From: Ali Veli <{ALI}>", f"To: {to}", f"Subject: {subject}",
             f"Message-ID: <cmd-{n}@ali-laptop.example>", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(lines) + "\r\n\r\nPlease see to it.\r\n").encode()


def refused(desk: Desk, outcome: Any, state: str = "new") -> str:
    """The usual refusal: nothing changed, an event, and one alert to the real Ali; its body is returned."""
    assert outcome.status == "dropped" and "unauthenticated" in outcome.reason, outcome
    ticket = desk.ticket(1)
    assert ticket["state"] == state and ticket["priority"] == "normal" and len(ticket["messages"]) == 1
    assert any(e["what"] == "security:unauthenticated-agent-mail" for e in ticket["events"])
    [alert] = desk.new_mail()
    assert alert.envelope_to == [ALI] and alert.message["X-Ticketd-Kind"] == "security_alert"
    return body_of(alert)


# --- Authentication-Results through the whole path ----------------------------------------------------------

ACCEPTED = {
    "opendkim": [f"Authentication-Results: {TRUSTED}; dkim=pass (2048-bit key; unprotected) header.d=acme.example "
                 "header.i=@acme.example header.a=rsa-sha256 header.s=default header.b=AbCdEfGh"],
    "internal relay above, opendmarc": [
        "Authentication-Results: relay.internal.acme.example; none",
        f"Authentication-Results: {TRUSTED};\r\n\tdmarc=pass (p=reject dis=none) header.from=acme.example"],
}
ATTACKS = {
    "spf comment quoting a dkim pass": [
        f'Authentication-Results: {TRUSTED}; spf=pass ({TRUSTED}: domain of "dkim=pass header.d=acme.example x"'
        '@evil.example designates 203.0.113.5 as permitted sender) smtp.mailfrom=eve@evil.example'],
    "forged trusted header below ours": [
        f"Authentication-Results: {TRUSTED}; dkim=none (no signatures found); dmarc=fail header.from=acme.example",
        f"Authentication-Results: {TRUSTED}; dkim=pass header.d=acme.example"],
    "header.d look-alike": [f"Authentication-Results: {TRUSTED}; dkim=pass header.d=acme.example.evil.example"],
}


@pytest.fixture
def ar_desk(desk: Desk) -> Desk:
    desk.site.sections["security"].update(agent_auth="authentication-results", trusted_authserv_id=TRUSTED)
    return desk


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_trusted_authentication_results_let_the_agent_command(ar_desk: Desk, case: str) -> None:
    customer_ticket(ar_desk)
    outcome = ar_desk.deliver(command_mail("support@acme.example", "Re: [ACME #1] Question [priority=high]",
                                           ACCEPTED[case]))
    assert outcome.status == "done" and outcome.ticket_number == 1, outcome
    ticket = ar_desk.ticket(1)
    assert ticket["priority"] == "high"
    assert any(e["what"] == "priority" and e["actor"] == ALI for e in ticket["events"])


@pytest.mark.parametrize("case", list(ATTACKS))
def test_forged_authentication_results_change_nothing(ar_desk: Desk, case: str) -> None:
    customer_ticket(ar_desk)
    outcome = ar_desk.deliver(command_mail("support@acme.example", "Re: [ACME #1] Question [priority=high]",
                                           ATTACKS[case]))
    assert "no trusted DKIM/DMARC pass" in refused(ar_desk, outcome)


def test_check_warns_when_no_authserv_id_is_trusted(site: Site) -> None:
    site.upgrade()
    site.sections["security"]["agent_auth"] = "authentication-results"
    out, _ = decode(site.cli("check"))
    line = next(x for x in out.splitlines() if x.split()[1:2] == ["authentication:"])
    assert "warning" in line and "trusted_authserv_id is not set" in line
    assert "must remove such headers arriving from outside" in line
    site.sections["security"]["trusted_authserv_id"] = TRUSTED
    out, _ = decode(site.cli("check"))
    line = next(x for x in out.splitlines() if x.split()[1:2] == ["authentication:"])
    assert "warning" not in line and repr(TRUSTED) in line and "topmost" in line


# --- Signed addresses ---------------------------------------------------------------------------------------

def test_the_new_ticket_address_cannot_command_an_existing_ticket(desk: Desk) -> None:
    customer_ticket(desk)
    own = signed_address(desk.site.config(), 0, ALI)  # printed in Ali's help mail, for opening tickets
    outcome = desk.deliver(command_mail(own, "Re: [ACME #1] Question [status=closed]"))
    body = refused(desk, outcome)
    assert "address for opening new tickets" in body
    # The refusal, in Ali's own mailbox, carries the address for ticket 1 signed for him; it works.
    [fresh] = re.findall(r"support\+1\.\d+\.[0-9a-f]{12}@acme\.example", body)
    outcome = desk.deliver(command_mail(fresh, "Re: [ACME #1] Question [priority=high]", n=2))
    assert outcome.status == "done" and desk.ticket(1)["priority"] == "high"


def test_a_signed_address_expires_and_the_refusal_gives_a_fresh_one(desk: Desk) -> None:
    notification = customer_ticket(desk)
    issued = utcnow()
    days = 90  # [security] signed_address_days by default
    answer = reply_to(notification, f"Ali Veli <{ALI}>", "", subject_suffix="[priority=high]")
    late = issued + timedelta(days=days + 1)
    body = refused(desk, desk.deliver(answer, clock=lambda: late))
    assert "expired" in body
    [fresh] = re.findall(r"support\+1\.\d+\.[0-9a-f]{12}@acme\.example", body)
    outcome = desk.deliver(reply_to(notification, f"Ali Veli <{ALI}>", "", subject_suffix="[priority=high]",
                                    to=fresh), clock=lambda: late)
    assert outcome.status == "done" and desk.ticket(1)["priority"] == "high"


def test_a_signed_address_is_valid_to_its_last_day(desk: Desk) -> None:
    notification = customer_ticket(desk)
    days = 90  # [security] signed_address_days by default
    last = utcnow() + timedelta(days=days)
    outcome = desk.deliver(reply_to(notification, f"Ali Veli <{ALI}>", "", subject_suffix="[priority=high]"),
                           clock=lambda: last)
    assert outcome.status == "done" and desk.ticket(1)["priority"] == "high"


def test_an_old_shape_address_no_longer_authenticates(desk: Desk) -> None:
    """``support+<n>.<mac>`` as ticketd signed them before addresses carried a day: it never expired."""
    import hashlib
    import hmac

    customer_ticket(desk)
    secret = (desk.site.dir / "secret").read_text().strip()
    mac = hmac.new(secret.encode(), f"1:{ALI}".encode(), hashlib.sha256).hexdigest()[:12]
    outcome = desk.deliver(command_mail(f"support+1.{mac}@acme.example", "Re: [ACME #1] Question [status=closed]"))
    body = refused(desk, outcome)
    assert "expired" in body and re.search(r"support\+1\.\d+\.[0-9a-f]{12}@acme\.example", body)


@pytest.mark.parametrize("header", ["Delivered-To", "X-Original-To", "Envelope-To"])
def test_a_signed_address_in_a_header_the_sender_wrote_is_ignored(desk: Desk, header: str) -> None:
    customer_ticket(desk)
    signed = signed_address(desk.site.config(), 1, ALI)
    outcome = desk.deliver(command_mail("support@acme.example", "Re: [ACME #1] Question [status=closed]",
                                        [f"{header}: {signed}"]))
    refused(desk, outcome)


@pytest.mark.parametrize("sender", ["signed", "support+7.20424.0123456789ab@acme.example", "support+x@acme.example",
                                    "SUPPORT+Foo@ACME.example"])
def test_mail_from_a_plus_address_of_ours_is_never_answered(desk: Desk, sender: str) -> None:
    """A mail loop to our own mailbox: one of our reply addresses (a forward rule, a misconfigured alias) as
    the sender must get no acknowledgment and open no ticket."""
    address = signed_address(desk.site.config(), 7, JANE) if sender == "signed" else sender
    raw = (f"From: {address}\r\nTo: support@acme.example\r\nSubject: Your request\r\n"
           f"Message-ID: <loop-1@acme.example>\r\n\r\nWe received your request.\r\n").encode()
    outcome = desk.deliver(raw)
    assert outcome.status == "dropped" and "our own address" in outcome.reason, outcome
    assert desk.new_mail() == []


def test_each_ticket_of_the_list_mail_carries_its_own_address(desk: Desk) -> None:
    """The list mail's Reply-To is the agent's +0 address, which may not act on tickets; each listed ticket
    has an address signed for the agent and that ticket instead."""
    notification = customer_ticket(desk)
    assert desk.deliver(reply_to(notification, f"Ali Veli <{ALI}>", "", subject_suffix="[take]")).status == "done"
    desk.new_mail()
    desk.deliver(command_mail("support@acme.example", "list", n=2))
    [listing] = desk.new_mail()
    [address] = re.findall(r"support\+1\.\d+\.[0-9a-f]{12}@acme\.example", body_of(listing))
    outcome = desk.deliver(command_mail(address, "[ACME #1] [priority=high]", n=3))
    assert outcome.status == "done" and desk.ticket(1)["priority"] == "high"
