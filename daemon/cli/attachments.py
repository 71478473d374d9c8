"""The files customers and agents sent with a ticket's mail, for the operator: agents work by mail only, and a file
too big to forward has to be fetched from the database by someone at a shell."""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import Session, col, select

from ticketd.daemon.cli.admin import _table
from ticketd.daemon.cli.common import (
    EXIT_CONFIG,
    EXIT_RUNTIME,
    JsonOption,
    app,
    fail,
    get_config,
    get_engine,
    print_json,
)
from ticketd.daemon.cli.views import iso
from ticketd.daemon.outgoing.files import size_text
from ticketd.parsers.message import sanitize_filename
from ticketd.storage.models import Attachment, Blob, Message, Ticket

attachments = typer.Typer(help="Files that came with a ticket's mail: list them, save one.", no_args_is_help=True)
app.add_typer(attachments, name="attachments")

# Row ids are INTEGER columns; a larger number cannot name a row, and SQLite cannot even bind it.
_MAX_ID = 2**31 - 1


def _number(text: str, what: str, example: str, prefix: str = "") -> int:
    """Parsed here rather than by Typer, whose refusal is a usage screen, not the one line scripts and people
    can read. ``prefix`` is allowed in front: ticket numbers are copied from subjects as #1040."""
    digits = text.strip().removeprefix(prefix) if prefix else text.strip()
    if not digits.isascii() or not digits.isdigit():
        fail(f"{what} must be a number like {example}, not {text!r}", EXIT_CONFIG)
    return int(digits)


def _local(value: datetime, tz: tzinfo) -> str:
    """Like admin_cli's helper, but with the zone read once: that one loads the config again for every row."""
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _tickets_with_merged(session: Session, ticket: Ticket) -> dict[int, int]:
    """Ticket id → number for the ticket and every ticket merged into it, also through a chain of merges: a merged
    ticket's mail stays on it, yet the operator asks for the matter as a whole."""
    found: dict[int, int] = {}
    todo = [ticket]
    while todo:
        current = todo.pop()
        if current.id is None or current.id in found:
            continue
        found[current.id] = current.number
        todo.extend(session.exec(select(Ticket).where(Ticket.merged_into_id == current.id)))
    return found


def attachment_rows(session: Session, ticket: Ticket) -> list[dict[str, Any]]:
    """In the order the mail arrived (message ids, not Date headers, which senders' clocks get wrong), merged
    tickets' files interleaved where they happened."""
    numbers = _tickets_with_merged(session, ticket)
    stmt = (select(Attachment, Message)
            .join(Message, col(Message.id) == col(Attachment.message_pk))
            .where(col(Message.ticket_id).in_(list(numbers)))
            .order_by(col(Message.id), col(Attachment.id)))
    return [{
        "id": a.id,
        "ticket": numbers[m.ticket_id],
        "message_id": m.message_id,
        "direction": m.direction,
        "from": m.from_addr,
        "date": iso(m.date or m.created_at),
        "filename": sanitize_filename(a.filename),  # rows stored before bidi controls were removed
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
        "inline": a.inline,
    } for a, m in session.exec(stmt)]


@attachments.command("list")
def attachments_list(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(metavar="N", help="The ticket number (1040 or #1040).")],
    as_json: JsonOption = False,
) -> None:
    """The files of a ticket and of the tickets merged into it, with the IDs `attachments get` takes."""
    wanted = _number(number, "ticket number", "1040", prefix="#")
    config = get_config(ctx)
    with Session(get_engine(config)) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == wanted)).first() if wanted <= _MAX_ID else None
        if ticket is None:
            fail(f"no ticket #{wanted} (see `ticketd tickets list`)", EXIT_CONFIG)
        rows = attachment_rows(session, ticket)
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"ticket #{wanted} has no attachments")
        return
    _table([[str(r["id"]), f"#{r['ticket']}", r["direction"], r["from"],
             _local(datetime.fromisoformat(r["date"]), config.tz), r["filename"], r["content_type"],
             size_text(r["size"]), "inline" if r["inline"] else ""] for r in rows],
           ["ID", "TICKET", "DIR", "FROM", "DATE", "FILE", "TYPE", "SIZE", "INLINE"])


def output_target(output: str | None, force: bool, example: str) -> Path | None:
    """Where a command writes its bytes (None: standard output), checked before the database is read.

    Shared by every command that writes a file a customer's mail produced (an attachment, a person's export)."""
    if output is None:
        fail(f"give -o {example} (or -o - for standard output)", EXIT_CONFIG)
    if output == "-":
        if sys.stdout.isatty() and not force:
            fail("standard output is a terminal; redirect it, or use --force to print the bytes anyway", EXIT_CONFIG)
        return None
    path = Path(output)
    _refuse_target(path, force)
    return path


def write_output(path: Path | None, data: bytes, force: bool) -> bool:
    """Write ``data`` where ``output_target`` said; True when a file was written (the caller names it)."""
    if path is None:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # `| head -c 100` stopped reading: not worth a traceback, nor Python's at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_RUNTIME) from None
        return False
    try:
        write_file(path, data, force)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_RUNTIME)
    return True


def _refuse_target(path: Path, force: bool) -> None:
    """Every reason not to write is found before the database is read, and each is the operator's to fix."""
    if path.is_dir():
        fail(f"{path} is a directory; give a file name", EXIT_CONFIG)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: there is no directory {path.parent}", EXIT_CONFIG)
    if (path.exists() or path.is_symlink()) and not force:
        fail(f"{path} exists; use --force to overwrite it", EXIT_CONFIG)


def write_file(path: Path, data: bytes, force: bool) -> None:
    """Without --force the file is created exclusively, so one that appeared since the check is still not
    overwritten; with it the file is written in place as `cp` does, keeping its mode, links and owner."""
    if force:
        with path.open("wb") as fh:
            fh.write(data)
        return
    try:
        with path.open("xb") as fh:
            try:
                fh.write(data)
            except OSError:  # a disk that filled up: no truncated file left that looks like the attachment
                fh.close()
                path.unlink(missing_ok=True)
                raise
    except FileExistsError:
        fail(f"{path} exists; use --force to overwrite it", EXIT_CONFIG)


@attachments.command("get")
def attachments_get(
    ctx: typer.Context,
    attachment_id: Annotated[str, typer.Argument(metavar="ID", help="From `ticketd attachments list`.")],
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE",
                                               help="Where to write the file; - for standard output.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists; write to a terminal.")] = False,
) -> None:
    """Save one attachment exactly as it was sent (checked against its SHA-256)."""
    wanted = _number(attachment_id, "attachment ID", "17")
    path = output_target(output, force, "FILE")
    with Session(get_engine(get_config(ctx))) as session:
        attachment = session.get(Attachment, wanted) if wanted <= _MAX_ID else None
        if attachment is None:
            fail(f"no attachment {wanted} (see `ticketd attachments list N`)", EXIT_CONFIG)
        blob = session.get(Blob, attachment.sha256)
        data = blob.data if blob is not None else None
    if data is None:
        fail(f"attachment {wanted}: its bytes (sha256 {attachment.sha256}) are missing from the database",
             EXIT_RUNTIME)
    if hashlib.sha256(data).hexdigest() != attachment.sha256:
        fail(f"attachment {wanted}: the stored bytes do not match their sha256 {attachment.sha256}", EXIT_RUNTIME)
    if not write_output(path, data, force):
        return
    size = f"{len(data)} bytes" if len(data) < 1024 else f"{size_text(len(data))}, {len(data)} bytes"
    typer.echo(f"wrote {sanitize_filename(attachment.filename)} ({size}) to {path}", err=True)
