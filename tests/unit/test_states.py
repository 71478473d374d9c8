"""The state graph's mail table (which mails each move calls for), and the SLA pause through a merge and spam.

The table is checked against the behaviour it was lifted from, spelt out here move by move: an agent's move tells
the customer the outcome or the reopening; the customer's own reopening tells the agents too; waiting and
taking up tell nobody. The SLA tests run the real commands against a real database, as an agent's mail does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from ticketd.parsers.commands import parse_commands
from ticketd.rules.commands import CommandContext, CommandSettings, run_commands
from ticketd.rules.sla import BusinessCalendar, parse_duration
from ticketd.rules.sla_clock import PRIORITIES, SlaClock, SlaTargets
from ticketd.rules.states import MAILS, STATES, TRANSITIONS, StateChange, change_state
from ticketd.storage.models import Customer, Event, Ticket

IST = ZoneInfo("Europe/Istanbul")
CALENDAR = BusinessCalendar(IST, {d: ((time(9), time(18)),) for d in range(5)})
FINISHED_OR_RESOLVED = ("resolved", "closed", "rejected")


def expected(by: str, old: str, new: str) -> tuple[str, ...]:
    """The mails each caller sent before the table existed, as a rule per mover."""
    if by == "agent":
        if new in ("resolved", "rejected", "closed"):
            return (new,)
        return ("reopened",) if new == "open" and old in FINISHED_OR_RESOLVED else ()
    if by == "customer":
        if (old, new) == ("resolved", "closed"):
            return ("closed",)  # their "satisfied"
        return ("reopened", "agent_reopened") if new == "open" and old in FINISHED_OR_RESOLVED else ()
    return ("closed",) if (old, new) == ("resolved", "closed") else ()  # the timer only auto-closes


MOVES = [(old, new) for old in STATES for new in sorted(TRANSITIONS[old])]


@pytest.mark.parametrize("by", ["agent", "customer", "timer"])
@pytest.mark.parametrize(("old", "new"), MOVES)
def test_each_move_calls_for_its_mails(by: str, old: str, new: str) -> None:
    assert MAILS.get((by, old, new), ()) == expected(by, old, new)  # type: ignore[arg-type]


def test_the_table_names_only_moves_of_the_graph_and_known_mails() -> None:
    assert all(new in TRANSITIONS[old] for _, old, new in MAILS)
    assert {mail for mails in MAILS.values() for mail in mails} == {
        "resolved", "rejected", "closed", "reopened", "agent_reopened"}


class FakeSession:
    """What ``change_state`` touches of a session: its event goes to the batch's waiting events in ``info``."""

    def __init__(self) -> None:
        self.info: dict[str, object] = {}
        self.new: tuple[object, ...] = ()


def move(state: str, target: str, by: str = "agent", force: bool = False) -> StateChange:
    ticket = Ticket(number=1, subject="s", requester_id=1, state=state)
    session = FakeSession()
    change = change_state(session, ticket, target, by=by, actor="ali", now=datetime.now(UTC),  # type: ignore
                          calendar=CALENDAR, force=force)
    recorded = [(e["what"], e["old"], e["new"]) for e in session.info.get("ticketd.events", [])]  # type: ignore[attr-defined]
    assert recorded == ([("state", state, target)] if change.changed else [])  # a move is recorded, no move is not
    return change


def test_change_state_returns_the_move_and_its_mails() -> None:
    assert move("open", "resolved") == StateChange("open", "resolved", True, ("resolved",), "agent")
    assert move("closed", "open", by="customer").mails == ("reopened", "agent_reopened")
    assert move("pending", "open", by="customer") == StateChange("pending", "open", True, (), "customer")
    assert move("open", "open") == StateChange("open", "open", False, (), "agent")  # no move, no mail
    assert move("rejected", "closed", force=True).mails == ()  # spam's close, outside the graph: no mail


def test_moves_in_one_mail_are_one_move() -> None:
    resolve = StateChange("open", "resolved", True, ("resolved",))
    close = StateChange("resolved", "closed", True, ("closed",))
    assert resolve.then(close) == StateChange("open", "closed", True, ("closed",))
    reopen = StateChange("closed", "open", True, ("reopened",))
    wait = StateChange("open", "pending", True, ())
    assert reopen.then(wait) == StateChange("closed", "pending", True, ())  # it ends waiting: nothing to tell
    assert resolve.then(StateChange("resolved", "resolved", False)) is resolve
    assert StateChange("open", "open", False).then(close) is close
    assert resolve.then(close).without("closed").mails == ()


# --- the SLA pause through [spam] and [merge] -----------------------------------------------------------------

PAUSED_AT = datetime(2026, 12, 7, 10, tzinfo=IST).astimezone(UTC)  # a Monday morning
NOW = PAUSED_AT + timedelta(hours=3)
TARGETS = SlaTargets({p: parse_duration("4h") for p in PRIORITIES}, {p: parse_duration("3d") for p in PRIORITIES})
SETTINGS = CommandSettings(sla=SlaClock(CALENDAR, TARGETS), tz=IST, group_policies={}, categories=(),
                           our_addresses=frozenset({"support@acme.example"}), max_participants=20,
                           closing_require={})


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    with Session(engine) as s:
        s.add(Customer(email="cigdem@musteri.com.tr", name="Çiğdem"))
        s.flush()
        due = PAUSED_AT + timedelta(days=2)
        for number, state in ((1, "pending"), (2, "open")):
            s.add(Ticket(number=number, subject="Modem", requester_id=1, state=state, resolution_due=due,
                         sla_paused_at=PAUSED_AT if state == "pending" else None, created_at=PAUSED_AT,
                         updated_at=PAUSED_AT))
        s.commit()
        yield s


def run(session: Session, number: int, subject: str) -> CommandContext:
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
    ctx = CommandContext(session, SETTINGS, "ali@acme.example", None, ticket, "<m1@acme.example>", NOW)
    results = run_commands(ctx, parse_commands(subject, "").commands, ())
    assert all(r.ok for r in results), results
    return ctx


@pytest.mark.parametrize("subject", ["[spam]", "[merge=#2]"])
def test_a_pending_ticket_closed_by_spam_or_a_merge_leaves_its_pause(session: Session, subject: str) -> None:
    ctx = run(session, 1, subject)
    ticket = ctx.ticket
    assert ticket is not None and ticket.state == "closed" and ticket.closed_at == NOW
    assert ticket.sla_paused_at is None and ticket.sla_paused_seconds == 3 * 3600
    assert ticket.resolution_due == PAUSED_AT + timedelta(days=2, hours=3)
    assert ctx.effects.moved == StateChange("pending", "closed", True, (), "agent")  # closed quietly
    states = [(e.old, e.new) for e in session.exec(select(Event).where(Event.what == "state"))]
    assert states == [("pending", "closed")]


def test_merge_or_spam_after_a_close_in_the_same_mail_keeps_the_close_quiet(session: Session) -> None:
    ctx = run(session, 2, "[close] [spam]")
    assert ctx.effects.moved == StateChange("open", "closed", True, (), "agent")
    assert run(session, 1, "[resolve]").effects.mails == ("resolved",)
