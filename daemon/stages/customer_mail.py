"""A customer's mail: a new ticket with its acknowledgment, or an addition to a ticket they take part in.

What the customer writes after their ticket is resolved or closed is read as they mean it: a short thank-you
is recorded and shown to the assignee and changes nothing; a complaint ("still not working") reopens the
ticket as not satisfied and tells the managers; a question reopens it. A closed ticket reopens only within
``[closing] reopen_within`` of its closing; later mail opens a new ticket linked to it.
"""

from __future__ import annotations

from ticketd.daemon.outgoing import notify
from ticketd.daemon.outgoing.files import File
from ticketd.daemon.stages import closing
from ticketd.daemon.stages import new_ticket as new_ticket_setup
from ticketd.daemon.stages.conversation import (
    Incoming,
    Outcome,
    add_participants,
    event,
    message_context,
    open_ticket,
    record_message,
    record_setup,
)
from ticketd.parsers.commands import parse_commands
from ticketd.parsers.quotes import strip_reply
from ticketd.parsers.reply_intent import classify_reply
from ticketd.rules.commands import CommandContext, Effects, run_commands
from ticketd.rules.screen import Verdict
from ticketd.rules.states import FINISHED, change_state
from ticketd.storage.inbound import TRUNCATED_HEADER
from ticketd.storage.models import Customer, Ticket

SATISFACTION = frozenset({"satisfied", "not-satisfied"})


def handle_customer_mail(inc: Incoming) -> Outcome:
    customer = inc.sender.customer
    assert customer is not None
    if customer.blocked:
        return Outcome("dropped", reason=f"sender {customer.email} is blocked as spam")
    ticket, thread = inc.match.ticket, inc.match.conversation
    if ticket is not None and thread is not None and ticket.state in FINISHED:
        return on_finished_ticket(inc, ticket, thread)
    if ticket is None or thread is None:
        if inc.screening.verdict is Verdict.NO_AUTOREPLY:  # robots never open tickets
            return Outcome("dropped", reason=f"{inc.screening.rule}: {inc.screening.reason}; no ticket to join")
        return new_ticket(inc, inc.match.refused)
    return add_to_ticket(inc, ticket, thread)


def reply_text(inc: Incoming) -> str:
    return strip_reply(inc.mail.text).replace("\r\n", "\n")


def learn_language(inc: Incoming, customer: Customer) -> str | None:
    """A customer without a stored language gets the language of their first mail, when the templates speak
    it; every later mail to them is written in it. Returns the language learnt, if any."""
    if customer.language:
        return None
    if inc.form is not None and inc.form.language:  # the page they wrote on was in it
        customer.language = inc.form.language
        return inc.form.language
    guessed = inc.config.language_guesser.guess(f"{inc.subject.title}\n{inc.mail.text}")
    if guessed is not None:
        customer.language = guessed
    return guessed


def new_ticket(inc: Incoming, linked: Ticket | None) -> Outcome:
    customer = inc.sender.customer
    assert customer is not None
    learned = learn_language(inc, customer)
    written_to = [*(inc.inbound.recipients or "").split(), *(a.email for a in (*inc.mail.to, *inc.mail.cc))]
    setup = new_ticket_setup.prepare(inc.session, inc.config, customer, inc.now, mail=inc.mail, source=inc.source,
                                     mailbox=inc.inbound.mailbox, form=inc.form, written_to=written_to)
    ticket = open_ticket(inc.session, inc.subject.title, customer, setup, inc.now, linked_to=linked)
    message, files = record_message(inc, ticket, "customer", inc.mail.text)
    thread = (message.message_id, (message.message_id,))  # the ticket's conversation so far: this one mail
    event(inc, ticket, "created", new="new")
    if learned is not None:
        how = "the form's language" if inc.form is not None and inc.form.language else "the customer's first mail"
        event(inc, ticket, "language", new=f"{learned} (learnt from {how})")
    if linked is not None:
        event(inc, ticket, "linked", new=f"#{linked.number}")
    record_setup(inc.session, ticket, setup, inc.mail.message_id, inc.now)
    add_participants(inc, ticket, new_ticket=True)
    notify.to_requester(inc.session, inc.config, ticket, "received", cause="inbound", thread=thread)
    if setup.assignee is not None:
        notify.tell_assigned(inc.session, inc.config, ticket, inc.now, cause="inbound", thread=thread)
    tell_if_truncated(inc, ticket)
    notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket), "agent_new",
                     {"message": message_context(inc, inc.mail.text)}, cause="inbound", files=files, thread=thread)
    return Outcome("done", ticket.number, new_ticket=True, ticket_id=ticket.id)


def on_finished_ticket(inc: Incoming, ticket: Ticket, thread: Ticket) -> Outcome:
    """Mail on a closed or rejected ticket: a thank-you is kept on it; anything else reopens it within the
    reopen window, and after it opens a new ticket linked to the old one."""
    if inc.screening.verdict is Verdict.NO_AUTOREPLY:
        return Outcome("dropped", reason=f"{inc.screening.rule}: {inc.screening.reason}; the ticket is finished")
    text = reply_text(inc)
    intent = classify_reply(text)
    if intent == "thanks":
        return thanked(inc, ticket, thread, text)
    closed_at = ticket.closed_at
    if closed_at is None or inc.now - closed_at > inc.config.closing.reopen_within:
        return new_ticket(inc, ticket)
    _, files = record_message(inc, thread, "customer", text, is_reply=True)
    event(inc, ticket, "customer-reply", new=_on_thread(ticket, thread))
    add_participants(inc, thread)
    unhappy = intent == "complaint" and inc.customer_is_requester(ticket)
    reopen(inc, ticket, thread, text, unhappy, files)
    return Outcome("done", ticket.number, reason=f"reopened ({intent})", ticket_id=ticket.id)


def add_to_ticket(inc: Incoming, ticket: Ticket, thread: Ticket) -> Outcome:
    text = reply_text(inc)
    _, files = record_message(inc, thread, "customer", text, is_reply=True)
    event(inc, ticket, "customer-reply", new=_on_thread(ticket, thread))
    add_participants(inc, thread)
    if inc.screening.verdict is Verdict.NO_AUTOREPLY:
        return Outcome("done", ticket.number, reason=f"recorded, not answered: {inc.screening.reason}",
                       ticket_id=ticket.id)
    tell_if_truncated(inc, ticket, thread)
    said = message_context(inc, text)
    answered = satisfaction_answer(inc, ticket, text)
    if answered is not None:
        mails = answered.mails
        if "closed" in mails:
            closing.send_closed(inc.session, inc.config, ticket, "satisfied", cause="inbound")
        if "agent_reopened" in mails:
            closing.tell_reopened(inc.session, inc.config, ticket, "link", said, unhappy=True, cause="inbound",
                                  conversation=thread)
        if "reopened" in mails:
            closing.send_reopened(inc.session, inc.config, ticket, "link", cause="inbound", conversation=thread)
        return Outcome("done", ticket.number, reason=f"satisfaction: {answered.satisfaction}", ticket_id=ticket.id)
    if ticket.state == "resolved":
        intent = classify_reply(text)
        if intent == "thanks":
            return thanked(inc, ticket, thread, text, recorded=True, files=files)
        reopen(inc, ticket, thread, text, intent == "complaint" and inc.customer_is_requester(ticket), files)
        return Outcome("done", ticket.number, reason=f"reopened ({intent})", ticket_id=ticket.id)
    if ticket.state == "pending":  # the customer answered what we waited for: our move again
        change_state(inc.session, ticket, "open", by="customer", actor=inc.sender.address.email, now=inc.now,
                     calendar=inc.config.calendar, via_message_id=inc.mail.message_id)  # calls for no mail
    notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket), "agent_update",
                     {"message": said, "thanks": False}, cause="inbound", conversation=thread, files=files)
    return Outcome("done", ticket.number, ticket_id=ticket.id)


def thanked(inc: Incoming, ticket: Ticket, thread: Ticket, text: str, recorded: bool = False,
            files: list[File] | None = None) -> Outcome:
    """A thank-you after the work is done: kept on the ticket and shown to the assignee; the ticket stays as it
    is and no satisfaction is recorded (the one-click answer or the silence of auto-close does that)."""
    if not recorded:
        _, files = record_message(inc, thread, "customer", text, is_reply=True)
        event(inc, ticket, "customer-reply", new=_on_thread(ticket, thread))
    event(inc, ticket, "customer-thanks", new=text[:200])
    notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket), "agent_update",
                     {"message": message_context(inc, text), "thanks": True}, cause="inbound", conversation=thread,
                     files=files or [])
    return Outcome("done", ticket.number, reason="thanks; the ticket stays " + ticket.state, ticket_id=ticket.id)


def reopen(inc: Incoming, ticket: Ticket, thread: Ticket, text: str, unhappy: bool, files: list[File]) -> None:
    """The customer is not done: the ticket is open again (not satisfied, when they say it is not solved), the
    agents hear of it (the managers too when the customer is unhappy) and the customer is told."""
    how = "reply"
    if unhappy:
        change = closing.record_not_satisfied(inc.session, inc.config, ticket, inc.sender.address.email,
                                              inc.mail.message_id, inc.now)
    else:
        change = closing.reopen(inc.session, inc.config, ticket, inc.sender.address.email, inc.mail.message_id,
                                inc.now)
    if "agent_reopened" in change.mails:
        closing.tell_reopened(inc.session, inc.config, ticket, how, message_context(inc, text), unhappy=unhappy,
                              cause="inbound", conversation=thread, files=files)
    if "reopened" in change.mails:
        closing.send_reopened(inc.session, inc.config, ticket, how, cause="inbound", conversation=thread)


def _on_thread(ticket: Ticket, thread: Ticket) -> str | None:
    return f"on #{thread.number}" if thread.id != ticket.id else None


def satisfaction_answer(inc: Incoming, ticket: Ticket, text: str) -> Effects | None:
    """The requester's one-click answer to a resolved ticket, applied; only through their signed reply address."""
    customer = inc.sender.customer
    if customer is None or customer.id != ticket.requester_id or inc.match.via != "signed-address":
        return None
    parsed = parse_commands(inc.subject.title, text)
    answers = tuple(c for c in parsed.commands if c.name in SATISFACTION)
    if not answers:
        return None
    ctx = CommandContext(inc.session, inc.config.command_settings, customer.email, None, ticket, inc.mail.message_id,
                         inc.now)
    results = run_commands(ctx, answers[:1], (), requester=True)
    return ctx.effects if all(r.ok for r in results) else None


def tell_if_truncated(inc: Incoming, ticket: Ticket, thread: Ticket | None = None) -> None:
    """An oversized mail was stored in part: the customer learns what did not arrive, the ticket records it."""
    note = inc.mail.header(TRUNCATED_HEADER.lower())
    if note:
        event(inc, ticket, "truncated", new=note)
        notify.to_requester(inc.session, inc.config, ticket, "oversized",
                            {"limit_mb": inc.config.limits.max_message_bytes // (1024 * 1024), "note": note},
                            cause="inbound", conversation=thread)
