"""Business time: SLA targets count only the hours a helpdesk is staffed, so a deadline never falls due overnight.

Everything here is pure (no database, no configuration) so the calendar can be tested to the second. Arithmetic
is done on UTC instants built from local wall-clock intervals: subtracting two datetimes that share a ZoneInfo
compares wall clocks, which is wrong on the days the clocks change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from types import MappingProxyType
from zoneinfo import ZoneInfo

__all__ = ["BusinessCalendar", "Duration", "Interval", "format_hours", "parse_duration", "parse_hours"]

# How far ahead the calendar looks for a business day before it gives up; ten years covers any real calendar.
SEARCH_DAYS = 3660
NO_HOURS = "the business calendar has no working hours"

Interval = tuple[time, time]
"""A (start, end) pair of local wall-clock times. An end of 00:00 means midnight at the end of the day ("24:00")."""


@dataclass(frozen=True)
class Duration:
    """An SLA target in business time: whole business days, then business seconds on top."""

    days: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        if self.days < 0 or self.seconds < 0:
            raise ValueError("a duration cannot be negative")

    def __bool__(self) -> bool:
        return bool(self.days or self.seconds)

    def __str__(self) -> str:
        """The config file's notation (1d4h, 30m), so a logged or dumped target reads like the operator wrote it."""
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        parts = [(self.days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
        return "".join(f"{n}{unit}" for n, unit in parts if n) or "0m"


_DURATION = re.compile(r"\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*", re.IGNORECASE)


def parse_duration(text: str) -> Duration:
    """Read "4h", "30m", "3d", "1d4h", "2h30m" or "1d 4h"; the message of the ValueError is meant for an operator."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 4h, 30m, 3d or 1d4h")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    duration = Duration(days=days, seconds=hours * 3600 + minutes * 60)
    if not duration:
        raise ValueError(f"{text!r} must be longer than zero")
    return duration


_TIME = re.compile(r"\s*(\d{1,2}):(\d{2})\s*")


def _minutes(text: str) -> int | None:
    """Minutes since midnight, 0..1440 (24:00 is allowed here; only an end may use it)."""
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 60 + minutes


def _as_time(minutes: int) -> time:
    return time(0) if minutes == 24 * 60 else time(minutes // 60, minutes % 60)


def _parse_range(piece: str) -> tuple[int, int]:
    start_text, sep, end_text = piece.partition("-")
    start, end = _minutes(start_text), _minutes(end_text)
    if not sep or start is None or end is None:
        raise ValueError(f"{piece!r} is not a time range like 09:00-18:00 (times from 00:00 to 24:00)")
    if start == 24 * 60:
        raise ValueError(f"{piece} starts at 24:00; a range can only end there")
    if end < start:
        raise ValueError(f"{piece} ends before it starts")
    if end == start:
        raise ValueError(f"{piece} is empty (it ends when it starts)")
    return start, end


def _check_order(ranges: list[tuple[int, int]], pieces: list[str]) -> None:
    for ((_, previous_end), before), ((start, _), piece) in pairwise(zip(ranges, pieces, strict=True)):
        if start < previous_end:
            raise ValueError(f"{piece} starts before {before} ends (list the ranges in order, without overlaps)")


def parse_hours(text: str) -> tuple[Interval, ...]:
    """Read one day's opening hours, "09:00-18:00" or "09:00-12:00,13:00-18:00"; "" or "closed" for none.

    Ranges must be in order and must not overlap, so the calendar can walk them forward without sorting or
    merging; "24:00" may end a range to keep a day open until midnight.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not opening hours like 09:00-18:00, 09:00-12:00,13:00-18:00 or closed")
    if text.strip().lower() in ("", "closed"):
        return ()
    pieces = [piece.strip() for piece in text.split(",")]
    ranges = [_parse_range(piece) for piece in pieces]
    _check_order(ranges, pieces)
    return tuple((_as_time(start), _as_time(end)) for start, end in ranges)


def format_hours(intervals: tuple[Interval, ...]) -> str:
    """The inverse of parse_hours, so a dumped config can be read back."""
    if not intervals:
        return "closed"
    return ",".join(f"{start:%H:%M}-{'24:00' if end == time(0) else f'{end:%H:%M}'}" for start, end in intervals)


def _interval_minutes(interval: Interval) -> tuple[int, int]:
    start, end = interval
    return start.hour * 60 + start.minute, (end.hour * 60 + end.minute) or 24 * 60


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value.isoformat()}")
    return value.astimezone(UTC)


Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours per weekday (0 = Monday; a missing weekday is closed) and holidays, in one time zone.

    A business day is a local date that is not a holiday and has business time. Each interval is [open, close):
    the closing instant itself is outside business hours. Inputs must be timezone-aware (any zone); results are
    aware datetimes in UTC.
    """

    tz: ZoneInfo
    hours: Mapping[int, tuple[Interval, ...]]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for weekday, intervals in self.hours.items():
            if weekday not in range(7):
                raise ValueError(f"weekday {weekday} is not 0 (Monday) to 6 (Sunday)")
            ranges = [_interval_minutes(interval) for interval in intervals]
            if any(start >= end for start, end in ranges) or any(b[0] < a[1] for a, b in pairwise(ranges)):
                raise ValueError(f"the hours of weekday {weekday} must be ordered, non-empty and not overlap")
        # Frozen copies: the calendar is shared by threads and must not change under them.
        object.__setattr__(self, "hours", MappingProxyType({d: tuple(i) for d, i in self.hours.items() if i}))
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def add(self, start: datetime, duration: Duration) -> datetime:
        """The instant ``duration`` of business time after ``start``.

        From a closed moment (a night, a weekend, a holiday, a lunch break, a closing instant) counting starts at
        the next opening. The ``days`` part comes first: it keeps the business time already elapsed on the
        starting business day and lands on the Nth following business day at that same elapsed time, clamped to
        that day's length. So Wednesday 10:00 + 1d is Thursday 10:00, and Saturday 10:00 + 1d is Tuesday's
        opening: Monday's opening is where counting starts, and one business day after it is Tuesday's opening.
        The ``seconds`` part then walks forward through the intervals; a due time that falls exactly on a closing
        time stays there (09:00 + 9h with 09:00-18:00 is 18:00 the same day). A zero duration returns ``start``.
        """
        at = _aware(start, "start")
        if not duration:
            return at
        day, at = self._resume(at)
        if duration.days:
            elapsed = self._elapsed(day, at)
            for _ in range(duration.days):
                day = self._next_business_day(day + timedelta(days=1))
            at = self._at_elapsed(day, elapsed)
        return self._walk(day, at, timedelta(seconds=duration.seconds))

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time in [start, end); zero when ``end`` is not after ``start``."""
        start, end = _aware(start, "start"), _aware(end, "end")
        total = timedelta(0)
        if end <= start:
            return total
        day, last = self._local_date(start) - timedelta(days=1), self._local_date(end)
        while day <= last:
            for open_, close in self._spans(day):
                total += max(timedelta(0), min(close, end) - max(open_, start))
            day += timedelta(days=1)
        return total

    def next_open(self, at: datetime) -> datetime:
        """``at`` when it lies in business hours, else the next opening: a reminder due at night goes out when
        someone is there to read it."""
        return self._resume(_aware(at, "at"))[1]

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` lies in business hours (an opening instant does, a closing instant does not)."""
        at = _aware(at, "at")
        day = self._local_date(at)
        return any(open_ <= at < close for d in (day - timedelta(days=1), day) for open_, close in self._spans(d))

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def _spans(self, day: date) -> list[Span]:
        """The day's intervals as UTC instants; intervals a clock change swallowed are dropped."""
        if day in self.holidays:
            return []
        spans = []
        for start, end in self.hours.get(day.weekday(), ()):
            end_day = day + timedelta(days=1) if end == time(0) else day
            open_ = datetime.combine(day, start, tzinfo=self.tz).astimezone(UTC)
            close = datetime.combine(end_day, end, tzinfo=self.tz).astimezone(UTC)
            if close > open_:
                spans.append((open_, close))
        return spans

    def _days_from(self, day: date) -> Iterator[date]:
        """``day`` and the dates after it, up to the search limit; past it the calendar has no working hours."""
        for offset in range(SEARCH_DAYS + 1):
            yield day + timedelta(days=offset)
        raise ValueError(NO_HOURS)

    def _next_business_day(self, day: date) -> date:
        return next(d for d in self._days_from(day) if self._spans(d))

    def _resume(self, at: datetime) -> tuple[date, datetime]:
        """The business day and instant counting goes on from: ``at`` itself when open, else the next opening."""
        for day in self._days_from(self._local_date(at) - timedelta(days=1)):
            for open_, close in self._spans(day):
                if at < close:
                    return day, max(at, open_)
        raise AssertionError("unreachable: _days_from raises first")

    def _elapsed(self, day: date, at: datetime) -> timedelta:
        return sum((max(timedelta(0), min(close, at) - open_) for open_, close in self._spans(day)), timedelta(0))

    def _at_elapsed(self, day: date, elapsed: timedelta) -> datetime:
        """The instant ``elapsed`` business time into ``day``, or its last closing if the day is shorter."""
        spans = self._spans(day)
        for open_, close in spans:
            if elapsed <= close - open_:
                return open_ + elapsed
            elapsed -= close - open_
        return spans[-1][1]

    def _walk(self, day: date, at: datetime, remaining: timedelta) -> datetime:
        if not remaining:
            return at
        while True:
            for open_, close in self._spans(day):
                if close <= at:
                    continue
                begin = max(open_, at)
                if remaining <= close - begin:
                    return begin + remaining
                remaining -= close - begin
            day = self._next_business_day(day + timedelta(days=1))
