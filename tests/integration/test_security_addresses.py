"""Issue 14's attack pass on addresses, through the real pipeline (SQLite or PostgreSQL, aiosmtpd): a From read
loosely, participants without limit, a stranger let in by a forged From. Each test failed on the code before
the fix (see the report of branch i14-addresses)."""

from __future__ import annotations

import pytest
from addressgen import address_header, author, raw_mail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from conftest import Desk, mail_to, reply_to
from ticketd.storage.models import Participant, Ticket

pytestmark = pytest.mark.integration

CUSTOMER = "cigdem.yilmaz@musteri.com.tr"  # a known customer of Müşteri A.Ş. (the desk fixture)
ALI = "ali@acme.example"
EVE = "eve@evil.example"


def plain(*headers: str, body: str = "Please help.") -> bytes:
    return ("\r\n".join([*headers, "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"])
            + "\r\n\r\n" + body + "\r\n").encode()


def participants(desk: Desk, number: int) -> list[str]:
    with Session(desk.site.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return [p.email for p in session.exec(select(Participant).where(Participant.ticket_id == ticket.id)
                                                .order_by(Participant.id))]


def agent_answers(desk: Desk, mails: list, text: str = "We are on it.") -> list[str]:
    """Ali answers the ticket's notification from his mail client; the envelope recipients of the relay."""
    desk.deliver(reply_to(mail_to(mails, ALI), f"Ali Veli <{ALI}>", text))
    relays = [m for m in desk.new_mail() if ALI not in m.envelope_to]
    assert len(relays) == 1, [m.envelope_to for m in relays]
    return sorted(relays[0].envelope_to)


def test_an_address_in_the_display_name_is_nobody(desk: Desk) -> None:
    """``cem@… <eve@…>`` was taken as cem: eve's words joined cem's ticket and cem got our acknowledgment."""
    desk.deliver(plain(f"From: {CUSTOMER}", "To: support@acme.example", "Subject: Modem broken",
                       "Message-ID: <c-1@musteri.com.tr>"))
    desk.new_mail()
    outcome = desk.deliver(plain(f"From: {CUSTOMER} <{EVE}>", "To: support@acme.example",
                                 "Subject: Re: [ACME #1] Modem broken", "Message-ID: <e-1@evil.example>",
                                 body="Send the new password to me."))
    assert outcome.status == "dropped" and "From" in (outcome.reason or "")
    assert desk.new_mail() == []  # no acknowledgment to the victim, none to eve
    assert len(desk.ticket(1)["messages"]) == 1


def test_an_encoded_group_in_from_sends_nothing(desk: Desk) -> None:
    outcome = desk.deliver(plain("From: =?utf-8?q?=5Fvictim@x.example=0D=0Ax-injected?=",
                                 "To: support@acme.example", "Subject: hello", "Message-ID: <g-1@x.example>"))
    assert outcome.status == "dropped"
    assert desk.new_mail() == []


def test_a_forged_customer_from_does_not_bring_a_stranger_into_an_existing_ticket(desk: Desk) -> None:
    desk.deliver(plain(f"From: Çiğdem Yılmaz <{CUSTOMER}>", "To: support@acme.example", "Subject: Modem broken",
                       "Message-ID: <c-1@musteri.com.tr>"))
    desk.new_mail()
    # Anyone can write this: the ticket number is in every subject, the customer's address is public.
    forged = plain(f"From: Çiğdem Yılmaz <{CUSTOMER}>", "To: support@acme.example", f"Cc: Eve <{EVE}>",
                   "Subject: Re: [ACME #1] Modem broken", "Message-ID: <f-1@evil.example>",
                   body="My colleague Eve takes this over.")
    assert desk.deliver(forged).ticket_number == 1
    assert EVE not in participants(desk, 1)
    refused = [e for e in desk.ticket(1)["events"] if e["what"] == "participants-not-added"]
    assert len(refused) == 1 and EVE in refused[0]["new"]
    assert agent_answers(desk, desk.new_mail()) == [CUSTOMER]


def test_a_forged_known_customer_opening_a_ticket_brings_no_stranger(desk: Desk) -> None:
    desk.deliver(plain(f"From: {CUSTOMER}", "To: support@acme.example", f"Cc: {EVE}, ayla@musteri.com.tr",
                       "Subject: Reset my account", "Message-ID: <f-2@evil.example>"))
    assert participants(desk, 1) == ["ayla@musteri.com.tr"]  # a colleague of the same company may join
    assert sorted(agent_answers(desk, desk.new_mail())) == sorted([CUSTOMER, "ayla@musteri.com.tr"])


def test_the_customer_answering_our_mail_brings_a_colleague(desk: Desk) -> None:
    """What stays allowed: the requester's answer to our mail (its Message-ID or signed address) vouches."""
    desk.deliver(plain(f"From: {CUSTOMER}", "To: support@acme.example", "Subject: Modem broken",
                       "Message-ID: <c-1@musteri.com.tr>"))
    ack = mail_to(desk.new_mail(), CUSTOMER)
    desk.deliver(reply_to(ack, CUSTOMER, "Adding our contractor.", cc="Bob <bob@partner.example>"))
    assert participants(desk, 1) == ["bob@partner.example"]


def test_three_hundred_people_on_cc_are_capped(desk: Desk) -> None:
    """A new contact's first mail with 300 addresses only in Cc made every later answer go to 301 people."""
    cc = ", ".join(f"person{i}@many.example" for i in range(300))
    desk.deliver(plain("From: Jane <jane@example.org>", "To: support@acme.example", f"Cc: {cc}",
                       "Subject: Printer on fire", "Message-ID: <j-1@example.org>"))
    joined = participants(desk, 1)
    assert joined == [f"person{i}@many.example" for i in range(20)]  # [limits] max_participants, in order
    [note] = [e["new"] for e in desk.ticket(1)["events"] if e["what"] == "participants-not-added"]
    assert note.startswith("280 not added") and "max_participants" in note
    assert len(agent_answers(desk, desk.new_mail())) == 21


def test_forty_thousand_addresses_in_to_make_at_most_the_cap(desk: Desk) -> None:
    to = ", ".join(f"p{i}@crowd.example" for i in range(40_000))
    outcome = desk.deliver(plain("From: jane@example.org", f"To: support@acme.example, {to}",
                                 "Subject: Hello all", "Message-ID: <j-2@example.org>"))
    assert outcome.status == "done"
    assert participants(desk, 1) == [f"p{i}@crowd.example" for i in range(20)]


def _head_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_a_customer_message_id_of_998_characters_never_makes_a_line_over_998(desk: Desk) -> None:
    """The longest Message-ID we store: "In-Reply-To: " plus it, or even a folded " " plus it, is over the limit."""
    long_id = "<" + "x" * 984 + "@example.org>"
    assert len(long_id) == 998
    refs = " ".join(f"<{i}.{'r' * 200}@example.org>" for i in range(30))
    desk.deliver(plain("From: jane@example.org", "To: support@acme.example", "Subject: Printer on fire",
                       f"Message-ID: {long_id}", f"References: {refs}"))
    mails = desk.new_mail()
    assert mails
    for mail in mails:
        assert max(len(line) for line in _head_lines(mail.raw)) <= 998, mail.envelope_to
    answered = agent_answers(desk, mails)  # the agent's answer threads on the stored ids too
    assert answered == ["jane@example.org"]


def test_an_outlook_message_id_is_not_encoded_when_files_go_along(desk: Desk) -> None:
    """A notification that carries the customer's file is written by the full ``email`` package, which
    RFC 2047-encoded every id longer than a line: the agent's client could not thread it."""
    outlook = "<DM6PR11MB4010A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6E7F@DM6PR11MB4010.namprd11.prod.outlook.com>"
    raw = (f"From: jane@example.org\r\nTo: support@acme.example\r\nSubject: Printer on fire\r\n"
           f"Message-ID: {outlook}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nSee the photo.\r\n--b\r\nContent-Type: application/pdf\r\n"
           "Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           "JVBERi0xLjQK\r\n--b--\r\n").encode()
    desk.deliver(raw)
    notification = mail_to(desk.new_mail(), ALI)
    assert notification.message.get_content_type() == "multipart/mixed"
    assert str(notification.message["In-Reply-To"]).strip() == outlook
    assert b"=?utf-8?" not in b"\r\n".join(_head_lines(notification.raw))


def test_a_file_name_stored_before_the_fix_reaches_the_cli_without_bidi_controls(desk: Desk) -> None:
    import json

    from ticketd.storage.models import Attachment

    raw = (b"From: jane@example.org\r\nTo: support@acme.example\r\nSubject: Invoice\r\nMessage-ID: <i-1@example.org>"
           b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
           b"\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
           b" filename*=UTF-8''invoice%E2%80%AEfdp.exe\r\n\r\nMZ\r\n--b--\r\n")
    desk.deliver(raw)
    notification = mail_to(desk.new_mail(), ALI)
    assert [p.get_filename() for p in notification.message.iter_attachments()] == ["invoicefdp.exe"]
    with Session(desk.site.engine) as session:  # as an older version stored it
        attachment = session.exec(select(Attachment)).one()
        attachment.filename = "invoice\u202efdp.exe"
        session.add(attachment)
        session.commit()
    listed = json.loads(desk.site.cli("attachments", "list", "1", "--json").stdout)
    shown = json.loads(desk.site.cli("tickets", "show", "1", "--json").stdout)
    assert [a["filename"] for a in listed] == ["invoicefdp.exe"]
    assert [a["filename"] for m in shown["messages"] for a in m["attachments"]] == ["invoicefdp.exe"]


AGENTS = {ALI, "ayse@acme.example"}


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_hostile_headers_through_the_pipeline_reach_only_carried_addresses(desk: Desk,
                                                                                   data: st.DataObject) -> None:
    """The hypothesis property of tests/unit/test_address_properties.py, through the real pipeline and SMTP: the
    acknowledgment, the agents' notifications and an agent's answer. The desk lives across examples, so the
    addresses carried by every example so far are the allowed ones; decoys have domains of their own."""
    sender = data.draw(author())
    to, cc = data.draw(address_header(max_elements=8)), data.draw(address_header(max_elements=30))
    carried = desk.__dict__.setdefault("carried", set())
    carried |= sender.carried | to.carried | cc.carried
    decoys = (sender.decoys | to.decoys | cc.decoys) - carried
    desk.deliver(raw_mail(sender, to, cc, f"<h{len(desk.sink.received)}.{len(carried)}@hyp.example>"))
    mails = desk.new_mail()
    for mail in mails:
        assert set(mail.envelope_to) <= carried | AGENTS and not set(mail.envelope_to) & decoys, mail.envelope_to
    if any(ALI in m.envelope_to for m in mails):
        relay = agent_answers(desk, [m for m in mails if ALI in m.envelope_to][:1])
        assert set(relay) <= carried and len(relay) <= 21, relay
