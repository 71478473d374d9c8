"""What each command does: one name → handler table, with the help text the `help` reply is generated from.

Handlers change the ticket and record an event per change; they raise ``CommandFailed`` with a sentence for
the agent. ``run_commands`` runs them all inside a savepoint and rolls every change back when any fails, so
a command mail is all-or-nothing (Mailman's "results of your email commands"). What a command asks for beyond
the ticket's fields (mail to send, people to tell) is written into ``Effects``; the caller sends it once the
whole mail has been applied.

What the commands must know of this helpdesk (its groups, category tree, calendar and targets, limits) comes
in as one ``CommandSettings`` value, built once by ``Config.command_settings``: the rules import no daemon code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from sqlmodel import Session, func, select

from ticketd.parsers.commands import Command, CommandError, suggest
from ticketd.parsers.ledger import LedgerError
from ticketd.parsers.message import is_one_of, strict_address
from ticketd.rules import actions, ledger, process, sla_clock
from ticketd.rules.assignment import pick_assignee
from ticketd.rules.sla_clock import SlaClock
from ticketd.rules.states import FINISHED, OUTCOME_MAILS, Mover, StateChange, StateError, change_state
from ticketd.storage import batch
from ticketd.storage.models import Action, Agent, Customer, Event, Participant, Ticket, TicketLink

PRIORITIES = ("low", "normal", "high", "urgent")
TYPES = ("request", "complaint", "information")
SOURCES = ("email", "phone", "web", "letter", "fax")
PLURALS = {"priority": "priorities", "category": "categories"}
_CATEGORY = re.compile(r"^[\w-]+(?:/[\w-]+)*$")
_REPLY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class CommandFailed(Exception):
    pass


@dataclass(frozen=True)
class CommandSettings:
    """This helpdesk's side of the commands."""

    sla: SlaClock  # the calendar (pending stops the clock) and the targets (a new priority's deadlines)
    tz: ZoneInfo  # [due=2026-12-01] is the end of that day here
    group_policies: Mapping[str, str]  # each configured group's assignment policy; others are "manual"
    categories: tuple[str, ...]  # the category tree with its prefixes, sorted; empty: no tree, any path goes
    our_addresses: frozenset[str]  # never a participant, in any +tagged form
    max_participants: int
    closing_require: Mapping[str, tuple[str, ...]]  # ticket type → the body lines needed to resolve or close it
    templates_dir: Path | None = None  # the operator's templates, whose replies/ holds the canned replies
    # [process.<type>]: the organisation's own stages per ticket type (issue 18); none: the states alone
    processes: Mapping[str, process.Process] = field(default_factory=lambda: MappingProxyType({}))

    def group_policy(self, group: str) -> str:
        return self.group_policies.get(group, "manual")


@dataclass
class Effects:
    """What the mail's commands ask for beyond field changes; the caller sends the mails."""

    note: bool = False
    help: bool = False
    quote: bool = False
    assigned: Agent | None = None
    previous_assignee: Agent | None = None  # who had the ticket before this mail's [take]/[assign]
    assigned_group: str | None = None  # handed to a group whose policy chose nobody: its agents are told
    open_for: str | None = None  # customer address an agent opens a ticket for
    source: str | None = None
    merged_into: Ticket | None = None
    satisfaction: str | None = None
    moved: StateChange | None = None  # the mail's state changes as one move, and the mails it calls for
    unblocked: str | None = None  # the sender taken off the block list
    spam: bool = False
    canned: list[str] = field(default_factory=list)  # [reply=NAME]: canned replies to send, in order
    actions_added: list[Action] = field(default_factory=list)  # Action: lines; their owners are told
    actions_closed: list[int] = field(default_factory=list)  # [action-done=N]: an Action-Result: N may follow
    split: bool = False  # [split]: the mail opens a child ticket of the one it answers, for the same customer
    forced: bool = False  # [force]: resolve or close a parent although children are still open

    @property
    def state(self) -> str | None:
        """The state the mail's commands left the ticket in, if they changed it."""
        return self.moved.new if self.moved is not None else None

    @property
    def mails(self) -> tuple[str, ...]:
        """The mails the mail's state changes call for (``states.MAILS``)."""
        return self.moved.mails if self.moved is not None else ()

    @property
    def outcome(self) -> str | None:
        """The outcome mail to the customer ("resolved", "rejected"), which may carry the agent's words."""
        return next((mail for mail in self.mails if mail in OUTCOME_MAILS), None)


@dataclass
class CommandContext:
    session: Session
    settings: CommandSettings
    actor: str  # e-mail address of whoever sent the commands
    agent: Agent | None
    ticket: Ticket | None  # the working ticket (a merged ticket's commands reach the one it was merged into)
    via_message_id: str | None
    now: datetime  # the message's one clock reading
    thread: Ticket | None = None  # the conversation the mail was written to; its people are [cc]'s business
    effects: Effects = field(default_factory=Effects)

    def need_ticket(self) -> Ticket:
        if self.ticket is None:
            raise CommandFailed("needs a ticket: reply to a ticket's mail, or open one with [customer=address]")
        return self.ticket

    def conversation(self) -> Ticket:
        return self.thread or self.need_ticket()

    def change(self, what: str, old: object, new: object, ticket: Ticket | None = None) -> None:
        ticket = ticket or self.need_ticket()
        batch.event(self.session, ticket_id=ticket.id, actor=self.actor, what=what,
                    old=None if old is None else str(old), new=None if new is None else str(new),
                    via_message_id=self.via_message_id, at=self.now)
        ticket.updated_at = self.now


def plural(what: str) -> str:
    return PLURALS.get(what, f"{what}s")


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    value = value.strip().lower()
    if value in choices:
        return value
    hint = suggest(value, choices)
    return _fail(f"unknown {what} {value!r}" + (f"; did you mean {hint}?" if hint else "")
                 + f" ({plural(what)}: {', '.join(choices)})")


def _fail(message: str) -> str:
    raise CommandFailed(message)


def set_state(ctx: CommandContext, target: str, force: bool = False, by: Mover = "agent") -> None:
    """Every command's state change goes through ``states.change_state`` (the graph, the event, the SLA
    clock, the mails it calls for); a ticket reopened from [spam] takes its sender off the block list with it."""
    ticket = ctx.need_ticket()
    try:
        change = change_state(ctx.session, ticket, target, by=by, actor=ctx.actor, now=ctx.now,
                              calendar=ctx.settings.sla.calendar, via_message_id=ctx.via_message_id, force=force)
    except StateError as exc:
        raise CommandFailed(str(exc)) from None
    if not change.changed:
        return
    ctx.effects.moved = change if ctx.effects.moved is None else ctx.effects.moved.then(change)
    if change.old == "closed" and change.new == "open" and _closed_as_spam(ctx.session, ticket):
        _unblock(ctx, ticket)


def _close_quietly(ctx: CommandContext) -> None:
    """A merge or spam closes without the "closed" mail: a spammer hears nothing, and a merged ticket's work
    goes on in the ticket it was merged into."""
    if ctx.effects.moved is not None:
        ctx.effects.moved = ctx.effects.moved.without("closed")


def _closed_as_spam(session: Session, ticket: Ticket) -> bool:
    batch.flush(session)  # a spam mark of an earlier mail of this batch counts
    return session.exec(select(Event.id).where(Event.ticket_id == ticket.id, Event.what == "spam")).first() is not None


def _unblock(ctx: CommandContext, ticket: Ticket) -> bool:
    requester = ctx.session.get(Customer, ticket.requester_id)
    if requester is None or not requester.blocked:
        return False
    requester.blocked = False
    ctx.change("sender_unblocked", requester.email, None, ticket)
    ctx.effects.unblocked = requester.email
    return True


def _assign(ctx: CommandContext, agent: Agent) -> None:
    ticket = ctx.need_ticket()
    if not agent.active:
        raise CommandFailed(f"{agent.email} is not an active agent")
    if ticket.assignee_id != agent.id:
        old = ctx.session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
        ctx.change("assignee", old.email if old else None, agent.email)
        ticket.assignee_id = agent.id
        if ctx.effects.assigned is None:  # the first holder this mail found is the one to tell
            ctx.effects.previous_assignee = old
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
    groups |= set(ctx.settings.group_policies)
    if value.strip().lower() in {g.lower() for g in groups}:
        group = next(g for g in sorted(groups) if g.lower() == value.strip().lower())
        assign_group(ctx, ticket, group)
        return
    names = [a.email for a in ctx.session.exec(select(Agent).where(Agent.active))] + sorted(groups)
    hint = suggest(value.strip().lower(), names)
    raise CommandFailed(f"no active agent or group called {value!r}" + (f"; did you mean {hint}?" if hint else ""))


def assign_group(ctx: CommandContext, ticket: Ticket, group: str) -> None:
    """To a group: its policy picks the agent (round-robin, least-open), as for a new ticket; a manual group,
    or one with nobody at work, leaves the ticket unassigned and its agents are told."""
    if ticket.group != group:
        ctx.change("group", ticket.group, group)
        ticket.group = group
    chosen = pick_assignee(ctx.session, group, ctx.settings.group_policy(group))
    if chosen is not None:
        _assign(ctx, chosen)
        return
    if ticket.assignee_id is not None:
        old = ctx.session.get(Agent, ticket.assignee_id)
        ctx.change("assignee", old.email if old else None, None)
        ticket.assignee_id = None
        if ctx.effects.assigned is None:
            ctx.effects.previous_assignee = old
    ctx.effects.assigned_group = group


def _state_verb(target: str) -> Callable[[CommandContext, str | None], None]:
    """[resolve], [close], [reopen]…: the same state change as [status=…]."""
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
        sla_clock.reschedule(ctx.session, ctx.settings.sla, ticket)


def cmd_category(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    path = value.strip().lower().strip("/")
    if not _CATEGORY.match(path):
        raise CommandFailed(f"category {value!r} must be a path like hardware/modem")
    tree = ctx.settings.categories
    if tree and path not in tree:  # with a configured tree, only its categories (reports count them)
        hint = suggest(path, list(tree))
        raise CommandFailed(f"unknown category {path!r}" + (f"; did you mean {hint}?" if hint else "")
                            + f" (categories: {', '.join(tree)})")
    _field("category")(ctx, path)


def cmd_due(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    assert value is not None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise CommandFailed(f"due {value!r} is not a date; write it as YYYY-MM-DD") from None
    due = datetime.combine(day, time(23, 59), tzinfo=ctx.settings.tz)
    ctx.change("resolution_due", ticket.resolution_due.isoformat() if ticket.resolution_due else None,
               due.isoformat())
    ticket.resolution_due = due


def cmd_merge(ctx: CommandContext, value: str | None) -> None:
    """The work moves to the target; the people do not. The merged ticket's requester and participants keep
    their own conversation (their mail is recorded on it and answered on it, see ``rules.match``), so merging
    two customers' tickets never lets one read the other's mail."""
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
    ctx.change("merged_from", None, f"#{ticket.number}", target)
    ticket.merged_into_id = target.id
    if ticket.state not in FINISHED:
        set_state(ctx, "closed", force=True)
    _close_quietly(ctx)
    ctx.effects.merged_into = target


def cmd_customer(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    if ctx.ticket is not None:
        raise CommandFailed("[customer=…] opens a new ticket: write a new mail to the support address instead")
    address = strict_address(value)
    if address is None:
        raise CommandFailed(f"{value.strip()!r} is not one e-mail address")
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
    set_state(ctx, "closed", force=True)
    _close_quietly(ctx)
    ctx.change("spam", None, "yes")
    ctx.effects.spam = True


def cmd_unblock(ctx: CommandContext, value: str | None) -> None:
    ticket = ctx.need_ticket()
    if not _unblock(ctx, ticket):
        requester = ctx.session.get(Customer, ticket.requester_id)
        raise CommandFailed(f"{requester.email if requester else 'the requester'} is not blocked")


def cmd_cc(ctx: CommandContext, value: str | None) -> None:
    """[cc=a@x, b@y] adds people to the customer's side of the conversation; [cc=-a@x] takes one off. Only
    well-formed single addresses, never ours or an agent's: a participant receives the customer's thread."""
    assert value is not None
    thread = ctx.conversation()
    requester = ctx.session.get(Customer, thread.requester_id)
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        remove = item.startswith("-")
        address = strict_address(item.removeprefix("-").strip())
        if address is None:
            raise CommandFailed(f"{item.removeprefix('-').strip()!r} is not one e-mail address")
        existing = ctx.session.exec(select(Participant).where(Participant.ticket_id == thread.id,
                                                              Participant.email == address)).first()
        if remove:
            if existing is None:
                raise CommandFailed(f"{address} is not on ticket #{thread.number}")
            ctx.session.delete(existing)
            ctx.change("participant-removed", address, None, thread)
            continue
        if is_one_of(address, ctx.settings.our_addresses):
            raise CommandFailed(f"{address} is the helpdesk's own address")
        if ctx.session.exec(select(Agent.id).where(Agent.email == address)).first() is not None:
            raise CommandFailed(f"{address} is an agent; agents read tickets through their notifications")
        if (requester and address == requester.email) or existing is not None:
            continue
        cap = ctx.settings.max_participants  # as for people a mail brings: every one gets the whole thread
        on_it = ctx.session.exec(select(func.count()).select_from(Participant)
                                 .where(Participant.ticket_id == thread.id)).one()
        if on_it >= cap:
            raise CommandFailed(f"ticket #{thread.number} has {on_it} people on the customer's side already; "
                                f"at most {cap} ([limits] max_participants)")
        assert thread.id is not None  # a stored ticket
        batch.add_rows(ctx.session, [Participant(ticket_id=thread.id, email=address, role="cc", added_at=ctx.now)])
        ctx.change("participant-added", None, address, thread)


def canned_replies(folder: Path | None) -> list[str]:
    """The names of ``templates_dir/replies/NAME.txt.j2``, sorted; none without a templates_dir."""
    if folder is None or not (folder / "replies").is_dir():
        return []
    names = (p.name.removesuffix(".txt.j2") for p in Path(folder, "replies").iterdir() if p.name.endswith(".txt.j2"))
    return sorted(n for n in names if _REPLY_NAME.fullmatch(n))


def cmd_reply(ctx: CommandContext, value: str | None) -> None:
    assert value is not None
    name = value.strip().lower()
    known = canned_replies(ctx.settings.templates_dir)
    if name not in known:
        if not known:
            raise CommandFailed("there are no canned replies (templates_dir/replies/NAME.txt.j2 holds them)")
        hint = suggest(name, known)
        raise CommandFailed(f"no canned reply {name!r}" + (f"; did you mean {hint}?" if hint else "")
                            + f" (replies: {', '.join(known)})")
    ctx.effects.canned.append(name)


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
        set_state(ctx, "closed" if answer == "satisfied" else "open", by="customer")  # the customer's answer
        ctx.effects.satisfaction = answer
    return handler


def cmd_note(ctx: CommandContext, value: str | None) -> None:
    ctx.effects.note = True


def cmd_help(ctx: CommandContext, value: str | None) -> None:
    ctx.effects.help = True


def cmd_action(ctx: CommandContext, value: str | None) -> None:
    """``Action: <what>; owner=<agent>; due=<date or duration>[; customer][; optional]``."""
    ticket = ctx.need_ticket()
    assert value is not None
    settings = ctx.settings
    try:
        line = actions.parse_line(value)
        due = actions.parse_due(line.due, ctx.now, settings.sla.calendar, settings.tz)
    except actions.ActionError as exc:
        raise CommandFailed(str(exc)) from None
    owner = ctx.agent if line.owner is None else find_agent(ctx.session, line.owner)
    if owner is None:
        names = [a.email for a in ctx.session.exec(select(Agent).where(Agent.active))]
        hint = suggest((line.owner or "").lower(), names)
        raise CommandFailed(f"no active agent called {line.owner!r} to own the action"
                            + (f"; did you mean {hint}?" if hint else ""))
    try:
        action = actions.add(ctx.session, ticket=ticket, line=line, owner=owner, due=due,
                             calendar=settings.sla.calendar, actor=ctx.actor, now=ctx.now,
                             via_message_id=ctx.via_message_id)
    except actions.ActionError as exc:
        raise CommandFailed(str(exc)) from None
    ctx.effects.actions_added.append(action)


def _close_action(status: str) -> Callable[[CommandContext, str | None], None]:
    """[action-done=N], [action-cancel=N]: only an open action of this ticket."""
    def handler(ctx: CommandContext, value: str | None) -> None:
        assert value is not None
        try:
            action = actions.find(ctx.session, value, ctx.need_ticket())
            actions.close(ctx.session, action, status, result=None, actor=ctx.actor, now=ctx.now,
                          via_message_id=ctx.via_message_id)
        except actions.ActionError as exc:
            raise CommandFailed(str(exc)) from None
        assert action.id is not None
        ctx.effects.actions_closed.append(action.id)
    return handler


def cmd_action_result(ctx: CommandContext, value: str | None) -> None:
    """``Action-Result: N <text>``: the action is done with that result."""
    assert value is not None
    try:
        number, text = actions.split_result(value)
        action = actions.find(ctx.session, number, ctx.need_ticket())
        actions.record_result(ctx.session, action, text, closed_here=action.id in ctx.effects.actions_closed,
                              actor=ctx.actor, now=ctx.now, via_message_id=ctx.via_message_id)
    except actions.ActionError as exc:
        raise CommandFailed(str(exc)) from None
# --- issue 18: process (stages, children and links); the decisions live in rules/process.py ---

def cmd_stage(ctx: CommandContext, value: str | None) -> None:
    """[stage=decision]: the organisation's own step. The ticket goes to the stage's group and takes the state
    the stage means, through ``set_state`` like every state change (so the mails it calls for go out)."""
    ticket = ctx.need_ticket()
    assert value is not None
    name = value.strip().lower()
    flow = ctx.settings.processes.get(ticket.type)
    error = process.stage_move_error(flow, ticket.type, ticket.stage, name)
    if error is not None:
        raise CommandFailed(error)
    stage = flow.stage(name) if flow is not None else None
    if stage is None or ticket.stage == name:
        return
    ctx.change("stage", ticket.stage, name)
    for key, new in process.enter_stage_fields(stage, ctx.settings.sla.calendar, ctx.now).items():
        setattr(ticket, key, new)
    if stage.group is not None and ticket.group != stage.group:
        assign_group(ctx, ticket, stage.group)
    set_state(ctx, stage.state)


def _ticket_number(ctx: CommandContext, value: str | None, what: str) -> Ticket:
    digits = (value or "").strip().lstrip("#").strip()
    if not digits.isdigit():
        raise CommandFailed(f"{what} needs a ticket number like #1040, not {(value or '').strip()!r}")
    target = ctx.session.exec(select(Ticket).where(Ticket.number == int(digits))).first()
    if target is None:
        raise CommandFailed(f"there is no ticket #{digits}")
    if target.id == ctx.need_ticket().id:
        raise CommandFailed(f"#{digits} is this ticket itself")
    return target


def cmd_parent(ctx: CommandContext, value: str | None) -> None:
    """[parent=#N]: this ticket becomes a child of #N; never one of its own descendants (a cycle)."""
    ticket = ctx.need_ticket()
    parent = _ticket_number(ctx, value, "parent")
    if ticket.id in process.ancestors(ctx.session, parent):
        raise CommandFailed(f"#{parent.number} is a child of this ticket (or further down): it cannot be its parent")
    if ticket.parent_id == parent.id:
        return
    old = ctx.session.get(Ticket, ticket.parent_id) if ticket.parent_id else None
    ticket.parent_id = parent.id
    ctx.change("parent", f"#{old.number}" if old else None, f"#{parent.number}")
    if old is not None:
        ctx.change("child-removed", f"#{ticket.number}", None, old)
    ctx.change("child-added", None, f"#{ticket.number}", parent)


def cmd_link(ctx: CommandContext, value: str | None) -> None:
    """[link=#N]: related tickets, shown on both sides."""
    ticket = ctx.need_ticket()
    other = _ticket_number(ctx, value, "link")
    assert ticket.id is not None and other.id is not None  # stored tickets
    low, high = sorted((ticket.id, other.id))
    batch.flush(ctx.session)
    if ctx.session.exec(select(TicketLink.id).where(TicketLink.ticket_id == low,
                                                    TicketLink.other_id == high)).first() is not None:
        return
    batch.add_rows(ctx.session, [TicketLink(ticket_id=low, other_id=high, created_at=ctx.now)])
    ctx.change("linked", None, f"#{other.number}")
    ctx.change("linked", None, f"#{ticket.number}", other)


def cmd_split(ctx: CommandContext, value: str | None) -> None:
    ctx.need_ticket()
    ctx.effects.split = True


def cmd_force(ctx: CommandContext, value: str | None) -> None:
    ctx.need_ticket()
    ctx.effects.forced = True


def children_requirement(ctx: CommandContext) -> list[CommandResult]:
    """A parent is resolved or closed only once its children are done, unless the agent says [force]; the
    forcing is recorded with the children it left open. A merge or spam closes whatever it holds."""
    ticket = ctx.ticket
    effects = ctx.effects
    if ticket is None or effects.state not in ("resolved", "closed") or effects.satisfaction \
            or effects.spam or effects.merged_into is not None:
        return []
    still_open = process.open_children(ctx.session, ticket)
    if not still_open:
        return []
    numbers = ", ".join(f"#{child.number}" for child in still_open)
    if effects.forced:
        ctx.change("forced", None, f"{effects.state} with open children {numbers}")
        return []
    return [CommandResult(f"[status={effects.state}]", False,
                          f"ticket #{ticket.number} has open children ({numbers}): finish them first, or add "
                          f"force to resolve it anyway, e.g. [{'resolve' if effects.state == 'resolved' else 'close'}"
                          "; force]")]


def _refusing(handler: Callable[[ledger.LedgerContext, str | None], None]) -> Callable[[CommandContext, str | None],
                                                                                      None]:
    """A handler of another module, whose refusals (``LedgerError``) the agent reads as any command's."""
    def run(ctx: CommandContext, value: str | None) -> None:
        try:
            handler(ctx, value)
        except LedgerError as exc:
            raise CommandFailed(str(exc)) from None
    return run


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
    "reopen": Spec("[reopen]", "open it again (a ticket closed as spam: its sender is unblocked)",
                   _state_verb("open")),
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
    "unblock": Spec("[unblock]", "take the ticket's sender off the block list", cmd_unblock),
    "cc": Spec("[cc=a@x.com, b@y.com] [cc=-a@x.com]", "add people to the customer's side of the conversation "
               "(they get the replies), or take one off", cmd_cc),
    "reply": Spec("[reply=NAME]", "send the canned reply NAME (after your own words)", cmd_reply),
    "quote": Spec("[quote]", "outside the contract: tell the customer an offer will follow", cmd_quote),
    "satisfied": Spec("[satisfied]", "the customer's yes to a resolved ticket", _satisfaction("satisfied"), True),
    "not-satisfied": Spec("[not-satisfied]", "the customer's no: the ticket reopens",
                          _satisfaction("not-satisfied"), True),
    "root-cause": Spec("Root-Cause: …", "body line: the root cause", _field("root_cause")),
    "action-plan": Spec("Action-Plan: …", "body line: the action plan", _field("action_plan")),
    "cost": Spec("Cost: 1.250,50 TRY; reason", "body line: a cost (amount, ISO currency, optional reason); "
                 "several lines add up, a negative one corrects", _refusing(ledger.cmd_cost)),
    "time": Spec("Time: 1h30m  or [time=30m]", "time you worked on the ticket (30m, 2h, 1h30m; at most 24h a "
                 "line); a negative line corrects", _refusing(ledger.cmd_time)),
    "resolution": Spec("Resolution: …", "body line: how it was resolved", _field("resolution")),
    "action": Spec("Action: what; owner=ali; due=2026-12-31|3d", "body line: an action item (owner default: "
                   "you; add '; customer' to tell the customer when resolved, '; optional' if the ticket may be "
                   "resolved without it)", cmd_action),
    "action-done": Spec("[action-done=N]", "action N of this ticket is done", _close_action("done")),
    "action-cancel": Spec("[action-cancel=N]", "action N of this ticket is cancelled", _close_action("cancelled")),
    "action-result": Spec("Action-Result: N text", "body line: action N is done, with its result",
                          cmd_action_result),
    "help": Spec("help", "subject 'help' to the support address: this list", cmd_help),
    # issue 18: process
    "stage": Spec("[stage=decision]", "move to a stage of the ticket type's process ([process.<type>])", cmd_stage),
    "split": Spec("[split]", "open a child ticket for the same customer from this mail (its text and files)",
                  cmd_split),
    "parent": Spec("[parent=#1040]", "make this ticket a child of another", cmd_parent),
    "link": Spec("[link=#1040]", "link this ticket and another (shown on both)", cmd_link),
    "force": Spec("[resolve; force]", "resolve or close although child tickets are still open", cmd_force),
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
    required = ctx.settings.closing_require.get(ticket.type, ())
    missing = [name for name in required if name in BODY_LINES and not getattr(ticket, name)]
    results = []
    if missing:
        lines = " and ".join(BODY_LINES[name] for name in missing)
        results.append(CommandResult(f"[status={ctx.effects.state}]", False,
                                     f"a {ticket.type} is {ctx.effects.state} only with its {lines} written down: "
                                     f"add {lines} lines at the top of the body and send again"))
    still_open = actions.open_required(ctx.session, ticket) if "actions_done" in required else []
    if still_open:
        ids = ", ".join(f"#{i}" for i in still_open)
        results.append(CommandResult(f"[status={ctx.effects.state}]", False,
                                     f"a {ticket.type} is {ctx.effects.state} only when its required actions are "
                                     f"done; still open: {ids}. Close each with [action-done=N], "
                                     "Action-Result: N <result> or [action-cancel=N]"))
    return results


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
    if all(r.ok for r in results):
        results += children_requirement(ctx)
    if any(not r.ok for r in results):
        savepoint.rollback()
        ctx.effects = Effects()
    else:
        savepoint.commit()
    return results
