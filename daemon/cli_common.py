"""What every ``ticketd`` subcommand shares: the Typer app, config loading, exit codes, JSON output.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error (the message names the key), 75 temporary failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import sqlalchemy as sa
import typer

from ticketd.daemon import logs
from ticketd.daemon.config import Config, ConfigError, find_config_path, load_config
from ticketd.storage import db
from ticketd.storage.directory import upsert_agent

EXIT_RUNTIME, EXIT_CONFIG, EXIT_TEMPFAIL = 1, 2, 75

app = typer.Typer(help="ticketd: an email-driven helpdesk daemon.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (else $TICKETD_CONFIG, ./ticketd.toml, /etc/ticketd/ticketd.toml)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable keys).")]


class State:
    config_path: Path | None = None


STATE = State()


@app.callback()
def _main(config: ConfigOption = None) -> None:
    STATE.config_path = config


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"ticketd: {message}", err=True)
    raise typer.Exit(code)


def get_config() -> Config:
    path = find_config_path(STATE.config_path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        typer.echo(f"ticketd: invalid configuration in {path}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    logs.configure(config.logging.level, config.logging.format)
    if config.security.agent_auth == "from-header":
        import structlog

        structlog.get_logger("ticketd").warning(
            "security.agent_auth_from_header",
            detail="agent commands are trusted on the From header alone; anyone can forge it",
        )
    return config


def get_engine(config: Config, require_schema: bool = True) -> sa.Engine:
    try:
        engine = db.make_engine(config.database.connect_url)
    except OSError as exc:
        fail(f"database {db.display_url(config.database.url)}: {exc}", EXIT_RUNTIME)
    if require_schema:
        try:
            current = db.schema_is_current(engine)
        except sa.exc.OperationalError as exc:
            fail(f"database {db.display_url(config.database.url)}: {exc.orig}", EXIT_TEMPFAIL)
        if not current:
            fail("database schema is not current: run `ticketd db upgrade`", EXIT_CONFIG)
        sync_config_agents(engine, config)
    return engine


def sync_config_agents(engine: sa.Engine, config: Config) -> None:
    """Agents declared in the config are upserted at start; the config wins over earlier CLI changes."""
    if not config.agents:
        return
    with db.session_scope(engine) as session:
        for a in config.agents:
            upsert_agent(session, a.email, a.name, a.role, a.groups)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


