"""Collaboration by mail (Build 7) and help with typos (Build 9): [cc], @mentions in notes, canned replies, the
`list` mail and the morning digest, unblocking, and error replies that only ever suggest valid values. Real
SQLite and PostgreSQL, real aiosmtpd; mail enters as through `ticketd deliver`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from conftest import DATA, Desk, body_of, mail_to, reply_to
from ticketd.storage import db
from ticketd.storage.directory import upsert_agent
from ticketd.storage.models import Ticket

pytestmark = pytest.mark.integration

ALI, AYSE, CAN, JANE, BOSS = ("ali@acme.example", "ayse@acme.example", "can@acme.example", "jane@example.org",
                              "boss@example.org")
IST = ZoneInfo("Europe/Istanbul")


@pytest.fixture
def team(desk: Desk) -> Desk:
    with db.session_scope(desk.site.engine) as session:
        upsert_agent(session, CAN, "Can Öz", "agent", ["network"])
    return desk


def jane_ticket(desk: Desk) -> tuple[Any, Any]:
    """Jane's ticket: (her acknowledgment, Ali's notification)."""
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())
    mails = desk.new_mail()
    return mail_to(mails, JANE), mail_to(mails, ALI)


def kinds(mails: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.envelope_to[0], m.message["X-Ticketd-Kind"]) for m in mails)


def refusal(desk: Desk) -> str:
    [mail] = desk.new_mail()
    assert mail.message["X-Ticketd-Kind"] == "command_result"
    return " ".join(body_of(mail).split())


# --- [cc] ----------------------------------------------------------------------------------------------------------

def test_cc_adds_and_removes_people_on_the_customers_side(team: Desk) -> None:
    _, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "Copying your manager.", subject_suffix=f"[cc={BOSS}]"))
    relay = mail_to(team.new_mail(), JANE)
    assert BOSS in relay.envelope_to and BOSS in relay.message["Cc"]
    assert ("participant-added", BOSS) in [(e["what"], e["new"]) for e in team.ticket(1)["events"]]
    team.deliver(reply_to(notification, ALI, "Only you from now on.", subject_suffix=f"[cc=-{BOSS}]"))
    relay = mail_to(team.new_mail(), JANE)
    assert relay.envelope_to == [JANE] and relay.message["Cc"] is None


@pytest.mark.parametrize(("value", "error"), [
    ("Boss <boss@example.org>", "'Boss <boss@example.org>' is not one e-mail address"),
    ("boss@example", "'boss@example' is not one e-mail address"),
    (CAN, f"{CAN} is an agent; agents read tickets through their notifications"),
    ("support+3.abcdefabcdef@acme.example", "support+3.abcdefabcdef@acme.example is the helpdesk's own address"),
    (f"-{BOSS}", f"{BOSS} is not on ticket #1"),
])
def test_a_bad_cc_changes_nothing_and_says_why(team: Desk, value: str, error: str) -> None:
    _, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "Copying.", subject_suffix=f"[cc={value}; priority=high]"))
    assert error in refusal(team)
    ticket = team.ticket(1)
    assert ticket["priority"] == "normal" and not [e for e in ticket["events"] if e["what"].startswith("participant")]


def test_cc_stops_at_max_participants_and_adds_none(team: Desk) -> None:
    team.site.sections.setdefault("limits", {})["max_participants"] = 2
    _, notification = jane_ticket(team)
    three = "a@example.org, b@example.org, c@example.org"
    team.deliver(reply_to(notification, ALI, "Copying.", subject_suffix=f"[cc={three}]"))
    assert "ticket #1 has 2 people on the customer's side already; at most 2 ([limits] max_participants)" \
        in refusal(team)
    assert not [e for e in team.ticket(1)["events"] if e["what"].startswith("participant")]  # all or nothing


# --- @mentions ----------------------------------------------------------------------------------------------------

def test_a_mention_in_a_note_sends_the_note_to_that_colleague(team: Desk) -> None:
    _, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "@can could you check her line from the exchange? @ali.",
                          subject_suffix="[note]"))
    mails = team.new_mail()
    assert kinds(mails) == [(CAN, "agent_mention")]  # not the customer; not Ali himself
    mention = mails[0]
    assert mention.message["Subject"] == "[ACME #1] Ali Veli mentioned you: Question about my invoice"
    assert "@can could you check her line from the exchange?" in body_of(mention)
    # Can answers inside: a [note] on the mention keeps it from the customer
    team.deliver(reply_to(mention, CAN, "Line is fine, @Ali Veli.", subject_suffix="[note]"))
    assert kinds(team.new_mail()) == [(ALI, "agent_mention")]


def test_an_unknown_mention_is_refused_like_a_bad_command(team: Desk) -> None:
    _, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "@cann please look.", subject_suffix="[note]"))
    assert "@cann: no active agent called 'cann'; did you mean @can?" in refusal(team)
    assert [m["kind"] for m in team.ticket(1)["messages"]] == ["customer"]  # the note was not kept either


# --- canned replies -----------------------------------------------------------------------------------------------

@pytest.fixture
def replies(team: Desk, tmp_path: Any) -> Desk:
    folder = tmp_path / "templates"
    (folder / "replies" / "tr").mkdir(parents=True)
    (folder / "replies" / "restart.txt.j2").write_text(
        "Please restart the modem, {{ customer.name or 'dear customer' }}; {{ agent.name }} checks {{ tag }} "
        "again in an hour.\n", encoding="utf-8")
    (folder / "replies" / "tr" / "restart.txt.j2").write_text("Lütfen modemi yeniden başlatın.\n", encoding="utf-8")
    (folder / "replies" / "invoice-copy.txt.j2").write_text("A copy of your invoice follows.\n", encoding="utf-8")
    team.site.sections["helpdesk"]["templates_dir"] = str(folder)
    return team


def test_a_canned_reply_follows_the_agents_own_words(replies: Desk) -> None:
    _, notification = jane_ticket(replies)
    replies.deliver(reply_to(notification, ALI, "Hello Jane,", subject_suffix="[reply=restart]"))
    relay = mail_to(replies.new_mail(), JANE)
    text = body_of(relay)
    assert "Hello Jane,\n\nPlease restart the modem, Jane Doe; Ali Veli checks [ACME #1] again in an hour." in text
    assert replies.ticket(1)["messages"][-1]["text"].endswith("again in an hour.")


def test_canned_replies_are_in_the_help_and_a_typo_is_helped(replies: Desk) -> None:
    _, notification = jane_ticket(replies)
    replies.deliver(reply_to(notification, ALI, "", subject_suffix="[reply=restrat]"))
    assert "no canned reply 'restrat'; did you mean restart? (replies: invoice-copy, restart)" in refusal(replies)
    replies.deliver((f"From: {ALI}\r\nTo: support@acme.example\r\nSubject: help\r\nMessage-ID: <h@x>\r\n\r\n"
                     "\r\n").encode())
    help_text = body_of(mail_to(replies.new_mail(), ALI))
    assert "Canned replies ([reply=NAME]): invoice-copy, restart" in help_text
    assert "Groups:     network" in help_text and "Agents:     ali@acme.example" in help_text


# --- list and the digest ------------------------------------------------------------------------------------------

def test_list_returns_my_tickets_overdue_first_and_the_unassigned_ones_of_my_groups(team: Desk) -> None:
    from ticketd.daemon.outgoing.notify import signed_address

    for n, subject in enumerate(("Modem A", "Modem B", "Modem C"), start=1):
        team.deliver((f"From: c{n}@example.org\r\nTo: support@acme.example\r\nSubject: {subject}\r\n"
                      f"Message-ID: <l{n}@x>\r\n\r\nHelp.\r\n").encode())
    team.new_mail()
    with db.session_scope(team.site.engine) as session:
        tickets = {t.number: t for t in session.exec(select(Ticket))}
        ali = team.site.config()  # noqa: F841
        from ticketd.storage.models import Agent

        ali_id = session.exec(select(Agent.id).where(Agent.email == ALI)).one()
        tickets[1].assignee_id = tickets[2].assignee_id = ali_id
        tickets[2].first_response_due = datetime(2026, 1, 1, 9, tzinfo=IST)  # long overdue
        tickets[3].group = "network"
    assert signed_address  # the list goes to the agent's own address, which nobody else can read
    team.deliver((f"From: Ali Veli <{ALI}>\r\nTo: support@acme.example\r\nSubject: list\r\nMessage-ID: <ls@x>"
                  "\r\n\r\n\r\n").encode())
    [listing] = team.new_mail()
    assert listing.envelope_to == [ALI] and listing.message["X-Ticketd-Kind"] == "agent_list"
    text = body_of(listing)
    assert listing.message["Subject"] == "Your tickets: 2 open, 1 overdue"
    mine = text.split("Unassigned in your groups")[0]
    assert mine.index("OVERDUE [ACME #2] Modem B") < mine.index("[ACME #1] Modem A")
    assert "Unassigned in your groups (network):\n  [ACME #3] Modem C" in text


def test_the_digest_goes_to_every_agent_at_work_once_per_morning(team: Desk) -> None:
    from ticketd.daemon.stages.digest import send_digests

    team.site.cli("agents", "away", CAN)
    config = team.site.config()
    morning = datetime(2026, 12, 10, 8, 30, tzinfo=IST)
    assert send_digests(team.site.engine, config, morning) == 2  # Ali and Ayşe; Can is away
    assert send_digests(team.site.engine, config, morning) == 0  # another instance, the same minute
    from ticketd.daemon.outgoing import outbox

    outbox.send_due(team.site.engine, config)
    mails = team.new_mail()
    assert kinds(mails) == [(ALI, "agent_list"), (AYSE, "agent_list")]
    assert mails[0].message["Subject"].startswith("Your tickets this morning")


def test_the_digest_schedule_is_checked_at_start(team: Desk) -> None:
    team.site.sections["digest"] = {"schedule": "30 8 * *"}
    proc = team.site.cli("check")
    assert proc.returncode == 2
    assert b"digest.schedule: not a cron schedule" in proc.stderr


# --- unblocking ---------------------------------------------------------------------------------------------------

def test_reopening_a_spam_ticket_unblocks_its_sender(team: Desk) -> None:
    ack, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "", subject_suffix="[spam]"))
    team.new_mail()
    assert team.deliver(reply_to(ack, JANE, "Hello?")).status == "dropped"
    team.deliver(reply_to(notification, ALI, "Sorry, that was a mistake.", subject_suffix="[reopen]"))
    assert kinds(team.new_mail()) == [(JANE, "agent-reply")]  # Ali's own words say it; no "reopened" besides
    assert ("sender_unblocked", None) in [(e["what"], e["new"]) for e in team.ticket(1)["events"]]
    assert team.deliver(reply_to(ack, JANE, "Thanks, my question stands.")).status == "done"


def test_unblock_by_command_and_from_the_cli(team: Desk) -> None:
    _, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "", subject_suffix="[spam]"))
    team.deliver(reply_to(notification, ALI, "", subject_suffix="[unblock]"))
    team.new_mail()
    assert b'"blocked": false' in team.site.cli("customers", "show", JANE, "--json").stdout
    team.deliver(reply_to(notification, ALI, "", subject_suffix="[unblock]"))
    assert f"{JANE} is not blocked" in refusal(team)
    team.deliver(reply_to(notification, ALI, "", subject_suffix="[reopen; spam]"))
    team.new_mail()
    proc = team.site.cli("customers", "unblock", JANE)
    assert (proc.returncode, proc.stdout) == (0, f"{JANE} is no longer blocked\n".encode())
    assert team.site.cli("customers", "unblock", "nobody@example.org").returncode == 2


# --- 9. typos are helped, not made worse --------------------------------------------------------------------------

@pytest.mark.parametrize(("suffix", "message"), [
    ("[priority=hgh]", "unknown priority 'hgh'; did you mean high? (priorities: low, normal, high, urgent)"),
    ("[status=resolvd]", "unknown state 'resolvd'; did you mean resolved? (states: new, open, pending, resolved, "
                         "closed, rejected)"),
    ("[type=complain]", "unknown type 'complain'; did you mean complaint? (types: request, complaint, information)"),
    ("[source=phon]", "unknown source 'phon'; did you mean phone? (sources: email, phone, web, letter, fax)"),
    ("[assign=netwrk]", "no active agent or group called 'netwrk'; did you mean network?"),
    ("[priorty=high]", "unknown command 'priorty'; did you mean 'priority'?"),
    ("[type]", "'type' needs a value, e.g. [type=complaint]"),
    ("[category]", "'category' needs a category as its value (the help reply lists them)"),
])
def test_typos_get_valid_suggestions_only(team: Desk, suffix: str, message: str) -> None:
    _, notification = jane_ticket(team)
    team.deliver(reply_to(notification, ALI, "", subject_suffix=suffix))
    text = refusal(team)
    assert message in text
    assert "prioritys" not in text and "categorys" not in text


def test_list_and_help_answer_unauthenticated_mail_so_the_alert_cap_counts_them(team: Desk) -> None:
    """Anyone can send "list" in an agent's name (the answer goes to the agent, not to them); a flood of forged
    requests must not become a flood of mail, so these answers count towards the agent's alert cap."""
    team.site.sections["limits"] = {"alerts_per_recipient_hour": 2}
    for n in range(3):
        team.deliver((f"From: Ali Veli <{ALI}>\r\nTo: support@acme.example\r\nSubject: list\r\n"
                      f"Message-ID: <flood-{n}@x>\r\n\r\n\r\n").encode())
    mails = team.new_mail()
    assert [m.message["X-Ticketd-Kind"] for m in mails if m.envelope_to == [ALI]] == ["agent_list", "agent_list"]
    assert any(m.message["X-Ticketd-Kind"] == "admin-alert" and AYSE in m.envelope_to for m in mails)
