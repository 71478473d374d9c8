"""The inbound table: the first and only thing that happens to a mail before it is safe."""

from __future__ import annotations

from sqlmodel import Session

from ticketd.parsers.message import header_message_id, message_id_hash
from ticketd.storage.models import Inbound


def store_inbound(session: Session, raw: bytes, mailbox: str, uidvalidity: int | None = None,
                  uid: int | None = None) -> Inbound:
    """Add the raw bytes as a ``new`` row; the caller commits before touching the mail anywhere else."""
    mail_id = header_message_id(raw)
    row = Inbound(mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, message_id=mail_id,
                  message_id_hash=message_id_hash(mail_id, raw), raw=raw, size=len(raw), status="new")
    session.add(row)
    session.flush()
    return row
