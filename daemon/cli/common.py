"""What every ``ticketd`` subcommand shares: the Typer app, config loading, exit codes, JSON output.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error (the message names the key), 75 temporary failure.

The options given before the subcommand (``--config``) travel in the invocation's click context (``ctx.obj``),
never in a module: the app run twice in one process (the tests, a wrapper script) starts clean each time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import sqlalchemy as sa
import structlog
import typer

from ticketd.daemon.config import Config, ConfigError, find_config_path, load_config
from ticketd.daemon.service import logs
from ticketd.storage import db
from ticketd.storage.directory import sync_agents

EXIT_RUNTIME, EXIT_CONFIG, EXIT_TEMPFAIL = 1, 2, 75

app = typer.Typer(help="ticketd: an email-driven helpdesk daemon.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (else $TICKETD_CONFIG, ./ticketd.toml, /etc/ticketd/ticketd.toml)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable keys).")]


@dataclass
class Options:
    """The options of the whole command, given before the subcommand: this invocation's ``ctx.obj``."""

    config_path: Path | None = None


@app.callback()
def _main(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = Options(config_path=config)


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"ticketd: {message}", err=True)
    raise typer.Exit(code)


def get_config(ctx: typer.Context) -> Config:
    """The configuration this invocation names (``--config``, else ``$TICKETD_CONFIG``, else the default paths)."""
    options = ctx.find_object(Options)
    return read_config(find_config_path(options.config_path if options is not None else None))


def read_config(path: Path) -> Config:
    """Load ``path``, or exit 2 naming each problem; logging is set up as the configuration asks."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        typer.echo(f"ticketd: invalid configuration in {path}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    logs.configure(config.logging.level, config.logging.format)
    if config.security.agent_auth == "from-header":
        structlog.get_logger("ticketd").warning(
            "security.agent_auth_from_header",
            detail="agent commands are trusted on the From header alone; anyone can forge it",
        )
    return config


def database_name(config: Config) -> str:
    """The database as an operator finds it: a SQLite file's path, else the URL without its password."""
    url = config.database.url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else db.display_url(url)


def database_problem(config: Config, exc: sa.exc.DBAPIError) -> str:
    """One line naming the database and the driver's reason, without SQLAlchemy's SQL and links."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return f"database {database_name(config)}: {reason}"


def get_engine(config: Config, require_schema: bool = True) -> sa.Engine:
    """The engine, once the database is known to open (and, unless told otherwise, to be at the current schema).

    A server that is down or a locked file is temporary (exit 75); a file that is not a database (a wrong path in
    the config, a truncated copy) is the operator's to fix (exit 2), named with the driver's reason.
    """
    try:
        engine = db.make_engine(config.database.connect_url)
    except OSError as exc:
        fail(f"database {db.display_url(config.database.url)}: {exc}", EXIT_RUNTIME)
    try:
        if require_schema:
            current = db.schema_is_current(engine)
        else:
            with engine.connect():
                current = True
    except sa.exc.OperationalError as exc:
        fail(database_problem(config, exc), EXIT_TEMPFAIL)
    except sa.exc.DatabaseError as exc:
        fail(database_problem(config, exc), EXIT_CONFIG)
    if require_schema:
        if not current:
            fail("database schema is not current: run `ticketd db upgrade`", EXIT_CONFIG)
        sync_config_agents(engine, config)
    return engine


def sync_config_agents(engine: sa.Engine, config: Config) -> None:
    """With ``[[agents]]`` in the config, the agent table follows it at the start of every command that opens
    the database (``deliver`` and the daemon's reload included): listed agents active, anyone else inactive.
    Without ``[[agents]]`` the table is the CLI's (`ticketd agents add`/`deactivate`) and is left as it is."""
    if not config.agents:
        return
    with db.session_scope(engine) as session:
        result = sync_agents(session, [(a.email, a.name, a.role, a.groups) for a in config.agents])
    if result.deactivated:
        structlog.get_logger("ticketd").info("agents.deactivated", agents=result.deactivated,
                                             reason="not in the config's [[agents]]")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


