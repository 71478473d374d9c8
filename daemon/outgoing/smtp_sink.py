"""A local SMTP server that keeps what it receives: the demo's mail "recipient" and the tests' SMTP peer.

It is a real aiosmtpd server on loopback, so ticketd's sender goes through a full SMTP conversation.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class ReceivedMail:
    envelope_from: str
    envelope_to: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)


@dataclass
class _Handler:
    store_dir: Path | None
    received: list[ReceivedMail] = field(default_factory=list)
    reject_with: str | None = None
    reject_rcpt: dict[str, str] = field(default_factory=dict)  # lower-cased address -> reply to its RCPT TO
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.reject_rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reject_with:
            return self.reject_with
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.lock:
            self.received.append(mail)
            if self.store_dir is not None:
                self.store_dir.mkdir(parents=True, exist_ok=True)
                (self.store_dir / f"{len(self.received):04d}.eml").write_bytes(mail.raw)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpSink:
    def __init__(self, store_dir: Path | None = None, port: int | None = None) -> None:
        self.handler = _Handler(store_dir)
        self.host, self.port = "127.0.0.1", port or free_port()
        self._controller = Controller(self.handler, hostname=self.host, port=self.port, decode_data=False)

    @property
    def received(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.received)

    def reject(self, reply: str | None) -> None:
        """Answer every DATA with this reply (e.g. "451 try later"), or accept again with None."""
        self.handler.reject_with = reply

    def reject_recipient(self, address: str, reply: str | None) -> None:
        """Answer RCPT TO for this one address with this reply (e.g. "550 5.1.1 no such user"), or accept it
        again with None; every other recipient is accepted as before."""
        if reply is None:
            self.handler.reject_rcpt.pop(address.lower(), None)
        else:
            self.handler.reject_rcpt[address.lower()] = reply

    def start(self) -> SmtpSink:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Idempotent, so a test may take the server down and the fixture still clean up."""
        if getattr(self, "_running", False):
            self._controller.stop()
            self._running = False

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
