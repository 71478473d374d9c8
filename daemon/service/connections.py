"""What the connections to the mail servers share while ticketd runs: the OAuth2 access tokens and our EHLO name.

Made by whoever owns the connections' lifetime and handed to the IMAP intake and the SMTP sender: the daemon makes
one at start and keeps it until it stops (a reload included, so an unchanged [oauth2] section keeps its token),
``ticketd check`` one for its run. A caller that gives none gets a fresh one; nothing lives in a module, so two
daemons or two tests in one process never share a token.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from ticketd.daemon.service.graph import GraphClients
from ticketd.daemon.service.oauth2 import TokenSources


class Connections:
    def __init__(self, lookup_hostname: Callable[[], str] = socket.getfqdn) -> None:
        self.tokens = TokenSources()
        self.graph = GraphClients()  # one client (and token) per Graph mailbox, shared by its intake and sending
        self._lookup_hostname = lookup_hostname
        self._hostname: str | None = None
        self._lock = threading.Lock()

    def local_hostname(self) -> str:
        """Our name for EHLO, looked up once: aiosmtplib otherwise asks the resolver on every connection, and a
        slow reverse lookup would stall each sending run."""
        with self._lock:
            if self._hostname is None:
                self._hostname = self._lookup_hostname()
            return self._hostname
