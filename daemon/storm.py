"""Storm protection: caps on mail that answers inbound mail automatically, so a robot that answers every mail
cannot make us answer forever.

Per customer address, per hour and per day; and a circuit breaker over all such mail in the last hour. Only
mail *caused by inbound mail* (``cause = "inbound"``: the acknowledgment, "assigned to", the agents'
notifications of it) counts and can be held back: a loop is two robots answering each other, and an agent's
action (a reply, [take], [resolve]) or a timer is never one. Holding an agent's "resolved" mail back because
the same customer had five tickets reassigned that hour would punish the customer for the helpdesk's work.
Agents are exempt from the per-address caps (a busy agent legitimately gets many notifications) but count
towards the breaker. A mail held back is still written to the outbox, as ``suppressed`` with the reason, and
someone is always told (the admin, else the managers): `ticketd outbox retry ID` sends it if it was wanted.
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
CAPPED_CAUSE = "inbound"


def is_capped(cause: str, kind: str) -> bool:
    """Whether the caps apply to a mail: automatic answers to inbound mail, never the admin's own alerts."""
    return cause == CAPPED_CAUSE and kind != ALERT_KIND


def _counted(since_hours: int) -> list[sa.ColumnElement[bool]]:
    return [Outbox.cause == CAPPED_CAUSE, Outbox.status != "suppressed", Outbox.kind != ALERT_KIND,
            Outbox.created_at >= utcnow() - timedelta(hours=since_hours)]


_HOUR_AGO, _DAY_AGO = sa.bindparam("hour_ago"), sa.bindparam("day_ago")
_RECIPIENT_COUNTS = (
    select(func.count(), func.coalesce(func.sum(sa.case((Outbox.created_at >= _HOUR_AGO, 1), else_=0)), 0))
    .select_from(Outbox)
    .where(Outbox.recipient == sa.bindparam("recipient"), Outbox.cause == CAPPED_CAUSE, Outbox.status != "suppressed",
           Outbox.kind != ALERT_KIND, Outbox.created_at >= _DAY_AGO)
)


def _recipient_counts(session: Session, recipient: str) -> tuple[int, int]:
    """(last hour, last day) of capped mail to one address, in one indexed query built once."""
    now = utcnow()
    day, hour = session.exec(_RECIPIENT_COUNTS, params={  # type: ignore[call-overload]
        "recipient": recipient, "hour_ago": now - timedelta(hours=1), "day_ago": now - timedelta(hours=24)}).one()
    return int(hour), int(day)


_BREAKER = "ticketd.storm.last_hour"


def _last_hour_total(session: Session) -> int:
    """All capped mail of the last hour: counted once per transaction, then kept up by ``note_queued``."""
    if _BREAKER not in session.info:
        session.info[_BREAKER] = int(session.exec(select(func.count()).select_from(Outbox)
                                                  .where(*_counted(1))).one())
    return int(session.info[_BREAKER])


def note_queued(session: Session, cause: str, status: str, kind: str) -> None:
    if _BREAKER in session.info and is_capped(cause, kind) and status != "suppressed":
        session.info[_BREAKER] += 1


def hold_back_reason(session: Session, config: Config, recipient: str) -> str | None:
    """Why this automatic answer must not go out now, or None when it may."""
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
