"""Action items' pure parts: the Action: line, due times in business time, action numbers, the grammar's repeated
lines, the mails (both languages) and the report's counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_small_parts import _full_context

from ticketd.daemon.reports.actions import ActionRow, by_category, by_owner, totals
from ticketd.mailtemplates.render import make_environment, render
from ticketd.parsers.commands import Command, parse_commands
from ticketd.rules.actions import ActionError, ActionLine, action_id, parse_due, parse_line, plain, split_result
from ticketd.rules.sla import BusinessCalendar, parse_hours

IST = ZoneInfo("Europe/Istanbul")
NINE_TO_SIX = parse_hours("09:00-18:00")
CALENDAR = BusinessCalendar(IST, {day: NINE_TO_SIX for day in range(5)})
FRIDAY_4PM = datetime(2026, 12, 11, 16, 0, tzinfo=IST)


# --- the Action: line ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("call the customer back; owner=ali; due=2d", ActionLine("call the customer back", "ali", "2d")),
    ("replace the modem;owner=Ayşe Demir;due=2026-12-20;customer",
     ActionLine("replace the modem", "Ayşe Demir", "2026-12-20", customer=True)),
    ("check the   wiring ; due=4h ; optional", ActionLine("check the wiring", None, "4h", required=False)),
    ("train the team; due=3d; customer; optional; ",
     ActionLine("train the team", None, "3d", customer=True, required=False)),
    ("write it down; due=1d; required", ActionLine("write it down", None, "1d")),
])
def test_action_lines(value: str, expected: ActionLine) -> None:
    assert parse_line(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("owner=ali; due=2d", "starts with what is to be done"),
    ("; owner=ali", "starts with what is to be done"),
    ("call back; ownr=ali; due=2d", "did you mean owner?"),
    ("call back; costumer; due=2d", "did you mean customer?"),
    ("call back; owner=; due=2d", "owner= needs a value"),
    ("call back; due=2d; due=3d", "due is given twice"),
    ("call back; due=2d; optional; required", "either optional or required"),
    ("x" * 1001 + "; due=2d", "at most 1000 characters"),
])
def test_bad_action_lines_say_why(value: str, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        parse_line(value)


def test_a_plain_text_keeps_its_semicolons() -> None:
    assert plain("  review the invoice template;  add the VAT line ").what == \
        "review the invoice template; add the VAT line"
    with pytest.raises(ActionError):
        plain("   ")


# --- due times ----------------------------------------------------------------------------------------------------

def test_a_date_is_the_end_of_that_day_in_the_helpdesk_zone() -> None:
    assert parse_due("2026-12-20", FRIDAY_4PM, CALENDAR, IST) == datetime(2026, 12, 20, 23, 59, tzinfo=IST)


def test_a_duration_is_business_time() -> None:
    # Friday 16:00 + 4 business hours: 2 on Friday, 2 on Monday morning
    assert parse_due("4h", FRIDAY_4PM, CALENDAR, IST) == datetime(2026, 12, 14, 11, 0, tzinfo=IST)
    assert parse_due("2d", FRIDAY_4PM, CALENDAR, IST) == datetime(2026, 12, 15, 16, 0, tzinfo=IST)


@pytest.mark.parametrize(("value", "message"), [
    (None, "needs due="), ("", "needs due="), ("soon", "neither a date"), ("2026-13-01", "neither a date"),
    ("2026-12-01", "in the past"),
])
def test_bad_due_times(value: str | None, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        parse_due(value, FRIDAY_4PM, CALENDAR, IST)


def test_a_reminder_due_at_night_waits_for_the_opening() -> None:
    saturday_night = datetime(2026, 12, 12, 23, 59, tzinfo=IST)
    assert CALENDAR.next_open(saturday_night) == datetime(2026, 12, 14, 9, 0, tzinfo=IST)
    assert CALENDAR.next_open(FRIDAY_4PM) == FRIDAY_4PM


# --- numbers and results ------------------------------------------------------------------------------------------

def test_action_numbers() -> None:
    assert action_id("12") == 12 and action_id(" #7 ") == 7
    for bad in ("twelve", "1.5", "-3", "1234567890", ""):
        with pytest.raises(ActionError, match="not an action number"):
            action_id(bad)
    assert split_result("12 the modem was replaced") == ("12", "the modem was replaced")
    with pytest.raises(ActionError, match="needs the action's number and then its result"):
        split_result("12")


# --- the grammar: several per mail, anywhere in the body, stripped from the text ------------------------------

def test_several_actions_and_results_in_one_mail() -> None:
    body = ("Action: call the customer back; owner=ali; due=2d\n"
            "We will follow this up.\n"
            "Action: replace the modem; due=2026-12-20; customer\n"
            "Action-Result: 4 modem replaced, line stable\n"
            "Action-Result: 5 firmware 3.2.1 installed\n")
    parsed = parse_commands("Re: [ACME #1] Modem [action-done=3; action-cancel=6; action-done=7]", body)
    assert not parsed.errors
    assert [(c.name, c.value) for c in parsed.commands] == [
        ("action-done", "3"), ("action-cancel", "6"), ("action-done", "7"),
        ("action", "call the customer back; owner=ali; due=2d"),
        ("action", "replace the modem; due=2026-12-20; customer"),
        ("action-result", "4 modem replaced, line stable"), ("action-result", "5 firmware 3.2.1 installed")]
    assert parsed.text == "We will follow this up."


def test_an_action_line_without_a_value_is_an_error() -> None:
    parsed = parse_commands("Re: x", "Action:\n")
    assert parsed.commands == ()
    assert "Action: call the customer back" in parsed.errors[0].message
    assert parse_commands("Re: x", "Action-Done: 3\nhello").commands == (Command("action-done", "3", "body",
                                                                                 "Action-Done: 3"),)


# --- the mails ----------------------------------------------------------------------------------------------------

ACTION = {"id": 12, "ticket": 7, "what": "Replace the modem", "owner": "ali@acme.example", "owner_name": "Ali Veli",
          "due": "2026-12-15T13:00:00+00:00", "due_local": "2026-12-15 16:00", "status": "open", "result": None,
          "customer": True, "required": True, "overdue": False, "category": None, "source": None}


def _context(with_ticket: bool = True, **more: Any) -> dict[str, Any]:
    ctx = _full_context(with_ticket)
    ctx.update({"action": ACTION, "stage": "due", "late": "2 h 0 min", **more})
    return ctx


@pytest.mark.parametrize("language", ["en", "tr"])
@pytest.mark.parametrize("name", ["agent_action", "agent_action_reminder"])
@pytest.mark.parametrize("with_ticket", [True, False])
def test_action_mails_render_in_both_languages(name: str, language: str, with_ticket: bool) -> None:
    mail = render(make_environment(), name, language, _context(with_ticket))
    assert mail.subject and "\n" not in mail.subject and "#12" in mail.subject
    assert "Replace the modem" in mail.body
    assert ("[action-done=12]" in mail.body) is with_ticket
    assert ("ticketd actions done 12" in mail.body) is not with_ticket


def test_the_overdue_reminder_says_it_is_the_last() -> None:
    env = make_environment()
    assert "is overdue" in render(env, "agent_action_reminder", "en", _context(stage="overdue")).subject
    assert "last reminder" in render(env, "agent_action_reminder", "en", _context(stage="overdue")).body
    assert "gecikti" in render(env, "agent_action_reminder", "tr", _context(stage="overdue")).subject


@pytest.mark.parametrize("language", ["en", "tr"])
def test_agents_notifications_list_the_actions(language: str) -> None:
    actions = [ACTION, {**ACTION, "id": 13, "what": "Call back", "status": "done", "result": "called",
                        "customer": False, "required": False}]
    body = render(make_environment(), "agent_update", language, _context(actions=actions)).body
    assert "#12 [" in body and "Replace the modem" in body and "#13 [" in body and ": called" in body


def test_the_resolved_mail_tells_what_we_did() -> None:
    from test_process_templates import context

    env = make_environment()
    did = [{"what": "Replaced the modem", "result": "the line is stable"}]
    assert "What we did:\n  - Replaced the modem: the line is stable" in \
        render(env, "resolved", "en", context(done_for_customer=did)).body
    assert "Yaptıklarımız:" in render(env, "resolved", "tr", context(done_for_customer=did)).body
    assert "What we did" not in render(env, "resolved", "en", context(done_for_customer=[])).body
    assert "What we did" not in render(env, "resolved", "en", context()).body  # an operator's older context


# --- the report's counts -------------------------------------------------------------------------------------------

def _row(id: int, owner: str, category: str, status: str, overdue: bool = False) -> ActionRow:
    at = datetime(2026, 12, 1, 10, 0)
    return ActionRow(id=id, ticket=None, what="w", owner=owner, category=category, source="", due=at, status=status,
                     overdue=overdue, result="", customer=False, required=True, created_at=at,
                     closed_at=None if status == "open" else at)


def test_counts_per_owner_and_category() -> None:
    rows = [_row(1, "ali@x", "billing/invoice", "open", overdue=True), _row(2, "ali@x", "billing/invoice", "done"),
            _row(3, "ayse@x", "", "open"), _row(4, "ayse@x", "hardware/modem", "cancelled")]
    assert [(c.name, c.open, c.overdue, c.done, c.cancelled) for c in by_owner(rows)] == [
        ("ali@x", 1, 1, 1, 0), ("ayse@x", 1, 0, 0, 1)]
    assert [(c.name, c.open, c.overdue, c.done, c.cancelled) for c in by_category(rows)] == [
        ("(none)", 1, 0, 0, 0), ("billing/invoice", 1, 1, 1, 0), ("hardware/modem", 0, 0, 0, 1)]
    total = totals(rows)
    assert (total.open, total.overdue, total.done, total.cancelled) == (2, 1, 1, 1)
