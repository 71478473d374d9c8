"""Storm protection: caps on automatic mail, so a robot that answers every mail cannot make us answer forever.

Per customer address, per hour and per day; and a circuit breaker over all automatic mail in the last hour.
Agents are exempt from the per-address caps (a busy agent legitimately gets many notifications) but count
towards the breaker. A mail held back is still written to the outbox, as ``suppressed`` with the reason, so
nothing disappears: `ticketd outbox retry ID` sends it if it was wanted after all.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlmodel import Session, func, select

from ticketd.daemon.config import Config
from ticketd.storage.models import Agent, Outbox, utcnow

log = structlog.get_logger("ticketd.storm")

ALERT_KIND = "admin-alert"


def _count(session: Session, since_hours: int, recipient: str | None = None) -> int:
    stmt = select(func.count()).select_from(Outbox).where(
        Outbox.automatic, Outbox.status != "suppressed", Outbox.kind != ALERT_KIND,
        Outbox.created_at >= utcnow() - timedelta(hours=since_hours))
    if recipient is not None:
        stmt = stmt.where(Outbox.recipient == recipient)
    return int(session.exec(stmt).one())


def hold_back_reason(session: Session, config: Config, recipient: str) -> str | None:
    """Why this automatic mail must not go out now, or None when it may."""
    limits = config.limits
    is_agent = session.exec(select(Agent.id).where(Agent.email == recipient)).first() is not None
    if not is_agent:
        if _count(session, 1, recipient) >= limits.auto_replies_per_recipient_hour:
            return f"storm cap: {limits.auto_replies_per_recipient_hour} automatic mails to {recipient} in an hour"
        if _count(session, 24, recipient) >= limits.auto_replies_per_recipient_day:
            return f"storm cap: {limits.auto_replies_per_recipient_day} automatic mails to {recipient} in a day"
    if _count(session, 1) >= limits.auto_replies_per_hour:
        return f"circuit breaker open: {limits.auto_replies_per_hour} automatic mails in the last hour"
    return None


def alert_recently_sent(session: Session, topic: str) -> bool:
    stmt = select(Outbox.id).where(Outbox.kind == ALERT_KIND, Outbox.subject.contains(topic),
                                   Outbox.created_at >= utcnow() - timedelta(hours=1))
    return session.exec(stmt.limit(1)).first() is not None
