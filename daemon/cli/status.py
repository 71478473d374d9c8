"""``ticketd status``: which instances run, which mailbox each one polls, and how much work is waiting.

Liveness is read from the locks, not from the rows: an instance killed with SIGKILL leaves its row behind but
not its lock, so it shows as gone at once (on PostgreSQL from ``pg_locks``; on SQLite from the lock file).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
import typer
from sqlmodel import Session, col, select

from ticketd.daemon.cli.admin import _local, _table
from ticketd.daemon.cli.common import JsonOption, app, get_config, get_engine, print_json
from ticketd.daemon.cli.views import iso
from ticketd.daemon.service.coordination import live_locks, lock_key, sqlite_instance_running
from ticketd.daemon.service.metrics import ACK_BUCKETS
from ticketd.storage.db import shared
from ticketd.storage.inbound import arrivals
from ticketd.storage.models import Inbound, Instance, MailboxState, Outbox, utcnow

SHOWN_INSTANCES = 20
LATENCY_WINDOW = timedelta(hours=24)


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: a value that really occurred, never one interpolated between two."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def acknowledgment_latency(session: Session, since: datetime) -> dict[str, Any]:
    """Per channel, for new requests acknowledged since ``since``: from the arrival of the mail (or form) that
    opened the ticket to its ``received`` mail accepted by the SMTP server, as percentiles and as counts in the
    metrics' buckets (``le`` cumulative, as Prometheus shows them)."""
    acks = dict(session.execute(select(Outbox.ticket_id, sa.func.min(Outbox.sent_at))
                                .where(Outbox.kind == "received", Outbox.status == "sent",
                                       col(Outbox.sent_at) >= since, col(Outbox.ticket_id).is_not(None))
                                .group_by(col(Outbox.ticket_id))).all())
    by_channel: dict[str, list[float]] = {}
    for ticket_id, (channel, arrived) in arrivals(session, list(acks)).items():
        by_channel.setdefault(channel, []).append(max(0.0, (acks[ticket_id] - arrived).total_seconds()))
    out: dict[str, Any] = {}
    for channel, values in sorted(by_channel.items()):
        out[channel] = {
            "count": len(values), **{f"p{round(q * 100)}": round(percentile(values, q), 3) for q in (0.5, 0.95, 0.99)},
            "max": round(max(values), 3),
            "buckets": {**{str(b): sum(1 for v in values if v <= b) for b in ACK_BUCKETS}, "+Inf": len(values)}}
    return out


def collect_status(engine: sa.Engine, mailbox_names: list[str]) -> dict[str, Any]:
    if shared(engine):
        live_instances, live_mailboxes = live_locks(engine)
    else:
        running = sqlite_instance_running(engine)
    with Session(engine) as session:
        instances = list(session.exec(select(Instance).where(col(Instance.stopped_at).is_(None))
                                      .order_by(col(Instance.started_at).desc()).limit(SHOWN_INSTANCES)))
        if not shared(engine):  # one instance at a time: the newest row is the one holding the lock file
            live_instances = {lock_key(instances[0].id)} if running and instances else set()
        alive = {i.id for i in instances if lock_key(i.id) in live_instances}
        if not shared(engine):
            live_mailboxes = {lock_key(name) for name in mailbox_names} if alive else set()
        states = {s.mailbox: s for s in session.exec(select(MailboxState))}
        inbound = dict(session.exec(select(Inbound.status, sa.func.count()).group_by(Inbound.status)).all())
        outbox = dict(session.exec(select(Outbox.status, sa.func.count()).group_by(Outbox.status)).all())
        oldest = session.exec(select(sa.func.min(Inbound.received_at)).where(Inbound.status == "new")).one()
        now = utcnow()
        latency = acknowledgment_latency(session, now - LATENCY_WINDOW)
    mailboxes = []
    for name in dict.fromkeys([*mailbox_names, *states]):
        state = states.get(name)
        held = lock_key(name) in live_mailboxes and state is not None and state.holder in alive
        mailboxes.append({
            "name": name, "configured": name in mailbox_names, "holder": state.holder if held and state else None,
            "held_since": iso(state.held_since) if held and state else None,
            "last_poll_at": iso(state.last_poll_at) if state else None,
            "uidvalidity": state.uidvalidity if state else None, "last_uid": state.last_uid if state else None})
    return {
        "backend": engine.dialect.name,
        "instances": [{"id": i.id, "hostname": i.hostname, "pid": i.pid, "started_at": iso(i.started_at),
                       "seen_at": iso(i.seen_at), "running": i.id in alive,
                       "mailboxes": [m["name"] for m in mailboxes if m["holder"] == i.id]} for i in instances],
        "mailboxes": mailboxes,
        "inbound": {"new": inbound.get("new", 0), "failed": inbound.get("failed", 0),
                    "done": inbound.get("done", 0), "dropped": inbound.get("dropped", 0),
                    "oldest_new_seconds": round((now - oldest).total_seconds()) if oldest else None},
        "outbox": {"queued": outbox.get("queued", 0), "retrying": outbox.get("failed", 0),
                   "dead": outbox.get("dead", 0), "suppressed": outbox.get("suppressed", 0),
                   "sent": outbox.get("sent", 0)},
        "acknowledgment_seconds": latency,
    }


def _ago(value: str | None) -> str:
    if not value:
        return "-"
    seconds = int((utcnow() - datetime.fromisoformat(value)).total_seconds())
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Instances, the mailbox each one polls, backlog sizes, last poll and outbox depth."""
    config = get_config(ctx)
    report = collect_status(get_engine(config), [box.name for box in config.polled_mailboxes()]
                            + list(config.graph_mailboxes()))
    if as_json:
        print_json(report)
        return
    print_report(report, config.tz)


def print_report(report: dict[str, Any], tz: tzinfo) -> None:
    typer.echo(f"instances ({report['backend']}):")
    if report["instances"]:
        _table([["  " + i["id"], str(i["pid"]), _local(i["started_at"], tz), _ago(i["seen_at"]),
                 "running" if i["running"] else "gone (no clean stop)", ", ".join(i["mailboxes"]) or "-"]
                for i in report["instances"]], ["  ID", "PID", "STARTED", "LAST TURN", "STATE", "POLLS"])
    else:
        typer.echo("  none running")
    typer.echo("mailboxes:")
    _table([["  " + m["name"], m["holder"] or "nobody", _local(m["held_since"], tz), _ago(m["last_poll_at"]),
             str(m["last_uid"] if m["last_uid"] is not None else "-")] for m in report["mailboxes"]],
           ["  NAME", "POLLED BY", "SINCE", "LAST POLL", "LAST UID"])
    inbound, outbox = report["inbound"], report["outbox"]
    oldest = f", oldest waiting {inbound['oldest_new_seconds']} s" if inbound["oldest_new_seconds"] is not None \
        else ""
    typer.echo(f"inbound: {inbound['new']} waiting, {inbound['failed']} failed{oldest}")
    typer.echo(f"outbox: {outbox['queued']} queued, {outbox['retrying']} retrying, {outbox['dead']} dead, "
               f"{outbox['suppressed']} suppressed")
    latency = report["acknowledgment_seconds"]
    typer.echo("arrival to acknowledgment, last 24 h:" if latency else "arrival to acknowledgment, last 24 h: none")
    if latency:
        _table([["  " + channel, str(c["count"]), _seconds(c["p50"]), _seconds(c["p95"]), _seconds(c["p99"]),
                 _seconds(c["max"])] for channel, c in latency.items()],
               ["  CHANNEL", "REQUESTS", "P50", "P95", "P99", "MAX"])


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
