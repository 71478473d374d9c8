"""The organisation's own stages ([process.<type>]) and child and linked tickets: the config's checks at start,
the move rules, and the commands run against a real database as an agent's mail runs them."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from ticketd.daemon.config import ConfigError, parse_config
from ticketd.mailtemplates.render import make_environment, render
from ticketd.parsers.commands import parse_commands
from ticketd.rules.commands import CommandContext, CommandResult, CommandSettings, run_commands
from ticketd.rules.process import Process, Stage, stage_move_error
from ticketd.rules.sla import BusinessCalendar, parse_duration
from ticketd.rules.sla_clock import PRIORITIES, SlaClock, SlaTargets
from ticketd.storage.models import Agent, Customer, Event, Ticket

DEPLOY = Path(__file__).parents[2] / "deploy"
IST = ZoneInfo("Europe/Istanbul")
CALENDAR = BusinessCalendar(IST, {d: ((time(9), time(18)),) for d in range(5)})
NOW = datetime(2026, 12, 7, 10, tzinfo=IST).astimezone(UTC)  # a Monday morning


def base(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    return {"helpdesk": {"address": "support@acme.example", "tag": "ACME"},
            "security": {"secret_file": str(tmp_path / "secret")},
            "groups": [{"name": "quality"}, {"name": "caregivers"}]}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def complaint(**stage: dict[str, Any]) -> dict[str, Any]:
    return {"complaint": {"stages": ["review", "decision", "completion", "unfounded"], "stage": {
        "review": {"next": ["decision", "unfounded"], "group": "quality", "target": "2d"},
        "decision": {"next": ["completion"]},
        "completion": {"state": "resolved"},
        "unfounded": {"state": "rejected"}, **stage}}}


# --- the config, checked at start -----------------------------------------------------------------------------

def test_a_process_loads_into_the_rules_values(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path) | {"process": complaint()})
    flow = config.processes["complaint"]
    assert flow.names() == ("review", "decision", "completion", "unfounded")
    assert flow.first == Stage("review", "open", ("decision", "unfounded"), "quality", parse_duration("2d"))
    assert flow.stage("completion") == Stage("completion", "resolved")
    assert config.command_settings.processes["complaint"] is flow
    assert dict(parse_config(base(tmp_path)).processes) == {}  # no [process]: nothing changes


@pytest.mark.parametrize(("stage", "expected"), [
    ({"review": {"next": ["decison", "unfounded"]}},
     "process.complaint: stage.review.next.0: unknown stage 'decison'; did you mean decision?"),
    ({"decision": {"next": []}},
     "process.complaint: stages.2: 'completion' is unreachable"),
    ({"completion": {"state": "done"}}, "process.complaint.stage.completion.state: must be 'open'"),
    ({"review": {"next": ["decision", "unfounded"], "state": "pending"}},
     "process.complaint: stage.review.state: the first stage is where new tickets start, so it must mean open"),
    ({"revue": {"next": ["decision"]}}, "process.complaint: stage.revue: unknown stage 'revue'"),
    ({"decision": {"next": ["decision"]}}, "process.complaint: stage.decision.next.0: a stage cannot move to itself"),
    ({"decision": {"next": ["completion"], "group": "caregiver"}},
     "process.complaint.stage.decision.group: unknown group 'caregiver'; did you mean caregivers?"),
    ({"decision": {"next": ["completion"], "target": "soon"}}, "process.complaint.stage.decision.target: "),
    ({"decision": {"next": ["completion"], "colour": "red"}}, "process.complaint.stage.decision.colour: unknown key"),
])
def test_a_broken_process_refuses_to_start_naming_the_key(tmp_path: Path, stage: dict[str, Any],
                                                          expected: str) -> None:
    found = problems(base(tmp_path) | {"process": complaint(**stage)})
    assert any(p.startswith(expected) for p in found), found


def test_an_unknown_type_and_a_repeated_stage_are_refused(tmp_path: Path) -> None:
    found = problems(base(tmp_path) | {"process": {"complaints": {"stages": ["a"]}}})
    assert found == ["process.complaints.[key]: must be 'request', 'complaint' or 'information'"]
    found = problems(base(tmp_path) | {"process": {"request": {"stages": ["a", "A", "a"]}}})
    assert any("stages.1: 'A' must be a lower-case word" in p for p in found), found
    assert any("stages.2: 'a' is listed twice" in p for p in found), found


@pytest.mark.parametrize(("name", "types"), [("process-pishro.toml", {"complaint"}),
                                             ("process-bizpark.toml", {"request", "complaint", "information"})])
def test_the_example_processes_in_deploy_load(tmp_path: Path, name: str, types: set[str]) -> None:
    fragment = tomllib.loads((DEPLOY / name).read_text())
    config = parse_config(base(tmp_path) | fragment)
    assert set(config.processes) == types
    if name == "process-pishro.toml":
        flow = config.processes["complaint"]
        assert flow.names()[0] == "review" and flow.allowed("review") == ("decision", "unfounded")
        assert flow.stage("caregivers") is not None and flow.stage("caregivers").group == "caregivers"  # type: ignore[union-attr]
        assert (flow.stage("completion"), flow.stage("unfounded")) == (
            Stage("completion", "resolved", (), "quality"), Stage("unfounded", "rejected"))


# --- the move rules -------------------------------------------------------------------------------------------

FLOW = Process("complaint", (Stage("review", "open", ("decision", "unfounded")), Stage("decision", "open",
                                                                                        ("completion",)),
                             Stage("completion", "resolved"), Stage("unfounded", "rejected")))


def test_moves_follow_the_drawn_arrows() -> None:
    assert stage_move_error(FLOW, "complaint", "review", "decision") is None
    assert stage_move_error(FLOW, "complaint", "review", "review") is None  # already there: nothing to do
    assert stage_move_error(FLOW, "complaint", None, "review") is None  # a ticket without a stage enters the first
    assert stage_move_error(FLOW, "complaint", "review", "completion") == (
        "a complaint cannot move from review to completion (from review: decision, unfounded)")
    assert stage_move_error(FLOW, "complaint", "completion", "review") == (
        "a complaint cannot move from completion to review (from completion: none, it is a last stage)")
    assert stage_move_error(FLOW, "complaint", None, "decision") == (
        "a complaint cannot move from no stage to decision (to start: review)")
    assert stage_move_error(FLOW, "complaint", "review", "decison") == (
        "unknown stage 'decison'; did you mean decision? (stages of a complaint: review, decision, completion, "
        "unfounded)")
    assert stage_move_error(None, "request", None, "review") == (
        "a request has no stages ([process.request] is not configured)")


# --- the commands, on a real database -------------------------------------------------------------------------

TARGETS = SlaTargets({p: parse_duration("4h") for p in PRIORITIES}, {p: parse_duration("3d") for p in PRIORITIES})
PISHRO = Process("complaint", (
    Stage("review", "open", ("decision", "unfounded"), "quality", parse_duration("1d")),
    Stage("decision", "open", ("caregivers", "unfounded")),
    Stage("caregivers", "open", ("completion",), "caregivers", parse_duration("2h")),
    Stage("completion", "resolved"), Stage("unfounded", "rejected")))
SETTINGS = CommandSettings(sla=SlaClock(CALENDAR, TARGETS), tz=IST, group_policies={"caregivers": "round-robin"},
                           categories=(), our_addresses=frozenset({"support@acme.example"}), max_participants=20,
                           closing_require={}, processes=MappingProxyType({"complaint": PISHRO}))


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    with Session(engine) as s:
        s.add(Customer(email="cigdem@musteri.com.tr", name="Çiğdem"))
        s.add(Agent(email="nurse@acme.example", name="Nur Ses", groups=["caregivers"]))
        s.flush()
        for number in (1, 2, 3):
            s.add(Ticket(number=number, subject="Bakım", requester_id=1, type="complaint", state="open",
                         stage="review" if number == 1 else None, group="quality", created_at=NOW, updated_at=NOW))
        s.commit()
        yield s


def run(session: Session, number: int, subject: str) -> tuple[CommandContext, list[CommandResult]]:
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
    ctx = CommandContext(session, SETTINGS, "ali@acme.example", None, ticket, f"<m{subject}@acme.example>", NOW)
    parsed = parse_commands(subject, "")
    return ctx, run_commands(ctx, parsed.commands, parsed.errors)


def ok(session: Session, number: int, subject: str) -> CommandContext:
    ctx, results = run(session, number, subject)
    assert all(r.ok for r in results), results
    return ctx


def refused(session: Session, number: int, subject: str) -> str:
    _, results = run(session, number, subject)
    return "; ".join(r.message for r in results if not r.ok)


def events(session: Session, number: int, *whats: str) -> list[tuple[str, str | None, str | None]]:
    session.flush()
    from ticketd.storage import batch
    batch.flush(session)
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
    rows = session.exec(select(Event).where(Event.ticket_id == ticket.id).order_by(Event.id))  # type: ignore[arg-type]
    return [(e.what, e.old, e.new) for e in rows if e.what in whats]


def test_a_stage_move_routes_and_sets_the_state_it_means(session: Session) -> None:
    ok(session, 1, "[stage=decision]")
    ctx = ok(session, 1, "[stage=caregivers]")
    ticket = ctx.ticket
    assert ticket is not None and (ticket.stage, ticket.group, ticket.state) == ("caregivers", "caregivers", "open")
    assert ticket.stage_since == NOW and ticket.stage_due == NOW + timedelta(hours=2)
    assert ctx.effects.assigned is not None and ctx.effects.assigned.email == "nurse@acme.example"
    ctx = ok(session, 1, "[stage=completion]")
    assert ctx.ticket is not None and ctx.ticket.state == "resolved"
    assert ctx.effects.mails == ("resolved",)  # through change_state: the resolved mail is called for
    assert events(session, 1, "stage", "state") == [
        ("stage", "review", "decision"), ("stage", "decision", "caregivers"), ("stage", "caregivers", "completion"),
        ("state", "open", "resolved")]


def test_a_move_not_drawn_is_refused_with_the_allowed_moves(session: Session) -> None:
    assert refused(session, 1, "[stage=completion]") == (
        "a complaint cannot move from review to completion (from review: decision, unfounded)")
    assert "did you mean unfounded?" in refused(session, 1, "[stage=unfunded]")
    ticket = session.exec(select(Ticket).where(Ticket.number == 1)).one()
    assert (ticket.stage, ticket.state) == ("review", "open")
    assert refused(session, 1, "[stage]") == "'stage' needs a stage of the ticket type's process as its value " \
        "(the help reply lists them)"


def test_unfounded_rejects_the_complaint(session: Session) -> None:
    ctx = ok(session, 1, "[stage=unfounded]")
    assert ctx.ticket is not None and ctx.ticket.state == "rejected" and ctx.effects.mails == ("rejected",)


def test_a_parent_waits_for_its_children_unless_forced(session: Session) -> None:
    ok(session, 2, "[parent=#1]")
    assert events(session, 1, "child-added") == [("child-added", None, "#2")]
    assert events(session, 2, "parent") == [("parent", None, "#1")]
    assert refused(session, 1, "[resolve]") == (
        "ticket #1 has open children (#2): finish them first, or add force to resolve it anyway, e.g. "
        "[resolve; force]")
    assert session.exec(select(Ticket).where(Ticket.number == 1)).one().state == "open"
    ctx = ok(session, 1, "[resolve; force]")
    assert ctx.ticket is not None and ctx.ticket.state == "resolved"
    assert events(session, 1, "forced") == [("forced", None, "resolved with open children #2")]
    ok(session, 2, "[close]")
    ok(session, 3, "[parent=#2]")
    ok(session, 3, "[close]")  # a child without children of its own closes as ever


def test_a_parent_cannot_be_the_ticket_itself_or_its_descendant(session: Session) -> None:
    ok(session, 2, "[parent=#1]")
    ok(session, 3, "[parent=#2]")
    assert refused(session, 1, "[parent=#3]") == "#3 is a child of this ticket (or further down): it cannot be " \
        "its parent"
    assert refused(session, 1, "[parent=#1]") == "#1 is this ticket itself"
    assert refused(session, 1, "[parent=#99]") == "there is no ticket #99"
    assert refused(session, 1, "[parent=one]") == "parent needs a ticket number like #1040, not 'one'"


def test_links_show_on_both_sides_once(session: Session) -> None:
    ok(session, 1, "[link=#2]")
    ok(session, 2, "[link=#1]")  # already linked: nothing more
    assert events(session, 1, "linked") == [("linked", None, "#2")]
    assert events(session, 2, "linked") == [("linked", None, "#1")]
    from ticketd.rules.process import linked
    one = session.exec(select(Ticket).where(Ticket.number == 1)).one()
    two = session.exec(select(Ticket).where(Ticket.number == 2)).one()
    assert [t.number for t in linked(session, one)] == [2] and [t.number for t in linked(session, two)] == [1]


# --- the stage's escalation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("language", "subject", "line"), [
    ("en", "SLA deadline missed (stage): Bakım", "The ticket is still in its stage review."),
    ("tr", "SLA süresi aşıldı (aşama): Bakım", "Kayıt hâlâ review aşamasında."),
])
def test_the_escalation_names_the_stage(language: str, subject: str, line: str) -> None:
    from test_process_templates import context

    ctx = context(breach="stage", stage="review", due="2026-12-08 10:00", overdue="1 h 0 min")
    ctx["ticket"] = {**ctx["ticket"], "subject": "Bakım"}
    mail = render(make_environment(), "escalation", language, ctx)
    assert mail.subject == subject and line in mail.body


# --- migration 0017 ---------------------------------------------------------------------------------------------

def test_migration_0017_goes_down_and_up_again(engine: sa.Engine) -> None:
    from alembic import command

    from ticketd.storage import db

    def shape() -> tuple[set[str], bool]:
        inspector = sa.inspect(engine)
        return {c["name"] for c in inspector.get_columns("ticket")}, inspector.has_table("ticket_link")

    ours = {"stage", "stage_since", "stage_due", "stage_breached_at", "parent_id"}
    columns, has_links = shape()
    assert ours <= columns and has_links
    command.downgrade(db._alembic_config(engine), "0016")
    columns, has_links = shape()
    assert not ours & columns and not has_links
    db.upgrade(engine)
    columns, has_links = shape()
    assert ours <= columns and has_links
