"""The ``[[reports]]`` entries: a report workbook mailed on a cron schedule.

Each entry is checked when the config loads, with its key (``reports.0.schedule: ...``): a schedule that does
not parse, a report for nobody or for a company *and* a customer would otherwise fail only on the day it is due,
weeks later, with nobody watching.
"""

from __future__ import annotations

import re
from datetime import UTC, tzinfo
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BeforeValidator, field_validator, model_validator

from ticketd.daemon.config.fields import Email, Section

__all__ = ["PERIODS", "ReportConfig", "ReportList", "cron_schedule", "cron_trigger"]

PERIODS = ("previous-month", "previous-week", "last-30-days", "month-to-date")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# crontab(5) counts weekdays from Sunday (0 and 7), APScheduler 3 from Monday: names mean the same to both
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ITEM = re.compile(r"(\*|[0-7]|[a-z]{3})(?:-([0-7]|[a-z]{3}))?(?:/([1-9]\d*))?")


def _weekday_number(token: str) -> int:
    if token.isdigit():
        return int(token) % 7
    if token not in _WEEKDAYS:
        raise ValueError(f"unknown weekday {token!r}")
    return _WEEKDAYS.index(token)


def _weekdays(field: str) -> str:
    """The day-of-week field in names: ``1`` is Monday in crontab(5) but Tuesday to APScheduler 3."""
    days: set[int] = set()
    for item in field.lower().split(","):
        found = _DAY_ITEM.fullmatch(item)
        if found is None:
            raise ValueError(f"day of week {item!r} is not a weekday (0-7 or sun-sat), a range or a step")
        first, last, step = found.groups()
        if first == "*" and last is not None:
            raise ValueError(f"day of week {item!r}: '*' takes no range")
        if first == "*":
            start, end = 0, 6
        else:
            start = _weekday_number(first)
            end = (7 if last == "7" else _weekday_number(last)) if last else (6 if step else start)
        if end < start:
            raise ValueError(f"day of week {item!r}: the range runs backwards")
        days.update(day % 7 for day in range(start, end + 1, int(step or 1)))
    return "*" if len(days) == 7 else ",".join(_WEEKDAYS[day] for day in sorted(days))


def cron_trigger(schedule: str, timezone: tzinfo) -> CronTrigger:
    """``CronTrigger.from_crontab`` with the weekdays meaning what they mean in a crontab."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5 (minute hour day month weekday)")
    return CronTrigger.from_crontab(" ".join([*fields[:4], _weekdays(fields[4])]), timezone=timezone)


def cron_schedule(value: str, example: str) -> str:
    """A crontab line checked when the config loads, folded to single spaces; the error shows ``example``."""
    try:
        cron_trigger(value, UTC)
    except ValueError as exc:
        raise ValueError(f"not a cron schedule like \"{example}\" (minute hour day month weekday): {exc}") from None
    return " ".join(value.split())


def _recipients(value: Any) -> Any:
    """One address or a list of them; at least one, since a report for nobody is a mistake."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple) and not value:
        raise ValueError("must list at least one e-mail address")
    return value


def _unique_addresses(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value))


class ReportConfig(Section):
    name: str
    schedule: str
    recipients: Annotated[tuple[Email, ...], BeforeValidator(_recipients), AfterValidator(_unique_addresses)]
    company: str | None = None  # only this company's tickets (its name as in `ticketd companies list`)
    customer: Email | None = None  # only this customer's tickets
    language: Literal["en", "tr"] | None = None  # None: the helpdesk's language
    period: Literal["previous-month", "previous-week", "last-30-days", "month-to-date"] = "previous-month"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        """The name is part of the job id and of the workbook's file name."""
        if not _NAME.fullmatch(value):
            raise ValueError("must be letters, digits, '-' or '_' (it names the attached workbook)")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return cron_schedule(value, "0 8 1 * *")

    @field_validator("company")
    @classmethod
    def _company(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a company name (leave the key out for every company)")
        return " ".join(value.split()) if value is not None else None

    @model_validator(mode="after")
    def _one_scope(self) -> ReportConfig:
        if self.company is not None and self.customer is not None:
            raise ValueError("customer: give company or customer, not both")
        return self


def _unique_names(reports: list[ReportConfig]) -> list[ReportConfig]:
    """Two reports of one name would share a job and a file name: one of them would silently never run."""
    seen: dict[str, int] = {}
    for index, report in enumerate(reports):
        if report.name in seen:
            raise ValueError(f"reports.{seen[report.name]} and reports.{index} are both named {report.name!r}")
        seen[report.name] = index
    return reports


ReportList = Annotated[list[ReportConfig], AfterValidator(_unique_names)]
