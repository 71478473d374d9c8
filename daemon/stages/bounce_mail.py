"""Bounces: recorded on the ticket whose mail bounced, the assignee told; never a ticket, never answered."""

from __future__ import annotations

from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import notify
from ticketd.daemon.stages.conversation import Outcome
from ticketd.parsers.message import ParsedMail
from ticketd.rules.bounces import Bounce
from ticketd.storage import batch
from ticketd.storage.models import Inbound, Message, Outbox, Ticket


def bounced_mail(session: Session, bounce: Bounce) -> Outbox | None:
    """Our outgoing mail the bounce refers to: by its Message-ID, else the latest mail to the failed address."""
    if bounce.message_ids:
        row = session.exec(select(Outbox).where(col(Outbox.message_id).in_(bounce.message_ids))).first()
        if row is not None:
            return row
    if bounce.recipients:
        return session.exec(select(Outbox).where(col(Outbox.recipient).in_(bounce.recipients), Outbox.status == "sent")
                            .order_by(col(Outbox.id).desc())).first()
    return None


def handle_bounce(session: Session, config: Config, inbound: Inbound, mail: ParsedMail, bounce: Bounce) -> Outcome:
    what = f"{'bounce' if bounce.permanent else 'delivery delayed'}: {', '.join(bounce.recipients) or '?'}" \
        + (f" ({bounce.status})" if bounce.status else "")
    row = bounced_mail(session, bounce)
    ticket = session.get(Ticket, row.ticket_id) if row is not None and row.ticket_id else None
    if row is not None and bounce.permanent:
        row.last_error = f"bounced: {bounce.diagnostic or bounce.status or 'undeliverable'}"[:2000]
    if ticket is None:
        return Outcome("dropped", reason=f"{what}; matches no mail of ours")
    assert ticket.id is not None  # loaded from the database
    batch.add(session, Message(
        ticket_id=ticket.id, direction="in", kind="auto", inbound_id=inbound.id,
        message_id=mail.message_id or f"<bounce.{inbound.message_id_hash[:32]}@ticketd.invalid>",
        from_addr=mail.sender.email if mail.sender else "", subject=mail.subject,
        text=f"{what}\n{bounce.diagnostic or ''}".strip(), date=mail.date))
    batch.event(session, ticket_id=ticket.id, actor=mail.sender.email if mail.sender else "mailer-daemon",
                what="bounce" if bounce.permanent else "delivery-delayed", new=what,
                via_message_id=row.message_id if row else None)
    if bounce.permanent:
        notify.to_agents(session, config, ticket, notify.agents_to_notify(session, ticket), "agent_bounce",
                         {"bounce": {"summary": what, "diagnostic": bounce.diagnostic or "",
                                     "subject": row.subject if row else ""}}, cause="inbound")
    return Outcome("done", ticket.number, reason=what)
