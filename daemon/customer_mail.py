"""A customer's mail: a new ticket with its acknowledgment, or an addition to a ticket they take part in."""

from __future__ import annotations

from ticketd.daemon import closing, notify, sla_clock
from ticketd.daemon import new_ticket as new_ticket_setup
from ticketd.daemon.conversation import (
    Incoming,
    Outcome,
    add_participants,
    event,
    message_context,
    open_ticket,
    record_message,
    record_setup,
)
from ticketd.daemon.poller import TRUNCATED_HEADER
from ticketd.parsers.commands import parse_commands
from ticketd.parsers.quotes import strip_reply
from ticketd.rules.commands import CommandContext, run_commands
from ticketd.rules.screen import Verdict
from ticketd.rules.states import REOPENED_BY_CUSTOMER, set_state_allowed
from ticketd.storage.models import Ticket, utcnow

SATISFACTION = frozenset({"satisfied", "not-satisfied"})


def handle_customer_mail(inc: Incoming) -> Outcome:
    customer = inc.sender.customer
    assert customer is not None
    if customer.blocked:
        return Outcome("dropped", reason=f"sender {customer.email} is blocked as spam")
    ticket = inc.match.ticket
    linked = inc.match.refused
    if ticket is not None and ticket.state in ("closed", "rejected"):
        ticket, linked = None, ticket  # mail on a finished ticket starts a new one, linked to it
    if ticket is None:
        if inc.screening.verdict is Verdict.NO_AUTOREPLY:  # robots never open tickets
            return Outcome("dropped", reason=f"{inc.screening.rule}: {inc.screening.reason}; no ticket to join")
        return new_ticket(inc, linked)
    return add_to_ticket(inc, ticket)


def new_ticket(inc: Incoming, linked: Ticket | None) -> Outcome:
    customer = inc.sender.customer
    assert customer is not None
    setup = new_ticket_setup.prepare(inc.session, inc.config, customer, utcnow(), mail=inc.mail, source=inc.source,
                                     mailbox=inc.inbound.mailbox)
    ticket = open_ticket(inc.session, inc.subject.title, customer, setup, linked_to=linked)
    record_message(inc, ticket, "customer", inc.mail.text)
    event(inc, ticket, "created", new="new")
    if linked is not None:
        event(inc, ticket, "linked", new=f"#{linked.number}")
    record_setup(inc.session, ticket, setup, inc.mail.message_id)
    add_participants(inc, ticket, new_ticket=True)
    notify.to_requester(inc.session, inc.config, ticket, "received")
    if setup.assignee is not None:
        notify.to_requester(inc.session, inc.config, ticket, "assigned")
    tell_if_truncated(inc, ticket)
    notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket), "agent_new",
                     {"message": message_context(inc, inc.mail.text)})
    return Outcome("done", ticket.number, new_ticket=True, ticket_id=ticket.id)


def add_to_ticket(inc: Incoming, ticket: Ticket) -> Outcome:
    customer = inc.sender.customer
    assert customer is not None
    text = strip_reply(inc.mail.text).replace("\r\n", "\n")
    record_message(inc, ticket, "customer", text, is_reply=True)
    event(inc, ticket, "customer-reply")
    add_participants(inc, ticket)
    if inc.screening.verdict is Verdict.NO_AUTOREPLY:
        return Outcome("done", ticket.number, reason=f"recorded, not answered: {inc.screening.reason}",
                       ticket_id=ticket.id)
    tell_if_truncated(inc, ticket)
    said = message_context(inc, text)
    answer = satisfaction_answer(inc, ticket, text)
    if answer == "satisfied":
        closing.send_closed(inc.session, inc.config, ticket, "satisfied")
    elif answer == "not-satisfied":
        closing.tell_reopened(inc.session, inc.config, ticket, "link", said)
    elif ticket.state == "resolved" and inc.customer_is_requester(ticket):
        # A plain answer to the resolved mail: not satisfied (the process reads silence as yes, words as no).
        closing.record_not_satisfied(inc.session, inc.config, ticket, customer.email, inc.mail.message_id)
        closing.tell_reopened(inc.session, inc.config, ticket, "reply", said)
    else:
        if ticket.state in REOPENED_BY_CUSTOMER and set_state_allowed(ticket.state, "open"):
            event(inc, ticket, "state", ticket.state, "open")
            sla_clock.on_state_change(inc.config, ticket, ticket.state, "open", utcnow())
            ticket.state, ticket.closed_at = "open", None
        notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket),
                         "agent_update", {"message": said})
    return Outcome("done", ticket.number, reason=f"satisfaction: {answer}" if answer else None,
                   ticket_id=ticket.id)


def satisfaction_answer(inc: Incoming, ticket: Ticket, text: str) -> str | None:
    """The requester's one-click answer to a resolved ticket; only through their signed reply address."""
    customer = inc.sender.customer
    if customer is None or customer.id != ticket.requester_id or inc.match.via != "signed-address":
        return None
    parsed = parse_commands(inc.subject.title, text)
    answers = tuple(c for c in parsed.commands if c.name in SATISFACTION)
    if not answers:
        return None
    ctx = CommandContext(inc.session, inc.config, customer.email, None, ticket, inc.mail.message_id)
    results = run_commands(ctx, answers[:1], (), requester=True)
    return answers[0].name if all(r.ok for r in results) else None


def tell_if_truncated(inc: Incoming, ticket: Ticket) -> None:
    """An oversized mail was stored in part: the customer learns what did not arrive, the ticket records it."""
    note = inc.mail.header(TRUNCATED_HEADER.lower())
    if note:
        event(inc, ticket, "truncated", new=note)
        notify.to_requester(inc.session, inc.config, ticket, "oversized",
                            {"limit_mb": inc.config.limits.max_message_bytes // (1024 * 1024), "note": note})
