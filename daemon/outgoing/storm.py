"""Storm protection: a robot that answers every mail cannot make us answer forever, and a burst of real
customers is answered in full.

Only mail *caused by inbound mail* (``cause = "inbound"``: the acknowledgment, "assigned to", the agents'
notifications of it) counts and can be held back: a loop is two robots answering each other, and an agent's
action (a reply, [take], [resolve]) or a timer is never one. Holding an agent's "resolved" mail back because
the same customer had five tickets reassigned that hour would punish the customer for the helpdesk's work.

Three limits, each aimed at one abuse and none at volume:

- **Per customer address**, per hour and per day: a robot at one address that answers everything.
- **The loop rule** (``answers_our_automatic_mail``, applied in ``loops``): a mail that answers one of our
  automatic mails from an address we never wrote to is recorded, not answered. That is the loop that slips
  under the per-address caps: another ticket system answering each receipt from a new ``reply+<n>@`` address.
- **The circuit breaker**, a safety net: it counts only automatic answers to customers caused by a mail that
  itself answered an automatic mail of ours (``Outbox.answers_automatic``), and when it is open it holds back
  only such answers. Fresh requests never count and are never held: 2,000 customers after an outage all get
  their receipt. (Until 0.9 it counted every automatic mail, so 500 receipts in an hour silenced everyone.)

Agents are exempt from the per-address caps and the breaker (a busy agent legitimately gets many
notifications), except for mail a stranger can make us send them: the security alert about a forged mail in
their name, help and the ticket list asked for without proof. Those are capped per agent per hour
(``alerts_per_recipient_hour``), so 500 forged mails make a few alerts and one note to the admin, not 500 mails.

A mail held back is still written to the outbox, as ``suppressed`` with the reason, and someone is always told
(the admin, else the managers, once an hour per topic): `ticketd outbox retry ID` sends it if it was wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlmodel import Session, col, func, select

from ticketd.daemon.config import Config
from ticketd.parsers.subject import strip_prefixes
from ticketd.rules.identify import agents
from ticketd.storage.models import Outbox, Participant, Ticket, utcnow

log = structlog.get_logger("ticketd.storm")

ALERT_KIND = "admin-alert"
CAPPED_CAUSE = "inbound"
# What a stranger can make us mail to an agent by writing in the agent's name (see agent_mail).
AGENT_ALERT_KINDS = ("security_alert", "agent_list", "help")


def is_capped(cause: str, kind: str) -> bool:
    """Whether the caps apply to a mail: automatic answers to inbound mail, never the admin's own alerts."""
    return cause == CAPPED_CAUSE and kind != ALERT_KIND


# --- what the mail being handled answers ---------------------------------------------------------------------

_ANSWERING = "ticketd.storm.answers_automatic"


def answering(session: Session, answers_automatic: bool) -> None:
    """Say whether the inbound mail now being handled answers an automatic mail of ours; the mail it causes is
    marked so (``Outbox.answers_automatic``). Set by the pipeline for each inbound mail of a batch."""
    session.info[_ANSWERING] = answers_automatic


def answers_automatic(session: Session) -> bool:
    return bool(session.info.get(_ANSWERING, False))


_AUTOMATIC_NAMED: sa.Select[int | None] = (  # built once: every mail with threading headers asks
    sa.select(col(Outbox.id)).where(col(Outbox.message_id).in_(sa.bindparam("ids", expanding=True)),
                                    col(Outbox.automatic)).order_by(col(Outbox.id).desc()).limit(1))


def automatic_mail_answered(session: Session, refs: Sequence[str]) -> Outbox | None:
    """The automatic mail of ours that a mail's In-Reply-To/References name, if any (newest first). The id is
    looked up on the connection (outbox rows are written by plain INSERTs); the row is loaded only when found."""
    ids = [r[:998] for r in refs if r]
    if not ids:
        return None
    found = session.connection().execute(_AUTOMATIC_NAMED, {"ids": ids}).scalar()
    return session.get(Outbox, found) if found is not None else None


def automatic_mail_quoted(session: Session, subject: str, ticket_number: int | None) -> Outbox | None:
    """The automatic mail of ours whose exact subject a mail repeats behind its reply prefixes, on the ticket its
    tag names: a robot that drops the threading headers still quotes the subject of what it answers. The subject
    carries the customer's own words, so a stranger cannot guess it from a ticket number alone."""
    if ticket_number is None:
        return None
    quoted = strip_prefixes(subject).strip()
    ticket_id = select(Ticket.id).where(Ticket.number == ticket_number).scalar_subquery()
    stmt = select(Outbox).where(Outbox.ticket_id == ticket_id, Outbox.automatic, Outbox.subject == quoted)
    return session.exec(stmt.order_by(col(Outbox.id).desc()).limit(1)).first()


def ever_wrote_to(session: Session, address: str) -> bool:
    """Whether mail of ours went to this address: as its addressee (the indexed recipient column), or as a
    participant of a ticket (they are copied on its agents' replies)."""
    address = address.strip().lower()
    if session.exec(select(Outbox.id).where(Outbox.recipient == address).limit(1)).first() is not None:
        return True
    return session.exec(select(Participant.id).where(Participant.email == address).limit(1)).first() is not None


# --- the caps ------------------------------------------------------------------------------------------------

_HOUR_AGO: sa.BindParameter[datetime] = sa.bindparam("hour_ago")
_DAY_AGO: sa.BindParameter[datetime] = sa.bindparam("day_ago")
_RECIPIENT_COUNTS = (
    select(func.count(), func.coalesce(func.sum(sa.case((Outbox.created_at >= _HOUR_AGO, 1), else_=0)), 0))
    .select_from(Outbox)
    .where(Outbox.recipient == sa.bindparam("recipient"), Outbox.cause == CAPPED_CAUSE, Outbox.status != "suppressed",
           Outbox.kind != ALERT_KIND, Outbox.created_at >= _DAY_AGO)
)


def _recipient_counts(session: Session, recipient: str) -> tuple[int, int]:
    """(last hour, last day) of capped mail to one address, in one indexed query built once."""
    now = utcnow()
    # On the connection, not through the ORM: outbox rows are written by plain INSERTs, so there is nothing for an
    # autoflush to write first, and the ORM's flush of the batch's other changes cost more than this query.
    day, hour = session.connection().execute(_RECIPIENT_COUNTS, {
        "recipient": recipient, "hour_ago": now - timedelta(hours=1), "day_ago": now - timedelta(hours=24)}).one()
    return int(hour), int(day)


def _agent_alerts_last_hour(session: Session, recipient: str) -> int:
    stmt = select(func.count()).select_from(Outbox).where(
        Outbox.recipient == recipient, Outbox.cause == CAPPED_CAUSE, Outbox.status != "suppressed",
        col(Outbox.kind).in_(AGENT_ALERT_KINDS), Outbox.created_at >= utcnow() - timedelta(hours=1))
    return int(session.exec(stmt).one())


def last_alert_before_cap(session: Session, config: Config, recipient: str) -> bool:
    """Whether the next alert to this agent is the last one the cap lets through this hour: it says so, and the
    rest of the hour is summed up to the admin (the once-an-hour "mail held back" alert)."""
    return _agent_alerts_last_hour(session, recipient) == config.limits.alerts_per_recipient_hour - 1


_BREAKER = "ticketd.storm.last_hour"


def _agent_emails(session: Session) -> set[str]:
    return {a.email for a in agents(session)}


def _last_hour_echoes(session: Session) -> int:
    """Automatic answers to customers, in the last hour, caused by mail answering our automatic mail: counted
    once per transaction, then kept up by ``note_queued``."""
    if _BREAKER not in session.info:
        stmt = select(func.count()).select_from(Outbox).where(
            Outbox.answers_automatic, Outbox.cause == CAPPED_CAUSE, Outbox.status != "suppressed",
            Outbox.kind != ALERT_KIND, Outbox.created_at >= utcnow() - timedelta(hours=1))
        mine = _agent_emails(session)
        if mine:
            stmt = stmt.where(col(Outbox.recipient).not_in(mine))
        session.info[_BREAKER] = int(session.exec(stmt).one())
    return int(session.info[_BREAKER])


def note_queued(session: Session, cause: str, status: str, kind: str, recipient: str = "") -> None:
    if (_BREAKER in session.info and is_capped(cause, kind) and status != "suppressed"
            and answers_automatic(session) and recipient not in _agent_emails(session)):
        session.info[_BREAKER] += 1


def hold_back_reason(session: Session, config: Config, recipient: str, kind: str = "") -> str | None:
    """Why this automatic answer must not go out now, or None when it may."""
    limits = config.limits
    if recipient in _agent_emails(session):
        cap = limits.alerts_per_recipient_hour
        if kind in AGENT_ALERT_KINDS and _agent_alerts_last_hour(session, recipient) >= cap:
            return f"alert cap: {cap} alerts to {recipient} in an hour"
        return None
    hour, day = _recipient_counts(session, recipient)
    if hour >= limits.auto_replies_per_recipient_hour:
        return f"storm cap: {limits.auto_replies_per_recipient_hour} automatic mails to {recipient} in an hour"
    if day >= limits.auto_replies_per_recipient_day:
        return f"storm cap: {limits.auto_replies_per_recipient_day} automatic mails to {recipient} in a day"
    if answers_automatic(session) and _last_hour_echoes(session) >= limits.auto_replies_per_hour:
        return (f"circuit breaker open: {limits.auto_replies_per_hour} automatic answers in the last hour to mail "
                "that answered our automatic mail")
    return None


def alert_recently_sent(session: Session, topic: str) -> bool:
    stmt = select(Outbox.id).where(Outbox.kind == ALERT_KIND, col(Outbox.subject).contains(topic),
                                   Outbox.created_at >= utcnow() - timedelta(hours=1))
    return session.exec(stmt.limit(1)).first() is not None
