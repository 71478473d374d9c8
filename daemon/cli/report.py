"""`ticketd report`: the period's figures as an Excel workbook, with charts and a CSV export if asked."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from ticketd.daemon.cli.common import EXIT_CONFIG, app, fail, get_config, get_engine
from ticketd.daemon.cli.progress import progress
from ticketd.daemon.reports.data import Scope, collect


def _day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not a date (YYYY-MM-DD)", EXIT_CONFIG)


@app.command()
def report(
    ctx: typer.Context,
    xlsx: Annotated[Path, typer.Option("--xlsx", help="The workbook to write.", dir_okay=False)],
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (in the helpdesk's time zone).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day included, YYYY-MM-DD.")] = None,
    company: Annotated[str | None, typer.Option(help="Only this company's tickets.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's tickets (e-mail).")] = None,
    charts: Annotated[Path | None, typer.Option("--charts", help="Also write the charts as PNG here.",
                                                file_okay=False)] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Also write tickets.csv here.", file_okay=False)] = None,
    language: Annotated[str | None, typer.Option(help="en or tr (default: the helpdesk's language).")] = None,
) -> None:
    """Tickets, monthly distribution, top categories, companies, customers, SLA, satisfaction and agents."""
    # matplotlib and openpyxl take a while to import: only this command pays for them
    from ticketd.daemon.reports.charts import draw_charts
    from ticketd.daemon.reports.xlsx import write_csv, write_workbook

    if company and customer:
        fail("--company and --customer exclude each other", EXIT_CONFIG)
    config = get_config(ctx)
    lang = language or config.helpdesk.language
    if lang not in ("en", "tr"):
        fail(f"--language: {lang!r} must be en or tr", EXIT_CONFIG)
    scope = Scope(_day("--since", since), _day("--until", until), company, customer.lower() if customer else None)
    if scope.since and scope.until and scope.since > scope.until:
        fail("--since is after --until", EXIT_CONFIG)
    engine = get_engine(config)
    with progress("collecting tickets", 4) as bar:
        with Session(engine) as session:
            try:
                data = collect(session, config, scope)
            except ValueError as exc:
                fail(str(exc), EXIT_CONFIG)
        bar.stage("drawing charts")
        with tempfile.TemporaryDirectory(prefix="ticketd-charts-") as scratch:
            pictures = draw_charts(data, charts or Path(scratch), lang)
            bar.stage("writing the workbook")
            write_workbook(data, xlsx, pictures, lang)
        written = [xlsx, *(pictures.values() if charts else ())]
        bar.stage("writing the CSV")
        if csv_dir is not None:
            written.append(write_csv(data, csv_dir))
        bar.stage("done")
    typer.echo(f"{len(data.tickets)} tickets, {data.months[0] if data.months else '-'} to "
               f"{data.months[-1] if data.months else '-'}: " + ", ".join(str(p) for p in written))
