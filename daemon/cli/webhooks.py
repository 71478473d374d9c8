"""`ticketd webhooks list/retry` (the deliveries of events out) and `ticketd export --since D --jsonl FILE`.

The export is a list of record kinds (``RECORD_KINDS``): each names its table, the columns its ``--since`` reads and
how a row becomes a JSON object; a new kind of record (an action item) is one line there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Annotated, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import typer
from sqlmodel import Session, SQLModel, col, select

from ticketd.daemon.cli.common import EXIT_CONFIG, JsonOption, app, fail, get_config, get_engine, print_json
from ticketd.daemon.cli.views import action_dict, iso, ticket_dict
from ticketd.daemon.config.webhooks import webhook_event
from ticketd.storage import db
from ticketd.storage.models import Action, Event, Message, Ticket, WebhookDelivery, utcnow

webhooks = typer.Typer(help="Events sent to [[webhooks]]: their deliveries.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")

FAILED = ("failed", "dead")


def delivery_dict(session: Session, row: WebhookDelivery) -> dict[str, Any]:
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
    return {"id": row.id, "delivery": row.delivery_id, "webhook": row.webhook, "event": row.event,
            "event_id": row.event_id, "ticket": ticket.number if ticket else None, "status": row.status,
            "attempts": row.attempts, "last_error": row.last_error, "next_attempt_at": iso(row.next_attempt_at),
            "created_at": iso(row.created_at), "sent_at": iso(row.sent_at)}


@webhooks.command("list")
def webhooks_list(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only deliveries waiting for a retry, and dead ones.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Webhook deliveries and their state (queued, failed: retried later, sent, dead)."""
    with Session(get_engine(get_config(ctx))) as session:
        stmt = select(WebhookDelivery).order_by(col(WebhookDelivery.id))
        if failed:
            stmt = stmt.where(col(WebhookDelivery.status).in_(FAILED))
        rows = [delivery_dict(session, r) for r in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    table = [["ID", "STATUS", "TRIES", "TICKET", "EVENT", "WEBHOOK", "LAST ERROR"]]
    table += [[str(r["id"]), r["status"], str(r["attempts"]), str(r["ticket"] or "-"), r["event"], r["webhook"],
               (r["last_error"] or "")[:60]] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@webhooks.command("retry")
def webhooks_retry(
    ctx: typer.Context,
    row_id: Annotated[int | None, typer.Argument(metavar="ID")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed and dead delivery.")] = False,
) -> None:
    """Queue a failed or dead delivery again, now, with its attempts counted afresh; the daemon sends it (same
    delivery id and body). A dead one goes after the later events of its ticket that were sent meanwhile."""
    if (row_id is None) == (not all_failed):
        fail("give an ID or --all-failed", EXIT_CONFIG)
    engine = get_engine(get_config(ctx))
    with db.session_scope(engine) as session:
        stmt = select(WebhookDelivery).where(col(WebhookDelivery.status).in_(FAILED) if all_failed
                                             else col(WebhookDelivery.id) == row_id)
        rows = list(session.exec(stmt))
        if not rows and row_id is not None:
            fail(f"no webhook delivery {row_id}", EXIT_CONFIG)
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.last_error = "queued", 0, utcnow(), None
    typer.echo(f"queued {len(rows)} webhook deliver{'y' if len(rows) == 1 else 'ies'} again")


# --- export -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordKind:
    """One kind of line of the export: the rows of ``model`` whose ``since`` column is at or after --since."""

    kind: str
    model: type[SQLModel]
    since: tuple[str, ...]  # a row counts when any of these is at or after --since
    record: Callable[[Session, Any], dict[str, Any]]


def _ticket(session: Session, t: Ticket) -> dict[str, Any]:
    return {"id": t.id, **ticket_dict(session, t)}


def _message(session: Session, m: Message) -> dict[str, Any]:
    ticket = session.get(Ticket, m.ticket_id)
    return {"id": m.id, "ticket": ticket.number if ticket else None, "direction": m.direction, "message_kind": m.kind,
            "message_id": m.message_id, "in_reply_to": m.in_reply_to, "from": m.from_addr, "to": m.to_addrs,
            "cc": m.cc_addrs, "subject": m.subject, "date": iso(m.date), "text": m.text,
            "created_at": iso(m.created_at)}


def _event(session: Session, e: Event) -> dict[str, Any]:
    ticket = session.get(Ticket, e.ticket_id) if e.ticket_id else None
    return {"id": e.id, "ticket": ticket.number if ticket else None, "what": e.what,
            "event": webhook_event(e.what), "actor": e.actor, "old": e.old, "new": e.new,
            "message_id": e.via_message_id, "at": iso(e.at)}


def _action(session: Session, a: Action) -> dict[str, Any]:
    return action_dict(session, a)


RECORD_KINDS: tuple[RecordKind, ...] = (
    RecordKind("ticket", Ticket, ("updated_at",), _ticket),
    RecordKind("message", Message, ("created_at",), _message),
    RecordKind("event", Event, ("at",), _event),
    RecordKind("action", Action, ("created_at", "closed_at"), _action),  # improvement actions too (no ticket)
)


def parse_since(value: str, tz: ZoneInfo) -> datetime:
    """A day (its midnight in the helpdesk's time zone) or an ISO 8601 instant (without offset: that zone's)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tz)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since {value!r}: not a date; write YYYY-MM-DD or 2026-12-04T09:30+03:00") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def records(session: Session, since: datetime) -> Iterator[dict[str, Any]]:
    for kind in RECORD_KINDS:
        changed = sa.or_(*(col(getattr(kind.model, name)) >= since for name in kind.since))
        for row in session.exec(select(kind.model).where(changed)
                                .order_by(col(kind.model.id))):  # type: ignore[attr-defined]  # every kind has an id
            record = kind.record(session, row)
            assert "kind" not in record, "the line's kind is the record kind's"
            yield {"kind": kind.kind, **record}


@app.command("export")
def export(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="From this day (YYYY-MM-DD, the helpdesk's time zone) or instant.")],
    jsonl: Annotated[str, typer.Option("--jsonl", metavar="FILE", help="Where to write; - for standard output.")],
) -> None:
    """Tickets, messages and events changed since a date, one JSON object a line with its ``kind``, for another
    system (the complaint's transfer to the other-actions module)."""
    config = get_config(ctx)
    try:
        start = parse_since(since, config.tz)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    engine = get_engine(config)
    out: IO[str]
    if jsonl == "-":
        out = sys.stdout
    else:
        try:
            out = open(jsonl, "w", encoding="utf-8")  # noqa: SIM115  (closed below, after the last line)
        except OSError as exc:
            fail(f"--jsonl {jsonl}: cannot write it: {exc.strerror}", EXIT_CONFIG)
    count = 0
    try:
        with Session(engine) as session:
            for record in records(session, start):
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if jsonl != "-":
        typer.echo(f"wrote {count} records to {jsonl}", err=True)
