"""An agent's mail: authenticate, apply its commands all-or-nothing, relay its words to the customer.

A refused command mail changes nothing and reaches no customer; the agent is told exactly why. A mail that
claims an agent's address without proof is a security event: recorded, logged, and the real agent is told.
A mail whose reply address and subject tag name different tickets is refused the same way: the command must
reach the ticket the agent meant, and nobody can tell which one that was.

Everything the commands cause is told to whoever it concerns, once the whole mail is applied: the customer
("assigned to", "resolved", "reopened"), the new assignee, the previous one, a group whose policy chose nobody,
a colleague named with ``@name`` in a note. The agent's words and files go to the people of the conversation
they answered, and only to them. Which mails a state change calls for is the rules' answer (``Effects.mails``,
from ``rules.states.MAILS``); this module decides only how they go (the agent's words may ride in them).
"""

from __future__ import annotations

import re
from dataclasses import replace

import structlog
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from sqlmodel import select

from ticketd.daemon.outgoing import notify
from ticketd.daemon.outgoing.files import File, pack
from ticketd.daemon.outgoing.storm import last_alert_before_cap
from ticketd.daemon.stages import actions, closing, digest, new_ticket
from ticketd.daemon.stages.conversation import (
    Incoming,
    Outcome,
    event,
    message_context,
    open_ticket,
    record_message,
    record_setup,
)
from ticketd.daemon.stages.evidence import keep_evidence
from ticketd.parsers.commands import ParsedCommands, parse_commands, suggest
from ticketd.parsers.message import Address, strict_address
from ticketd.parsers.quotes import quoted_only_cids, strip_reply
from ticketd.parsers.subject import ticket_tag
from ticketd.rules.auth import authenticate_agent
from ticketd.rules.commands import (
    COMMANDS,
    CommandContext,
    CommandResult,
    Effects,
    canned_replies,
    find_agent,
    run_commands,
)
from ticketd.rules.identify import find_company_by_domain
from ticketd.rules.states import OPEN_STATES
from ticketd.storage import batch
from ticketd.storage.directory import DirectoryError, upsert_customer
from ticketd.storage.models import Agent, Outbox, Ticket

log = structlog.get_logger("ticketd.agent_mail")

# "@ali", "@ayse.demir", "@ali@acme.example"; not the middle of an address (bob@example.com) nor "@" alone.
_MENTION = re.compile(r"(?<![\w.@+-])@([\w][\w.+-]*(?:@[\w-]+(?:\.[\w-]+)+)?)")
LIST_SUBJECTS = frozenset({"list", "liste"})


def handle_agent_mail(inc: Incoming) -> Outcome:
    agent = inc.sender.agent
    assert agent is not None
    text = strip_reply(inc.mail.text, keep_all_if_empty=False).replace("\r\n", "\n")
    parsed = parse_commands(inc.subject.title, text)
    ticket = inc.match.ticket
    # Help and the list go to the agent's own address whoever wrote, so they need no proof; being answers to
    # unauthenticated mail they count towards the circuit breaker, or forged requests could flood an agent.
    if ticket is None and is_help_request(inc, parsed):
        send_help(inc, agent, cause="inbound")
        return Outcome("done", reason="help sent")
    if ticket is None and inc.subject.title.strip().casefold() in LIST_SUBJECTS:
        digest.send_list(inc.session, inc.config, agent, inc.now, "list", cause="inbound")
        return Outcome("done", reason="ticket list sent")
    auth = authenticate_agent(inc.mail, inc.config.auth, agent.email, ticket is not None, inc.now)
    if not auth.ok:
        return refuse_unauthenticated(inc, agent, parsed, auth.how, auth.expired)
    if inc.match.conflict is not None:
        addressed, tagged = inc.match.conflict
        tag = inc.config.helpdesk.tag
        results = [CommandResult(inc.subject.title, False, (
            f"this mail went to the reply address of {ticket_tag(tag, addressed)} but its subject names "
            f"{ticket_tag(tag, tagged)}; nothing was applied to either. Reply to the mail of the ticket you mean "
            "(its reply address and its tag belong together)"))]
        report_failure(inc, agent, None, results)
        return Outcome("done", reason=f"ticket #{addressed} and #{tagged} both named; nothing applied")
    if ticket is None and not any(c.name == "customer" for c in parsed.commands):
        results = [CommandResult(inc.subject.title, False, "no ticket found: reply to a ticket's mail, or open "
                                 "one with [customer=address; source=phone]")]
        report_failure(inc, agent, None, results)
        return Outcome("done", reason="agent mail without a ticket")
    return apply_agent_mail(inc, agent, parsed)


def is_help_request(inc: Incoming, parsed: ParsedCommands) -> bool:
    return inc.subject.title.strip().lower() == "help" or any(c.name == "help" for c in parsed.commands)


def send_help(inc: Incoming, agent: Agent, cause: str) -> None:
    """The command table, and the values this helpdesk accepts (so an agent never has to guess a name)."""
    commands = [{"syntax": spec.syntax, "help": spec.help} for spec in COMMANDS.values()]
    agents = sorted({a.email for a in inc.session.exec(select(Agent).where(Agent.active))})
    groups = sorted({g for a in inc.session.exec(select(Agent).where(Agent.active)) for g in (a.groups or [])}
                    | {g.name for g in inc.config.groups})
    notify.to_agent(inc.session, inc.config, agent, "help", {
        "commands": commands, "helpdesk_tag": inc.config.helpdesk.tag,
        # on the domain of the mailbox asked through: the tickets opened there answer as that mailbox
        "new_ticket_address": notify.signed_address(inc.config, 0, agent.email,
                                                    mailbox=inc.config.answering_mailbox(inc.inbound.mailbox, ())),
        "categories": inc.config.categories.all(), "groups": groups, "agents": agents,
        "replies": canned_replies(inc.config.helpdesk.templates_dir),
        "stages": {type_: list(flow.names()) for type_, flow in inc.config.processes.items()},
    }, cause=cause)


def refuse_unauthenticated(inc: Incoming, agent: Agent, parsed: ParsedCommands, reason: str,
                           expired: bool = False) -> Outcome:
    """The alert goes to the agent's own address, never the sender's: so it may carry a fresh signed address
    (for this ticket, or for opening one), which an agent whose old address expired simply answers instead."""
    ticket = inc.match.ticket
    batch.event(inc.session, ticket_id=ticket.id if ticket else None, actor=inc.sender.address.email,
                what="security:unauthenticated-agent-mail", new=reason,
                via_message_id=inc.mail.message_id, at=inc.now)
    log.warning("security.unauthenticated_agent_mail", agent=agent.email, message_id=inc.mail.message_id,
                ticket=ticket.number if ticket else None, reason=reason,
                commands=[c.raw for c in parsed.commands])
    notify.to_agent(inc.session, inc.config, agent, "security_alert", {
        "claimed_from": inc.sender.address.email, "reason": reason, "subject": inc.mail.subject,
        "message_id": inc.mail.message_id or "(none)", "expired": expired,
        "fresh_address": notify.signed_address(inc.config, ticket.number if ticket else 0, agent.email, inc.now,
                                               ticket.mailbox if ticket else None),
        "last_before_cap": last_alert_before_cap(inc.session, inc.config, agent.email),
    }, ticket=ticket, cause="inbound")
    return Outcome("dropped", ticket.number if ticket else None,
                   reason=f"unauthenticated mail in the name of agent {agent.email}: {reason}")


def report_failure(inc: Incoming, agent: Agent, ticket: Ticket | None, results: list[CommandResult]) -> None:
    context = {"results": [r.__dict__ for r in results], "subject": parse_commands(inc.subject.title, "").title}
    notify.to_agent(inc.session, inc.config, agent, "command_result", context, ticket=ticket, cause="agent")


def has_files(inc: Incoming) -> bool:
    """Files of the agent's own: not the images of the quoted mail they answer."""
    old = quoted_only_cids(inc.mail.html)
    return any(not (a.inline and a.content_id and a.content_id.lower() in old) for a in inc.mail.attachments)


def apply_agent_mail(inc: Incoming, agent: Agent, parsed: ParsedCommands) -> Outcome:
    savepoint = inc.session.begin_nested()  # a ticket opened for a customer is undone with failing commands
    ticket, thread, commands, new = inc.match.ticket, inc.match.conversation, parsed.commands, False
    opened_files: list[File] = []
    if ticket is None:
        opened = open_for_customer(inc, agent, parsed)
        if isinstance(opened, CommandResult):
            savepoint.rollback()
            report_failure(inc, agent, None, [opened])
            return Outcome("done", reason="commands refused; nothing applied")
        (ticket, opened_files), new = opened, True
        thread, commands = ticket, tuple(c for c in parsed.commands if c.name != "customer")
    assert thread is not None
    ctx = CommandContext(inc.session, inc.config.command_settings, agent.email, agent, ticket, inc.mail.message_id,
                         inc.now, thread=thread)
    results = run_commands(ctx, commands, parsed.errors)
    effects = ctx.effects
    mentioned: list[Agent] = []
    canned: list[str] = []
    if all(r.ok for r in results):
        mentioned, failures = mentions(inc, parsed.text) if effects.note else ([], [])
        canned, more = render_canned(inc, ticket, thread, agent, effects)
        results += failures + more
    if not all(r.ok for r in results):
        savepoint.rollback()
        report_failure(inc, agent, None if new else ticket, results)
        return Outcome("done", None if new else ticket.number, reason="commands refused; nothing applied")
    child = open_child(inc, agent, ticket, parsed) if effects.split and not new else None
    savepoint.commit()
    if new:
        tell_opened(inc, ticket, opened_files, parsed.text)
    if child is not None:  # the mail's words and files are the child's: they are not relayed on the parent
        tell_opened(inc, *child, parsed.text)
    text = "\n\n".join(part for part in (parsed.text.strip(), *canned) if part)
    spoke = False
    if not new and child is None and (text or has_files(inc)):
        spoke = answer(inc, agent, ticket, thread, text, effects, mentioned)
    elif effects.outcome is not None:
        outcome_mail(inc, ticket, effects.outcome, "", [])
    tell_effects(inc, agent, ticket, thread, effects, parsed.text, new, spoke)
    if parsed.commands:  # a command mail's files are the evidence of its step (issue 18)
        keep_evidence(inc, ticket, agent.email)
    return Outcome("done", ticket.number, new_ticket=new, ticket_id=ticket.id)


def answer(inc: Incoming, agent: Agent, ticket: Ticket, thread: Ticket, text: str, effects: Effects,
           mentioned: list[Agent]) -> bool:
    """The agent's words: internal (a note, a merge) or to the people of the conversation they answered. When
    that conversation is the ticket's own and the mail resolves or rejects it, the words ride in that mail.
    True when they went to the customer."""
    if effects.note or effects.merged_into is not None:
        _, files = record_message(inc, ticket, "note", text, is_reply=True)
        if mentioned:
            notify.to_agents(inc.session, inc.config, ticket, mentioned, "agent_mention",
                             {"note": text, "by": {"name": agent.name, "email": agent.email}}, cause="agent",
                             conversation=thread, files=files)
        if effects.outcome is not None:
            outcome_mail(inc, ticket, effects.outcome, "", [])  # the customer learns the outcome; the note stays inside
        return False
    message, files = record_message(inc, thread, "agent-reply", text, direction="out", is_reply=True)
    if effects.outcome is not None and thread.id == ticket.id:
        row = outcome_mail(inc, ticket, effects.outcome, text, files)
    else:
        row = notify.relay_agent_reply(inc.session, inc.config, ticket, agent, text, conversation=thread, files=files)
        if effects.outcome is not None:  # the ticket's own requester learns the outcome, without those words
            outcome_mail(inc, ticket, effects.outcome, "", [])
    too_big = pack(files, inc.config.limits.forward_attachments_bytes).left_out
    if too_big:  # the customer's mail says so too; the agent must know, or they think the file arrived
        notify.to_agent(inc.session, inc.config, agent, "agent_files_left_out", {"too_big": list(too_big)},
                        ticket=ticket, cause="agent")
    message.outbox_id = row.id
    if ticket.first_response_at is None:
        ticket.first_response_at = inc.now
    return True


def outcome_mail(inc: Incoming, ticket: Ticket, outcome: str, text: str, files: list[File]) -> Outbox:
    """``outcome``: the mail the state change called for (``Effects.outcome``), resolved or rejected."""
    if outcome == "resolved":
        return closing.send_resolved(inc.session, inc.config, ticket, text, files=files)
    return closing.send_rejected(inc.session, inc.config, ticket, text, files=files)


def tell_opened(inc: Incoming, ticket: Ticket, files: list[File], text: str) -> None:
    """A ticket an agent opened for a caller: the customer gets the acknowledgment and who has it, the assignee
    (or the group) the notification to work it from, the opening agent included: it is the mail to reply to."""
    notify.to_requester(inc.session, inc.config, ticket, "received", cause="agent")
    if ticket.assignee_id is not None:
        notify.tell_assigned(inc.session, inc.config, ticket, inc.now, cause="agent")
    notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket), "agent_new",
                     {"message": message_context(inc, text)}, cause="agent", files=files)


def tell_effects(inc: Incoming, agent: Agent, ticket: Ticket, thread: Ticket, effects: Effects, said: str,
                 new: bool, spoke: bool) -> None:
    """``spoke``: the agent's own words went to the customer in this mail, and say what a notice would."""
    session, config = inc.session, inc.config
    if ticket.state not in OPEN_STATES:  # an "assigned to" still waiting is moot once the ticket is finished
        notify.withdraw_assigned(session, ticket, f"the ticket is {ticket.state}")
    if "closed" in effects.mails:  # not for a merge or spam: a spammer hears nothing
        closing.send_closed(session, config, ticket, "satisfied" if effects.satisfaction else "agent", cause="agent")
    if "agent_reopened" in effects.mails:  # the customer's "not satisfied", as an agent recorded it
        closing.tell_reopened(session, config, ticket, "agent", message_context(inc, said), unhappy=True,
                              cause="agent")
    if "reopened" in effects.mails and not spoke:
        closing.send_reopened(session, config, ticket, "agent", cause="agent")
    if (effects.assigned is not None or effects.assigned_group is not None) and not new:
        tell_assignment(inc, agent, ticket, thread, effects, said)
    if effects.quote:
        notify.to_requester(session, config, ticket, "quote", cause="agent")
    if effects.help:
        send_help(inc, agent, cause="agent")
    actions.tell_owners(session, config, effects.actions_added, agent, inc.now)


def tell_assignment(inc: Incoming, agent: Agent, ticket: Ticket, thread: Ticket, effects: Effects,
                    said: str) -> None:
    """The customer hears the new name (once, see ``notify.tell_assigned``); the new assignee, or the agents of a
    group whose policy chose nobody, get the ticket; the previous assignee learns it is no longer theirs."""
    session, config = inc.session, inc.config
    if ticket.state in OPEN_STATES:  # a mail that also finishes the ticket tells the customer the outcome instead
        notify.tell_assigned(session, config, ticket, inc.now, cause="agent")
    message = message_context(inc, said) if said.strip() else notify.last_customer_message(session, thread)
    handed = {"by": {"name": agent.name, "email": agent.email}, "message": message}
    if effects.assigned is not None and effects.assigned.id != agent.id:
        notify.to_agents(session, config, ticket, [effects.assigned], "agent_new", handed, cause="agent")
    elif effects.assigned is None and effects.assigned_group is not None:
        notify.to_agents(session, config, ticket, notify.agents_to_notify(session, ticket, exclude=agent.id),
                         "agent_new", handed, cause="agent")
    previous = effects.previous_assignee
    if previous is not None and previous.active and previous.id != agent.id and previous.id != ticket.assignee_id:
        notify.to_agents(session, config, ticket, [previous], "agent_unassigned", {
            "by": {"name": agent.name, "email": agent.email},
            "new_assignee": effects.assigned.name if effects.assigned else "",
            "new_assignee_email": effects.assigned.email if effects.assigned else "",
            "group": effects.assigned_group or ""}, cause="agent")


def mentions(inc: Incoming, text: str) -> tuple[list[Agent], list[CommandResult]]:
    """The colleagues a note names with ``@name`` (short name, first name or address); an unknown name is an
    error like a bad command, or the colleague would silently never hear of it."""
    found: dict[int, Agent] = {}
    errors: list[CommandResult] = []
    for name in dict.fromkeys(m.rstrip(".") for m in _MENTION.findall(text)):
        colleague = find_agent(inc.session, name)
        if colleague is None:
            known = sorted({a.email.split("@")[0] for a in inc.session.exec(select(Agent).where(Agent.active))})
            hint = suggest(name.lower(), known)
            errors.append(CommandResult(f"@{name}", False, f"no active agent called {name!r}"
                                        + (f"; did you mean @{hint}?" if hint else "")))
        elif colleague.id is not None and colleague.email != inc.sender.address.email:
            found[colleague.id] = colleague
    return list(found.values()), errors


def render_canned(inc: Incoming, ticket: Ticket, thread: Ticket, agent: Agent,
                  effects: Effects) -> tuple[list[str], list[CommandResult]]:
    """[reply=NAME]: the operator's ``replies/NAME.txt.j2`` (or ``replies/<language>/NAME.txt.j2`` in the
    customer's language), rendered in the sandbox with the ticket's facts."""
    texts: list[str] = []
    errors: list[CommandResult] = []
    if not effects.canned:
        return texts, errors
    customer = notify.requester_of(inc.session, thread)
    language = notify.customer_language(inc.config, customer)
    identity = inc.config.identity(thread.mailbox)  # the mailbox's own replies folder first
    env = inc.config.templates_for(identity)
    context = {"ticket": notify.ticket_context(inc.session, inc.config, ticket),
               "tag": ticket_tag(inc.config.helpdesk.tag, thread.number),
               "customer": {"name": customer.name or "", "email": customer.email},
               "agent": {"name": agent.name, "email": agent.email},
               "helpdesk": identity.context()}
    for name in effects.canned:
        try:
            template = env.select_template([f"replies/{language}/{name}.txt.j2", f"replies/{name}.txt.j2"])
            texts.append(template.render(**context).strip())
        except (TemplateError, SecurityError) as exc:
            errors.append(CommandResult(f"reply={name}", False, f"the canned reply cannot be written: {exc}"))
    return texts, errors


def open_for_customer(inc: Incoming, agent: Agent, parsed: ParsedCommands) -> tuple[Ticket, list[File]] | CommandResult:
    """[customer=x@y; source=phone]: the agent writes down a request that came by phone, letter or fax.

    The ticket is opened as if the customer had written the agent's account of it: the triage rules read it,
    the group's policy or a rule picks the assignee (else the opening agent keeps it), the SLA clock starts.
    The source defaults to phone; a [source=…] command among the others then sets (and validates) it.
    """
    command = next(c for c in parsed.commands if c.name == "customer")
    address = strict_address(command.value or "")
    if address is None:
        return CommandResult(command.raw, False, f"{(command.value or '').strip()!r} is not one e-mail address")
    if inc.config.is_our_address(address) or any(a.email == address for a in inc.session.exec(select(Agent))):
        return CommandResult(command.raw, False, f"{address} is the helpdesk's or an agent's address, not a customer")
    try:
        customer = upsert_customer(inc.session, address)
    except DirectoryError as exc:
        return CommandResult(command.raw, False, str(exc))
    if customer.company_id is None and (company := find_company_by_domain(inc.session, customer.email)):
        customer.company_id = company.id
    title = parsed.title or inc.subject.title
    told = replace(inc.mail, sender=Address(customer.email, customer.name or ""), subject=title, text=parsed.text,
                   to=(Address(inc.config.helpdesk.address),), cc=(), headers={})
    setup = new_ticket.prepare(inc.session, inc.config, customer, inc.now, mail=told, source="phone",
                               opened_by=agent, mailbox=inc.inbound.mailbox,
                               written_to=[a.email for a in (*inc.mail.to, *inc.mail.cc)])
    ticket = open_ticket(inc.session, title, customer, setup, inc.now)
    _, files = record_message(inc, ticket, "customer", parsed.text)
    event(inc, ticket, "created", new="new")
    event(inc, ticket, "opened-by-agent", new=f"{agent.email} ({ticket.source})")
    record_setup(inc.session, ticket, setup, inc.mail.message_id, inc.now)
    return ticket, files


def open_child(inc: Incoming, agent: Agent, parent: Ticket, parsed: ParsedCommands) -> tuple[Ticket, list[File]]:
    """[split]: the agent's mail on a ticket opens a child ticket for the same customer (a call record's service
    application), with the mail's text and files as its first message, triaged like any new ticket (so it may
    start in its type's first stage). Its history and the parent's name each other."""
    customer = notify.requester_of(inc.session, parent)
    title = parsed.title or inc.subject.title or parent.subject
    told = replace(inc.mail, sender=Address(customer.email, customer.name or ""), subject=title, text=parsed.text,
                   to=(Address(inc.config.helpdesk.address),), cc=(), headers={})
    setup = new_ticket.prepare(inc.session, inc.config, customer, inc.now, mail=told, source=parent.source,
                               opened_by=agent, mailbox=inc.inbound.mailbox)
    setup = replace(setup, fields={**setup.fields, "parent_id": parent.id, "mailbox": parent.mailbox})
    child = open_ticket(inc.session, title, customer, setup, inc.now)
    _, files = record_message(inc, child, "customer", parsed.text)
    event(inc, child, "created", new="new")
    event(inc, child, "parent", new=f"#{parent.number}")
    record_setup(inc.session, child, setup, inc.mail.message_id, inc.now)
    event(inc, parent, "child-opened", new=f"#{child.number}")
    return child, files
