"""An agent's mail: authenticate, apply its commands all-or-nothing, relay its words to the customer.

A refused command mail changes nothing and reaches no customer; the agent is told exactly why. A mail that
claims an agent's address without proof is a security event: recorded, logged, and the real agent is told.
"""

from __future__ import annotations

import structlog

from ticketd.daemon import closing, new_ticket, notify
from ticketd.daemon.conversation import (
    Incoming,
    Outcome,
    event,
    message_context,
    open_ticket,
    record_message,
    record_setup,
)
from ticketd.parsers.commands import ParsedCommands, parse_commands
from ticketd.parsers.quotes import strip_reply
from ticketd.rules.auth import authenticate_agent
from ticketd.rules.commands import COMMANDS, CommandContext, CommandResult, run_commands
from ticketd.rules.identify import find_company_by_domain
from ticketd.storage.directory import DirectoryError, upsert_customer
from ticketd.storage.models import Agent, Event, Ticket, utcnow

log = structlog.get_logger("ticketd.agent_mail")


def handle_agent_mail(inc: Incoming) -> Outcome:
    agent = inc.sender.agent
    assert agent is not None
    text = strip_reply(inc.mail.text, keep_all_if_empty=False).replace("\r\n", "\n")
    parsed = parse_commands(inc.subject.title, text)
    ticket = inc.match.ticket
    if ticket is None and is_help_request(inc, parsed):
        send_help(inc, agent)
        return Outcome("done", reason="help sent")
    auth = authenticate_agent(inc.mail, inc.config, agent.email)
    if not auth.ok:
        return refuse_unauthenticated(inc, agent, parsed, auth.how)
    if ticket is None and not any(c.name == "customer" for c in parsed.commands):
        results = [CommandResult(inc.subject.title, False, "no ticket found: reply to a ticket's mail, or open "
                                 "one with [customer=address; source=phone]")]
        report_failure(inc, agent, None, results)
        return Outcome("done", reason="agent mail without a ticket")
    return apply_agent_mail(inc, agent, parsed)


def is_help_request(inc: Incoming, parsed: ParsedCommands) -> bool:
    return inc.subject.title.strip().lower() == "help" or any(c.name == "help" for c in parsed.commands)


def send_help(inc: Incoming, agent: Agent) -> None:
    commands = [{"syntax": spec.syntax, "help": spec.help} for spec in COMMANDS.values()]
    notify.to_agent(inc.session, inc.config, agent, "help", {
        "commands": commands, "helpdesk_tag": inc.config.helpdesk.tag,
        "new_ticket_address": notify.signed_address(inc.config, 0, agent.email),
    })


def refuse_unauthenticated(inc: Incoming, agent: Agent, parsed: ParsedCommands, reason: str) -> Outcome:
    ticket = inc.match.ticket
    inc.session.add(Event(ticket_id=ticket.id if ticket else None, actor=inc.sender.address.email,
                          what="security:unauthenticated-agent-mail", new=reason, via_message_id=inc.mail.message_id))
    log.warning("security.unauthenticated_agent_mail", agent=agent.email, message_id=inc.mail.message_id,
                ticket=ticket.number if ticket else None, reason=reason,
                commands=[c.raw for c in parsed.commands])
    notify.to_agent(inc.session, inc.config, agent, "security_alert", {
        "claimed_from": inc.sender.address.email, "reason": reason, "subject": inc.mail.subject,
        "message_id": inc.mail.message_id or "(none)",
    }, ticket=ticket)
    return Outcome("dropped", ticket.number if ticket else None,
                   reason=f"unauthenticated mail in the name of agent {agent.email}: {reason}")


def report_failure(inc: Incoming, agent: Agent, ticket: Ticket | None, results: list[CommandResult]) -> None:
    context = {"results": [r.__dict__ for r in results], "subject": inc.subject.title}
    notify.to_agent(inc.session, inc.config, agent, "command_result", context, ticket=ticket)


def apply_agent_mail(inc: Incoming, agent: Agent, parsed: ParsedCommands) -> Outcome:
    savepoint = inc.session.begin_nested()  # a ticket opened for a customer is undone with failing commands
    ticket, commands, new = inc.match.ticket, parsed.commands, False
    if ticket is None:
        opened = open_for_customer(inc, agent, parsed)
        if isinstance(opened, CommandResult):
            savepoint.rollback()
            report_failure(inc, agent, None, [opened])
            return Outcome("done", reason="commands refused; nothing applied")
        ticket, commands, new = opened, tuple(c for c in parsed.commands if c.name != "customer"), True
    ctx = CommandContext(inc.session, inc.config, agent.email, agent, ticket, inc.mail.message_id)
    results = run_commands(ctx, commands, parsed.errors)
    if not all(r.ok for r in results):
        savepoint.rollback()
        report_failure(inc, agent, None if new else ticket, results)
        return Outcome("done", None if new else ticket.number, reason="commands refused; nothing applied")
    savepoint.commit()
    effects = ctx.effects
    if new:
        notify.to_requester(inc.session, inc.config, ticket, "received")
    answered = None
    if effects.state in ("resolved", "rejected") and not effects.note:
        # The outcome mail carries the agent's words: one mail to the customer, not a reply and then another.
        answered = (closing.send_resolved(inc.session, inc.config, ticket, parsed.text) if effects.state == "resolved"
                    else closing.send_rejected(inc.session, inc.config, ticket, parsed.text))
    if parsed.text.strip() and not new:
        if effects.note or effects.merged_into is not None:
            record_message(inc, ticket, "note", parsed.text, is_reply=True)
        else:
            answered = answered or notify.relay_agent_reply(inc.session, inc.config, ticket, agent, parsed.text)
            record_message(inc, ticket, "agent-reply", parsed.text, direction="out", outbox_id=answered.id,
                           is_reply=True)
    if answered is not None and ticket.first_response_at is None:
        ticket.first_response_at = utcnow()
    if effects.state == "closed" and effects.merged_into is None:
        closing.send_closed(inc.session, inc.config, ticket, "satisfied" if effects.satisfaction else "agent")
    if effects.satisfaction == "not-satisfied":
        closing.tell_reopened(inc.session, inc.config, ticket, "agent", message_context(inc, parsed.text))
    if effects.assigned is not None:
        notify.to_requester(inc.session, inc.config, ticket, "assigned")
        if effects.assigned.id != agent.id:
            notify.to_agents(inc.session, inc.config, ticket, [effects.assigned], "agent_new",
                             {"message": message_context(inc, parsed.text or "(assigned to you)")})
    if effects.quote:
        notify.to_requester(inc.session, inc.config, ticket, "quote")
    if effects.help:
        send_help(inc, agent)
    return Outcome("done", ticket.number, new_ticket=new, ticket_id=ticket.id)


def open_for_customer(inc: Incoming, agent: Agent, parsed: ParsedCommands) -> Ticket | CommandResult:
    """[customer=x@y; source=phone]: the agent writes down a request that came by phone, letter or fax.

    The source defaults to phone; a [source=…] command among the others then sets (and validates) it.
    """
    command = next(c for c in parsed.commands if c.name == "customer")
    try:
        customer = upsert_customer(inc.session, command.value or "")
    except DirectoryError as exc:
        return CommandResult(command.raw, False, str(exc))
    if customer.company_id is None and (company := find_company_by_domain(inc.session, customer.email)):
        customer.company_id = company.id
    title = parsed.title or inc.subject.title
    setup = new_ticket.prepare(inc.session, inc.config, customer, utcnow(), mail=None, source="phone")
    ticket = open_ticket(inc.session, title, customer, setup)
    record_message(inc, ticket, "customer", parsed.text)
    event(inc, ticket, "created", new="new")
    event(inc, ticket, "opened-by-agent", new=f"{agent.email} ({ticket.source})")
    record_setup(inc.session, ticket, setup, inc.mail.message_id)
    return ticket
