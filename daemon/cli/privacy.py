"""`ticketd customers export` and `ticketd customers erase`: a person's right of access and to be forgotten."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlmodel import Session

from ticketd.daemon.cli.admin import customers
from ticketd.daemon.cli.attachments import output_target, write_output
from ticketd.daemon.cli.common import EXIT_CONFIG, fail, get_config, get_engine
from ticketd.daemon.service.privacy import UnknownPerson, compact, erase_person, export_person, normalise


def _address(email: str) -> str:
    """One plain address, so a typo is named instead of matching nobody silently."""
    address = normalise(email)
    if address.count("@") != 1 or any(c.isspace() or c in "<>,;\"" for c in address) or len(address) > 320:
        fail(f"{email!r} is not one e-mail address", EXIT_CONFIG)
    return address


@customers.command("export")
def customers_export(
    ctx: typer.Context,
    email: str,
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE.zip",
                                               help="Where to write the zip; - for standard output.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists; write to a terminal.")] = False,
) -> None:
    """Everything kept about one person, as a zip (right of access).

    person.json holds their tickets, messages, history and the mail sent to them; their files are under
    attachments/. Internal notes and other people's messages on tickets they were copied on stay out.
    """
    address = _address(email)
    path = output_target(output, force, "FILE.zip")
    with Session(get_engine(get_config(ctx))) as session:
        try:
            data = export_person(session, address)
        except UnknownPerson:
            fail(f"no customer or participant {address} (see `ticketd tickets list`)", EXIT_CONFIG)
    if not write_output(path, data, force):
        return
    typer.echo(f"wrote the data of {address} ({len(data)} bytes) to {path}", err=True)


@customers.command("erase")
def customers_erase(
    ctx: typer.Context,
    email: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask; required when not run on a terminal.")] = False,
    vacuum_full: Annotated[bool, typer.Option(
        "--vacuum-full", help="PostgreSQL: rewrite the touched tables (VACUUM FULL) so the old rows leave the "
        "table files too; locks each table while it runs.")] = False,
) -> None:
    """Forget a person for good (right to erasure); cannot be undone.

    Their name, addresses and words are replaced, their raw mail and files deleted. Their tickets stay, marked
    erased, so reports still count them.
    """
    address = _address(email)
    if not yes:
        if not sys.stdin.isatty():
            fail("erasing cannot be undone; not on a terminal, so give --yes", EXIT_CONFIG)
        if not typer.confirm(f"Erase every trace of {address}? This cannot be undone", default=False):
            fail("nothing erased", EXIT_CONFIG)
    engine = get_engine(get_config(ctx))
    try:
        counts = erase_person(engine, address)
    except UnknownPerson:
        fail(f"no customer or participant {address} (nothing erased)", EXIT_CONFIG)
    typer.echo(f"erased {address}: {counts.summary()}")
    typer.echo(compact(engine, full=vacuum_full))
