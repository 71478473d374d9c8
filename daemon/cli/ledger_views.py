"""The ledger's part of ``tickets show``: costs, time worked and each step's evidence (DESIGN.md §7).

Amounts are JSON numbers that are the amount exactly: an amount has at most 15 significant digits (a line and a
ticket's total stay under 10^12 with at most 3 decimals, ``parsers.ledger.AMOUNT_LIMIT``), and the shortest form
of such a number as a double, which ``json`` writes, is that decimal itself: 1250.50 is written 1250.5, never
1250.4999…. ``json_amount`` checks it for every amount it hands out. A reader that keeps them exact parses them
as decimals (``json.loads(text, parse_float=Decimal)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.parsers.ledger import minutes_text
from ticketd.parsers.message import sanitize_filename
from ticketd.rules.ledger import cost_entries, time_entries
from ticketd.storage.models import Agent, Attachment, Evidence, Ticket


def json_amount(amount: Decimal) -> float:
    """The amount as a JSON number written exactly (see the module's note)."""
    number = float(amount)
    if Decimal(repr(number)) != amount:
        raise ValueError(f"{amount} has more digits than a JSON number carries exactly")
    return number


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def ledger_detail(session: Session, ticket: Ticket, out: dict[str, Any]) -> None:
    """Add ``costs``, ``cost_total``, ``time_minutes``, ``time`` and ``evidence`` to a ``ticket_detail``, and to
    each of its events the ``evidence`` of the mail (step) that caused it."""
    assert ticket.id is not None
    agents = {row[0]: row[1] for row in session.execute(sa.select(col(Agent.id), col(Agent.email)))}
    costs = cost_entries(session, ticket.id)
    totals: dict[str, Decimal] = {}
    for c in costs:
        totals[c.currency] = totals.get(c.currency, Decimal(0)) + Decimal(c.amount)
    out["costs"] = [{"amount": json_amount(Decimal(c.amount)), "currency": c.currency, "reason": c.reason,
                     "by": agents.get(c.agent_id), "at": _iso(c.at), "message_id": c.via_message_id} for c in costs]
    out["cost_total"] = {currency: json_amount(total) for currency, total in sorted(totals.items()) if total != 0}
    entries = time_entries(session, ticket.id)
    out["time"] = [{"agent": agents.get(t.agent_id), "minutes": t.minutes, "at": _iso(t.at),
                    "message_id": t.via_message_id} for t in entries]
    out["time_minutes"] = sum(t.minutes for t in entries)
    rows = session.exec(select(Evidence, Attachment).join(Attachment, col(Attachment.id) == Evidence.attachment_id)
                        .where(Evidence.ticket_id == ticket.id).order_by(col(Evidence.id))).all()
    steps: dict[tuple[str | None, str | None], list[str]] = {}
    for event in out.get("events", []):
        steps.setdefault((event["at"], event["message_id"]), []).append(event["what"])
    out["evidence"] = [
        {"id": a.id, "filename": sanitize_filename(a.filename), "content_type": a.content_type, "size": a.size,
         "sha256": a.sha256, "by": e.actor, "at": _iso(e.at), "message_id": e.via_message_id,
         "steps": steps.get((_iso(e.at), e.via_message_id), [])}
        for e, a in rows]
    files: dict[tuple[str | None, str | None], list[dict[str, Any]]] = {}
    for item in out["evidence"]:
        files.setdefault((item["at"], item["message_id"]), []).append(
            {k: item[k] for k in ("id", "filename", "size", "sha256")})
    for event in out.get("events", []):
        event["evidence"] = files.get((event["at"], event["message_id"]), [])


def _money(amount: float, currency: str) -> str:
    from babel.numbers import get_currency_precision  # Babel's data: loaded only to show a ticket with costs

    return f"{Decimal(repr(amount)).quantize(Decimal(1).scaleb(-get_currency_precision(currency))):f} {currency}"


def ledger_lines(data: dict[str, Any], local: Any) -> Sequence[str]:
    """The text ``tickets show`` prints for them; ``local`` turns an ISO time into the helpdesk's."""
    lines: list[str] = []
    if data.get("costs"):
        lines.append("\ncosts:")
        lines += [f"  {local(c['at'])}  {c['by']}: {_money(c['amount'], c['currency'])}"
                  + (f"; {c['reason']}" if c["reason"] else "") for c in data["costs"]]
        lines.append("  total: " + (", ".join(_money(v, k) for k, v in data["cost_total"].items()) or "0"))
    if data.get("time"):
        lines.append(f"\ntime worked: {minutes_text(data['time_minutes'])}")
        lines += [f"  {local(t['at'])}  {t['agent']}: {minutes_text(t['minutes'])}" for t in data["time"]]
    return lines


def evidence_lines(event: dict[str, Any]) -> Sequence[str]:
    """Under a step's ``evidence-added`` line of the history: its files (once per step, not under each event)."""
    if event["what"] != "evidence-added":
        return []
    return [f"      [attachment {f['id']}] {f['filename']} ({f['size']} bytes, sha256 {f['sha256'][:16]}…)"
            for f in event.get("evidence", [])]
