"""The ``ticketd`` command (DESIGN.md §7): set-up, the daemon, intake from a pipe, checks and the demo.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error (the message names the key), 75 temporary failure.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from ticketd.daemon.cli import (  # noqa: F401  (their commands join the app)
    actions,
    admin,
    attachments,
    layout,
    lookup,
    privacy,
    report,
    status,
    webhooks,
)
from ticketd.daemon.cli.common import (
    EXIT_CONFIG,
    EXIT_RUNTIME,
    EXIT_TEMPFAIL,
    app,
    database_problem,
    fail,
    get_config,
    get_engine,
    read_config,
    sync_config_agents,
)
from ticketd.daemon.config import load_config
from ticketd.daemon.service import systemd
from ticketd.storage import db
from ticketd.storage.directory import DirectoryError
from ticketd.storage.inbound import OVERSIZE_PREFIX, store_inbound, truncated_message

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
admin.register(app)


# --- set-up -------------------------------------------------------------------------------------------------

class SiteLayout(StrEnum):
    system = "system"
    local = "local"


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for ticketd.toml and credentials/.")] = Path("/etc/ticketd"),
    address: Annotated[str, typer.Option(help="The support address customers write to.")] = "support@example.com",
    name: Annotated[str, typer.Option(help="The helpdesk's name in mails.")] = "Support",
    tag: Annotated[str, typer.Option(help="Ticket tag in subjects: [TAG #123].")] = "TICKET",
    site_layout: Annotated[SiteLayout, typer.Option(
        "--layout", help="system: as deploy/ticketd.service runs it (the database in /var/lib/ticketd, made by the "
        "service at its first start); local: everything in DIR, private, the database made now.")] = SiteLayout.system,
    state_dir: Annotated[Path | None, typer.Option(
        help="Folder of the SQLite database (default: /var/lib/ticketd, or DIR with --layout local).")] = None,
) -> None:
    """Write the config (the documented example with these values) and the credentials; say what to check."""
    problems = layout.helpdesk_problems(name=name, address=address, tag=tag)
    if problems:
        fail("; ".join(problems), EXIT_CONFIG)
    system = site_layout is SiteLayout.system
    directory = directory.absolute()
    state = (state_dir or (layout.SYSTEM_STATE_DIR if system else directory)).absolute()
    config_path = directory / "ticketd.toml"
    if config_path.exists():
        fail(f"{config_path} exists already; not overwriting it", EXIT_CONFIG)
    text = layout.render(name, address, tag, state / "ticketd.db")
    existed = directory.exists()
    layout.make_dirs(directory, 0o755 if system else 0o700)
    written = layout.Written()
    layout.write_config(config_path, text, system)
    written.files.append((config_path, "the config: the documented example with the values above"))
    layout.write_credentials(directory / "credentials", written)
    config = read_config(config_path)  # the whole file, validated as every command will
    database = state / "ticketd.db"
    if system:
        written.notes.append(f"{database} is not made now: the service makes it at its first start "
                             "(ExecStartPre: ticketd db upgrade), as the service's own user")
        if existed and layout.unreadable_by_others(directory):
            written.notes.append(f"{directory} is mode {directory.stat().st_mode & 0o777:o}: the service's user "
                                 f"cannot read the config in it: chmod 755 {directory}")
    else:
        layout.make_dirs(state, 0o700)
        db.upgrade(get_engine(config, require_schema=False))
        written.files.append((database, "the database, its schema current"))
    for line in layout.report(written, config_path, text, system):
        typer.echo(line)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Bring the database schema up to date (safe to run on every deploy)."""
    config = get_config(ctx)
    try:
        db.upgrade(get_engine(config, require_schema=False))
    except sa.exc.OperationalError as exc:
        fail(f"database {db.display_url(config.database.url)}: {exc.orig}", EXIT_TEMPFAIL)
    typer.echo("database schema is up to date")


# --- the daemon ---------------------------------------------------------------------------------------------

@app.command()
def run(ctx: typer.Context,
        once: Annotated[bool, typer.Option("--once", help="Handle everything waiting, then exit.")] = False) -> None:
    """Run the daemon (or one pass with --once)."""
    # The daemon's modules load only for the commands that run them: every other command starts faster.
    from ticketd.daemon import runner
    from ticketd.daemon.service.coordination import AlreadyRunning, Coordinator

    config = get_config(ctx)
    engine = get_engine(config)
    try:
        coordinator = Coordinator(engine).start()
    except AlreadyRunning as exc:
        fail(str(exc), EXIT_CONFIG)
    try:
        if once:
            try:
                summary = runner.run_once(engine, config, coordinator)
            except sa.exc.DBAPIError as exc:  # the database went away during the pass: what is stored stays new
                fail(database_problem(config, exc), EXIT_TEMPFAIL)
            outcomes = ", ".join(f"{count} {status}" for status, count in sorted(summary.processed.items()))
            typer.echo(f"stored {summary.stored}, processed {sum(summary.processed.values())}"
                       f"{f' ({outcomes})' if outcomes else ''}, sent {summary.sent}")
            if summary.errors:
                fail("; ".join(summary.errors), EXIT_RUNTIME)
            return
        stop = runner.StopFlag()
        stop.install()
        path = config.source
        runner.run_forever(engine, config, stop, reload_config=(lambda: load_config(path)) if path else None,
                           coordinator=coordinator)
    finally:
        coordinator.stop()


@app.command()
def deliver(
    ctx: typer.Context,
    mailbox: Annotated[str, typer.Option(help="Name recorded as the message's mailbox.")] = "deliver",
    process: Annotated[bool, typer.Option(help="Also process it now (else the daemon will).")] = True,
) -> None:
    """Store one message from standard input (an MTA pipe). Exit 75 tells the MTA to try again later."""
    # The pipeline and the SMTP client: loaded only by the commands that run them
    from ticketd.daemon import pipeline
    from ticketd.daemon.outgoing import outbox

    raw = sys.stdin.buffer.read()
    if not raw.strip():
        fail("no message on standard input", EXIT_CONFIG)
    config = get_config(ctx)
    # For an MTA every failure to store is temporary (exit 75: it keeps the mail and retries), never a bounce.
    try:
        engine = db.make_engine(config.database.connect_url)
        if not db.schema_is_current(engine):
            fail("database schema is not current: run `ticketd db upgrade`", EXIT_TEMPFAIL)
        sync_config_agents(engine, config)  # agent mail piped in is an agent's, as in the daemon
        if len(raw) > config.limits.max_message_bytes:
            head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
            raw = truncated_message(head, body[:OVERSIZE_PREFIX], len(raw))
        with db.session_scope(engine) as session:
            inbound_id = store_inbound(session, raw, mailbox, channel="cli").id
    except sa.exc.DBAPIError as exc:  # even a file that is not a database: the MTA keeps the mail until it is fixed
        fail(f"cannot store the message: {database_problem(config, exc)}", EXIT_TEMPFAIL)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        fail(f"cannot store the message: {exc}", EXIT_TEMPFAIL)
    if process:  # the message is safe now; a processing error quarantines it, it does not fail delivery
        assert inbound_id is not None  # flushed when stored
        pipeline.process_pending(engine, config, [inbound_id])
        outbox.send_due(engine, config)


@app.command()
def check(ctx: typer.Context) -> None:
    """Validate the config, then log in to the database, IMAP and SMTP, reach the LMTP listener, say what works."""
    # IMAP, SMTP and OAuth2 clients: loaded only by the command that tries them
    from ticketd.daemon.cli.checks import NOT_A_DATABASE, loose_permissions, run_checks

    config = get_config(ctx)
    results = run_checks(config)
    for name, ok, detail in results:
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    for warning in loose_permissions(config):  # a warning, not a failure: the service still works
        typer.echo(f"WARN permissions: {warning}")
    if any(name == "database" and detail.startswith(NOT_A_DATABASE) for name, _, detail in results):
        raise typer.Exit(EXIT_CONFIG)
    if not all(ok for _, ok, _ in results):
        raise typer.Exit(EXIT_RUNTIME)


@app.command()
def demo(
    directory: Annotated[Path | None, typer.Argument(help="Working folder (default: a new temporary one).")] = None,
) -> None:
    """The whole flow on local defaults: sample mails become tickets, acknowledgments go to a local SMTP sink."""
    from ticketd.daemon.cli.demo import run_demo  # the demo's SMTP sink and the whole daemon: only for `demo`

    raise typer.Exit(run_demo(directory))


def main() -> None:
    # Everything ticketd writes is private: the database (all raw customer mail), the secret, exports, reports and
    # attachments saved from the CLI are 0600, folders 0700. deploy/ticketd.service sets the same for the daemon.
    os.umask(0o077)
    systemd.return_big_buffers()
    try:
        app()
    except DirectoryError as exc:  # bad operator input (an address, a CSV line): a usage error
        typer.echo(f"ticketd: {exc}", err=True)
        sys.exit(EXIT_CONFIG)

