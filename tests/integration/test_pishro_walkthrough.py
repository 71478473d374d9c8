"""A complaint carried through the Pishro routine of deploy/process-pishro.toml, every part of the complaint module at
work on one ticket, through the real pipeline (mail in as `ticketd deliver`, out through the SMTP server) on
SQLite and PostgreSQL:

review → decision → the caregivers' unit → completion, two action items (one done in time, one overdue and reminded
once), costs in two currencies, two hours of time from two agents, a child service ticket opened with [split], and
the evidence of each step. `tickets show --json` and the workbook must agree, and both must agree with the totals
this test adds up itself from the database's rows.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import tomllib
from datetime import datetime, time, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fakeclock import real_now
from openpyxl import load_workbook

from conftest import Desk, body_of, client_mail, decode, mail_to, reply_to

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).parents[2] / "deploy"
IST = ZoneInfo("Europe/Istanbul")
KALITE, BAKIM, YONETIM = "kalite@acme.example", "bakim@acme.example", "yonetim@acme.example"
CUSTOMER = "cigdem.yilmaz@musteri.com.tr"


def next_monday() -> datetime:
    """A Monday, 10:00 in Istanbul, one to two weeks ahead: business days whatever day the suite runs."""
    today = real_now().astimezone(IST).date()
    return datetime.combine(today + timedelta(days=14 - today.weekday()), time(10), tzinfo=IST)


MONDAY = next_monday()


@pytest.fixture
def pishro(desk: Desk) -> Desk:
    from ticketd.storage import db
    from ticketd.storage.directory import upsert_agent

    desk.site.sections.update(tomllib.loads((DEPLOY / "process-pishro.toml").read_text()))
    desk.site.sections["rules"] = [{"name": "complaints", "match": {"subject": "(?i)şikayet"},
                                    "set": {"type": "complaint"}}]
    desk.site.sections["closing"] = {"require": {"complaint": ["root_cause", "actions_done"]}}
    with db.session_scope(desk.site.engine) as session:
        upsert_agent(session, KALITE, "Kalite Uzmanı", "agent", ["quality"])
        upsert_agent(session, BAKIM, "Bakım Birimi", "agent", ["caregivers"])
        upsert_agent(session, YONETIM, "Yönetim", "agent", ["management"])
    return desk


def agent_mail(notification: Any, sender: str, suffix: str, body: str, file: tuple[str, bytes] | None = None
               ) -> bytes:
    """An agent's answer from their mail client, with the step's evidence attached."""
    raw = reply_to(notification, sender, body, subject_suffix=suffix, quote=False)
    if file is None:
        return raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    name, data = file
    msg.add_attachment(data, "application", "pdf", filename=name)
    return msg.as_bytes()


def deliver(desk: Desk, raw: bytes, at: datetime) -> list[Any]:
    outcome = desk.deliver(raw, clock=lambda: at)
    assert outcome.status == "done", outcome
    return desk.new_mail()


def signed_for(mails: list[Any], agent: str, number: int) -> Any:
    """The latest notification to ``agent`` about ticket ``number`` (not an action's): its Reply-To is signed for
    that agent, so only an answer to it authenticates the agent's commands."""
    return [m for m in mails if agent in m.envelope_to and f"#{number}]" in str(m.message["Subject"])
            and not str(m.message["X-Ticketd-Kind"]).startswith("agent_action")][-1]


def kinds(mails: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.envelope_to[0], str(m.message["X-Ticketd-Kind"])) for m in mails)


def refusal(mails: list[Any], to: str) -> str:
    return " ".join(body_of(mail_to([m for m in mails if m.message["X-Ticketd-Kind"] == "command_result"],
                                    to)).split())


def sweep_at(desk: Desk, at: datetime) -> list[Any]:
    from ticketd.daemon.outgoing import outbox
    from ticketd.daemon.stages.sweep import sweep

    config = desk.site.config()
    sweep(desk.site.engine, config, now=at)
    outbox.send_due(desk.site.engine, config)
    return desk.new_mail()


def test_a_complaint_through_the_pishro_routine_with_actions_costs_time_a_child_and_evidence(
        pishro: Desk, tmp_path: Path) -> None:
    files = {"decision": ("inceleme-raporu.pdf", b"%PDF review"), "caregivers": ("karar.pdf", b"%PDF decision"),
             "split": ("servis-formu.pdf", b"%PDF service form"), "work": ("teslim-tutanagi.pdf", b"%PDF handover"),
             "completion": ("kapanis-formu.pdf", b"%PDF closing")}

    # Monday 10:00: the complaint comes in; the routine's first stage, review, is the quality unit's.
    outcome = pishro.deliver(client_mail(CUSTOMER, "Şikayet: bakım ekibi randevuya gelmedi",
                                         "Bakım ekibi iki kez randevuya gelmedi, yatağın motoru çalışmıyor."),
                             clock=lambda: MONDAY)
    number = outcome.ticket_number
    mails = pishro.new_mail()
    notification = mail_to(mails, KALITE)
    ticket = pishro.ticket(number)
    assert (ticket["type"], ticket["stage"], ticket["assignee"]) == ("complaint", "review", KALITE)

    # 11:00 review → decision: the quality expert's time and the on-site inspection's cost, the review report.
    mails = deliver(pishro, agent_mail(notification, KALITE, "[stage=decision]",
                               "İnceleme tamam, karar için yönetime.\nTime: 45m\nCost: 1.250,50 TRY; yerinde inceleme",
                               files["decision"]), MONDAY + timedelta(hours=1))
    # 12:00 decision → the caregivers' unit, with two actions: the motor (the unit's) and the maintenance plan,
    # which the customer reads about when the complaint is resolved.
    mails = deliver(pishro, agent_mail(signed_for(mails, YONETIM, number), YONETIM, "[stage=caregivers]",
                                       "Action: yatak motorunu değiştir; owner=bakim; due=1d\n"
                                       "Action: bakım planını güncelle; owner=kalite; due=2d; customer",
                                       files["caregivers"]), MONDAY + timedelta(hours=2))
    assert {(to, kind) for to, kind in kinds(mails)} >= {(BAKIM, "agent_action"), (KALITE, "agent_action")}
    ticket = pishro.ticket(number)
    assert (ticket["stage"], ticket["assignee"]) == ("caregivers", BAKIM)
    first, second = (a["id"] for a in ticket["actions"])
    unit = signed_for(mails, BAKIM, number)

    # Tuesday 10:00: the unit opens the service application as a child ticket of the complaint.
    tuesday = MONDAY + timedelta(days=1)
    mails = deliver(pishro, agent_mail(unit, BAKIM, "[split]", "Servis başvurusu: yatak motoru değişimi.",
                                       files["split"]), tuesday)
    child_number = pishro.ticket(number)["children"][0]
    child = pishro.ticket(child_number)
    assert (child["requester"], child["parent"], child["type"], child["stage"]) == (CUSTOMER, number, "complaint",
                                                                                   "review"), child
    child_notification = next(m for m in mails if f"#{child_number}]" in str(m.message["Subject"])
                              and m.message["X-Ticketd-Kind"] == "agent_new")
    child_agent = child_notification.envelope_to[0]
    # 11:00 the motor is replaced: the unit's time, the spare part in euros, the first action done in time.
    deliver(pishro, agent_mail(unit, BAKIM, f"[action-done={first}]",
                               f"Motor değişti.\nTime: 1h15m\nCost: 300 EUR; yedek motor\n"
                               f"Action-Result: {first} motor değiştirildi, yatak çalışıyor", files["work"]),
            tuesday + timedelta(hours=1))

    # The maintenance plan was due Wednesday 12:00 and is still open a business day later: one reminder, the
    # overdue one (the sweep ran late, past both times), and never another.
    late = MONDAY + timedelta(days=3, hours=3)  # Thursday 13:00
    reminders = [m for m in sweep_at(pishro, late) if m.message["X-Ticketd-Kind"] == "agent_action_reminder"]
    assert [(m.envelope_to, f"Action #{second} is overdue" in m.message["Subject"]) for m in reminders] == [
        ([KALITE], True)]
    assert not [m for m in sweep_at(pishro, late + timedelta(days=1))
                if m.message["X-Ticketd-Kind"] == "agent_action_reminder"]

    # Thursday 14:00: completion is refused while the child is open (nothing of the mail is applied) ...
    closing = (f"Root-Cause: bakım planında motor kontrolü yoktu\n"
               f"Action-Result: {second} bakım planına motor kontrolü eklendi")
    mails = deliver(pishro, agent_mail(notification, KALITE, "[stage=completion]", closing, files["completion"]),
                    late + timedelta(hours=1))
    assert f"has open children (#{child_number})" in refusal(mails, KALITE)
    assert pishro.ticket(number)["stage"] == "caregivers"
    # ... so the service application is finished first, then the complaint completes and the customer is told.
    deliver(pishro, reply_to(child_notification, child_agent, "Root-Cause: motor arızası",
                             subject_suffix="[take; resolve]", quote=False), late + timedelta(hours=1, minutes=10))
    assert pishro.ticket(child_number)["state"] == "resolved"
    mails = deliver(pishro, agent_mail(notification, KALITE, "[stage=completion]", closing, files["completion"]),
                    late + timedelta(hours=1, minutes=20))
    resolved = [m for m in mails if m.message["X-Ticketd-Kind"] == "resolved" and CUSTOMER in m.envelope_to]
    assert len(resolved) == 1
    what_we_did = body_of(resolved[0])
    assert "bakım planına motor kontrolü eklendi" in what_we_did  # the customer's action and its result
    assert "yatak motorunu değiştir" not in what_we_did  # the unit's own action is not the customer's business

    ticket = pishro.ticket(number)
    assert (ticket["state"], ticket["stage"]) == ("resolved", "completion")
    stages = [(e["old"], e["new"]) for e in ticket["events"] if e["what"] == "stage"]
    assert stages == [(None, "review"), ("review", "decision"), ("decision", "caregivers"),
                      ("caregivers", "completion")]
    assert [(a["id"], a["status"]) for a in ticket["actions"]] == [(first, "done"), (second, "done")]
    assert [(e["old"], e["new"]) for e in ticket["events"] if e["what"] == "action-reminded"] == [
        (f"#{second}", "overdue")]  # reminded once
    # The evidence of every step hangs on that step's events.
    evidence = {e["new"]: [f["filename"] for f in e["evidence"]] for e in ticket["events"] if e["what"] == "stage"}
    assert evidence == {"review": [], "decision": ["inceleme-raporu.pdf"], "caregivers": ["karar.pdf"],
                        "completion": ["kapanis-formu.pdf"]}
    assert {f["filename"] for f in ticket["evidence"]} == {name for name, _ in files.values()}  # [split]'s too
    assert [f["filename"] for f in pishro.ticket(child_number)["messages"][0]["attachments"]] == ["servis-formu.pdf"]

    # The totals, added up here from the rows themselves.
    with pishro.site.engine.connect() as conn:
        cost_rows = conn.execute(sa.text("select c.currency, c.amount from cost_entry c join ticket t "
                                         "on t.id = c.ticket_id where t.number = :n"), {"n": number}).all()
        minutes = dict(conn.execute(sa.text(
            "select a.email, sum(e.minutes) from time_entry e join agent a on a.id = e.agent_id "
            "join ticket t on t.id = e.ticket_id where t.number = :n group by a.email"), {"n": number}).all())
        shas = {row[0] for row in conn.execute(sa.text(
            "select a.sha256 from evidence v join attachment a on a.id = v.attachment_id "
            "join ticket t on t.id = v.ticket_id where t.number = :n"), {"n": number})}
    totals: dict[str, Decimal] = {}
    for currency, amount in cost_rows:
        totals[currency] = totals.get(currency, Decimal(0)) + Decimal(amount)
    assert totals == {"TRY": Decimal("1250.50"), "EUR": Decimal("300")}
    assert minutes == {KALITE: 45, BAKIM: 75} and sum(minutes.values()) == 120

    # tickets show --json, as a script reads it, amounts as decimals.
    shown = json.loads(decode(pishro.site.cli("tickets", "show", str(number), "--json"))[0], parse_float=Decimal)
    assert {c: Decimal(str(v)) for c, v in shown["cost_total"].items()} == totals
    assert shown["time_minutes"] == 120
    per_agent: dict[str, int] = {}
    for entry in shown["time"]:
        per_agent[entry["agent"]] = per_agent.get(entry["agent"], 0) + entry["minutes"]
    assert per_agent == minutes
    assert {f["sha256"] for f in shown["evidence"]} == shas == {
        hashlib.sha256(data).hexdigest() for _, data in files.values()}

    # The workbook of that week says the same.
    out = tmp_path / "week.xlsx"
    day = MONDAY.date()
    proc = pishro.site.cli("report", "--since", str(day), "--until", str(day + timedelta(days=6)), "--xlsx", str(out))
    assert proc.returncode == 0, decode(proc)
    book = load_workbook(out)
    costs = [row for row in book["Costs"].iter_rows(values_only=True) if any(v is not None for v in row)]
    header = next(row for row in costs if row[0] == "Category")
    category_total = costs[costs.index(header) + 1:]
    total_row = next(row for row in category_total if row[0] == "Total")
    sheet_totals = {str(c): Decimal(str(v)) for c, v in zip(header[1:], total_row[1:], strict=False) if c}
    assert sheet_totals == totals
    time_sheet = {row[0]: row[2] for row in book["Time"].iter_rows(values_only=True) if row[0] in (KALITE, BAKIM)}
    assert time_sheet == minutes
    evidence_sheet = [row for row in book["Evidence"].iter_rows(values_only=True) if any(row)][1:]
    assert {row[7] for row in evidence_sheet if row[0] == number} == shas
    stage_sheet = [row for row in book["Stages"].iter_rows(values_only=True) if any(row)][1:]
    entered = {row[1]: row[3] for row in stage_sheet if row[0] in ("complaint", "Complaint")}
    assert entered == {"review": 2, "decision": 1, "caregivers": 1, "completion": 1}, entered
    # (the child service ticket entered review too)
