"""The inbound table: the first and only thing that happens to a mail before it is safe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.parsers.message import header_message_id, message_id_hash
from ticketd.storage import batch
from ticketd.storage.db import LARGE_BYTES, insert_new
from ticketd.storage.models import Inbound, InboundRaw

_RAW_TABLE = batch.table_of(InboundRaw)

# Enough for the header block of any mail we answer (RFC 5322 has no limit; a hostile one is read in part).
HEAD_BYTES = 64 * 1024


# A mail over ``[limits] max_message_bytes`` is stored as its headers and this much of its body, marked with
# ``TRUNCATED_HEADER`` (the stages tell the customer their mail was cut): the intakes write it, the stages read it.
OVERSIZE_PREFIX = 256 * 1024
TRUNCATED_HEADER = "X-Ticketd-Truncated"


def truncated_message(head: bytes, text_prefix: bytes, original_size: int) -> bytes:
    marker = f"{TRUNCATED_HEADER}: original size {original_size} bytes\r\n".encode()
    return marker + head.rstrip(b"\r\n") + b"\r\n\r\n" + text_prefix


def store_inbound(session: Session, raw: bytes, mailbox: str, uidvalidity: int | None = None,
                  uid: int | None = None, recipients: Sequence[str] = (), channel: str = "imap") -> Inbound:
    """Add the raw bytes as a ``new`` row; the caller commits before touching the mail anywhere else.
    ``recipients`` is the envelope's, when the mail system handed the mail over (LMTP)."""
    return store_inbound_many(session, [(uid, raw)], mailbox, uidvalidity, recipients, channel)[0]


# Small raw mail is written in groups of at most this many bytes: one statement for many rows, while the
# parameters a group binds at once (the driver's copies) stay bounded.
GROUP_BYTES = 8 * 1024 * 1024


def store_inbound_many(session: Session, mails: Sequence[tuple[int | None, bytes]], mailbox: str,
                       uidvalidity: int | None = None, recipients: Sequence[str] = (),
                       channel: str = "imap") -> list[Inbound]:
    """``store_inbound`` for a fetched chunk, (uid, raw) in order: one INSERT for the rows, one per group of small
    raw mail; a big one is written alone, without copies (``insert_new``'s ``large``)."""
    rows = []
    for uid, raw in mails:
        mail_id = header_message_id(raw)
        rows.append(Inbound(mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, message_id=mail_id,
                            message_id_hash=message_id_hash(mail_id, raw), size=len(raw), status="new",
                            recipients="\n".join(recipients) or None, channel=channel))
    batch.add_all(session, rows)  # plain INSERTs: the ORM's flush cost intake more than the rest of its work
    conn = session.connection()
    group: list[dict[str, Any]] = []
    used = 0
    for row, (_, raw) in zip(rows, mails, strict=True):
        assert row.id is not None
        if len(raw) > LARGE_BYTES:  # not as an ORM object, nor bound as a parameter on SQLite: written in place
            insert_new(conn, _RAW_TABLE, {"inbound_id": row.id, "raw": raw}, "inbound_id", large="raw")
            continue
        if group and used + len(raw) > GROUP_BYTES:
            conn.execute(_RAW_TABLE.insert(), group)
            group, used = [], 0
        group.append({"inbound_id": row.id, "raw": raw})
        used += len(raw)
    if group:
        conn.execute(_RAW_TABLE.insert(), group)
    return rows


_RAW = select(InboundRaw.raw).where(col(InboundRaw.inbound_id) == sa.bindparam("inbound_id"))  # built once


def load_raw(session: Session, inbound_id: int) -> bytes:
    """The stored bytes; empty once purged or erased. Read as a value, never as an ORM object: the session's
    identity map would keep every big mail of a batch until its commit."""
    found = session.connection().execute(_RAW, {"inbound_id": inbound_id}).scalar()
    return bytes(found or b"")


_HEADS = select(col(InboundRaw.inbound_id), sa.func.substr(InboundRaw.raw, 1, HEAD_BYTES)).where(
    col(InboundRaw.inbound_id).in_(sa.bindparam("ids", expanding=True)))


def load_heads(session: Session, inbound_ids: list[int]) -> dict[int, bytes]:
    """The first ``HEAD_BYTES`` of each row's stored bytes (the database cuts them), in one query: the header
    blocks, without loading a big mail's body; a purged row reads as empty."""
    found = {row_id: bytes(head or b"") for row_id, head in session.connection().execute(_HEADS, {"ids": inbound_ids})}
    return {row_id: found.get(row_id, b"") for row_id in inbound_ids}


def drop_raw(session: Session, inbound_ids: list[int]) -> None:
    """Delete the stored bytes of these rows (retention, erasure); their ``inbound`` rows stay."""
    if inbound_ids:
        session.execute(sa.delete(InboundRaw).where(col(InboundRaw.inbound_id).in_(inbound_ids)))


def arrivals(session: Session, ticket_ids: Sequence[int]) -> dict[int, tuple[str, Any]]:
    """For each ticket, the channel and arrival of the mail that opened it (its first inbound row): what its
    acknowledgment's latency is counted from."""
    if not ticket_ids:
        return {}
    first = (select(Inbound.ticket_id, sa.func.min(Inbound.id).label("first_id"))
             .where(col(Inbound.ticket_id).in_(ticket_ids)).group_by(col(Inbound.ticket_id)).subquery())
    rows = session.execute(select(Inbound.ticket_id, Inbound.channel, Inbound.received_at)
                           .join(first, col(Inbound.id) == first.c.first_id)).all()
    return {ticket_id: (channel, at) for ticket_id, channel, at in rows}
