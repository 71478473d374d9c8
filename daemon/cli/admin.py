"""Admin subcommands: the directory (customers, agents, companies) and the queues (tickets, inbound, outbox)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from sqlmodel import Session, col, select

from ticketd.daemon.cli.common import EXIT_CONFIG, JsonOption, fail, get_config, get_engine, print_json
from ticketd.daemon.cli.ledger_views import evidence_lines, ledger_lines
from ticketd.daemon.cli.progress import progress
from ticketd.daemon.cli.views import inbound_dict, outbox_dict, ticket_detail, ticket_dict
from ticketd.daemon.config import Config
from ticketd.storage import db
from ticketd.storage.directory import add_company, company_domains, import_customers, upsert_agent
from ticketd.storage.models import Agent, Company, Inbound, Outbox, Ticket, utcnow

customers = typer.Typer(help="Customers.", no_args_is_help=True)
agents = typer.Typer(help="Agents.", no_args_is_help=True)
companies = typer.Typer(help="Companies (domains, contract, SLA plan).", no_args_is_help=True)
tickets = typer.Typer(help="Tickets.", no_args_is_help=True)
inbound = typer.Typer(help="Stored inbound mail (every message, raw).", no_args_is_help=True)
outbox = typer.Typer(help="Outgoing mail.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for name, sub in (("customers", customers), ("agents", agents), ("companies", companies),
                      ("tickets", tickets), ("inbound", inbound), ("outbox", outbox)):
        app.add_typer(sub, name=name)


def _session(config: Config) -> Session:
    return Session(get_engine(config), expire_on_commit=False)


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def action_line(a: dict[str, Any], tz: tzinfo) -> str:
    """One action as `tickets show` and `actions list` print it: "#3 open OVERDUE due … owner …: what → result"."""
    flags = [f for f, on in (("OVERDUE", a["overdue"]), ("customer", a["customer"]),
                             ("optional", not a["required"])) if on]
    result = f" → {a['result']}" if a["result"] else ""
    return (f"#{a['id']} {a['status']}{' ' + ' '.join(flags) if flags else ''}  due {_local(a['due'], tz)}  "
            f"owner {a['owner'] or '-'}: {a['what']}{result}")


def _local(value: str | None, tz: tzinfo) -> str:
    """An ISO timestamp shown in the helpdesk's time zone (``config.tz``), where agents read it."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")


# --- directory ----------------------------------------------------------------------------------------------

@customers.command("import")
def customers_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Import customers from CSV: email,name,company[,language,phone,domains]. All rows or none."""
    with file.open("rb") as fh:
        rows = max(0, sum(1 for _ in fh) - 1)
    with _session(get_config(ctx)) as session, session.begin(), progress(f"importing {file.name}", rows) as bar:
        result = import_customers(session, file, on_row=bar.advance)
    typer.echo(f"imported {result.customers} customers, {len(result.companies)} companies")


@agents.command("add")
def agents_add(
    ctx: typer.Context,
    email: str,
    name: Annotated[str, typer.Option("--name", help="Full name, shown to customers.")],
    role: Annotated[str, typer.Option(help="agent or manager.")] = "agent",
    group: Annotated[list[str] | None, typer.Option("--group", help="Group membership (repeatable).")] = None,
) -> None:
    """Add or update an agent (only when the config has no [[agents]]: then the config is the list)."""
    config = get_config(ctx)
    _refuse_if_config_lists_agents(config, "add them there")
    with _session(config) as session, session.begin():
        agent = upsert_agent(session, email, name, role, group or [])
        typer.echo(f"agent {agent.email} ({agent.name}, {agent.role}) saved")


def _refuse_if_config_lists_agents(config: Config, what: str, email: str | None = None) -> None:
    """With [[agents]] in the config, a CLI change would be undone by the next command's sync: say so instead."""
    listed = {a.email.lower() for a in config.agents}
    if listed and (email is None or email.strip().lower() in listed):
        fail(f"agents are listed in [[agents]] of {config.source}; {what}", EXIT_CONFIG)


@agents.command("list")
def agents_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Agents with their role, groups, and whether they are away or deactivated."""
    with _session(get_config(ctx)) as session:
        rows: list[dict[str, Any]] = [
            {"email": a.email, "name": a.name, "role": a.role, "groups": a.groups or [], "active": a.active,
             "away": a.away} for a in session.exec(select(Agent).order_by(Agent.email))]
    if as_json:
        print_json(rows)
        return
    _table([[r["email"], r["name"], r["role"], ",".join(r["groups"]) or "-",
             "inactive" if not r["active"] else "away" if r["away"] else "at work"] for r in rows],
           ["EMAIL", "NAME", "ROLE", "GROUPS", "STATUS"])


def _set_agent(ctx: typer.Context, email: str, **values: bool) -> None:
    with _session(get_config(ctx)) as session, session.begin():
        agent = session.exec(select(Agent).where(Agent.email == email.strip().lower())).first()
        if agent is None:
            fail(f"no agent {email} (see `ticketd agents list`)", EXIT_CONFIG)
        for key, value in values.items():
            setattr(agent, key, value)
    typer.echo(f"agent {email}: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in values.items()))


@agents.command("away")
def agents_away(ctx: typer.Context, email: str) -> None:
    """Mark an agent away: assignment policies skip them and unassigned tickets do not notify them."""
    _set_agent(ctx, email, away=True)


@agents.command("back")
def agents_back(ctx: typer.Context, email: str) -> None:
    """The agent is back at work."""
    _set_agent(ctx, email, away=False)


@agents.command("deactivate")
def agents_deactivate(
    ctx: typer.Context,
    email: str,
    reassign: Annotated[bool, typer.Option("--reassign", help="Hand their open tickets on by each group's policy "
                                           "(unassigned, their group or the managers are told).")] = False,
) -> None:
    """The agent left: no assignments, no notifications, and their mail no longer counts as an agent's.

    Mail on their tickets reaches the ticket's group, else the managers; with --reassign the open tickets are
    handed on at once and the new assignees and the customers told (the daemon sends the mail).
    """
    from ticketd.daemon.stages.handover import hand_on  # the stages: loaded only by the commands that run them

    config = get_config(ctx)
    _refuse_if_config_lists_agents(config, "remove them from there (then --reassign hands on their tickets)", email)
    with Session(get_engine(config), expire_on_commit=False) as session, session.begin():
        agent = session.exec(select(Agent).where(Agent.email == email.strip().lower())).first()
        if agent is None:
            fail(f"no agent {email} (see `ticketd agents list`)", EXIT_CONFIG)
        agent.active = False
        session.flush()
        handed = hand_on(session, config, agent, utcnow()) if reassign else []
    typer.echo(f"agent {agent.email}: active=no")
    for item in handed:
        typer.echo(f"  #{item.number} -> {item.to}")
    if reassign:
        typer.echo(f"{len(handed)} open ticket(s) handed on" + ("; the daemon sends the mail" if handed else ""))


@companies.command("add")
def companies_add(
    ctx: typer.Context,
    name: str,
    domain: Annotated[list[str] | None, typer.Option("--domain", help="Mail domain (repeatable).")] = None,
    contract_until: Annotated[str | None, typer.Option(help="Contract end, YYYY-MM-DD.")] = None,
    sla_plan: Annotated[str | None, typer.Option(help="SLA plan name.")] = None,
) -> None:
    """Add or update a company."""
    until = None
    if contract_until:
        try:
            until = date.fromisoformat(contract_until)
        except ValueError:
            fail(f"--contract-until: {contract_until!r} is not a date (YYYY-MM-DD)", 2)
    with _session(get_config(ctx)) as session, session.begin():
        company = add_company(session, name, domain or [], until, sla_plan)
        typer.echo(f"company {company.name} saved ({', '.join(company_domains(session, company)) or 'no domains'})")


@companies.command("list")
def companies_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List companies with their domains and contracts."""
    with _session(get_config(ctx)) as session:
        rows: list[dict[str, Any]] = [
            {"name": c.name, "domains": company_domains(session, c),
             "contract_until": c.contract_until.date().isoformat() if c.contract_until else None,
             "sla_plan": c.sla_plan}
            for c in session.exec(select(Company).order_by(Company.name))]
    if as_json:
        print_json(rows)
        return
    _table([[r["name"], " ".join(r["domains"]), r["contract_until"] or "-", r["sla_plan"] or "-"] for r in rows],
           ["NAME", "DOMAINS", "CONTRACT UNTIL", "SLA PLAN"])


# --- tickets ------------------------------------------------------------------------------------------------

@tickets.command("list")
def tickets_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only tickets in this state.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List tickets, newest first."""
    config = get_config(ctx)
    with _session(config) as session:
        stmt = select(Ticket).order_by(col(Ticket.number).desc())
        if state:
            stmt = stmt.where(Ticket.state == state)
        rows = [ticket_dict(session, t) for t in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    _table([[f"#{r['number']}", r["state"], r["priority"], r["requester"], r["assignee"] or "-",
             _local(r["created_at"], config.tz), r["subject"][:60]] for r in rows],
           ["NUMBER", "STATE", "PRIORITY", "REQUESTER", "ASSIGNEE", "CREATED", "SUBJECT"])


@tickets.command("show")
def tickets_show(ctx: typer.Context, number: int, as_json: JsonOption = False) -> None:
    """One ticket with its conversation and history."""
    config = get_config(ctx)
    with _session(config) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is None:
            fail(f"no ticket #{number} (see `ticketd tickets list`)", EXIT_CONFIG)
        data = ticket_detail(session, ticket)
    if as_json:
        print_json(data)
        return
    typer.echo(f"#{data['number']}  {data['subject']}")
    for key in ("state", "requester", "company", "assignee", "type", "category", "priority", "source"):
        typer.echo(f"  {key:<10} {data[key] if data[key] is not None else '-'}")
    if data["merged_into"]:
        typer.echo(f"  merged into #{data['merged_into']} (work goes on there; this customer's mail stays here)")
    if data["merged_from"]:
        typer.echo("  merged in: " + ", ".join(f"#{n}" for n in data["merged_from"])
                   + " (each keeps its customer's conversation: `ticketd tickets show N`)")
    if data["actions"]:
        typer.echo("  actions:")
        for a in data["actions"]:
            typer.echo("    " + action_line(a, config.tz))
    if data["stage"]:
        typer.echo(f"  {'stage':<10} {data['stage']} (since {_local(data['stage_since'], config.tz)})")
    if data["parent"]:
        typer.echo(f"  {'parent':<10} #{data['parent']}")
    for key in ("children", "links"):
        if data[key]:
            typer.echo(f"  {key:<10} " + ", ".join(f"#{n}" for n in data[key]))
    for m in data["messages"]:
        typer.echo(f"\n--- {m['direction']} {m['kind']} from {m['from']} at {_local(m['date'], config.tz)}")
        typer.echo(m["text"].rstrip())
        for a in m["attachments"]:
            typer.echo(f"  [attachment {a['id']}] {a['filename']} ({a['content_type']}, {a['size']} bytes)")
    for o in data["outgoing"]:
        typer.echo(f"\n--- out {o['kind']} to {o['to']} [{o['status']}]: {o['subject']}")
    for line in ledger_lines(data, lambda at: _local(at, config.tz)):
        typer.echo(line)
    typer.echo("\nhistory:")
    for e in data["events"]:
        change = f" {e['old'] or ''} → {e['new']}" if e["new"] is not None else ""
        typer.echo(f"  {_local(e['at'], config.tz)}  {e['actor']}: {e['what']}{change}")
        for line in evidence_lines(e):
            typer.echo(line)


# --- queues -------------------------------------------------------------------------------------------------

@inbound.command("list")
def inbound_list(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only quarantined rows.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Stored inbound mail and what became of it."""
    with _session(get_config(ctx)) as session:
        stmt = select(Inbound).order_by(col(Inbound.id))
        if failed:
            stmt = stmt.where(Inbound.status == "failed")
        rows = [inbound_dict(session, r) for r in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    _table([[str(r["id"]), r["status"], str(r["ticket"] or "-"), r["message_id"] or "-", (r["reason"] or "")[:60]]
            for r in rows], ["ID", "STATUS", "TICKET", "MESSAGE-ID", "REASON"])


def _has_raw(row: Inbound) -> None:
    """A row whose raw mail was purged (``[retention]``) or erased cannot be processed again: refused, not
    turned into an empty mail."""
    if row.raw_purged_at is not None:
        fail(f"inbound {row.id}: its raw mail was deleted on {row.raw_purged_at:%Y-%m-%d} (retention or erasure); "
             "it cannot be processed again", EXIT_CONFIG)


_Queued = TypeVar("_Queued", Inbound, Outbox)


def _requeue(ctx: typer.Context, model: type[_Queued], row_id: int | None, all_failed: bool,
             failed_states: list[str], reset: Callable[[_Queued], None],
             check: Callable[[_Queued], None] = lambda _row: None) -> tuple[Config, sa.Engine, list[int]]:
    """Select one row or every failed one, reset it for another attempt, commit; shared by both retry commands."""
    if (row_id is None) == (not all_failed):
        fail("give an ID or --all-failed", 2)
    config = get_config(ctx)
    engine = get_engine(config)
    with db.session_scope(engine) as session:
        stmt = select(model).where(col(model.status).in_(failed_states) if all_failed else model.id == row_id)
        rows = list(session.exec(stmt))
        if not rows and row_id is not None:
            fail(f"no {model.__tablename__} row {row_id}", EXIT_CONFIG)
        for row in rows:
            check(row)
            reset(row)
        ids = [r.id for r in rows if r.id is not None]
    return config, engine, ids


def _reset_inbound(row: Inbound) -> None:
    row.status, row.reason = "new", None


def _reset_outbox(row: Outbox) -> None:
    row.status, row.next_attempt_at = "queued", utcnow()


@inbound.command("retry")
def inbound_retry(
    ctx: typer.Context,
    row_id: Annotated[int | None, typer.Argument(metavar="ID")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed")] = False,
) -> None:
    """Process a failed (or any) stored message again."""
    # The pipeline and the SMTP client: loaded only by the commands that run them
    from ticketd.daemon import pipeline
    from ticketd.daemon.outgoing import outbox as sender

    config, engine, ids = _requeue(ctx, Inbound, row_id, all_failed, ["failed"], _reset_inbound, _has_raw)
    outcomes = pipeline.process_pending(engine, config, ids)
    sender.send_due(engine, config)
    for inbound_id, outcome in zip(ids, outcomes, strict=True):
        typer.echo(f"inbound {inbound_id}: {outcome.status}"
                   + (f" (ticket #{outcome.ticket_number})" if outcome.ticket_number else "")
                   + (f": {outcome.reason}" if outcome.reason else ""))
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


@outbox.command("list")
def outbox_list(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed, dead and suppressed mail.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Outgoing mail and its delivery state."""
    with _session(get_config(ctx)) as session:
        stmt = select(Outbox).order_by(col(Outbox.id))
        if failed:
            stmt = stmt.where(col(Outbox.status).in_(["failed", "dead", "suppressed"]))
        rows = [outbox_dict(session, r) for r in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    _table([[str(r["id"]), r["status"], str(r["attempts"]), str(r["ticket"] or "-"), r["to"], r["subject"][:50]]
            for r in rows], ["ID", "STATUS", "TRIES", "TICKET", "TO", "SUBJECT"])


@outbox.command("retry")
def outbox_retry(
    ctx: typer.Context,
    row_id: Annotated[int | None, typer.Argument(metavar="ID")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed")] = False,
) -> None:
    """Send failed or dead mail again now (same Message-ID)."""
    from ticketd.daemon.outgoing import outbox as sender  # the SMTP client: loaded only by the commands that send

    config, engine, _ = _requeue(ctx, Outbox, row_id, all_failed, ["failed", "dead"], _reset_outbox)
    typer.echo(f"sent {sender.send_due(engine, config)} mail(s)")
