"""Tickets and time per stage of the organisation's own process ([process.<type>]), read from the ``stage`` events.

A ticket's time in a stage runs from the event that moved it in to the one that moved it out (or to the report's
``now`` while it is still there), in business hours of the helpdesk's calendar like every other duration of the
report. Each entering counts: a ticket sent back to a stage spends two spells there, both added up.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from ticketd.rules.process import Process
from ticketd.rules.sla import BusinessCalendar
from ticketd.storage.models import Event


@dataclass(frozen=True)
class StageFigures:
    type: str
    stage: str
    now_in: int  # tickets of the scope in this stage now
    entered: int  # times a ticket entered it (a ticket sent back counts again)
    total_hours: float  # business hours spent in it, all spells together
    median_hours: float | None  # of the spells that ended or run on


def stage_figures(session: Session, calendar: BusinessCalendar, processes: Mapping[str, Process],
                  tickets: Iterable[Mapping[Any, Any]], now: datetime) -> list[StageFigures]:
    """``tickets``: the scope's rows (id, type, stage). Ordered by the configured stages, then by name."""
    by_id = {int(str(t["id"])): t for t in tickets}
    if not by_id:
        return []
    moves = session.execute(sa.select(col(Event.ticket_id), col(Event.new), col(Event.at))
                            .where(col(Event.what) == "stage", col(Event.ticket_id).in_(by_id))
                            .order_by(col(Event.ticket_id), col(Event.at), col(Event.id))).all()
    spells: dict[tuple[str, str], list[float]] = {}
    current: dict[int, tuple[str, datetime]] = {}
    for ticket_id, stage, at in moves:
        kind = str(by_id[ticket_id]["type"])
        if ticket_id in current:
            previous, since = current[ticket_id]
            spells.setdefault((kind, previous), []).append(_hours(calendar, since, at))
        if stage is not None:
            current[ticket_id] = (stage, at)
    for ticket_id, (stage, since) in current.items():
        spells.setdefault((str(by_id[ticket_id]["type"]), stage), []).append(_hours(calendar, since, now))
    now_in: dict[tuple[str, str], int] = {}
    for row in by_id.values():
        if row["stage"]:
            key = (str(row["type"]), str(row["stage"]))
            now_in[key] = now_in.get(key, 0) + 1
    keys = _ordered(set(spells) | set(now_in), processes)
    return [StageFigures(kind, stage, now_in.get((kind, stage), 0), len(spells.get((kind, stage), [])),
                         round(sum(spells.get((kind, stage), [])), 2),
                         round(statistics.median(spells[(kind, stage)]), 2) if spells.get((kind, stage)) else None)
            for kind, stage in keys]


def _hours(calendar: BusinessCalendar, start: datetime, end: datetime) -> float:
    return calendar.between(start, end).total_seconds() / 3600


def _ordered(keys: set[tuple[str, str]], processes: Mapping[str, Process]) -> Sequence[tuple[str, str]]:
    def rank(key: tuple[str, str]) -> tuple[str, int, str]:
        flow = processes.get(key[0])
        names = flow.names() if flow is not None else ()
        return key[0], names.index(key[1]) if key[1] in names else len(names), key[1]
    return sorted(keys, key=rank)
