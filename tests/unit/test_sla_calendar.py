"""Business-time SLA arithmetic and the [sla] config section: deadlines skip nights, weekends, holidays and lunch
breaks, survive clock changes, and every bad setting names its key."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ticketd.daemon.config.sla import SlaConfig
from ticketd.rules.sla import BusinessCalendar, Duration, format_hours, parse_duration, parse_hours

IST = ZoneInfo("Europe/Istanbul")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = dict.fromkeys(range(5), parse_hours("09:00-18:00"))
OFFICE = BusinessCalendar(tz=IST, hours=WEEKDAYS)
H = 3600


def ist(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026 in Istanbul: the 4th is a Friday, the 7th a Monday."""
    return datetime(2026, 12, day, hour, minute, tzinfo=IST)


def hours(n: float) -> Duration:
    return Duration(seconds=int(n * H))


# --- durations and opening hours -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("4h", Duration(seconds=4 * H)),
    ("30m", Duration(seconds=1800)),
    ("3d", Duration(days=3)),
    ("1d4h", Duration(days=1, seconds=4 * H)),
    ("2h30m", Duration(seconds=2 * H + 1800)),
    ("90m", Duration(seconds=5400)),
    ("1d 4h", Duration(days=1, seconds=4 * H)),
    (" 2h 30m ", Duration(seconds=2 * H + 1800)),
])
def test_parse_duration(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("4x", "'4x' is not a duration like 4h, 30m, 3d or 1d4h"),
    ("", "'' is not a duration like 4h, 30m, 3d or 1d4h"),
    ("h", "'h' is not a duration like 4h, 30m, 3d or 1d4h"),
    ("4h1d", "'4h1d' is not a duration like 4h, 30m, 3d or 1d4h"),
    ("-4h", "'-4h' is not a duration like 4h, 30m, 3d or 1d4h"),
    ("0h", "'0h' must be longer than zero"),
    ("0d0m", "'0d0m' must be longer than zero"),
])
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_duration_prints_in_config_notation() -> None:
    assert [str(parse_duration(t)) for t in ("1d4h", "90m", "3d")] == ["1d4h", "1h30m", "3d"]


def test_parse_hours() -> None:
    assert format_hours(parse_hours("09:00-18:00")) == "09:00-18:00"
    assert format_hours(parse_hours("09:00-12:00, 13:00-18:00")) == "09:00-12:00,13:00-18:00"
    assert format_hours(parse_hours("00:00-24:00")) == "00:00-24:00"
    assert format_hours(parse_hours("08:00-12:00,12:00-17:00")) == "08:00-12:00,12:00-17:00"
    assert parse_hours("") == parse_hours("closed") == parse_hours("Closed") == ()


@pytest.mark.parametrize(("text", "message"), [
    ("18:00-09:00", "18:00-09:00 ends before it starts"),
    ("09:00-09:00", "09:00-09:00 is empty (it ends when it starts)"),
    ("09:00-12:00,11:00-18:00", "11:00-18:00 starts before 09:00-12:00 ends"),
    ("13:00-18:00,09:00-12:00", "09:00-12:00 starts before 13:00-18:00 ends"),
    ("24:00-24:00", "24:00-24:00 starts at 24:00"),
    ("9-18", "'9-18' is not a time range like 09:00-18:00"),
    ("09:00-25:00", "'09:00-25:00' is not a time range"),
    ("09:60-18:00", "'09:60-18:00' is not a time range"),
    ("09:00", "'09:00' is not a time range"),
])
def test_parse_hours_refuses_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_hours(text)
    assert str(info.value).startswith(message)


# --- the calendar --------------------------------------------------------------------------------------------

def test_friday_afternoon_plus_four_hours_is_monday_morning() -> None:
    due = OFFICE.add(ist(4, 16), parse_duration("4h"))
    assert due == ist(7, 11)
    assert due.tzinfo is UTC


def test_one_day_keeps_the_time_of_day() -> None:
    assert OFFICE.add(ist(9, 10), parse_duration("1d")) == ist(10, 10)
    assert OFFICE.add(ist(4, 16), parse_duration("1d")) == ist(7, 16)
    assert OFFICE.add(ist(9, 10), parse_duration("1d2h")) == ist(10, 12)
    assert OFFICE.add(ist(9, 17), parse_duration("1d2h")) == ist(11, 10)


def test_holiday_is_skipped() -> None:
    calendar = BusinessCalendar(tz=IST, hours=WEEKDAYS, holidays=frozenset({date(2026, 12, 10)}))
    assert calendar.add(ist(9, 10), parse_duration("1d")) == ist(11, 10)
    assert calendar.add(ist(9, 17), parse_duration("2h")) == ist(11, 10)
    assert not calendar.is_open(ist(10, 10))
    # the integration scenario: Friday 16:00, Monday a holiday
    monday_off = BusinessCalendar(tz=IST, hours=WEEKDAYS, holidays=frozenset({date(2026, 12, 7)}))
    assert monday_off.add(ist(4, 16), parse_duration("1d")) == ist(8, 16)


def test_lunch_break_does_not_count() -> None:
    lunch = BusinessCalendar(tz=IST, hours=dict.fromkeys(range(5), parse_hours("09:00-12:00,13:00-18:00")))
    assert lunch.add(ist(9, 11), parse_duration("2h")) == ist(9, 14)
    assert lunch.add(ist(9, 12, 30), parse_duration("30m")) == ist(9, 13, 30)  # counting starts at 13:00
    assert lunch.add(ist(9, 9), parse_duration("3h")) == ist(9, 12)  # a due time at a closing stays there
    assert lunch.add(ist(9, 14), parse_duration("1d")) == ist(10, 14)
    assert lunch.between(ist(9, 11), ist(9, 14)) == timedelta(hours=2)
    assert not lunch.is_open(ist(9, 12, 30))


def test_saturday_counts_from_monday_opening() -> None:
    assert OFFICE.add(ist(5, 10), parse_duration("2h")) == ist(7, 11)
    assert OFFICE.add(ist(5, 10), parse_duration("1d")) == ist(8, 9)  # one business day after Monday's opening
    assert OFFICE.add(ist(9, 20), parse_duration("1d")) == ist(11, 9)  # after closing: from Thursday's opening
    assert OFFICE.add(ist(9, 7), parse_duration("30m")) == ist(9, 9, 30)


def test_due_exactly_at_closing_stays_that_day() -> None:
    assert OFFICE.add(ist(9, 9), parse_duration("9h")) == ist(9, 18)
    assert OFFICE.add(ist(4, 16), parse_duration("2h")) == ist(4, 18)
    assert OFFICE.add(ist(4, 18), parse_duration("1m")) == ist(7, 9, 1)  # a closing instant is closed


def test_zero_duration_returns_the_start() -> None:
    assert OFFICE.add(ist(5, 10), Duration()) == ist(5, 10)


def test_between_counts_only_business_time() -> None:
    assert OFFICE.between(ist(4, 17), ist(7, 10)) == timedelta(hours=2)
    assert OFFICE.between(ist(4, 9), ist(11, 18)) == timedelta(hours=6 * 9)
    assert OFFICE.between(ist(5, 0), ist(6, 23)) == timedelta(0)
    assert OFFICE.between(ist(7, 10), ist(4, 17)) == timedelta(0)
    assert OFFICE.between(ist(7, 10), ist(7, 10)) == timedelta(0)
    # pending Tuesday 10:00 to 17:00 moves a Tuesday 16:00 deadline by 7 business hours: Wednesday 14:00
    stood = OFFICE.between(ist(8, 10), ist(8, 17))
    assert OFFICE.add(ist(8, 16), Duration(seconds=int(stood.total_seconds()))) == ist(9, 14)


def test_is_open_includes_opening_excludes_closing() -> None:
    assert OFFICE.is_open(ist(9, 9))
    assert OFFICE.is_open(ist(9, 17, 59))
    assert not OFFICE.is_open(ist(9, 18))
    assert not OFFICE.is_open(ist(5, 12))


def test_inputs_in_other_zones_are_read_as_instants() -> None:
    start = ist(4, 16).astimezone(ZoneInfo("America/New_York"))
    assert OFFICE.add(start, parse_duration("4h")) == ist(7, 11)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.add(datetime(2026, 12, 4, 16), parse_duration("1h"))
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.between(ist(4, 16), datetime(2026, 12, 4, 17))
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.is_open(datetime(2026, 12, 4, 16))


def test_a_calendar_without_working_hours_raises_instead_of_looping() -> None:
    with pytest.raises(ValueError, match="the business calendar has no working hours"):
        BusinessCalendar(tz=IST, hours={}).add(ist(4, 10), parse_duration("1h"))
    mondays = frozenset(date(2026, 12, 7) + timedelta(weeks=n) for n in range(600))
    only_holiday_mondays = BusinessCalendar(tz=IST, hours={0: parse_hours("09:00-18:00")}, holidays=mondays)
    with pytest.raises(ValueError, match="the business calendar has no working hours"):
        only_holiday_mondays.add(ist(4, 10), parse_duration("1d"))


def test_badly_ordered_hours_are_refused_by_the_calendar() -> None:
    with pytest.raises(ValueError, match="weekday 0"):
        BusinessCalendar(tz=IST, hours={0: tuple(reversed(parse_hours("09:00-12:00,13:00-18:00")))})


def test_dst_in_berlin() -> None:
    def berlin(month: int, day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)

    office = BusinessCalendar(tz=BERLIN, hours=WEEKDAYS)
    # Friday 27 March 17:00 CET + 2h: Monday 10:00 CEST, i.e. 08:00 UTC (the offset changed over the weekend)
    assert office.add(berlin(3, 27, 17), hours(2)) == datetime(2026, 3, 30, 8, tzinfo=UTC)
    assert office.between(berlin(10, 23, 17), berlin(10, 26, 10)) == timedelta(hours=2)

    always = BusinessCalendar(tz=BERLIN, hours=dict.fromkeys(range(7), parse_hours("00:00-24:00")))
    assert always.between(berlin(3, 29, 0), berlin(3, 30, 0)) == timedelta(hours=23)
    assert always.between(berlin(10, 25, 0), berlin(10, 26, 0)) == timedelta(hours=25)
    assert always.add(berlin(3, 29, 0), hours(24)) == berlin(3, 30, 1)
    # a day keeps the business time elapsed since the opening, not the wall clock: 12 hours into a 23-hour
    # Sunday is 13:00, 12 hours into a 25-hour one is 11:00
    assert always.add(berlin(3, 28, 12), parse_duration("1d")) == berlin(3, 29, 13)
    assert always.add(berlin(10, 24, 12), parse_duration("1d")) == berlin(10, 25, 11)
    assert always.add(berlin(10, 24, 12), parse_duration("2d")) == berlin(10, 26, 12)

    # hours inside the skipped and the repeated hour: 02:00-03:00 vanishes in March, lasts two hours in October
    night = BusinessCalendar(tz=BERLIN, hours={6: parse_hours("02:00-03:00")})
    assert night.between(berlin(3, 28, 0), berlin(3, 30, 0)) == timedelta(0)
    assert night.between(berlin(10, 24, 0), berlin(10, 26, 0)) == timedelta(hours=2)
    assert night.add(berlin(3, 28, 0), hours(1)) == berlin(4, 5, 3)


# --- properties ----------------------------------------------------------------------------------------------

CALENDARS = [
    BusinessCalendar(tz=IST, hours=dict.fromkeys(range(5), parse_hours("09:00-12:00,13:00-18:00")),
                     holidays=frozenset({date(2026, 12, 10), date(2027, 1, 1)})),
    BusinessCalendar(tz=BERLIN, hours={0: parse_hours("08:00-12:00,12:30-17:00"), 2: parse_hours("10:00-11:00"),
                                       5: parse_hours("00:00-24:00"), 6: parse_hours("01:30-03:30")},
                     holidays=frozenset({date(2026, 4, 6)})),
]
PROPERTY = settings(max_examples=300, deadline=None)
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))
calendars = st.sampled_from(CALENDARS)
business_seconds = st.integers(min_value=1, max_value=400 * H)


def closing_instant(calendar: BusinessCalendar, at: datetime) -> bool:
    return not calendar.is_open(at) and calendar.is_open(at - timedelta(microseconds=1))


@PROPERTY
@given(calendars, instants, business_seconds)
def test_between_undoes_add(calendar: BusinessCalendar, start: datetime, seconds: int) -> None:
    """Holds inside business hours and, since counting starts at the next opening, outside them too."""
    assert calendar.between(start, calendar.add(start, Duration(seconds=seconds))) == timedelta(seconds=seconds)


@PROPERTY
@given(calendars, instants, business_seconds)
def test_between_undoes_add_from_inside_business_hours(calendar: BusinessCalendar, start: datetime,
                                                       seconds: int) -> None:
    inside = calendar.add(start, Duration(seconds=1))  # an instant one business second after an opening or later
    assert calendar.is_open(inside - timedelta(microseconds=1))
    assert calendar.between(inside, calendar.add(inside, Duration(seconds=seconds))) == timedelta(seconds=seconds)


@PROPERTY
@given(calendars, instants, business_seconds, business_seconds)
def test_add_is_monotonic(calendar: BusinessCalendar, start: datetime, a: int, b: int) -> None:
    shorter, longer = sorted((a, b))
    assert calendar.add(start, Duration(seconds=shorter)) <= calendar.add(start, Duration(seconds=longer))
    assert calendar.add(start, Duration(seconds=shorter)) > start


@PROPERTY
@given(calendars, instants, st.integers(0, 30), st.integers(0, 30), st.integers(0, 20 * H))
def test_add_is_monotonic_in_days(calendar: BusinessCalendar, start: datetime, a: int, b: int, seconds: int) -> None:
    fewer, more = sorted((a, b))
    smaller = Duration(days=fewer, seconds=seconds) or Duration(seconds=1)
    assert calendar.add(start, smaller) < calendar.add(start, Duration(days=more + 1, seconds=seconds))


@PROPERTY
@given(calendars, instants, st.integers(0, 30), st.integers(0, 400 * H))
def test_due_times_are_never_in_closed_hours(calendar: BusinessCalendar, start: datetime, days: int,
                                             seconds: int) -> None:
    due = calendar.add(start, Duration(days=days, seconds=seconds) or Duration(seconds=1))
    assert due.tzinfo is UTC
    assert calendar.is_open(due) or closing_instant(calendar, due)


@PROPERTY
@given(instants, st.integers(1, 60))
def test_whole_days_are_nine_business_hours_in_the_office(start: datetime, days: int) -> None:
    due = OFFICE.add(start, Duration(days=days))
    assert OFFICE.between(start, due) == timedelta(hours=9 * days)


# --- the [sla] config section --------------------------------------------------------------------------------

class Root(BaseModel):
    sla: SlaConfig


def problems(section: dict[str, Any]) -> list[str]:
    """The lines an operator reads: ``key.path: reason``, as the config loader prints them."""
    with pytest.raises(ValidationError) as info:
        Root.model_validate({"sla": section})
    lines = []
    for error in info.value.errors():
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        lines.append(".".join(str(part) for part in error["loc"]) + ": " + message)
    return lines


def test_defaults() -> None:
    sla = SlaConfig()
    assert sla.sweep_seconds == 60
    assert sla.holidays == ()
    first = {p: str(sla.targets(None, p)[0]) for p in ("low", "normal", "high", "urgent")}
    resolution = {p: str(sla.targets(None, p)[1]) for p in ("low", "normal", "high", "urgent")}
    assert first == {"low": "8h", "normal": "4h", "high": "2h", "urgent": "1h"}
    assert resolution == {"low": "5d", "normal": "3d", "high": "1d", "urgent": "4h"}
    calendar = sla.calendar(IST)
    assert calendar.add(ist(4, 16), parse_duration("4h")) == ist(7, 11)
    assert not calendar.is_open(ist(5, 12)) and not calendar.is_open(ist(6, 12))


def test_the_documented_section_loads() -> None:
    sla = SlaConfig.model_validate(tomllib.loads("""
        business_hours = { mon = "09:00-18:00", tue = "09:00-12:00,13:00-18:00", sat = "10:00-14:00" }
        holidays = ["2026-12-31", 2027-01-01]
        sweep_seconds = 5
        [first_response]
        high = "3h"
        [resolution]
        urgent = "1d 4h"
        [plans.gold.first_response]
        urgent = "30m"
        [plans.gold.resolution]
        high = "8h"
    """))
    assert sla.sweep_seconds == 5
    assert sla.holidays == (date(2026, 12, 31), date(2027, 1, 1))
    assert sla.business_hours.wed == () and sla.business_hours.sat == parse_hours("10:00-14:00")
    assert sla.targets(None, "high") == (parse_duration("3h"), parse_duration("1d"))
    assert sla.targets(None, "low") == (parse_duration("8h"), parse_duration("5d"))  # unnamed keep defaults
    assert sla.targets(None, "urgent") == (parse_duration("1h"), parse_duration("1d4h"))
    assert sla.model_dump()["business_hours"]["tue"] == "09:00-12:00,13:00-18:00"
    assert sla.model_dump()["first_response"]["high"] == "3h"


def test_a_plan_overrides_only_what_it_names() -> None:
    sla = SlaConfig.model_validate({"plans": {"gold": {"first_response": {"urgent": "30m"},
                                                       "resolution": {"high": "8h"}}}})
    assert sla.targets("gold", "urgent") == (parse_duration("30m"), parse_duration("4h"))
    assert sla.targets("gold", "high") == (parse_duration("2h"), parse_duration("8h"))
    assert sla.targets("gold", "low") == (parse_duration("8h"), parse_duration("5d"))
    assert sla.targets("silver", "urgent") == sla.targets(None, "urgent") == (parse_duration("1h"),
                                                                               parse_duration("4h"))
    with pytest.raises(ValueError, match="unknown priority 'critical'"):
        sla.targets(None, "critical")


def test_calendar_uses_holidays_and_hours() -> None:
    sla = SlaConfig.model_validate({"holidays": ["2026-12-10"], "business_hours": {"wed": "09:00-18:00",
                                                                                     "fri": "09:00-18:00"}})
    calendar = sla.calendar(IST)
    assert calendar.add(ist(9, 10), parse_duration("1d")) == ist(11, 10)
    assert not calendar.is_open(ist(7, 10))  # Monday was left out of the table: closed


@pytest.mark.parametrize(("section", "expected"), [
    ({"business_hours": {"mon": "18:00-09:00"}}, "sla.business_hours.mon: 18:00-09:00 ends before it starts"),
    ({"business_hours": {"mon": "09:00-12:00,11:00-18:00"}},
     "sla.business_hours.mon: 11:00-18:00 starts before 09:00-12:00 ends (list the ranges in order, without "
     "overlaps)"),
    ({"business_hours": {"mon": 9}},
     "sla.business_hours.mon: 9 is not opening hours like 09:00-18:00, 09:00-12:00,13:00-18:00 or closed"),
    ({"business_hours": {"monday": "09:00-18:00"}}, "sla.business_hours.monday: unknown key"),
    ({"business_hours": {}}, "sla.business_hours: every day is closed, so no SLA deadline could ever fall due"),
    ({"first_response": {"high": "2x"}}, "sla.first_response.high: '2x' is not a duration like 4h, 30m, 3d or 1d4h"),
    ({"resolution": {"low": "0d"}}, "sla.resolution.low: '0d' must be longer than zero"),
    ({"resolution": {"low": 5}}, "sla.resolution.low: 5 is not a duration like 4h, 30m, 3d or 1d4h"),
    ({"first_response": {"critical": "1h"}}, "sla.first_response.critical: unknown key"),
    ({"plans": {"gold": {"first_response": {"critical": "1h"}}}},
     "sla.plans.gold.first_response.critical: unknown key"),
    ({"plans": {"gold": {"resolution": {"high": "8"}}}},
     "sla.plans.gold.resolution.high: '8' is not a duration like 4h, 30m, 3d or 1d4h"),
    ({"plans": {"gold": {"response": {}}}}, "sla.plans.gold.response: unknown key"),
    ({"holidays": ["2026-13-01"]}, "sla.holidays.0: '2026-13-01' is not a date like 2026-12-31"),
    ({"holidays": ["2026-12-31", "31.12.2026"]}, "sla.holidays.1: '31.12.2026' is not a date like 2026-12-31"),
    ({"holidays": [datetime(2026, 12, 31, 9)]}, "sla.holidays.0: datetime.datetime(2026, 12, 31, 9, 0) is not a date"),
    ({"sweep_seconds": 0}, "sla.sweep_seconds: must be a positive integer"),
    ({"sweep_seconds": "60"}, "sla.sweep_seconds: must be a positive integer"),
    ({"timezone": "UTC"}, "sla.timezone: unknown key"),
])
def test_bad_settings_name_their_key(section: dict[str, Any], expected: str) -> None:
    found = problems(section)
    assert any(line.startswith(expected) for line in found), found
