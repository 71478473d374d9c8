"""What a new ticket is before anyone reads it: the triage rules, the contract check, the SLA deadlines and the
assignee its group's policy picks.

``prepare`` decides and writes nothing, so every way a ticket is opened (a customer's mail, an agent's
account of a call) builds it from the same decision: its ``fields`` go into the ticket's columns, its
``events`` into the audit trail, and an ``assignee`` means the customer is told who has the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from ticketd.daemon.config import Config
from ticketd.parsers.message import ParsedMail
from ticketd.rules import identify
from ticketd.rules.assignment import pick_assignee
from ticketd.rules.channels import FormChoices
from ticketd.rules.process import enter_stage_fields
from ticketd.rules.sla_clock import due_times
from ticketd.rules.triage import facts_from_mail, triage
from ticketd.storage import batch
from ticketd.storage.models import Agent, Company, Customer


@dataclass(frozen=True)
class Setup:
    fields: dict[str, Any]
    assignee: Agent | None = None
    events: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (what, old, new)


def prepare(session: Session, config: Config, customer: Customer, now: datetime, *, mail: ParsedMail | None,
            source: str = "email", mailbox: str | None = None, opened_by: Agent | None = None,
            form: FormChoices | None = None, written_to: Sequence[str] = ()) -> Setup:
    """``mail`` is what the rules match on: the customer's own mail, or for a ticket an agent opens on a
    customer's behalf (phone, letter) the agent's account of it, read as if the customer had sent it. The
    mailbox it came in at gives the defaults (complaints@ files complaints); rules may override them. An agent
    who opens a ticket keeps it unless a rule or the group's policy gives it to someone else.

    The ticket answers as the mailbox it came in through, or the one whose address it was ``written_to`` (an
    agent chooses by writing to that mailbox's signed address); else as the helpdesk."""
    company = batch.held(session, Company, customer.company_id) if customer.company_id else None
    fields: dict[str, Any] = {"source": source, "type": "request", "priority": "normal", "category": None,
                              "group": None, "state": "new",
                              "mailbox": config.answering_mailbox(mailbox, written_to)}
    events: list[tuple[str, str | None, str | None]] = []
    defaults = config.mailbox_defaults(mailbox) if mailbox else {}
    if defaults:
        fields.update(defaults)
        events.append(("mailbox", None, f"{mailbox}: " + ", ".join(f"{k}={v}" for k, v in defaults.items())))
    if form is not None:  # the customer's own choice on the form, before the rules, as a mailbox's defaults are
        fields.update(form.defaults())
        told = [f"{k}={v}" for k, v in form.defaults().items()]
        if form.company:
            told.append(f"company as typed: {form.company}")
        events.append(("form", None, "web form: " + (", ".join(told) or "nothing chosen")))
    wanted: str | None = None
    if mail is not None and config.triage_rules:
        decided = triage(config.triage_rules, facts_from_mail(mail, company.name if company else None))
        for name in ("type", "category", "priority", "group"):
            if getattr(decided, name) is not None:
                fields[name] = getattr(decided, name)
        wanted = decided.assignee
        events += [("rule", None, f"{name}: {reason}") for name, reason in decided.matched]
    flow = config.processes.get(fields["type"])
    if flow is not None:  # [process.<type>]: it starts in the first stage, with that stage's group
        fields.update(enter_stage_fields(flow.first, config.calendar, now))
        events.append(("stage", None, flow.first.name))
        if flow.first.group is not None and fields["group"] != flow.first.group:
            events.append(("group", fields["group"], flow.first.group))
            fields["group"] = flow.first.group
    fields["within_contract"] = within_contract(company, now)
    if fields["within_contract"] is False:
        ended = company.contract_until.date().isoformat() if company and company.contract_until else None
        events.append(("contract", None, f"out of contract (ended {ended})" if ended else "out of contract (none)"))
    fields["first_response_due"], fields["resolution_due"] = due_times(
        config.sla_clock, company.sla_plan if company else None, fields["priority"], now)
    assignee = choose_assignee(session, config, wanted, fields["group"], events)
    if assignee is None and opened_by is not None:
        assignee = opened_by
    if assignee is not None:
        fields["assignee_id"], fields["state"] = assignee.id, "open"
        events += [("assignee", None, assignee.email), ("state", "new", "open")]
    return Setup(fields, assignee, events)


def within_contract(company: Company | None, now: datetime) -> bool | None:
    """None for a private customer (no company, nothing to check); a company needs a contract that runs."""
    if company is None:
        return None
    return company.contract_until is not None and company.contract_until >= now


def choose_assignee(session: Session, config: Config, wanted: str | None, group: str | None,
                    events: list[tuple[str, str | None, str | None]]) -> Agent | None:
    """A rule's named assignee if they are at work, else whoever the group's policy picks."""
    if wanted:
        agent = identify.active_agent(session, wanted)
        if agent is not None and not agent.away:
            return agent
        events.append(("assignee-skipped", wanted, "away or not an active agent"))
    if group is None:
        return None
    return pick_assignee(session, group, config.group_policy(group))
