"""Storm protection: caps on automatic mail, so a robot that answers every mail cannot make us answer forever.

Per customer address, per hour and per day; and a circuit breaker over all automatic mail in the last hour.
Agents are exempt from the per-address caps (a busy agent legitimately gets many notifications) but count
towards the breaker. A mail held back is still written to the outbox, as ``suppressed`` with the reason, so
nothing disappears: `ticketd outbox retry ID` sends it if it was wanted after all.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
import structlog
from sqlmodel import Session, func, select

from ticketd.daemon.config import Config
from ticketd.rules.identify import agents
from ticketd.storage.models import Outbox, utcnow

log = structlog.get_logger("ticketd.storm")

ALERT_KIND = "admin-alert"


def _automatic(since_hours: int) -> list[sa.ColumnElement[bool]]:
    return [Outbox.automatic, Outbox.status != "suppressed", Outbox.kind != ALERT_KIND,
            Outbox.created_at >= utcnow() - timedelta(hours=since_hours)]


_HOUR_AGO, _DAY_AGO = sa.bindparam("hour_ago"), sa.bindparam("day_ago")
_RECIPIENT_COUNTS = (
    select(func.count(), func.coalesce(func.sum(sa.case((Outbox.created_at >= _HOUR_AGO, 1), else_=0)), 0))
    .select_from(Outbox)
    .where(Outbox.recipient == sa.bindparam("recipient"), Outbox.automatic, Outbox.status != "suppressed",
           Outbox.kind != ALERT_KIND, Outbox.created_at >= _DAY_AGO)
)


def _recipient_counts(session: Session, recipient: str) -> tuple[int, int]:
    """(last hour, last day) of automatic mail to one address, in one indexed query built once."""
    now = utcnow()
    day, hour = session.exec(_RECIPIENT_COUNTS, params={  # type: ignore[call-overload]
        "recipient": recipient, "hour_ago": now - timedelta(hours=1), "day_ago": now - timedelta(hours=24)}).one()
    return int(hour), int(day)


_BREAKER = "ticketd.storm.last_hour"


def _last_hour_total(session: Session) -> int:
    """All automatic mail of the last hour: counted once per transaction, then kept up by ``note_queued``."""
    if _BREAKER not in session.info:
        session.info[_BREAKER] = int(session.exec(select(func.count()).select_from(Outbox)
                                                  .where(*_automatic(1))).one())
    return int(session.info[_BREAKER])


def note_queued(session: Session, automatic: bool, status: str, kind: str) -> None:
    if _BREAKER in session.info and automatic and status != "suppressed" and kind != ALERT_KIND:
        session.info[_BREAKER] += 1


def hold_back_reason(session: Session, config: Config, recipient: str) -> str | None:
    """Why this automatic mail must not go out now, or None when it may."""
    limits = config.limits
    if not any(a.email == recipient for a in agents(session)):
        hour, day = _recipient_counts(session, recipient)
        if hour >= limits.auto_replies_per_recipient_hour:
            return f"storm cap: {limits.auto_replies_per_recipient_hour} automatic mails to {recipient} in an hour"
        if day >= limits.auto_replies_per_recipient_day:
            return f"storm cap: {limits.auto_replies_per_recipient_day} automatic mails to {recipient} in a day"
    if _last_hour_total(session) >= limits.auto_replies_per_hour:
        return f"circuit breaker open: {limits.auto_replies_per_hour} automatic mails in the last hour"
    return None


def alert_recently_sent(session: Session, topic: str) -> bool:
    stmt = select(Outbox.id).where(Outbox.kind == ALERT_KIND, Outbox.subject.contains(topic),
                                   Outbox.created_at >= utcnow() - timedelta(hours=1))
    return session.exec(stmt.limit(1)).first() is not None
