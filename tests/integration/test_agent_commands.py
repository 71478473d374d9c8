"""Every command of the table, alone and combined; every kind of error refused with a precise reply and the
ticket left exactly as it was. Real SQLite and aiosmtpd; mail enters as through `ticketd deliver`."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import DATA, Desk, body_of, mail_to, reply_to

pytestmark = pytest.mark.integration

ALI, AYSE, JANE = "ali@acme.example", "ayse@acme.example", "jane@example.org"


def open_ticket(desk: Desk, eml: str = "unknown-sender.eml") -> Any:
    """A customer's ticket and the notification Ali got for it."""
    desk.deliver((DATA / eml).read_bytes())
    return mail_to(desk.new_mail(), ALI)


def command(desk: Desk, notification: Any, suffix: str, body: str = "", sender: str = ALI) -> list[Any]:
    desk.deliver(reply_to(notification, sender, body, subject_suffix=suffix))
    return desk.new_mail()


def snapshot(desk: Desk, number: int) -> dict[str, Any]:
    data = desk.ticket(number)
    return {k: v for k, v in data.items() if k not in ("updated_at", "outgoing", "events")} | {
        "events": [e for e in data["events"] if not e["what"].startswith("mail-")]}


@pytest.mark.parametrize(("suffix", "expected"), [
    ("[take]", {"assignee": ALI, "state": "open"}),
    ("[assign=ayse]", {"assignee": AYSE, "state": "open"}),
    ("[assign=Ayşe Demir]", {"assignee": AYSE, "state": "open"}),
    ("[status=pending]", {"state": "pending"}),
    ("[pending]", {"state": "pending"}),
    ("[resolve]", {"state": "resolved"}),
    ("[close]", {"state": "closed"}),
    ("[reject]", {"state": "rejected"}),
    ("[reopen]", {"state": "open"}),
    ("[priority=high]", {"priority": "high"}),
    ("[type=complaint]", {"type": "complaint"}),
    ("[category=Hardware/Modem]", {"category": "hardware/modem"}),
    ("[source=letter]", {"source": "letter"}),
    ("[take; priority=urgent; type=information]", {"assignee": ALI, "priority": "urgent", "type": "information"}),
    ("[take] [status=pending]", {"assignee": ALI, "state": "pending"}),
])
def test_command_alone_and_combined(desk: Desk, suffix: str, expected: dict[str, Any]) -> None:
    notification = open_ticket(desk)
    command(desk, notification, suffix)
    ticket = desk.ticket(1)
    assert {k: ticket[k] for k in expected} == expected
    assert all(e["actor"] == ALI for e in ticket["events"] if e["what"] in expected)


def test_assign_to_a_group_and_the_new_assignee_is_told(desk: Desk) -> None:
    notification = open_ticket(desk)
    command(desk, notification, "[assign=network]")
    assert desk.ticket(1)["assignee"] is None
    mails = command(desk, notification, "[assign=ayse]")
    assert desk.ticket(1)["assignee"] == AYSE
    assert "assigned to Ayşe Demir" in mail_to(mails, JANE).message["Subject"]
    assert "Question about my invoice" in mail_to(mails, AYSE).message["Subject"]


def test_due_date_is_the_end_of_that_day_in_the_helpdesk_zone(desk: Desk) -> None:
    command(desk, open_ticket(desk), "[due=2026-12-01]")
    assert desk.ticket(1)["resolution_due"] == "2026-12-01T20:59:00+00:00"  # 23:59 in Istanbul


def test_note_stays_internal(desk: Desk) -> None:
    mails = command(desk, open_ticket(desk), "[note]", "Called her, waiting for the invoice copy.")
    assert mails == []
    messages = desk.ticket(1)["messages"]
    assert (messages[-1]["kind"], messages[-1]["text"]) == ("note", "Called her, waiting for the invoice copy.")


def test_long_fields_are_stored_and_never_relayed(desk: Desk) -> None:
    body = ("We replaced the modem.\n\nRoot-Cause: firmware 1.2 bug\nAction-Plan: upgrade all units\n"
            "  of that series\nCost: 1.200 TL\nResolution: modem replaced")
    [relay] = command(desk, open_ticket(desk), "[resolve]", body)
    ticket = desk.ticket(1)
    assert (ticket["root_cause"], ticket["action_plan"], ticket["cost"]) == (
        "firmware 1.2 bug", "upgrade all units\nof that series", "1200.00 TRY")  # the totals of the Cost: lines
    assert ticket["state"] == "resolved"
    text = body_of(relay)
    assert "We replaced the modem." in text and "firmware" not in text and "Cost" not in text


def test_merge_moves_later_mail_to_the_target(desk: Desk) -> None:
    first = open_ticket(desk)
    open_ticket(desk, "iso-8859-9-body.eml")
    command(desk, first, "[merge=#2]")
    assert desk.ticket(1)["state"] == "closed"
    assert any(e["what"] == "merged_from" and e["new"] == "#1" for e in desk.ticket(2)["events"])
    outcome = desk.deliver(reply_to(first, JANE, "one more thing", quote=False))
    assert outcome.ticket_number == 2 and outcome.new_ticket is False


def test_spam_closes_and_blocks_the_sender(desk: Desk) -> None:
    command(desk, open_ticket(desk), "[spam]")
    assert desk.ticket(1)["state"] == "closed"
    again = (DATA / "unknown-sender.eml").read_bytes().replace(b"<t-2.jane", b"<t-2b.jane")
    outcome = desk.deliver(again)
    assert outcome.status == "dropped" and "blocked" in outcome.reason
    assert desk.new_mail() == []


def test_quote_tells_the_customer_an_offer_follows(desk: Desk) -> None:
    [quote] = command(desk, open_ticket(desk), "[quote]")
    assert quote.envelope_to == [JANE] and "offer" in body_of(quote)
    assert desk.ticket(1)["within_contract"] is False


def test_agent_opens_a_ticket_for_a_phone_call(desk: Desk) -> None:
    from ticketd.daemon.outgoing.notify import signed_address

    own = signed_address(desk.site.config(), 0, ALI)
    raw = (f"From: Ali Veli <{ALI}>\r\nTo: {own}\r\nSubject: Modem dead [customer=mehmet@musteri.com.tr; "
           "source=phone; take]\r\nMessage-ID: <phone-1@acme.example>\r\n\r\nCustomer called: modem is dead.\r\n")
    outcome = desk.deliver(raw.encode())
    assert outcome.new_ticket
    ticket = desk.ticket(outcome.ticket_number)
    assert (ticket["requester"], ticket["source"], ticket["assignee"], ticket["company"]) == (
        "mehmet@musteri.com.tr", "phone", ALI, "Müşteri A.Ş.")
    assert ticket["messages"][0]["text"] == "Customer called: modem is dead."
    mails = desk.new_mail()
    assert sorted((m.envelope_to[0], m.message["X-Ticketd-Kind"]) for m in mails) == [
        (ALI, "agent_new"),  # the ticket's own mail, which Ali answers the customer from
        ("mehmet@musteri.com.tr", "assigned"), ("mehmet@musteri.com.tr", "received")]


def acknowledged_ticket(desk: Desk) -> tuple[Any, Any]:
    """A customer's ticket with the acknowledgment Jane got and the notification Ali got."""
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    mails = desk.new_mail()
    return mail_to(mails, JANE), mail_to(mails, ALI)


def test_requester_answers_satisfied_through_the_signed_address(desk: Desk) -> None:
    ack, notification = acknowledged_ticket(desk)
    command(desk, notification, "[resolve]")
    desk.deliver(reply_to(ack, JANE, "", subject_suffix="[satisfied]"))
    ticket = desk.ticket(1)
    assert (ticket["state"], ticket["satisfaction"]) == ("closed", "satisfied")


@pytest.mark.parametrize(("suffix", "body", "message"), [
    ("[priority=hgh]", "", "unknown priority 'hgh'; did you mean high?"),
    ("[take; priority=hgh]", "", "unknown priority 'hgh'; did you mean high?"),
    ("[priorty=high]", "", "unknown command 'priorty'; did you mean 'priority'?"),
    ("[status=sleeping]", "", "unknown state 'sleeping'"),
    ("[assign=nobody]", "", "no active agent or group called 'nobody'"),
    ("[merge=#999]", "", "there is no ticket #999"),
    ("[due=tomorrow]", "", "due 'tomorrow' is not a date; write it as YYYY-MM-DD"),
    ("[type=question]", "", "unknown type 'question'"),
    ("[category=a//b]", "", "must be a path like hardware/modem"),
    ("[take=ayse]", "", "'take' takes no value"),
    ("[status=]", "", "'status' needs a value"),
    ("[satisfied]", "", "ticket #1 is new, not resolved"),
    ("[take]", "Priority: high\nnot a command line", None),
])
def test_bad_commands_change_nothing_and_say_why(desk: Desk, suffix: str, body: str, message: str | None) -> None:
    notification = open_ticket(desk)
    before = snapshot(desk, 1)
    mails = command(desk, notification, suffix, body + "\nThis text must not reach the customer.")
    if message is None:  # the control case: valid commands do apply
        assert snapshot(desk, 1) != before
        return
    assert snapshot(desk, 1) == before
    [result] = mails  # no relay to the customer: only the agent hears back
    assert result.envelope_to == [ALI]
    assert message in body_of(result), body_of(result)
    assert "Nothing from your mail was applied" in body_of(result)


def test_invalid_transition_is_explained(desk: Desk) -> None:
    notification = open_ticket(desk)
    command(desk, notification, "[resolve]")
    [result] = command(desk, notification, "[pending]")
    assert "a resolved ticket cannot become pending" in body_of(result)
    assert desk.ticket(1)["state"] == "resolved"


def test_only_a_manager_or_the_assignee_hands_a_ticket_over(desk: Desk) -> None:
    notification = open_ticket(desk)
    ayse_notification = open_ticket(desk, "iso-8859-9-body.eml")  # just to have Ayşe's signed mail at hand
    command(desk, notification, "[assign=ayse]")
    [result] = command(desk, notification, "[assign=ali]")
    assert "only a manager or the ticket's assignee" in body_of(result)
    assert desk.ticket(1)["assignee"] == AYSE
    assert ayse_notification is not None


def test_not_satisfied_reopens_and_a_plain_reply_reopens_pending(desk: Desk) -> None:
    ack, notification = acknowledged_ticket(desk)
    command(desk, notification, "[take; resolve]")
    desk.deliver(reply_to(ack, JANE, "Still broken.", subject_suffix="[not-satisfied]"))
    ticket = desk.ticket(1)
    assert (ticket["state"], ticket["satisfaction"]) == ("open", "not-satisfied")
    assert "Still broken." in body_of(mail_to(desk.new_mail(), ALI))  # the assignee hears it
    command(desk, notification, "[pending]")
    desk.deliver(reply_to(ack, JANE, "Here is the invoice number: 42.", quote=False))
    assert desk.ticket(1)["state"] == "open"


def test_authentication_results_from_the_trusted_server(desk: Desk) -> None:
    desk.site.sections["security"].update(agent_auth="authentication-results", trusted_authserv_id="mx.acme.example")
    notification = open_ticket(desk)

    def with_results(results: str) -> bytes:
        raw = reply_to(notification, f"Ali Veli <{ALI}>", "", subject_suffix="[priority=high]",
                       to="support@acme.example")
        return f"Authentication-Results: {results}\r\n".encode() + raw

    forged = with_results("evil.example; dkim=pass header.d=acme.example")  # not our server
    assert desk.deliver(forged).status == "dropped"
    failed = with_results("mx.acme.example; dkim=fail header.d=acme.example; dmarc=fail header.from=acme.example")
    assert desk.deliver(failed).status == "dropped"
    other_domain = with_results("mx.acme.example; dkim=pass header.d=gmail.com")
    assert desk.deliver(other_domain).status == "dropped"
    assert desk.ticket(1)["priority"] == "normal"
    good = with_results("mx.acme.example; spf=pass smtp.mailfrom=acme.example; dkim=pass header.d=acme.example")
    assert desk.deliver(good).status == "done"
    assert desk.ticket(1)["priority"] == "high"


def test_from_header_mode_trusts_from_and_warns_at_start(desk: Desk) -> None:
    desk.site.sections["security"]["agent_auth"] = "from-header"
    notification = open_ticket(desk)
    desk.deliver(reply_to(notification, f"Ali Veli <{ALI}>", "", subject_suffix="[take]", to="support@acme.example"))
    assert desk.ticket(1)["assignee"] == ALI
    proc = desk.site.cli("tickets", "list")
    assert proc.returncode == 0 and b"security.agent_auth_from_header" in proc.stderr
