"""The attachments of outgoing mail (a report's workbook and charts): kept beside the outbox row, bytes in the
content-addressed blob table, so a retry after a crash sends exactly what was queued."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.daemon.outgoing import wire
from ticketd.daemon.outgoing.wire import MailAttachment
from ticketd.storage import batch
from ticketd.storage.db import insert_shared
from ticketd.storage.models import Blob, OutboxAttachment

# Built once (every attachment of every mail asks); blobs are written by plain INSERTs, never left pending.
_BLOB_KEY = select(Blob.sha256).where(col(Blob.sha256) == sa.bindparam("digest"))


def keep_blob(session: Session, digest: str, data: bytes) -> None:
    """The bytes under their SHA-256, once: present already, or stored now (by an insert that another instance
    storing the same file at the same moment cannot make fail). Only the key is read: a blob's bytes may be
    megabytes, and ``session.get`` loaded them to learn that they were there."""
    if session.connection().execute(_BLOB_KEY, {"digest": digest}).first() is None:
        table = Blob.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ without declaring it
        insert_shared(session.connection(), table, {"sha256": digest, "size": len(data), "data": data}, "sha256",
                      large="data")


def store_attachments(session: Session, outbox_id: int, parts: Iterable[MailAttachment]) -> None:
    """Bytes stored once per content (a blob may already hold them); names and ids cleaned before they are kept."""
    for part in parts:
        digest = hashlib.sha256(part.data).hexdigest()
        keep_blob(session, digest, part.data)
        content_id = wire.safe_content_id(part.content_id) if part.content_id else None
        batch.add_rows(session, [OutboxAttachment(
            outbox_id=outbox_id, filename=wire.safe_filename(part.filename), content_type="/".join(
                wire.safe_content_type(part.content_type)), sha256=digest, content_id=content_id or None,
            inline=bool(content_id))])


def load_attachments(session: Session, outbox_ids: Sequence[int]) -> dict[int, tuple[MailAttachment, ...]]:
    """The parts of these rows in the order they were queued; rows without any are left out."""
    found: dict[int, list[MailAttachment]] = {}
    stmt = (select(OutboxAttachment, col(Blob.data)).join(Blob, col(Blob.sha256) == col(OutboxAttachment.sha256))
            .where(col(OutboxAttachment.outbox_id).in_(outbox_ids)).order_by(col(OutboxAttachment.id)))
    for part, data in session.exec(stmt):
        found.setdefault(part.outbox_id, []).append(
            MailAttachment(part.filename, part.content_type, data, part.content_id))
    return {outbox_id: tuple(parts) for outbox_id, parts in found.items()}
