"""What each command does: one name → handler table, with the help text the `help` reply is generated from.

Handlers change the ticket and record an event per change; they raise ``CommandFailed`` with a sentence for
the agent. ``run_commands`` runs them all inside a savepoint and rolls every change back when any fails, so
a command mail is all-or-nothing (Mailman's "results of your email commands").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time

from sqlmodel import Session, select

from ticketd.daemon import sla_clock
from ticketd.daemon.config import Config
from ticketd.parsers.commands import Command, CommandError, suggest
from ticketd.rules.states import transition_error
from ticketd.storage.models import Agent, Customer, Event, Participant, Ticket, utcnow

PRIORITIES = ("low", "normal", "high", "urgent")
TYPES = ("request", "complaint", "information")
SOURCES = ("email", "phone", "web", "letter", "fax")
_CATEGORY = re.compile(r"^[\w-]+(?:/[\w-]+)*$")


class CommandFailed(Exception):
    pass


@dataclass
class Effects:
    """What the mail's commands ask for beyond field changes; the caller sends the mails."""

    note: bool = False
    help: bool = False
    quote: bool = False
    assigned: Agent | None = None
    assigned_group: str | None = None
    open_for: str | None = None  # customer address an agent opens a ticket for
    source: str | None = None
    merged_into: Ticket | None = None
    satisfaction: str | None = None
    state: str | None = None  # the state the mail's commands left the ticket in, if they changed it


@dataclass
class CommandContext:
    session: Session
    config: Config
    actor: str  # e-mail address of whoever sent the commands
    agent: Agent | None
    ticket: Ticket | None
    via_message_id: str | None
    effects: Effects = field(default_factory=Effects)

    def need_ticket(self) -> Ticket:
        if self.ticket is None:
            raise CommandFailed("needs a ticket: reply to a ticket's mail, or open one with [customer=address]")
        return self.ticket

    def change(self, what: str, old: object, new: object) -> None:
        ticket = self.need_ticket()
        self.session.add(Event(ticket_id=ticket.id, actor=self.actor, what=what,
                               old=None if old is None else str(old), new=None if new is None else str(new),
                               via_message_id=self.via_message_id))
        ticket.updated_at = utcnow()


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    value = value.strip().lower()
    if value in choices:
        return value
    hint = suggest(value, choices)
    return _fail(f"unknown {what} {value!r}" + (f"; did you mean {hint}?" if hint else "")
                 + f" ({what}s: {', '.join(choices)})")


def _fail(message: str) -> str:
    raise CommandFailed(message)


def set_state(ctx: CommandContext, target: str) -> None:
    ticket = ctx.need_ticket()
    error = transition_error(ticket.state, target)
    if error:
        raise CommandFailed(error)
    if target == ticket.state:
        return
    ctx.change("state", ticket.state, target)
    now = utcnow()
    sla_clock.on_state_change(ctx.config, ticket, ticket.state, target, now)
    ticket.state = ctx.effects.state = target
    if target == "resolved":
        ticket.resolution_at = now
    if target in ("closed", "rejected"):
        ticket.closed_at = now
    if target == "open":
        ticket.closed_at = None


def _assign(ctx: CommandContext, agent: Agent) -> None:
    ticket = ctx.need_ticket()
    if not agent.active:
        raise CommandFailed(f"{agent.email} is not an active agent")
    if ticket.assignee_id != agent.id:
        old = ctx.session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
        ctx.change("assignee", old.email if old else None, agent.email)
        ticket.assignee_id = agent.id
        ctx.effects.assigned = agent
    if ticket.state == "new":
        set_state(ctx, "open")


def find_agent(session: Session, who: str) -> Agent | None:
    who = who.strip().lower()
    for agent in session.exec(select(Agent).where(Agent.active)):
        names = {agent.email, agent.email.split("@")[0], agent.name.lower(), agent.name.lower().split()[0]}
        if who in names:
            return agent
    return None


def cmd_take(ctx: CommandContext, value: str | None) -> None:
    if ctx.agent is None:
        raise CommandFailed("only agents can take tickets")
    _assign(ctx, ctx.agent)


def cmd_assign(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    assert value is not None and ctx.agent is not None
    if ctx.agent.role != "manager" and ticket.assignee_id not in (None, ctx.agent.id):
        raise CommandFailed("only a manager or the ticket's assignee can hand it to someone else")
    agent = find_agent(ctx.session, value)
    if agent is not None:
        _assign(ctx, agent)
        return
    groups = {g for a in ctx.session.exec(select(Agent).where(Agent.active)) for g in (a.groups or [])}
    if value.strip().lower() in {g.lower() for g in groups}:
        group = next(g for g in groups if g.lower() == value.strip().lower())
        ctx.change("group", ticket.group, group)
        ticket.group, ctx.effects.assigned_group = group, group
        if ticket.assignee_id is not None:
            ctx.change("assignee", None, None)
            ticket.assignee_id = None
        return
    names = [a.email for a in ctx.session.exec(select(Agent).where(Agent.active))] + sorted(groups)
    hint = suggest(value.strip().lower(), names)
    raise CommandFailed(f"no active agent or group called {value!r}" + (f"; did you mean {hint}?" if hint else ""))


def _state_verb(target: str) -> Callable[[CommandContext, str | None], None]:
    def handler(ctx: CommandContext, value: str | None) -> None:
        set_state(ctx, target)
    return handler


def cmd_status(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    set_state(ctx, value.strip().lower())


def _field(name: str, choices: tuple[str, ...] | None = None) -> Callable[[CommandContext, str | None], None]:
    def handler(ctx: CommandContext, value: str | None) -> None:
        ticket = ctx.need_ticket()
        assert value is not None
        new = _choice(value, choices, name) if choices else value.strip()
        old = getattr(ticket, name)
        if old != new:
            ctx.change(name, old, new)
            setattr(ticket, name, new)
    return handler


def cmd_priority(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    old = ticket.priority
    _field("priority", PRIORITIES)(ctx, value)
    if ticket.priority != old:  # the new priority's deadlines, counted from the ticket's opening
        sla_clock.reschedule(ctx.session, ctx.config, ticket)


def cmd_category(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    path = value.strip().lower().strip("/")
    if not _CATEGORY.match(path):
        raise CommandFailed(f"category {value!r} must be a path like hardware/modem")
    tree = ctx.config.categories
    if tree.tree and not tree.known(path):  # with a configured tree, only its categories (reports count them)
        hint = suggest(path, tree.all())
        raise CommandFailed(f"unknown category {path!r}" + (f"; did you mean {hint}?" if hint else "")
                            + f" (categories: {', '.join(tree.all())})")
    _field("category")(ctx, path)


def cmd_due(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    assert value is not None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise CommandFailed(f"due {value!r} is not a date; write it as YYYY-MM-DD") from None
    due = datetime.combine(day, time(23, 59), tzinfo=ctx.config.tz)
    ctx.change("resolution_due", ticket.resolution_due.isoformat() if ticket.resolution_due else None,
               due.isoformat())
    ticket.resolution_due = due


def cmd_merge(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    assert value is not None
    digits = value.strip().lstrip("#")
    if not digits.isdigit():
        raise CommandFailed(f"merge needs a ticket number like #1040, not {value!r}")
    target = ctx.session.exec(select(Ticket).where(Ticket.number == int(digits))).first()
    if target is None:
        raise CommandFailed(f"there is no ticket #{digits}")
    if target.id == ticket.id or target.merged_into_id is not None:
        raise CommandFailed(f"ticket #{digits} cannot take a merge (it is this ticket or merged itself)")
    ctx.change("merged_into", None, f"#{target.number}")
    ctx.session.add(Event(ticket_id=target.id, actor=ctx.actor, what="merged_from", new=f"#{ticket.number}",
                          via_message_id=ctx.via_message_id))
    ticket.merged_into_id = target.id
    # The merged ticket's people keep writing, now to the target: they become its participants.
    people = [ctx.session.get(Customer, ticket.requester_id)]
    known = {p.email for p in ctx.session.exec(select(Participant).where(Participant.ticket_id == target.id))}
    known |= {c.email for c in [ctx.session.get(Customer, target.requester_id)] if c}
    emails = [c.email for c in people if c] + [p.email for p in ctx.session.exec(
        select(Participant).where(Participant.ticket_id == ticket.id))]
    for email in dict.fromkeys(emails):
        if email not in known:
            ctx.session.add(Participant(ticket_id=target.id, email=email, role="merged"))
    if ticket.state not in ("closed", "rejected"):
        ctx.change("state", ticket.state, "closed")
        ticket.state, ticket.closed_at = "closed", utcnow()
    ctx.effects.merged_into = target


def cmd_customer(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    address = value.strip().lower()
    if ctx.ticket is not None:
        raise CommandFailed("[customer=…] opens a new ticket: write a new mail to the support address instead")
    if address.count("@") != 1 or " " in address:
        raise CommandFailed(f"{value!r} is not an e-mail address")
    ctx.effects.open_for = address


def cmd_source(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    source = _choice(value, SOURCES, "source")
    if ctx.ticket is None:
        ctx.effects.source = source
        return
    _field("source", SOURCES)(ctx, source)


def cmd_spam(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    requester = ctx.session.get(Customer, ticket.requester_id)
    if requester is not None and not requester.blocked:
        requester.blocked = True
        ctx.change("sender_blocked", None, requester.email)
    if ticket.state != "closed":
        ctx.change("state", ticket.state, "closed")
        ticket.state, ticket.closed_at = "closed", utcnow()
    ctx.change("spam", None, "yes")


def cmd_quote(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    if ticket.within_contract is not False:
        ctx.change("within_contract", ticket.within_contract, False)
        ticket.within_contract = False
    ctx.effects.quote = True


def _satisfaction(answer: str) -> Callable[[CommandContext, str | None], None]:
    def handler(ctx: CommandContext, value: str | None) -> None:
        ticket = ctx.need_ticket()
        if ticket.state != "resolved":
            raise CommandFailed(f"ticket #{ticket.number} is {ticket.state}, not resolved")
        ctx.change("satisfaction", ticket.satisfaction, answer)
        ticket.satisfaction = answer
        set_state(ctx, "closed" if answer == "satisfied" else "open")
        ctx.effects.satisfaction = answer
    return handler


def cmd_note(ctx: CommandContext, value: str | None) -> None:
    ctx.effects.note = True


def cmd_help(ctx: CommandContext, value: str | None) -> None:
    ctx.effects.help = True


@dataclass(frozen=True)
class Spec:
    syntax: str
    help: str
    handler: Callable[[CommandContext, str | None], None]
    requester_may: bool = False  # the ticket's requester may use it (satisfaction answers)


COMMANDS: dict[str, Spec] = {
    "take": Spec("[take]", "assign the ticket to yourself", cmd_take),
    "assign": Spec("[assign=ali]", "assign to an agent (name, address) or a group", cmd_assign),
    "status": Spec("[status=open|pending|resolved|closed|rejected]", "change the state", cmd_status),
    "resolve": Spec("[resolve]", "mark resolved; the customer is asked if they are satisfied",
                    _state_verb("resolved")),
    "close": Spec("[close]", "close the ticket", _state_verb("closed")),
    "pending": Spec("[pending]", "waiting for the customer", _state_verb("pending")),
    "reopen": Spec("[reopen]", "open it again", _state_verb("open")),
    "reject": Spec("[reject]", "close as unfounded", _state_verb("rejected")),
    "priority": Spec("[priority=low|normal|high|urgent]", "set the priority", cmd_priority),
    "type": Spec("[type=request|complaint|information]", "set the request type", _field("type", TYPES)),
    "category": Spec("[category=hardware/modem]", "set the category", cmd_category),
    "due": Spec("[due=2026-12-01]", "set the resolution due date", cmd_due),
    "note": Spec("[note]", "keep this mail internal: not sent to the customer", cmd_note),
    "merge": Spec("[merge=#1040]", "merge this ticket into another", cmd_merge),
    "customer": Spec("[customer=x@y.com]", "open a ticket for a customer (with [source=phone])", cmd_customer),
    "source": Spec("[source=phone|letter|fax|web|email]", "where the request came from", cmd_source),
    "spam": Spec("[spam]", "close as spam and block the sender", cmd_spam),
    "quote": Spec("[quote]", "outside the contract: tell the customer an offer will follow", cmd_quote),
    "satisfied": Spec("[satisfied]", "the customer's yes to a resolved ticket", _satisfaction("satisfied"), True),
    "not-satisfied": Spec("[not-satisfied]", "the customer's no: the ticket reopens",
                          _satisfaction("not-satisfied"), True),
    "root-cause": Spec("Root-Cause: …", "body line: the root cause", _field("root_cause")),
    "action-plan": Spec("Action-Plan: …", "body line: the action plan", _field("action_plan")),
    "cost": Spec("Cost: …", "body line: the cost", _field("cost")),
    "resolution": Spec("Resolution: …", "body line: how it was resolved", _field("resolution")),
    "help": Spec("help", "subject 'help' to the support address: this list", cmd_help),
}


@dataclass(frozen=True)
class CommandResult:
    raw: str
    ok: bool
    message: str


BODY_LINES = {"root_cause": "Root-Cause:", "action_plan": "Action-Plan:", "cost": "Cost:", "resolution": "Resolution:"}


def closing_requirements(ctx: CommandContext) -> list[CommandResult]:
    """A ticket of a type with required closing fields (a complaint's root cause and action plan) cannot be
    resolved or closed without them; checked after every command so the lines may come in the same mail."""
    ticket = ctx.ticket
    if ticket is None or ctx.effects.state not in ("resolved", "closed") or ctx.effects.satisfaction:
        return []
    missing = [name for name in ctx.config.closing.require.get(ticket.type, []) if not getattr(ticket, name)]
    if not missing:
        return []
    lines = " and ".join(BODY_LINES[name] for name in missing)
    return [CommandResult(f"[status={ctx.effects.state}]", False,
                          f"a {ticket.type} is {ctx.effects.state} only with its {lines} written down: "
                          f"add {lines} lines at the top of the body and send again")]


def run_commands(ctx: CommandContext, commands: tuple[Command, ...], grammar_errors: tuple[CommandError, ...],
                 requester: bool = False) -> list[CommandResult]:
    """Apply every command or none; returns one result line per command (and per grammar error)."""
    results = [CommandResult(e.raw, False, e.message) for e in grammar_errors]
    savepoint = ctx.session.begin_nested()
    for command in commands:
        spec = COMMANDS.get(command.name)
        try:
            if spec is None:
                raise CommandFailed(f"unknown command {command.name!r}")
            if requester and not spec.requester_may:
                raise CommandFailed("only agents can use this command")
            spec.handler(ctx, command.value)
            ctx.session.flush()
        except CommandFailed as exc:
            results.append(CommandResult(command.raw, False, str(exc)))
        else:
            results.append(CommandResult(command.raw, True, "done"))
    if all(r.ok for r in results):
        results += closing_requirements(ctx)
    if any(not r.ok for r in results):
        savepoint.rollback()
        ctx.effects = Effects()
    else:
        savepoint.commit()
    return results
