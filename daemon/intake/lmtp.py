"""LMTP (RFC 2033): the mail system delivers to ticketd itself, as Postfix delivers to Mailman 3 or Dovecot.

Polling waits for the next turn and IDLE for the IMAP server's notification (Dovecot holds each for 500 ms);
here the MTA hands the mail over and ticketd answers for it. So the answer is the guarantee:

- ``RCPT TO`` is accepted for our addresses only (the helpdesk's, each ``[[mailboxes]]`` address, and a ``+``
  address in the shape of our signed reply addresses); anything else gets ``550 5.1.1`` and the MTA bounces it.
  Whether a signed address was signed *for this sender* is the pipeline's question (``rules/auth.py``): the From
  is not known yet, and a refusal here would tell a prober which tags are valid.
- The per-recipient ``250`` goes out only after the raw bytes are committed to ``inbound``; a database or disk
  failure answers ``451 4.3.0`` for every recipient, so the MTA keeps the mail and retries. Nothing is ever
  acknowledged that is not stored. One row per message, whatever the number of recipients, with the envelope's
  recipients recorded.
- Mail over ``[limits] max_message_bytes`` is refused during DATA with ``552`` (aiosmtpd's ``data_size_limit``).
- The daemon's loop is woken at once: processing starts the moment the row is committed. Other instances
  sharing a PostgreSQL database find the row on their next turn.

The server runs in aiosmtpd's own thread and event loop; storing, which blocks on the database, runs in a worker
thread, so a slow commit never holds another connection's dialogue.

May import: ``daemon.pipeline`` and every room before it.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP

from ticketd.daemon.config import Config, LmtpConfig
from ticketd.parsers.message import is_one_of
from ticketd.rules.signing import parse_reply_address
from ticketd.storage import db
from ticketd.storage.inbound import store_inbound

log = structlog.get_logger()

MAILBOX = "lmtp"  # the ``inbound.mailbox`` of mail to the helpdesk's own address; a [[mailboxes]] one is named


def mailbox_for(config: Config, recipients: list[str]) -> str:
    """The ``[[mailboxes]]`` entry the mail was addressed to (its defaults apply, as for mail fetched from its
    folder), else ``lmtp``. The first recipient that names one wins."""
    for address in recipients:
        for box in config.mailboxes:
            if box.address and is_one_of(address, {box.address}):
                return box.name
    return MAILBOX


def accepts(config: Config, address: str) -> bool:
    """One of our addresses, or a ``+`` address with the shape of our signed reply addresses."""
    address = address.strip().lower()
    ours = {own.lower() for own in config.our_addresses()}
    if address in ours:
        return True
    return any(parse_reply_address(address, own) is not None for own in ours)


class _Handler:
    """aiosmtpd's hooks. ``config`` is swapped by the daemon on a reload: the next dialogue reads the new one."""

    def __init__(self, engine: sa.Engine, config: Config, wake: Callable[[], None]) -> None:
        self.engine, self.config, self.wake = engine, config, wake

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not accepts(self.config, address):
            log.info("lmtp.recipient_refused", recipient=address[:320])
            return f"550 5.1.1 <{address[:320]}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content or b""
        recipients = [r.lower() for r in envelope.rcpt_tos]
        try:
            inbound_id = await asyncio.get_running_loop().run_in_executor(None, self._store, raw, recipients)
        except Exception as exc:  # the database or the disk: temporary for the MTA, which keeps the mail
            log.error("lmtp.store_failed", error=str(exc)[:500], recipients=recipients, size=len(raw))
            return "\r\n".join(f"451 4.3.0 <{r}>: cannot store the message now, try again later" for r in recipients)
        log.info("inbound.stored", inbound_id=inbound_id, mailbox=mailbox_for(self.config, recipients),
                 channel="lmtp", size=len(raw))
        self.wake()
        # RFC 2033 §4.2: one reply per accepted recipient, in order; aiosmtpd sends the lines as they are.
        return "\r\n".join(f"250 2.0.0 <{r}> stored as {inbound_id}" for r in recipients)

    def _store(self, raw: bytes, recipients: list[str]) -> int:
        with db.session_scope(self.engine) as session:
            row = store_inbound(session, raw, mailbox_for(self.config, recipients), recipients=recipients,
                                channel="lmtp")
            assert row.id is not None
            return row.id


class _Lmtp(LMTP):
    """aiosmtpd's LMTP, with the two things RFC 2033 needs that it leaves to us.

    - After DATA, LMTP answers once per accepted recipient (§4.2). Our handler does; aiosmtpd's own refusals
      (too much data, a line too long) are one line, which would leave a multi-recipient client waiting for
      the rest: they are repeated per recipient.
    - Lines are not limited to SMTP's 1,000 bytes: mail with longer ones exists, and refusing it here would
      bounce it for good. The size limit still bounds the whole message.
    """

    line_length_limit = 1 << 20
    _after_data = False

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("354"):
            self._after_data = True
        elif self._after_data:
            self._after_data = False
            rcpts = len(self.envelope.rcpt_tos) if self.envelope is not None else 1
            if isinstance(status, str) and "\r\n" not in status and rcpts > 1:
                status = "\r\n".join([status] * rcpts)
        await super().push(status)


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return _Lmtp(self.handler, **self.SMTP_kwargs)


class _LmtpUnixController(UnixSocketController):
    def factory(self) -> LMTP:
        return _Lmtp(self.handler, **self.SMTP_kwargs)


class LmtpServer:
    """The listener ``ticketd run`` serves beside IMAP intake (either or both)."""

    def __init__(self, engine: sa.Engine, config: Config, wake: Callable[[], None]) -> None:
        assert config.lmtp is not None
        self.settings: LmtpConfig = config.lmtp
        self._handler = _Handler(engine, config, wake)
        limits: dict[str, Any] = {"data_size_limit": config.limits.max_message_bytes, "decode_data": False,
                                  "ident": "ticketd LMTP",
                                  "server_hostname": config.helpdesk.address.split("@", 1)[1]}
        listen = self.settings.listen
        if listen.startswith("unix:"):
            self._socket: Path | None = Path(listen.removeprefix("unix:"))
            self._remove_stale_socket()
            self._controller: Controller | UnixSocketController = _LmtpUnixController(
                self._handler, unix_socket=str(self._socket), **limits)
        else:
            host, _, port = listen.rpartition(":")
            self._socket = None
            self._controller = _LmtpController(self._handler, hostname=host.strip("[]"), port=int(port), **limits)

    def _remove_stale_socket(self) -> None:
        """A socket file left by a killed daemon would make the bind fail; anything else at that path is not
        ours to delete."""
        assert self._socket is not None
        with suppress(FileNotFoundError):
            if stat.S_ISSOCK(self._socket.stat().st_mode):
                self._socket.unlink()

    def start(self) -> LmtpServer:
        self._controller.start()
        if self._socket is not None:
            os.chmod(self._socket, 0o660)  # the MTA's group reaches it; nobody else delivers behind its back
        log.info("lmtp.listening", listen=self.settings.listen)
        return self

    def reconfigure(self, config: Config) -> None:
        self._handler.config = config

    def stop(self) -> None:
        self._controller.stop()
        if self._socket is not None:
            with suppress(FileNotFoundError):
                self._socket.unlink()
