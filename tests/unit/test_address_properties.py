"""Random hostile From/To/Cc headers (groups, encoded words, comments, quoted names, display names holding
addresses, CR/LF, long lists) never yield a recipient the mail did not carry as an addr-spec, nor more
recipients than the cap, through the functions that decide recipients: the parser, ``rules.participants`` and
the outbox's envelope. ``tests/integration/test_security_addresses.py`` runs the same headers through the
pipeline."""

from __future__ import annotations

from addressgen import Header, address_header, raw_mail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketd.daemon.outgoing.outbox import format_address, recipients
from ticketd.parsers.message import parse_message
from ticketd.rules import participants
from ticketd.storage.models import Outbox

CAP = 20


def decide(mail_bytes: bytes, reason: str | None) -> tuple[str, list[str]] | None:
    """Who a ticket opened by this mail answers, as the pipeline decides it: the requester, then the
    participants ``rules.participants`` lets in (``reason``: whether the mail vouches for them)."""
    mail = parse_message(mail_bytes)
    if mail.sender is None:
        return None
    requester = mail.sender.email
    choice = participants.choose([*mail.to, *mail.cc], skip=lambda e: e in (requester, "support@acme.example"),
                                 known=set(), reason=reason, colleague=lambda e: False, room=CAP)
    row = Outbox(to_addrs=format_address(mail.sender.name, requester),
                 cc_addrs=", ".join(format_address(p.name, p.email) for p in choice.added))
    return requester, recipients(row)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sender=address_header(max_elements=3), to=address_header(), cc=address_header(),
       reason=st.sampled_from([None, "answers our mail"]))
def test_recipients_are_only_addresses_the_mail_carried(sender: Header, to: Header, cc: Header,
                                                        reason: str | None) -> None:
    raw = raw_mail(sender, to, cc, "<p@x.example>")
    mail = parse_message(raw)
    carried = sender.carried | to.carried | cc.carried | {"support@acme.example"}
    decoys = (sender.decoys | to.decoys | cc.decoys) - carried
    parsed = {a.email for a in (*mail.to, *mail.cc, *mail.reply_to)}
    assert parsed <= carried and not parsed & decoys, (raw, parsed - carried)
    if mail.sender is not None:
        assert mail.sender.email in sender.carried, raw
    decided = decide(raw, reason)
    if decided is None:
        return
    requester, envelope = decided
    assert envelope[0] == requester and set(envelope) <= carried, (raw, envelope)
    assert len(envelope) <= CAP + 1
    if reason is None:
        assert envelope == [requester]  # nothing vouches for the people named: nobody else is answered


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(max_size=30), min_size=1, max_size=5), to=address_header(max_elements=5))
def test_any_display_name_round_trips_through_the_outbox_envelope(names: list[str], to: Header) -> None:
    """Whatever a name holds (quotes, commas, an address, CR/LF), the envelope is exactly the addresses."""
    people = [(name, address) for name, address in zip(names * 5, sorted(to.carried), strict=False)]
    row = Outbox(to_addrs=", ".join(format_address(n, a) for n, a in people), cc_addrs="")
    assert recipients(row) == list(dict.fromkeys(a for _, a in people))


def test_a_long_list_is_capped() -> None:
    cc = Header(", ".join(f"p{i}@real{i}.example" for i in range(300)), {f"p{i}@real{i}.example" for i in range(300)})
    decided = decide(raw_mail(Header("jane@example.org", {"jane@example.org"}), Header(""), cc, "<l@x.example>"),
                     "answers our mail")
    assert decided is not None and len(decided[1]) == CAP + 1


def _by_the_email_package(name: str, address: str) -> str:
    from email.headerregistry import Address

    from ticketd.daemon.outgoing.wire import clean
    return str(Address(display_name=clean(name), addr_spec=clean(address)))


@settings(max_examples=500, deadline=None)
@given(name=st.text(max_size=30) | st.sampled_from(["", "Jane Roe", "Şener Öztürk", "Roe, Jane", 'a "b"', "x.y"]),
       local=st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,12}", fullmatch=True),
       domain=st.sampled_from(["example.org", "mail.example.com.tr", "a-b.example", "localhost"]))
def test_the_quick_form_of_an_address_is_the_email_packages(name: str, local: str, domain: str) -> None:
    """``format_address`` writes plain names and dot-atom addresses itself; the result must be the one the
    email package gives for them (anything else still goes through it)."""
    address = f"{local}@{domain}"
    try:
        expected = _by_the_email_package(name, address)
    except (ValueError, IndexError, TypeError):
        return  # the package cannot model it: format_address falls back further, as before
    assert format_address(name, address) == expected
