"""Every ticket has someone who hears of it (Build 4), no merge lets one customer read another's mail (Build 5),
and a command reaches the ticket its agent meant or none (Build 6). Real SQLite and PostgreSQL, real aiosmtpd;
mail enters as through `ticketd deliver`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from conftest import DATA, Desk, body_of, mail_to, reply_to
from ticketd.storage import db
from ticketd.storage.directory import upsert_agent, upsert_customer
from ticketd.storage.models import Agent, Outbox, utcnow

pytestmark = pytest.mark.integration

ALI, AYSE, CAN, DENIZ = "ali@acme.example", "ayse@acme.example", "can@acme.example", "deniz@acme.example"
CIGDEM, JANE, BORA = "cigdem.yilmaz@musteri.com.tr", "jane@example.org", "bora@example.net"


@pytest.fixture
def team(desk: Desk) -> Desk:
    """Ali and Can in network (round-robin), Deniz in billing (manual); Ayşe the manager."""
    desk.site.sections["categories"] = {"tree": ["hardware/modem", "billing/invoice"]}
    desk.site.sections["groups"] = [{"name": "network", "policy": "round-robin"},
                                    {"name": "billing", "policy": "manual"}]
    desk.site.sections["rules"] = [
        {"name": "modem", "match": {"body": "(?i)modem"}, "set": {"category": "hardware/modem", "group": "network"}},
        {"name": "invoice", "match": {"body": "(?i)fatura|invoice"},
         "set": {"category": "billing/invoice", "group": "billing"}}]
    with db.session_scope(desk.site.engine) as session:
        upsert_agent(session, CAN, "Can Öz", "agent", ["network"])
        upsert_agent(session, DENIZ, "Deniz Ak", "agent", ["billing"])
        upsert_agent(session, AYSE, "Ayşe Demir", "manager", [])
        upsert_customer(session, BORA, "Bora Tan")
    return desk


def new_mail(sender: str, subject: str, body: str, n: int) -> bytes:
    return (f"From: {sender}\r\nTo: support@acme.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <fall-{n}@client.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def notice(mails: list[Any], to: str, kind: str = "agent_new") -> Any:
    return mail_to([m for m in mails if m.message["X-Ticketd-Kind"] == kind], to)


def kinds(mails: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.envelope_to[0], m.message["X-Ticketd-Kind"]) for m in mails)


# --- 4. no ticket falls through ----------------------------------------------------------------------------------

def test_assign_to_a_round_robin_group_picks_the_agent_and_tells_everyone(team: Desk) -> None:
    team.deliver(new_mail(f"Jane <{JANE}>", "Invoice wrong", "My invoice is wrong.", 1))  # billing: manual
    mails = team.new_mail()
    assert kinds(mails) == [(DENIZ, "agent_new"), (JANE, "received")]  # the group's agent hears of it
    team.deliver(reply_to(notice(mails, DENIZ), DENIZ, "", subject_suffix="[assign=network]"))
    mails = team.new_mail()
    ticket = team.ticket(1)
    assert (ticket["group"], ticket["assignee"]) == ("network", ALI)  # the turn starts with ali@
    assert kinds(mails) == [(ALI, "agent_new"), (JANE, "assigned")]
    assert "Deniz Ak handed [ACME #1] to you." in body_of(notice(mails, ALI))


def test_assign_to_a_manual_group_tells_its_agents(team: Desk) -> None:
    team.deliver(new_mail(f"Jane <{JANE}>", "Modem", "My modem is down.", 1))  # network: round-robin → Ali
    mails = team.new_mail()
    team.deliver(reply_to(notice(mails, ALI), ALI, "", subject_suffix="[assign=billing]"))
    mails = team.new_mail()
    ticket = team.ticket(1)
    assert (ticket["group"], ticket["assignee"]) == ("billing", None)
    assert kinds(mails) == [(DENIZ, "agent_new")]  # Ali handed it away himself: no "no longer yours" mail
    assert "handed [ACME #1] to the billing group, and nobody has it yet" in body_of(mails[0])


def test_a_phone_ticket_is_triaged_assigned_acknowledged_and_notified(team: Desk) -> None:
    team.deliver((DATA / "unknown-sender.eml").read_bytes())
    general = team.sink.received[-1]  # any mail to Ali carries his signed address for new tickets? no: use help
    del general
    team.deliver(new_mail(f"Can Öz <{CAN}>", "help", "", 2))
    help_mail = notice(team.new_mail(), CAN, "help")
    address = next(line.strip() for line in body_of(help_mail).splitlines() if line.strip().startswith("support+0."))
    raw = (f"From: Can Öz <{CAN}>\r\nTo: {address}\r\nSubject: Modem calling [customer={BORA}; source=phone]\r\n"
           "Message-ID: <phone-1@acme.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Bora called: his modem drops every hour since Monday.\r\n").encode()
    outcome = team.deliver(raw)
    assert outcome.new_ticket
    ticket = team.ticket(outcome.ticket_number)
    assert (ticket["source"], ticket["category"], ticket["group"]) == ("phone", "hardware/modem", "network")
    assert ticket["assignee"] == ALI  # the rule's group policy said otherwise than the opening agent
    mails = team.new_mail()
    assert kinds(mails) == [(ALI, "agent_new"), (BORA, "assigned"), (BORA, "received")]
    assert "his modem drops every hour" in body_of(notice(mails, ALI))


def test_a_phone_ticket_no_rule_claims_stays_with_the_agent_who_took_the_call(team: Desk) -> None:
    team.deliver(new_mail(f"Can Öz <{CAN}>", "help", "", 2))
    address = next(line.strip() for line in body_of(notice(team.new_mail(), CAN, "help")).splitlines()
                   if line.strip().startswith("support+0."))
    raw = (f"From: Can Öz <{CAN}>\r\nTo: {address}\r\nSubject: Address change [customer={BORA}; source=letter]\r\n"
           "Message-ID: <letter-1@acme.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Bora wrote a letter: new address is Bağdat Cd. 5.\r\n").encode()
    outcome = team.deliver(raw)
    ticket = team.ticket(outcome.ticket_number)
    assert (ticket["source"], ticket["assignee"], ticket["state"]) == ("letter", CAN, "open")
    mails = team.new_mail()
    assert kinds(mails) == [(BORA, "assigned"), (BORA, "received"), (CAN, "agent_new")]


@pytest.mark.parametrize("gone", ["away", "deactivate"])
def test_mail_on_an_absent_agents_ticket_reaches_the_group(team: Desk, gone: str) -> None:
    team.deliver(new_mail(f"Jane <{JANE}>", "Modem", "My modem is down.", 1))
    mails = team.new_mail()
    assert team.ticket(1)["assignee"] == ALI
    assert team.site.cli("agents", gone, ALI).returncode == 0
    team.deliver(reply_to(notice(mails, JANE, "received"), JANE, "It is still down this morning."))
    assert kinds(team.new_mail()) == [(CAN, "agent_update")]


def test_mail_on_a_ticket_whose_group_is_gone_reaches_the_managers(team: Desk) -> None:
    team.deliver(new_mail(f"Jane <{JANE}>", "Invoice", "Invoice question.", 1))  # billing: Deniz only
    mails = team.new_mail()
    team.deliver(reply_to(notice(mails, DENIZ), DENIZ, "", subject_suffix="[take]"))
    team.new_mail()
    assert team.site.cli("agents", "deactivate", DENIZ).returncode == 0
    team.deliver(reply_to(notice(mails, JANE, "received"), JANE, "Any news?"))
    assert kinds(team.new_mail()) == [(AYSE, "agent_update")]


def test_deactivate_with_reassign_hands_open_tickets_on(team: Desk) -> None:
    for n in (1, 2):
        team.deliver(new_mail(f"Jane <{JANE}>", f"Modem {n}", "My modem is down.", n))
    team.new_mail()
    assert [team.ticket(n)["assignee"] for n in (1, 2)] == [ALI, CAN]
    proc = team.site.cli("agents", "deactivate", ALI, "--reassign")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == [f"agent {ALI}: active=no", f"  #1 -> {CAN}",
                                                 "1 open ticket(s) handed on; the daemon sends the mail"]
    assert team.ticket(1)["assignee"] == CAN
    from ticketd.daemon.outgoing import outbox

    outbox.send_due(team.site.engine, team.site.config())
    mails = team.new_mail()
    assert kinds(mails) == [(CAN, "agent_new")]
    assert "My modem is down." in body_of(notice(mails, CAN))  # what the customer last wrote
    with db.session_scope(team.site.engine) as session:  # Jane heard "Ali" a moment ago: "Can" follows later
        [waiting] = session.exec(select(Outbox).where(Outbox.ticket_id == 1, Outbox.kind == "assigned",
                                                      Outbox.status == "queued")).all()
        assert waiting.announces == CAN and waiting.next_attempt_at > utcnow()


def test_taking_a_colleagues_ticket_tells_the_colleague(team: Desk) -> None:
    """Can answers his list mail with the tag of Ali's ticket and [take]; the list's address opens tickets only,
    so Can is told, with the address to use, which works."""
    team.deliver(new_mail(f"Jane <{JANE}>", "Modem", "My modem is down.", 1))
    team.new_mail()
    assert team.ticket(1)["assignee"] == ALI
    team.deliver(new_mail(f"Can Öz <{CAN}>", "list", "", 9))
    listing = notice(team.new_mail(), CAN, "agent_list")
    forged = reply_to(listing, CAN, "").replace(b"Subject: Re:", b"Subject: [ACME #1] [take] Re:")
    forged = forged.replace(listing.message["Reply-To"].split("<")[-1].strip(">").encode(), b"support@acme.example")
    team.deliver(forged)  # not sent to Can's signed address: refused, Can is warned
    assert team.ticket(1)["assignee"] == ALI
    assert kinds(team.new_mail()) == [(CAN, "security_alert")]
    # The list's own reply address is Can's +0 one, for opening tickets: it may not act on ticket 1. Can's
    # warning (to Can's own mailbox) carries an address signed for Can and ticket 1, which does.
    team.deliver(reply_to(listing, CAN, "").replace(b"Subject: Re:", b"Subject: [ACME #1] [take] Re:"))
    assert team.ticket(1)["assignee"] == ALI
    [alert] = team.new_mail()
    assert alert.message["X-Ticketd-Kind"] == "security_alert"
    [address] = re.findall(r"support\+1\.\d+\.[0-9a-f]+@acme\.example", body_of(alert))
    team.deliver(reply_to(listing, CAN, "", to=address).replace(b"Subject: Re:", b"Subject: [ACME #1] [take] Re:"))
    mails = team.new_mail()
    assert team.ticket(1)["assignee"] == CAN
    assert kinds(mails) == [(ALI, "agent_unassigned")]  # Jane's "assigned to Can" waits out the quiet period
    assert "Can Öz took [ACME #1]; it is no longer assigned to you." in body_of(mails[0])


def test_the_customer_hears_assigned_once_per_real_change(team: Desk) -> None:
    team.deliver(new_mail(f"Jane <{JANE}>", "Modem", "My modem is down.", 1))
    mails = team.new_mail()
    assert [m.message["Subject"] for m in mails if JANE in m.envelope_to and "assigned" in m.message["Subject"]] \
        == ["[ACME #1] Your request has been assigned to Ali Veli: Modem"]
    notification = notice(mails, ALI)
    with db.session_scope(team.site.engine) as session:
        session.exec(select(Agent).where(Agent.email == ALI)).one().role = "manager"
    for suffix in ("[assign=can]", "[assign=ali]", "[assign=can]", "[assign=ali]"):
        team.deliver(reply_to(notification, ALI, "", subject_suffix=suffix))
    assert [m for m in team.new_mail() if JANE in m.envelope_to] == []  # back with Ali: nothing to tell
    team.deliver(reply_to(notification, ALI, "", subject_suffix="[assign=can]"))
    assert [m for m in team.new_mail() if JANE in m.envelope_to] == []  # waits out the quiet period
    with db.session_scope(team.site.engine) as session:
        rows = list(session.exec(select(Outbox).where(Outbox.kind == "assigned").order_by(Outbox.id)))
        assert [r.status for r in rows] == ["sent", "superseded", "superseded", "queued"]
        assert rows[-1].announces == CAN and rows[-1].next_attempt_at >= rows[0].sent_at + timedelta(minutes=5)
        rows[-1].next_attempt_at = utcnow() - timedelta(seconds=1)  # the five minutes pass
    from ticketd.daemon.outgoing import outbox

    outbox.send_due(team.site.engine, team.site.config())
    assert [m.message["Subject"] for m in team.new_mail() if JANE in m.envelope_to] == [
        "[ACME #1] Your request has been assigned to Can Öz: Modem"]


# --- 5. confidentiality under merge -------------------------------------------------------------------------------

def test_merging_two_customers_tickets_never_shows_one_the_other(team: Desk) -> None:
    team.deliver(new_mail(f"Jane Roe <{JANE}>", "Modem down", "My modem is down since 9.", 1))
    jane = team.new_mail()
    team.deliver(new_mail(f"Bora Tan <{BORA}>", "Modem down too", "Same here, modem dead.", 2))
    bora = team.new_mail()
    # Can (Bora's assignee) merges Bora's #2 into Jane's #1
    team.deliver(reply_to(notice(bora, CAN), CAN, "Same outage.", subject_suffix="[merge=#1]"))
    team.new_mail()
    assert team.ticket(2)["merged_into"] == 1 and team.ticket(1)["merged_from"] == [2]
    # Ali answers on #1: only Jane gets it
    team.deliver(reply_to(notice(jane, ALI), ALI, "Jane, the outage is fixed, restart the modem please."))
    after = team.new_mail()
    assert [m.envelope_to for m in after] == [[JANE]]
    # Bora writes on his own thread: recorded on #2, the agents see it under #2's tag
    team.deliver(reply_to(notice(bora, BORA, "received"), BORA, "Is there any news? My shop is closed."))
    mails = team.new_mail()
    assert kinds(mails) == [(ALI, "agent_update")]  # #1's assignee works the merged ticket
    update = mails[0]
    assert update.message["Subject"].startswith("[ACME #2]") and "(merged into [ACME #1])" in body_of(update)
    assert [m["text"] for m in team.ticket(2)["messages"]][-1] == "Is there any news? My shop is closed."
    # Ali answers Bora's mail: only Bora gets it, in Bora's thread
    team.deliver(reply_to(update, ALI, "Bora, it is fixed now; please restart your modem."))
    mails = team.new_mail()
    assert [m.envelope_to for m in mails] == [[BORA]]
    assert mails[0].message["Subject"].startswith("[ACME #2]")
    everything = team.sink.received
    assert not [m for m in everything if JANE in m.envelope_to and (BORA.encode() in m.raw or b"shop" in m.raw)]
    assert not [m for m in everything if BORA in m.envelope_to and (JANE.encode() in m.raw or b"Jane" in m.raw)]


# --- 6. commands reach the ticket they name -----------------------------------------------------------------------

def test_a_reply_address_and_a_subject_tag_naming_two_tickets_change_neither(team: Desk) -> None:
    team.deliver(new_mail(f"Jane <{JANE}>", "Modem", "My modem is down.", 1))
    first = notice(team.new_mail(), ALI)
    team.deliver(new_mail(f"Bora <{BORA}>", "Modem too", "My modem is down too.", 2))
    team.new_mail()
    before = (team.ticket(1), team.ticket(2))
    wrong = reply_to(first, ALI, "Raising this one.").replace(b"[ACME #1]", b"[ACME #2]")
    wrong = wrong.replace(b"Subject: Re: ", b"Subject: Re: ", 1)
    subject_line = next(line for line in wrong.split(b"\r\n") if line.startswith(b"Subject:"))
    wrong = wrong.replace(subject_line, subject_line + b" [priority=urgent]")
    team.deliver(wrong)
    mails = team.new_mail()
    assert kinds(mails) == [(ALI, "command_result")]
    text = " ".join(body_of(mails[0]).split())
    assert "went to the reply address of [ACME #1] but its subject names [ACME #2]" in text
    assert "nothing was applied to either" in text
    for number, old in zip((1, 2), before, strict=True):
        now = team.ticket(number)
        assert (now["priority"], len(now["messages"])) == (old["priority"], len(old["messages"]))


def test_a_waiting_assigned_notice_is_dropped_when_the_ticket_is_finished_first(team: Desk) -> None:
    """Reassigned, then resolved before the quiet period ends: the customer reads "resolved", never a late
    "assigned to" after it."""
    team.deliver(new_mail(f"Jane <{JANE}>", "Modem", "My modem is down.", 1))
    notification = notice(team.new_mail(), ALI)
    team.deliver(reply_to(notification, ALI, "Can, please.", subject_suffix="[note; assign=can]"))
    team.deliver(reply_to(notice(team.new_mail(), CAN), CAN, "Fixed the line.", subject_suffix="[resolve]"))
    assert kinds(team.new_mail()) == [(JANE, "resolved")]
    with db.session_scope(team.site.engine) as session:
        rows = list(session.exec(select(Outbox).where(Outbox.kind == "assigned").order_by(Outbox.id)))
        assert [(r.status, r.announces) for r in rows] == [("sent", ALI), ("superseded", CAN)]
        assert rows[1].last_error == "the ticket was resolved first"
