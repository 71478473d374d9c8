"""Action items end to end: written in agents' mail through the real pipeline (SQLite and PostgreSQL, the SMTP
server), closed with their results, refused when they name the wrong action, holding a ticket back from being
resolved, reminded by the sweep when due and once more when overdue, added and closed from the CLI, and (must-show
3) an improvement action opened from one monthly report's figures and shown, done with its result, in the next.

Every instant is pinned: the agents' mail is processed at a Monday 10:00 in Istanbul a week or more ahead of the
real date (signed reply addresses stay valid), the sweep and the reports are given their ``now``, and the CLI
runs under libfaketime where the day matters. Nothing depends on when the test runs.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fakeclock import ahead, real_now, require_libfaketime

from conftest import DATA, TICKETD, Desk, Site, body_of, client_mail, decode, mail_to, reply_to

pytestmark = pytest.mark.integration

IST = ZoneInfo("Europe/Istanbul")
ALI, AYSE, JANE = "ali@acme.example", "ayse@acme.example", "jane@example.org"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def next_monday(hour: int = 10) -> datetime:
    """A Monday, 10:00 in Istanbul, one to two weeks ahead of today: a business day whatever today is."""
    today = real_now().astimezone(IST).date()
    return datetime.combine(today + timedelta(days=14 - today.weekday()), time(hour), tzinfo=IST)


AT = next_monday()


def open_ticket(desk: Desk, eml: str = "unknown-sender.eml") -> Any:
    """A customer's ticket and the notification Ali got for it."""
    desk.deliver((DATA / eml).read_bytes())
    return mail_to(desk.new_mail(), ALI)


def command(desk: Desk, notification: Any, suffix: str = "", body: str = "", sender: str = ALI,
            at: datetime = AT) -> list[Any]:
    desk.deliver(reply_to(notification, sender, body, subject_suffix=suffix), clock=lambda: at)
    return desk.new_mail()


def kinds(mails: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.envelope_to[0], str(m.message["X-Ticketd-Kind"])) for m in mails)


def refusal(mails: list[Any]) -> str:
    result = [m for m in mails if m.message["X-Ticketd-Kind"] == "command_result"]
    assert len(result) == 1, kinds(mails)
    return " ".join(body_of(result[0]).split())


def events(ticket: dict[str, Any], prefix: str = "action-") -> list[tuple[str, str | None, str | None]]:
    return [(e["what"], e["old"], e["new"]) for e in ticket["events"] if e["what"].startswith(prefix)]


# --- writing actions ------------------------------------------------------------------------------------------------

def test_actions_are_written_shown_and_their_owners_told(desk: Desk) -> None:
    notification = open_ticket(desk)
    later = (AT + timedelta(days=20)).date()
    mails = command(desk, notification, body=(
        "Action: call the customer back; owner=ayse; due=2d\n"
        f"Action: refund the double charge; due={later.isoformat()}; customer; optional\n"
        "We are on it."))
    ticket = desk.ticket(1)
    first, second = ticket["actions"]
    assert {k: first[k] for k in ("what", "owner", "due", "status", "result", "customer", "required", "overdue",
                                   "ticket", "created_by")} == {
        "what": "call the customer back", "owner": AYSE, "status": "open", "result": None, "customer": False,
        "required": True, "overdue": False, "ticket": 1, "created_by": ALI,
        "due": (AT + timedelta(days=2)).astimezone(UTC).isoformat()}  # Monday 10:00 + 2 business days
    assert (second["owner"], second["customer"], second["required"]) == (ALI, True, False)
    assert datetime.fromisoformat(second["due"]) == datetime.combine(later, time(23, 59), tzinfo=IST)
    assert [e[0] for e in events(ticket)] == ["action-added", "action-added"]
    assert events(ticket)[0][2].startswith(f"#{first['id']}: call the customer back; owner={AYSE}")
    # Ayşe is told of the action Ali gave her; Ali is not told of his own; the customer reads only the words
    assert kinds(mails) == [(AYSE, "agent_action"), (JANE, "agent-reply")]
    told = mail_to(mails, AYSE)
    assert f"Action #{first['id']} for you" in told.message["Subject"] and "[ACME #1]" in told.message["Subject"]
    assert f"Action-Result: {first['id']}" in body_of(told) and "call the customer back" in body_of(told)
    assert "Action:" not in body_of(mail_to(mails, JANE)) and "We are on it." in body_of(mail_to(mails, JANE))
    # the agents' notification of the customer's next mail lists the ticket's actions
    desk.deliver(reply_to(mail_to(mails, JANE), JANE, "Thank you, I will wait for the call."), clock=lambda: AT)
    update = body_of(mail_to(desk.new_mail(), ALI))
    assert f"#{first['id']} [open] call the customer back (owner Ayşe Demir, due" in update
    assert f"#{second['id']} [open] refund the double charge" in update and "for the customer, optional" in update


def test_tickets_show_lists_the_actions(desk: Desk) -> None:
    notification = open_ticket(desk)
    command(desk, notification, body="Action: call the customer back; owner=ayse; due=2d")
    proc = desk.site.cli("tickets", "show", "1")
    out, err = decode(proc)
    assert proc.returncode == 0, err
    assert "actions:" in out and "#1 open  due " in out and f"owner {AYSE}: call the customer back" in out
    import json

    shown = json.loads(desk.site.cli("tickets", "show", "1", "--json").stdout)
    assert [(a["id"], a["what"], a["owner"], a["status"], a["result"]) for a in shown["actions"]] == [
        (1, "call the customer back", AYSE, "open", None)]


@pytest.mark.parametrize(("body", "message"), [
    ("Action: call back; owner=nobody; due=2d", "no active agent called 'nobody' to own the action"),
    ("Action: call back; owner=ayse", "an action needs due="),
    ("Action: call back; due=tomorrow", "neither a date (YYYY-MM-DD) nor a business-time duration"),
    ("Action: call back; due=2d; ownr=ayse", "unknown action item 'ownr=ayse'; did you mean owner?"),
])
def test_a_bad_action_line_refuses_the_whole_mail(desk: Desk, body: str, message: str) -> None:
    notification = open_ticket(desk)
    mails = command(desk, notification, "[priority=high]", body + "\nAction: a good one; due=1d")
    assert message in refusal(mails)
    ticket = desk.ticket(1)
    assert ticket["actions"] == [] and ticket["priority"] == "normal"
    assert not any(m.envelope_to == [JANE] for m in mails)


# --- closing actions ------------------------------------------------------------------------------------------------

def test_actions_are_closed_with_their_results(desk: Desk) -> None:
    notification = open_ticket(desk)
    command(desk, notification, body="\n".join(f"Action: step {n}; due=3d" for n in (1, 2, 3, 4)))
    command(desk, notification, "[action-done=1; action-cancel=2]", "Action-Result: 3 the line is stable")
    command(desk, notification, "[action-done=4]", "Action-Result: 4 modem replaced, customer called")
    actions = {a["id"]: a for a in desk.ticket(1)["actions"]}
    assert [(actions[i]["status"], actions[i]["result"]) for i in (1, 2, 3, 4)] == [
        ("done", None), ("cancelled", None), ("done", "the line is stable"),
        ("done", "modem replaced, customer called")]
    assert all(a["closed_by"] == ALI and a["closed_at"] for a in actions.values())
    assert events(desk.ticket(1))[4:] == [
        ("action-done", "#1", None), ("action-cancelled", "#2", None), ("action-done", "#3", "the line is stable"),
        ("action-done", "#4", None), ("action-result", "#4", "modem replaced, customer called")]


def test_wrong_action_numbers_are_refused_and_nothing_is_applied(desk: Desk) -> None:
    first = open_ticket(desk)
    second = open_ticket(desk, "known-customer-rfc2047-subject.eml")
    command(desk, first, body="Action: mine; due=3d")  # #1 on ticket 1
    command(desk, second, body="Action: theirs; due=3d")  # #2 on ticket 2
    command(desk, first, "[action-done=1]")
    for suffix, body, message in [
        ("[priority=high; action-done=99]", "", "there is no action #99"),
        ("[priority=high; action-done=2]", "", "action #2 belongs to ticket #2, not this one"),
        ("[priority=high; action-cancel=1]", "", "action #1 is done already"),
        ("[priority=high]", "Action-Result: 1 again", "action #1 is done already"),
        ("[priority=high]", "Action-Result: 1", "needs the action's number and then its result"),
        ("[priority=high; action-done=one]", "", "'one' is not an action number"),
    ]:
        assert message in refusal(command(desk, first, suffix, body)), message
        assert desk.ticket(1)["priority"] == "normal"
    assert [(a["id"], a["status"]) for a in desk.ticket(2)["actions"]] == [(2, "open")]


def test_required_actions_hold_the_ticket_back_and_the_customer_reads_what_we_did(desk: Desk) -> None:
    desk.site.sections["closing"] = {"require": {"request": ["actions_done"]}}
    notification = open_ticket(desk)
    command(desk, notification, body=("Action: replace the modem; due=1d; customer\n"
                                      "Action: check the street cabinet; due=1d; optional\n"
                                      "Action: ask the supplier about the batch; due=1d"))
    refused = refusal(command(desk, notification, "[resolve]"))
    assert "a request is resolved only when its required actions are done; still open: #1, #3." in refused
    assert desk.ticket(1)["state"] != "resolved"
    mails = command(desk, notification, "[action-cancel=3; resolve]", "Action-Result: 1 the modem was replaced")
    assert desk.ticket(1)["state"] == "resolved"
    resolved = body_of(mail_to(mails, JANE))
    assert "What we did:\n  - replace the modem: the modem was replaced" in resolved
    assert "street cabinet" not in resolved and "supplier" not in resolved


# --- reminders --------------------------------------------------------------------------------------------------

def sweep_at(desk: Desk, at: datetime) -> list[Any]:
    from ticketd.daemon.outgoing import outbox
    from ticketd.daemon.stages.sweep import sweep

    config = desk.site.config()
    sweep(desk.site.engine, config, now=at)
    outbox.send_due(desk.site.engine, config)
    return [m for m in desk.new_mail() if m.message["X-Ticketd-Kind"] == "agent_action_reminder"]


def test_a_reminder_when_due_and_once_more_when_overdue_in_business_time(desk: Desk) -> None:
    notification = open_ticket(desk)
    command(desk, notification, body="Action: call the customer back; owner=ayse; due=4d\n"
                                     "Action: send the report; owner=ayse; due=4d")
    command(desk, notification, "[action-done=2]")
    due = AT + timedelta(days=4)  # Friday 10:00
    assert sweep_at(desk, due - timedelta(minutes=1)) == []
    [reminder] = sweep_at(desk, due)
    assert reminder.envelope_to == [AYSE] and "Action #1 is due" in reminder.message["Subject"]
    assert sweep_at(desk, due + timedelta(minutes=5)) == []
    # one business day after Friday 10:00 is Monday 10:00, not Saturday
    assert sweep_at(desk, due + timedelta(days=2, hours=12)) == []
    [overdue] = sweep_at(desk, due + timedelta(days=3))
    assert "Action #1 is overdue" in overdue.message["Subject"] and "last reminder" in body_of(overdue)
    assert "(8 h 59 min late)" not in body_of(overdue) and "(9 h 0 min late)" in body_of(overdue)
    assert sweep_at(desk, due + timedelta(days=30)) == []
    ticket = desk.ticket(1)
    assert events(ticket, "action-reminded") == [("action-reminded", "#1", "due"), ("action-reminded", "#1", "overdue")]
    assert ticket["actions"][0]["reminders"] == 2  # "overdue" in the JSON is as of the real clock


def test_a_due_time_at_night_is_reminded_at_the_opening_and_a_late_sweep_sends_only_the_overdue_one(
        desk: Desk) -> None:
    notification = open_ticket(desk)
    friday = (AT + timedelta(days=4)).date()
    command(desk, notification, body=f"Action: one; due={friday.isoformat()}\nAction: two; due=1d")

    def subjects(at: datetime) -> list[str]:
        return [str(m.message["Subject"]).split(":")[0].split("] ")[-1] for m in sweep_at(desk, at)]

    # #2 fell due on Tuesday 10:00 and its overdue time (Wednesday 10:00) has passed too: only the overdue one
    assert subjects(datetime.combine(friday, time(23, 59, 30), tzinfo=IST)) == ["Action #2 is overdue"]
    assert subjects(datetime.combine(friday + timedelta(days=1), time(12), tzinfo=IST)) == []  # nobody is there
    assert subjects(datetime.combine(friday + timedelta(days=3), time(9), tzinfo=IST)) == ["Action #1 is due"]
    assert [e[1:] for e in events(desk.ticket(1), "action-reminded")] == [("#2", "overdue"), ("#1", "due")]


def test_two_sweeps_at_once_send_each_reminder_once(desk: Desk) -> None:
    from ticketd.daemon.stages.sweep import sweep

    if desk.site.config().database.url.startswith("sqlite"):
        pytest.skip("one instance at a time on SQLite (DESIGN §9): only PostgreSQL has concurrent sweeps")
    notification = open_ticket(desk)
    command(desk, notification, body="\n".join(f"Action: step {n}; owner=ayse; due=1d" for n in range(5)))
    config, engine, due = desk.site.config(), desk.site.engine, AT + timedelta(days=1)
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            sweep(engine, config, now=due)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    ticket = desk.ticket(1)
    assert len(events(ticket, "action-reminded")) == 5
    assert sum(o["kind"] == "agent_action_reminder" for o in ticket["outgoing"]) == 5


# --- the CLI ----------------------------------------------------------------------------------------------------

def cli(site: Site, *args: str) -> tuple[int, str, str]:
    proc = site.cli(*args)
    out, err = decode(proc)
    return proc.returncode, out, err


def test_improvement_actions_from_the_cli(desk: Desk) -> None:
    import json

    from ticketd.daemon.outgoing import outbox

    site = desk.site
    site.sections["categories"] = {"tree": ["billing/invoice", "hardware/modem"]}
    code, out, err = cli(site, "actions", "add", "review the invoice template; add the VAT line", "--owner", "ayse",
                         "--due", "3d", "--category", "billing/invoice", "--source", "report 2026-11")
    assert code == 0, err
    assert out.startswith("action #1 added for ayse@acme.example, due ")
    outbox.send_due(site.engine, site.config())
    told = mail_to(desk.new_mail(), AYSE)
    assert told.message["X-Ticketd-Kind"] == "agent_action" and "ticketd actions done 1" in body_of(told)
    [listed] = json.loads(site.cli("actions", "list", "--json").stdout)
    assert {k: listed[k] for k in ("id", "ticket", "what", "owner", "status", "category", "source", "required")} == {
        "id": 1, "ticket": None, "what": "review the invoice template; add the VAT line", "owner": AYSE,
        "status": "open", "category": "billing/invoice", "source": "report 2026-11", "required": True}
    assert "billing/invoice" in cli(site, "actions", "list", "--open")[1]
    for args, message in [
        (("actions", "done", "1"), "--result is required"),
        (("actions", "done", "99", "--result", "x"), "there is no action #99"),
        (("actions", "done", "abc", "--result", "x"), "'abc' is not an action number"),
        (("actions", "add", "x", "--owner", "nobody", "--due", "3d"), "no active agent called 'nobody'"),
        (("actions", "add", "x", "--owner", "ayse", "--due", "soon"), "neither a date"),
        (("actions", "add", "x", "--owner", "ayse", "--due", "3d", "--category", "billing/invoce"),
         "did you mean billing/invoice?"),
        (("actions", "add", " ", "--owner", "ayse", "--due", "3d"), "an action needs a text"),
    ]:
        code, out, err = cli(site, *args)
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, \
            (args, code, err)
    code, out, err = cli(site, "actions", "done", "#1", "--result", "template fixed")
    assert code == 0 and out.strip() == "action #1 done", err
    assert cli(site, "actions", "cancel", "1")[2].strip() == "ticketd: action #1 is done already"
    assert cli(site, "actions", "list", "--open")[1].strip() == "no actions open"
    [closed] = json.loads(site.cli("actions", "list", "--json").stdout)
    assert (closed["status"], closed["result"], closed["closed_by"]) == ("done", "template fixed", "ticketd actions")


# --- must-show 3: an improvement action from one monthly report, shown done in the next ----------------------

def cli_at(site: Site, at: datetime, *args: str) -> tuple[int, str, str]:
    """The CLI as the operator runs it on that day (libfaketime moves its clock)."""
    site.write()
    offset = (at - datetime.now(UTC)).total_seconds()
    proc = subprocess.run([*ahead(offset), str(TICKETD), "--config", str(site.config_path), *args],
                          capture_output=True, env={**os.environ}, timeout=120, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def report_mail(desk: Desk, at: datetime) -> tuple[str, Any]:
    from ticketd.daemon.outgoing import outbox
    from ticketd.daemon.reports.mail import send_report

    config = desk.site.config()
    assert send_report(desk.site.engine, config, config.reports[0], now=at.astimezone(UTC)) is not None
    outbox.send_due(desk.site.engine, config)
    [mail] = [m for m in desk.new_mail() if m.message["X-Ticketd-Kind"] == "report"]
    return body_of(mail), mail.message


def actions_sheet(message: Any) -> list[tuple[Any, ...]]:
    from openpyxl import load_workbook

    [part] = [p for p in message.iter_attachments() if p.get_content_type() == XLSX]
    book = load_workbook(io.BytesIO(part.get_content()))
    rows = []
    for row in book["Actions"].iter_rows(values_only=True):
        cells = list(row)
        while cells and cells[-1] is None:
            cells.pop()
        rows.append(tuple(cells))
    return rows


def test_an_improvement_action_from_the_monthly_report_shows_done_in_the_next(desk: Desk) -> None:
    require_libfaketime()
    site = desk.site
    site.sections["categories"] = {"tree": ["billing/invoice", "hardware/modem"]}
    site.sections["rules"] = [{"name": "invoices", "match": {"subject": "(?i)invoice"},
                               "set": {"category": "billing/invoice"}}]
    site.sections["reports"] = [{"name": "monthly", "schedule": "0 8 1 * *", "recipients": ["gm@acme.example"],
                                 "language": "en"}]
    # November: billing/invoice is the top category
    for day, subject in [(3, "Invoice charged twice"), (10, "Wrong VAT on my invoice"), (17, "Invoice missing"),
                         (18, "Modem drops")]:
        opened = datetime(2026, 11, day, 11, 0, tzinfo=IST)
        desk.deliver(client_mail(f"customer{day}@example.net", subject, "Please help."), clock=lambda at=opened: at)
    desk.new_mail()
    november, _ = report_mail(desk, datetime(2026, 12, 1, 8, 0, tzinfo=IST))
    assert "1. billing/invoice: 3" in november
    assert "0 open (0 overdue), 0 done, 0 cancelled" in november

    # the operator reads it on 2 December and opens an improvement action from its top category
    code, _, err = cli_at(site, datetime(2026, 12, 2, 10, 0, tzinfo=IST), "actions", "add",
                          "Rework the invoice template (VAT line, duplicate charges)", "--owner", "ayse",
                          "--due", "2026-12-15", "--category", "billing/invoice",
                          "--source", "report 2026-11: billing/invoice top category")
    assert code == 0, err
    # and Ayşe closes it on 10 December with its effect
    code, _, err = cli_at(site, datetime(2026, 12, 10, 15, 0, tzinfo=IST), "actions", "done", "1", "--result",
                          "new template live; invoice complaints 3 → 0 in the following week")
    assert code == 0, err

    december, message = report_mail(desk, datetime(2027, 1, 1, 8, 0, tzinfo=IST))
    assert "Actions:                          0 open (0 overdue), 1 done, 0 cancelled" in december
    assert ("Actions done in this period:\n  #1 Rework the invoice template (VAT line, duplicate charges) "
            "(ayse@acme.example): new template live; invoice complaints 3 → 0 in the following week") in december
    rows = actions_sheet(message)
    assert rows[0] == ("Owner", "Open", "Overdue", "Done", "Cancelled")
    assert ("ayse@acme.example", 0, 0, 1, 0) in rows and ("billing/invoice", 0, 0, 1, 0) in rows
    [action] = [r for r in rows if r and r[0] == 1]
    assert action[1:6] == ("improvement", "Rework the invoice template (VAT line, duplicate charges)",
                           "ayse@acme.example", "billing/invoice", "report 2026-11: billing/invoice top category")
    assert action[7:9] == ("Done", "new template live; invoice complaints 3 → 0 in the following week")
    assert action[9].date() == date(2026, 12, 10)
    # the report after that (January) no longer carries it: it was done before January began
    january, message = report_mail(desk, datetime(2027, 2, 1, 8, 0, tzinfo=IST))
    assert "0 open (0 overdue), 0 done, 0 cancelled" in january
    assert not [r for r in actions_sheet(message) if r and r[0] == 1]


def test_erasing_the_customer_scrubs_their_name_from_the_actions(desk: Desk) -> None:
    notification = open_ticket(desk)
    command(desk, notification, body="Action: call Jane Doe back on jane@example.org; due=1d\n"
                                     "Action-Result: 1 Jane Doe confirmed the refund")
    code, _, err = cli(desk.site, "customers", "erase", JANE, "--yes")
    assert code == 0, err
    [action] = desk.ticket(1)["actions"]
    text = f"{action['what']} {action['result']}"
    assert "Jane" not in text and "jane@example.org" not in text and "confirmed the refund" in text
