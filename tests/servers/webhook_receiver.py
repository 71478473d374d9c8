"""A webhook receiver on loopback: real HTTP (the standard library's threading server), every POST recorded.

It can be told to answer the next N deliveries with 500 (``fail_next``), and be taken down (``down``: the listening
socket closed, so a sender's connect is refused) and brought back up on the same port (``up``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    delivery: str
    signature: str
    event: str
    body: bytes
    status: int  # what we answered

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    _fail: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/ticketd"

    @property
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail = count

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        with self._lock:
            status = 500 if self._fail > 0 else 200
            self._fail = max(0, self._fail - 1)
            self.received.append(Received(handler.headers.get("X-Ticketd-Delivery", ""),
                                          handler.headers.get("X-Ticketd-Signature", ""),
                                          handler.headers.get("X-Ticketd-Event", ""), body, status))
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def up(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((self.host, self.port), Handler)  # allow_reuse_address: the same port again
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening: a connect to the port is refused until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
