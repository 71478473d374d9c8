"""The ``[sla]`` section: business hours, holidays and the response and resolution targets per priority.

Targets and hours are parsed once, while the config loads, into the values ``ticketd.rules.sla`` and
``ticketd.rules.sla_clock`` compute with (the rules never see this section); a bad one is reported as
``sla.first_response.high: reason`` like every other config problem.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field, PlainSerializer, PlainValidator, field_validator

from ticketd.daemon.config.fields import PositiveInt, Section
from ticketd.rules.sla import BusinessCalendar, Duration, Interval, format_hours, parse_duration, parse_hours
from ticketd.rules.sla_clock import PRIORITIES, SlaTargets

__all__ = ["PRIORITIES", "BusinessHours", "SlaConfig", "SlaPlan"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _duration(value: Any) -> Duration:
    """Accept the already parsed value too, so defaults and copies need not go back through text."""
    return value if isinstance(value, Duration) else parse_duration(value)


def _hours(value: Any) -> tuple[Interval, ...]:
    return value if isinstance(value, tuple) else parse_hours(value)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _holiday(value: Any) -> date:
    """A TOML date or an ISO string; a TOML date-time is refused since a holiday is a whole local day."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date like 2026-12-31")


DurationField = Annotated[Duration, PlainValidator(_duration), PlainSerializer(str, return_type=str)]
HoursField = Annotated[tuple[Interval, ...], PlainValidator(_hours), PlainSerializer(format_hours, return_type=str)]
Holiday = Annotated[date, PlainValidator(_holiday), PlainSerializer(date.isoformat, return_type=str)]

NINE_TO_SIX = parse_hours("09:00-18:00")


class BusinessHours(Section):
    """Opening hours per weekday; a day left out of the table is closed."""

    mon: HoursField = ()
    tue: HoursField = ()
    wed: HoursField = ()
    thu: HoursField = ()
    fri: HoursField = ()
    sat: HoursField = ()
    sun: HoursField = ()

    def by_weekday(self) -> dict[int, tuple[Interval, ...]]:
        """Keyed 0 = Monday, as ``datetime.weekday`` and the calendar count."""
        return {number: getattr(self, name) for number, name in enumerate(WEEKDAYS) if getattr(self, name)}


class FirstResponseTargets(Section):
    low: DurationField = parse_duration("8h")
    normal: DurationField = parse_duration("4h")
    high: DurationField = parse_duration("2h")
    urgent: DurationField = parse_duration("1h")


class ResolutionTargets(Section):
    low: DurationField = parse_duration("5d")
    normal: DurationField = parse_duration("3d")
    high: DurationField = parse_duration("1d")
    urgent: DurationField = parse_duration("4h")


class PlanTargets(Section):
    """A plan names only the priorities it changes; the others keep the section's targets."""

    low: DurationField | None = None
    normal: DurationField | None = None
    high: DurationField | None = None
    urgent: DurationField | None = None


class SlaPlan(Section):
    first_response: PlanTargets = PlanTargets()
    resolution: PlanTargets = PlanTargets()


class SlaConfig(Section):
    business_hours: BusinessHours = Field(
        default_factory=lambda: BusinessHours(mon=NINE_TO_SIX, tue=NINE_TO_SIX, wed=NINE_TO_SIX, thu=NINE_TO_SIX,
                                              fri=NINE_TO_SIX))
    holidays: tuple[Holiday, ...] = ()
    sweep_seconds: PositiveInt = 60  # how often the daemon looks for timers that fell due
    first_response: FirstResponseTargets = FirstResponseTargets()
    resolution: ResolutionTargets = ResolutionTargets()
    plans: dict[str, SlaPlan] = Field(default_factory=dict)

    @field_validator("business_hours")
    @classmethod
    def _some_hours(cls, value: BusinessHours) -> BusinessHours:
        """Refused at load: with every day closed no deadline could ever be computed, let alone reached."""
        if not value.by_weekday():
            raise ValueError("every day is closed, so no SLA deadline could ever fall due")
        return value

    def calendar(self, tz: ZoneInfo) -> BusinessCalendar:
        """The calendar in the helpdesk's time zone, which lives in ``[helpdesk]`` rather than here."""
        return BusinessCalendar(tz=tz, hours=self.business_hours.by_weekday(), holidays=frozenset(self.holidays))

    def target_table(self) -> SlaTargets:
        """The targets as the rules take them: per priority, and per plan the priorities it changes."""
        def table(targets: Section) -> dict[str, Duration]:
            return {p: value for p in PRIORITIES if (value := getattr(targets, p)) is not None}

        return SlaTargets(table(self.first_response), table(self.resolution),
                          {name: (table(plan.first_response), table(plan.resolution))
                           for name, plan in self.plans.items()})

    def targets(self, plan: str | None, priority: str) -> tuple[Duration, Duration]:
        """(first response, resolution) for a priority, as ``rules.sla_clock.SlaTargets`` reads them."""
        return self.target_table().targets(plan, priority)
