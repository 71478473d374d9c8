"""Costs and time worked on a ticket: the ``Cost:`` and ``Time:`` commands, and the totals read back.

Each line is a row of its own (``cost_entry``, ``time_entry``) and a ``cost-added`` / ``time-added`` event, so the
history says who added what and through which mail, and webhooks see every entry. Nothing is ever updated or
deleted: a mistake is corrected by a negative line, which may not take a total below zero. Amounts are
``Decimal`` from the parse to the sum; two currencies are never added together.

The ticket's old free-text ``cost`` field stays, as the text of the totals ("1250.50 TRY, 300.00 EUR"), so the
JSON key, the workbook column and ``[closing] require = ["cost"]`` keep working; a text written there before
costs were entries stays in the first ``cost-added`` event's ``old``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.parsers.ledger import AMOUNT_LIMIT, LedgerError, money_text, parse_cost, parse_minutes
from ticketd.storage import batch
from ticketd.storage.models import Agent, CostEntry, Ticket, TimeEntry


class LedgerContext(Protocol):
    """What the handlers use of ``rules.commands.CommandContext``, named here so this module need not import
    the command table that registers it. A refusal is a ``LedgerError``; the table turns it into the agent's
    ``CommandFailed``."""

    session: Session
    agent: Agent | None
    now: datetime
    via_message_id: str | None

    def need_ticket(self) -> Ticket: ...

    def change(self, what: str, old: object, new: object, ticket: Ticket | None = None) -> None: ...


def cost_totals(session: Session, ticket_id: int) -> dict[str, Decimal]:
    """Currency → total of the ticket's lines, currencies in alphabetical order."""
    totals: dict[str, Decimal] = {}
    rows = session.execute(sa.select(col(CostEntry.currency), col(CostEntry.amount))
                           .where(col(CostEntry.ticket_id) == ticket_id).order_by(col(CostEntry.id)))
    for currency, amount in rows:
        totals[currency] = totals.get(currency, Decimal(0)) + Decimal(amount)
    return dict(sorted(totals.items()))


def totals_text(totals: Mapping[str, Decimal]) -> str | None:
    """The ``cost`` field: "1250.50 TRY, 300.00 EUR" (alphabetical by currency), None without lines."""
    return ", ".join(money_text(amount, currency) for currency, amount in sorted(totals.items())) or None


def cmd_cost(ctx: LedgerContext, value: str | None) -> None:
    assert value is not None
    ticket = ctx.need_ticket()
    if ctx.agent is None or ctx.agent.id is None:
        raise LedgerError("only agents record costs")
    line = parse_cost(value, ctx.now.date())
    assert ticket.id is not None
    totals = cost_totals(ctx.session, ticket.id)
    total = totals.get(line.currency, Decimal(0)) + line.amount
    if total < 0:
        raise LedgerError(f"{line.text} would take the ticket's {line.currency} total below zero (it is "
                            f"{money_text(totals.get(line.currency, Decimal(0)), line.currency)})")
    if total >= AMOUNT_LIMIT:
        raise LedgerError(f"{line.text} would take the ticket's {line.currency} total over a million million")
    batch.add_rows(ctx.session, [CostEntry(ticket_id=ticket.id, amount=f"{line.amount:f}", currency=line.currency,
                                           reason=line.reason, agent_id=ctx.agent.id,
                                           via_message_id=ctx.via_message_id, at=ctx.now)])
    totals[line.currency] = total
    old = ticket.cost
    ticket.cost = totals_text({c: a for c, a in totals.items() if a != 0})
    ctx.change("cost-added", old, line.text)


def agent_minutes(session: Session, ticket_id: int, agent_id: int) -> int:
    total = session.execute(sa.select(sa.func.coalesce(sa.func.sum(TimeEntry.minutes), 0))
                            .where(col(TimeEntry.ticket_id) == ticket_id, col(TimeEntry.agent_id) == agent_id)
                            ).scalar_one()
    return int(total)


def cmd_time(ctx: LedgerContext, value: str | None) -> None:
    """Time is the sender's: an agent records their own work (RT's TimeWorked, Zammad's time accounting)."""
    assert value is not None
    ticket = ctx.need_ticket()
    if ctx.agent is None or ctx.agent.id is None:
        raise LedgerError("only agents record time")
    minutes = parse_minutes(value)
    assert ticket.id is not None
    if minutes < 0:
        own = agent_minutes(ctx.session, ticket.id, ctx.agent.id)
        if own + minutes < 0:
            raise LedgerError(f"{value.strip()} would take your time on ticket #{ticket.number} below zero "
                                f"(it is {own} minutes)")
    batch.add_rows(ctx.session, [TimeEntry(ticket_id=ticket.id, agent_id=ctx.agent.id, minutes=minutes,
                                           via_message_id=ctx.via_message_id, at=ctx.now)])
    ctx.change("time-added", None, str(minutes))


def time_entries(session: Session, ticket_id: int) -> list[TimeEntry]:
    return list(session.exec(select(TimeEntry).where(TimeEntry.ticket_id == ticket_id).order_by(col(TimeEntry.id))))


def cost_entries(session: Session, ticket_id: int) -> list[CostEntry]:
    return list(session.exec(select(CostEntry).where(CostEntry.ticket_id == ticket_id).order_by(col(CostEntry.id))))
