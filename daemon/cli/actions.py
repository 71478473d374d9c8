"""``ticketd actions``: action items outside any ticket (improvement actions decided from the reports, ISO 10002
§8.7), and every action listed, whatever its ticket.

An action added here is followed as one written in a mail: its owner is told (the mail goes out with the
daemon's next pass) and reminded when it is due and once more when overdue. Closing one here records its result
the same way an agent's ``Action-Result:`` line does. Bad input is one line and exit 2, never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session, col, select

from ticketd.daemon.cli.admin import action_line
from ticketd.daemon.cli.common import EXIT_CONFIG, JsonOption, app, fail, get_config, get_engine, print_json
from ticketd.daemon.cli.views import action_dict
from ticketd.daemon.config import Config
from ticketd.daemon.stages.actions import tell_owner
from ticketd.parsers.commands import suggest
from ticketd.rules import actions
from ticketd.rules.commands import find_agent
from ticketd.storage.db import session_scope
from ticketd.storage.models import Action, Agent, utcnow

actions_app = typer.Typer(help="Action items: improvement actions outside tickets, and every action listed.",
                          no_args_is_help=True)
app.add_typer(actions_app, name="actions")
ACTOR = "ticketd actions"  # the events' actor: the operator at the command line


def _category(config: Config, value: str | None) -> str | None:
    if value is None:
        return None
    path = value.strip().lower().strip("/")
    tree = config.categories.all()
    if not path or (tree and path not in tree):
        hint = suggest(path, tree)
        fail(f"unknown category {value!r}" + (f"; did you mean {hint}?" if hint else "")
             + (f" (categories: {', '.join(tree)})" if tree else ""), EXIT_CONFIG)
    return path


@actions_app.command("add")
def actions_add(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="What is to be done.")],
    owner: Annotated[str, typer.Option("--owner", help="The agent who does it (address or name).")],
    due: Annotated[str, typer.Option("--due", help="YYYY-MM-DD (end of that day) or business time: 3d, 4h.")],
    category: Annotated[str | None, typer.Option("--category", help="The category it improves.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Where it came from, e.g. a report's figure.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Open an improvement action (outside any ticket); its owner is told and reminded."""
    config = get_config(ctx)
    now = utcnow()
    try:
        line = actions.plain(what)
        due_at = actions.parse_due(due, now, config.calendar, config.tz)
    except actions.ActionError as exc:
        fail(str(exc), EXIT_CONFIG)
    chosen = _category(config, category)
    with session_scope(get_engine(config)) as session:
        agent = find_agent(session, owner)
        if agent is None:
            names = [a.email for a in session.exec(select(Agent).where(Agent.active))]
            hint = suggest(owner.strip().lower(), names)
            fail(f"no active agent called {owner!r}" + (f"; did you mean {hint}?" if hint else ""), EXIT_CONFIG)
        action = actions.add(session, ticket=None, line=line, owner=agent, due=due_at, calendar=config.calendar,
                             actor=ACTOR, now=now, category=chosen, source=source.strip() if source else None)
        tell_owner(session, config, action, None, now, cause="agent")
        data = action_dict(session, action, now)
    if as_json:
        print_json(data)
        return
    typer.echo(f"action #{data['id']} added for {data['owner']}, due "
               f"{action.due.astimezone(config.tz):%Y-%m-%d %H:%M}; the owner is told with the daemon's next pass")


@actions_app.command("list")
def actions_list(
    ctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only actions still open.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every action (on tickets and improvement actions), oldest first."""
    config = get_config(ctx)
    now = utcnow()
    with Session(get_engine(config)) as session:
        stmt = select(Action).order_by(col(Action.id))
        if open_only:
            stmt = stmt.where(Action.status == "open")
        rows = [action_dict(session, a, now) for a in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no actions" + (" open" if open_only else ""))
    for row in rows:
        where = f"#{row['ticket']}" if row["ticket"] is not None else (row["category"] or "improvement")
        typer.echo(f"{where:<16} {action_line(row, config.tz)}")


def _close(ctx: typer.Context, number: str, status: str, result: str | None) -> None:
    config = get_config(ctx)
    now = utcnow()
    text = " ".join(result.split()) if result else None
    if status == "done" and not text:
        fail("--result is required: what was done and what it changed", EXIT_CONFIG)
    with session_scope(get_engine(config)) as session:
        try:
            action = actions.find(session, number, anywhere=True)
            actions.close(session, action, status, result=text, actor=ACTOR, now=now)
        except actions.ActionError as exc:
            fail(str(exc), EXIT_CONFIG)
    typer.echo(f"action #{action.id} {status}")


@actions_app.command("done")
def actions_done(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The action's number (#N).")],
    result: Annotated[str | None, typer.Option("--result", help="What was done and what it changed.")] = None,
) -> None:
    """Close an action as done, with its result."""
    _close(ctx, number, "done", result)


@actions_app.command("cancel")
def actions_cancel(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The action's number (#N).")],
    result: Annotated[str | None, typer.Option("--result", help="Why it is cancelled.")] = None,
) -> None:
    """Close an action as cancelled (the reason in --result)."""
    _close(ctx, number, "cancelled", result)
