"""The files of an agent's command mail, kept as the evidence of that step (ISO 10002 "evidence at every step").

The mail's message and files are already stored by the stage that recorded it (a reply, a note, or the account
of a call that opened the ticket); this links each file to the ticket the commands changed, under the mail's one
clock reading and Message-ID, which its events carry too: ``tickets show`` lists the files with the step's
events, and the workbook lists every step's files. An ``evidence-added`` event names the files, so a mail whose
commands write no event of their own (``[note]``) is still a step in the history.
"""

from __future__ import annotations

from sqlmodel import col, select

from ticketd.daemon.stages.conversation import Incoming
from ticketd.parsers.message import sanitize_filename
from ticketd.storage import batch
from ticketd.storage.models import Attachment, Evidence, Message, Ticket


def keep_evidence(inc: Incoming, ticket: Ticket, actor: str) -> int:
    """Link the files stored from this mail to ``ticket``; returns how many. Images of the quoted older mail
    were never stored with it (``record_message``), so they are no evidence of anything."""
    assert ticket.id is not None
    files = list(inc.session.exec(
        select(Attachment).join(Message, col(Message.id) == Attachment.message_pk)
        .where(Message.inbound_id == inc.inbound.id).order_by(col(Attachment.id))))
    if not files:
        return 0
    batch.add_rows(inc.session, [Evidence(ticket_id=ticket.id, attachment_id=f.id, actor=actor,
                                          via_message_id=inc.mail.message_id, at=inc.now)
                                 for f in files if f.id is not None])
    # The names were made safe when the mail was parsed; made safe again here, as everywhere a name is shown.
    batch.event(inc.session, ticket_id=ticket.id, actor=actor, what="evidence-added",
                new=", ".join(sanitize_filename(f.filename) for f in files),
                via_message_id=inc.mail.message_id, at=inc.now)
    return len(files)
