"""Strict address parsing (issue 14, "From parsed loosely"): a display name is never read as an address, and a
From that is not exactly one valid mailbox names no sender. The lenient reading (CVE-2023-27043's
``getaddresses``) took ``cem@customer.example <eve@evil.example>`` as cem and an encoded word as an address."""

from __future__ import annotations

import pytest

from ticketd.parsers.message import parse_message


def _mail(*headers: str) -> bytes:
    return ("\r\n".join([*headers, "Subject: hello", "Message-ID: <a@x.example>"]) + "\r\n\r\nhi\r\n").encode()


@pytest.mark.parametrize("value", [
    "cem@customer.example <eve@evil.example>",  # the address-looking display name of the attack pass
    "=?utf-8?q?=5Fvictim@x.example=0D=0Ax-injected?=",  # an encoded word is never an addr-spec
    "=?utf-8?q?cem@customer.example?= <eve@evil.example",  # unclosed
    "victims: cem@customer.example;",  # a group is not an author
    "cem@customer.example, eve@evil.example",  # two authors: which one to answer?
    "Mikel@Lindsaar <raasdnil@gmail.com>",  # an unquoted @ in the display name
    "cem@customer.example@evil.example",
    "<@route.example:cem@customer.example>",  # obsolete source route
    "nobody",
    "",
])
def test_a_from_that_is_not_exactly_one_valid_mailbox_names_no_sender(value: str) -> None:
    mail = parse_message(_mail(f"From: {value}", "To: support@acme.example"))
    assert mail.sender is None, mail.sender


def test_two_from_headers_name_no_sender() -> None:
    mail = parse_message(_mail("From: cem@customer.example", "From: eve@evil.example"))
    assert mail.sender is None


@pytest.mark.parametrize(("value", "email", "name"), [
    ('"Smith, John" <John@X.example>', "john@x.example", "Smith, John"),
    ("=?utf-8?b?U21pdGgsIEpvaG4=?= <john@x.example>", "john@x.example", "Smith, John"),  # one person, not two
    ('"eve@evil.example" <cem@customer.example>', "cem@customer.example", "eve@evil.example"),  # quoted: a name
    ("John Q. Public (home) <jqp@x.example>", "jqp@x.example", "John Q. Public"),
    ("jqp@x.example (John)", "jqp@x.example", ""),
    ("root@localhost", "root@localhost", ""),  # a one-label domain is an address on its own network
    ('"Jöhn Doe" <jdöe@mächine.example>', "jdöe@mächine.example", "Jöhn Doe"),  # RFC 6532
    ("=?utf-8?q?Ev=E2=80=AEe_=0D=0AX-Bcc:_x?= <e@x.example>", "e@x.example", "Eve X-Bcc: x"),  # CR/LF, RLO gone
])
def test_a_valid_mailbox_is_read_with_its_decoded_name(value: str, email: str, name: str) -> None:
    mail = parse_message(_mail(f"From: {value}"))
    assert mail.sender is not None and (mail.sender.email, mail.sender.name) == (email, name)


def test_to_and_cc_keep_only_the_valid_mailboxes() -> None:
    mail = parse_message(_mail(
        "From: jane@example.org",
        "To: support@acme.example, cem@customer.example <eve@evil.example>, =?utf-8?q?a@b.example?=",
        "Cc: team: bob@partner.example, \"x, y\" <xy@partner.example>;, broken <nope",
        "Reply-To: cem@customer.example <eve@evil.example>"))
    assert [a.email for a in mail.to] == ["support@acme.example"]
    assert [a.email for a in mail.cc] == ["bob@partner.example", "xy@partner.example"]
    assert mail.reply_to == ()


def test_a_huge_address_list_is_read_up_to_its_bound_without_inventing_an_address() -> None:
    """40,000 addresses: the stdlib parser is quadratic, so the list is cut; the address the cut shortened is
    left out rather than read as another one."""
    value = ", ".join(f"user{i}@example{i % 7}.org" for i in range(40_000))
    mail = parse_message(_mail("From: jane@example.org", f"To: {value}"))
    carried = set(value.split(", "))
    assert 500 < len(mail.to) < 2_000
    assert all(a.email in carried for a in mail.to)
    assert any("the rest was not read" in note for note in mail.decode_notes)
