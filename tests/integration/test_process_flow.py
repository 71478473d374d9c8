"""The organisation's own stages and child records, through the real pipeline (mail in as `ticketd deliver`, out
through the SMTP server) on SQLite and PostgreSQL: a complaint carried through the Pishro routine of
deploy/process-pishro.toml, refused moves, the stage's deadline, [split], [parent], [link], [resolve; force],
`tickets show` on both sides and the workbook's Stages sheet."""

from __future__ import annotations

import email
import email.policy
import json
import tomllib
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from conftest import Desk, body_of, client_mail, mail_to, reply_to

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).parents[2] / "deploy"
ALI, AYSE = "ali@acme.example", "ayse@acme.example"
KALITE, BAKIM, YONETIM = "kalite@acme.example", "bakim@acme.example", "yonetim@acme.example"
CUSTOMER = "cigdem.yilmaz@musteri.com.tr"


@pytest.fixture
def pishro(desk: Desk) -> Desk:
    from ticketd.storage import db
    from ticketd.storage.directory import upsert_agent

    desk.site.sections.update(tomllib.loads((DEPLOY / "process-pishro.toml").read_text()))
    desk.site.sections["rules"] = [{"name": "complaints", "match": {"subject": "(?i)şikayet"},
                                    "set": {"type": "complaint"}}]
    with db.session_scope(desk.site.engine) as session:
        upsert_agent(session, KALITE, "Kalite Uzmanı", "agent", ["quality"])
        upsert_agent(session, BAKIM, "Bakım Birimi", "agent", ["caregivers"])
        upsert_agent(session, YONETIM, "Yönetim", "agent", ["management"])
    return desk


def complain(desk: Desk, subject: str = "Şikayet: bakım ekibi gelmedi") -> tuple[dict[str, Any], Any]:
    outcome = desk.deliver(client_mail(CUSTOMER, subject, "Bakım ekibi randevuya gelmedi."))
    assert outcome.status == "done", outcome
    mails = desk.new_mail()
    return desk.ticket(outcome.ticket_number), mail_to(mails, KALITE)


def command(desk: Desk, notification: Any, suffix: str, body: str = "", sender: str = KALITE) -> list[Any]:
    outcome = desk.deliver(reply_to(notification, sender, body, subject_suffix=suffix))
    assert outcome.status == "done", outcome
    return desk.new_mail()


def whats(ticket: dict[str, Any], *names: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["what"], e["old"], e["new"]) for e in ticket["events"] if e["what"] in names]


def test_a_complaint_walks_the_pishro_routine(pishro: Desk) -> None:
    ticket, notification = complain(pishro)
    assert (ticket["type"], ticket["stage"], ticket["group"], ticket["assignee"], ticket["state"]) == (
        "complaint", "review", "quality", KALITE, "open")
    assert ticket["stage_due"] is not None
    number = ticket["number"]

    mails = command(pishro, notification, "[stage=decision]")
    ticket = pishro.ticket(number)
    assert (ticket["stage"], ticket["group"], ticket["state"]) == ("decision", "management", "open")
    assert YONETIM in {m.envelope_to[0] for m in mails}  # the manual group's agents are told

    mails = command(pishro, notification, "[stage=caregivers]")
    ticket = pishro.ticket(number)
    assert (ticket["stage"], ticket["group"], ticket["assignee"]) == ("caregivers", "caregivers", BAKIM)
    assert "Handed to you" in mail_to(mails, BAKIM).message["Subject"]  # the customer hears of it 5 min later

    mails = command(pishro, notification, "[stage=completion]",
                    "Root-Cause: the visit was not in the plan\nAction-Plan: plan every visit\n\n"
                    "The team came today; we are sorry for the wait.")
    ticket = pishro.ticket(number)
    assert (ticket["stage"], ticket["state"], ticket["group"]) == ("completion", "resolved", "quality")
    resolved = mail_to(mails, CUSTOMER)
    assert resolved.message["X-Ticketd-Kind"] == "resolved"  # the state's mail, through change_state
    assert "The team came today" in body_of(resolved)
    assert whats(ticket, "stage") == [("stage", None, "review"), ("stage", "review", "decision"),
                                      ("stage", "decision", "caregivers"), ("stage", "caregivers", "completion")]
    assert [e["actor"] for e in ticket["events"] if e["what"] == "stage"] == ["ticketd", KALITE, KALITE, KALITE]


def test_a_move_not_drawn_is_refused_with_the_moves_allowed(pishro: Desk) -> None:
    ticket, notification = complain(pishro)
    mails = command(pishro, notification, "[stage=completion]")
    reply = body_of(mail_to(mails, KALITE))
    assert "a complaint cannot move from review to completion (from review: decision, unfounded)" in reply
    mails = command(pishro, notification, "[stage=decison]")
    assert "did you mean decision?" in body_of(mail_to(mails, KALITE))
    after = pishro.ticket(ticket["number"])
    assert (after["stage"], after["state"]) == ("review", "open")


def test_unfounded_rejects_with_the_rejected_mail(pishro: Desk) -> None:
    ticket, notification = complain(pishro)
    mails = command(pishro, notification, "[stage=unfounded]", "The appointment was for next week.")
    after = pishro.ticket(ticket["number"])
    assert (after["stage"], after["state"]) == ("unfounded", "rejected")
    assert mail_to(mails, CUSTOMER).message["X-Ticketd-Kind"] == "rejected"


def test_a_stage_past_its_target_escalates_once(pishro: Desk) -> None:
    from ticketd.daemon.outgoing import outbox
    from ticketd.daemon.stages.sweep import sweep

    ticket, _ = complain(pishro)
    config = pishro.site.config()
    due = datetime.fromisoformat(ticket["stage_due"])
    assert sweep(pishro.site.engine, config, now=due - timedelta(minutes=1)).stage == 0
    assert sweep(pishro.site.engine, config, now=due + timedelta(minutes=1)).stage == 1
    assert sweep(pishro.site.engine, config, now=due + timedelta(hours=2)).stage == 0  # once per stage entered
    outbox.send_due(pishro.site.engine, config)
    escalations = [m for m in pishro.new_mail() if m.message["X-Ticketd-Kind"] == "escalation"
                   and "(stage)" in m.message["Subject"]]
    assert [m.envelope_to for m in escalations] == [[AYSE]]
    assert "still in its stage review" in body_of(escalations[0])
    assert [new for _, _, new in whats(pishro.ticket(ticket["number"]), "sla:stage-overdue")] == [
        "1 min late in review"]


def agent_mail_with_file(notification: Any, sender: str, suffix: str, body: str) -> bytes:
    msg = email.message_from_bytes(reply_to(notification, sender, body, subject_suffix=suffix, quote=False),
                                   policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    msg.add_attachment(b"%PDF-1.4 service form", "application", "pdf", filename="servis-formu.pdf")
    return msg.as_bytes()


def test_split_opens_a_child_and_the_parent_waits_for_it(pishro: Desk) -> None:
    parent, notification = complain(pishro, "Şikayet: çağrı kaydı")
    raw = agent_mail_with_file(notification, KALITE, "[split]", "Service application: replace the bed motor.")
    assert pishro.deliver(raw).status == "done"
    mails = pishro.new_mail()
    child_number = parent["number"] + 1
    child = pishro.ticket(child_number)
    assert (child["requester"], child["parent"], child["children"]) == (CUSTOMER, parent["number"], [])
    assert child["messages"][0]["text"] == "Service application: replace the bed motor."
    assert [a["filename"] for a in child["messages"][0]["attachments"]] == ["servis-formu.pdf"]
    assert (child["type"], child["stage"]) == ("complaint", "review")  # triaged like a new ticket: the rule's type
    assert any(m.message["X-Ticketd-Kind"] == "received" for m in mails if CUSTOMER in m.envelope_to)
    parent = pishro.ticket(parent["number"])
    assert parent["children"] == [child_number] and parent["parent"] is None
    assert whats(parent, "child-opened") == [("child-opened", None, f"#{child_number}")]
    assert not any(m["kind"] == "agent-reply" for m in parent["messages"])  # the words went to the child

    mails = command(pishro, notification, "[resolve]", "Root-Cause: x\nAction-Plan: y")
    assert f"has open children (#{child_number})" in body_of(mail_to(mails, KALITE))
    assert pishro.ticket(parent["number"])["state"] == "open"
    command(pishro, notification, "[resolve; force]", "Root-Cause: x\nAction-Plan: y")
    parent = pishro.ticket(parent["number"])
    assert parent["state"] == "resolved"
    assert whats(parent, "forced") == [("forced", None, f"resolved with open children #{child_number}")]


def test_parent_and_link_show_on_both_sides(pishro: Desk) -> None:
    first, notification = complain(pishro, "Şikayet: bir")
    second, second_notification = complain(pishro, "Şikayet: iki")
    third, _ = complain(pishro, "Şikayet: üç")
    command(pishro, second_notification, f"[parent=#{first['number']}; link=#{third['number']}]")
    mails = command(pishro, notification, f"[parent=#{second['number']}]")
    assert "cannot be its parent" in body_of(mail_to(mails, KALITE))
    one, two, three = (pishro.ticket(t["number"]) for t in (first, second, third))
    assert (one["children"], two["parent"], two["links"], three["links"]) == (
        [two["number"]], one["number"], [three["number"]], [two["number"]])
    proc = pishro.site.cli("tickets", "show", str(one["number"]))
    assert f"children   #{two['number']}" in proc.stdout.decode()
    shown = json.loads(pishro.site.cli("tickets", "show", str(two["number"]), "--json").stdout)
    assert (shown["parent"], shown["children"], shown["links"]) == (one["number"], [], [three["number"]])


def test_the_workbook_counts_tickets_and_time_per_stage(pishro: Desk, tmp_path: Path) -> None:
    from sqlmodel import Session

    from ticketd.daemon.reports.data import Scope, collect
    from ticketd.daemon.reports.xlsx import write_workbook

    _, notification = complain(pishro)
    complain(pishro, "Şikayet: iki")
    command(pishro, notification, "[stage=decision]")
    config = pishro.site.config()
    with Session(pishro.site.engine) as session:
        data = collect(session, config, Scope())
    rows = {(s.type, s.stage): (s.now_in, s.entered) for s in data.stages}
    assert rows == {("complaint", "review"): (1, 2), ("complaint", "decision"): (1, 1)}
    path = write_workbook(data, tmp_path / "report.xlsx")
    sheet = load_workbook(path)["Stages"]
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][:4] == ["Type", "Stage", "In it now", "Entered"]
    assert [row[1:4] for row in values[1:]] == [["review", 1, 2], ["decision", 1, 1]]


def test_without_a_process_nothing_changes(desk: Desk) -> None:
    outcome = desk.deliver(client_mail(CUSTOMER, "Şikayet", "Modem."))
    ticket = desk.ticket(outcome.ticket_number)
    assert (ticket["stage"], ticket["parent"], ticket["children"], ticket["links"]) == (None, None, [], [])
    assert "stage" not in [e["what"] for e in ticket["events"]]
    mails = desk.new_mail()
    notification = next(m for m in mails if ALI in m.envelope_to or AYSE in m.envelope_to)
    sender = ALI if ALI in notification.envelope_to else AYSE
    desk.deliver(reply_to(notification, sender, "", subject_suffix="[stage=review]"))
    assert "has no stages ([process.request] is not configured)" in body_of(mail_to(desk.new_mail(), sender))


def test_help_lists_the_stages(pishro: Desk) -> None:
    from conftest import client_mail as new_mail

    pishro.deliver(new_mail(KALITE, "help", ""))
    text = body_of(mail_to(pishro.new_mail(), KALITE))
    assert "Stages of a complaint ([stage=NAME]): review, decision, caregivers, completion, unfounded" in text
    assert "[stage=decision]" in text and "[resolve; force]" in text
