"""Sending an outbox row's bytes through a Graph mailbox instead of SMTP.

Graph's sendMail takes the whole MIME message (base64, ``Content-Type: text/plain``) and sends it from the
mailbox with our headers: the Message-ID fixed when the row was queued, In-Reply-To and References, so the
customer's client threads it as it would the SMTP copy. The recipients are the message's To and Cc (and Bcc)
headers: Graph has no separate envelope, which matches the outbox, whose envelope is read from the row's To and
Cc. The From must be the mailbox itself (or one it may send as), else Graph answers ``ErrorSendAsDenied``.

What Graph does to the message is Exchange Online's business and is not visible from here: it saves a copy in
Sent Items; reports say it may drop ``Auto-Submitted`` and custom ``X-`` headers on some sends; and a request
body over Graph's 4 MB limit (a raw message over about 3 MB, once base64) is refused with 413, which is
permanent for that row.
"""

from __future__ import annotations

import asyncio

from ticketd.daemon.service.graph import GraphClient, GraphPermanent, GraphTransient

__all__ = ["GraphPermanent", "GraphTransient", "send_mime", "send_mime_blocking"]


def send_mime_blocking(client: GraphClient, mailbox_address: str, raw: bytes) -> None:
    """Send ``raw`` from ``mailbox_address``; returns once Graph accepted it (202). Raises ``GraphTransient``
    (retry later: the network, throttling, Graph's own failures) or ``GraphPermanent`` (the row is dead: a bad
    recipient, a missing Mail.Send permission, a From the mailbox may not send as, an unknown mailbox)."""
    client.send_mime(raw, mailbox_address)


async def send_mime(client: GraphClient, mailbox_address: str, raw: bytes) -> None:
    """``send_mime_blocking`` in a worker thread, for the outbox's asyncio sending lanes."""
    await asyncio.to_thread(send_mime_blocking, client, mailbox_address, raw)
