"""Proves the private Dovecot helper gives tests a real, usable IMAP server."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import imapclient
import pytest
from imapclient.exceptions import LoginError

from servers.dovecot import dovecot_available, start_dovecot

pytestmark = pytest.mark.integration

MESSAGE = (
    b"From: Customer <c@example.com>\r\nTo: help@example.com\r\nSubject: printer on fire\r\n"
    b"Message-ID: <fixture-1@example.com>\r\n\r\nIt is still burning.\r\n"
)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_dovecot_round_trip(tmp_path: Path) -> None:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    srv = start_dovecot(tmp_path / "dovecot")
    try:
        srv.add_user("agent", "s3cret")
        ctx = ssl.create_default_context(cafile=srv.cafile)

        with imapclient.IMAPClient(srv.host, port=srv.port, ssl=False, timeout=10) as plain:
            caps = plain.capabilities()
            assert b"STARTTLS" in caps
            plain.login("agent", "s3cret")
            caps = plain.capabilities()
            assert b"IDLE" in caps
            assert b"MOVE" in caps
            plain.append("INBOX", MESSAGE)
            plain.select_folder("INBOX")
            uids = plain.search("ALL")
            assert len(uids) == 1
            body = plain.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
            assert body == MESSAGE

        with imapclient.IMAPClient(srv.host, port=srv.port, ssl=False, timeout=10) as starttls:
            starttls.starttls(ctx)
            starttls.login("agent", "s3cret")
            assert starttls.select_folder("INBOX")[b"EXISTS"] == 1

        with imapclient.IMAPClient(srv.host, port=srv.tls_port, ssl=True, ssl_context=ctx,
                                   timeout=10) as implicit:
            implicit.login("agent", "s3cret")
            assert implicit.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1

        bad = imapclient.IMAPClient(srv.host, port=srv.port, ssl=False, timeout=10)
        with pytest.raises(LoginError):
            bad.login("agent", "wrong")
        bad.shutdown()

        srv.restart()
        with imapclient.IMAPClient(srv.host, port=srv.port, ssl=False, timeout=10) as again:
            again.login("agent", "s3cret")
            assert again.select_folder("INBOX")[b"EXISTS"] == 1
    finally:
        srv.stop()
    assert not _port_open(srv.host, srv.port)
    assert not _port_open(srv.host, srv.tls_port)
