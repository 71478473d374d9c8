"""The OAuth2 side of the tests: a provider on loopback and an SMTP server that takes only XOAUTH2.

``OAuthProvider`` is a tiny identity provider in a thread (stdlib http.server): its token endpoint answers the
refresh-token grant with short-lived access tokens and counts the refreshes; its RFC 7662 introspection
endpoint says whether a token is one it issued and still live, and for whom. Dovecot's oauth2 passdb and
``XOAuth2SmtpServer`` both ask it, as Exchange Online and Gmail ask their own, so a token ticketd got
wrong, too late or for the wrong user is refused by real servers.

Run as a script, this file is also a ``token_command`` helper: it does the refresh grant itself and prints
the token response (or, with ``--bare``, the bare access token), like the helpers operators use.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import secrets
import shlex
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult
from aiosmtpd.smtp import SMTP as SMTPServer

from ticketd.daemon.outgoing.smtp_sink import ReceivedMail, free_port

SCRIPT = Path(__file__).resolve()


@dataclass(frozen=True)
class Refresh:
    username: str
    refresh_token: str = field(repr=False)  # the one the client presented
    client_id: str
    scope: str | None
    rotated_to: str | None = field(default=None, repr=False)  # the new one handed out, when rotating


@dataclass
class _Issued:
    username: str
    expires_at: float  # time.monotonic()
    revoked: bool = False


class OAuthProvider:
    """Token and introspection endpoints; every refresh and every introspection is recorded for assertions."""

    def __init__(self, client_id: str = "ticketd-test-client", client_secret: str | None = "client-secret-123",
                 lifetime: float = 3600, rotate: bool = False) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.lifetime = lifetime  # expires_in of the access tokens it issues
        self.rotate = rotate  # issue a new refresh token with each refresh; the old one stops working
        self.refreshes: list[Refresh] = []
        self.introspections: list[tuple[str, bool]] = []
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> username
        self._issued: dict[str, _Issued] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    def add_account(self, username: str) -> str:
        """A user who has consented; returns the refresh token an operator would have put in a file."""
        token = f"rt-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._refresh_tokens[token] = username
        return token

    def refreshes_for(self, username: str) -> list[Refresh]:
        with self._lock:
            return [r for r in self.refreshes if r.username == username]

    def active_tokens_of(self, username: str) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [t for t, i in self._issued.items() if i.username == username and not i.revoked
                    and now < i.expires_at]

    def revoke_access_tokens(self, username: str) -> None:
        """What an admin's "sign out everywhere" does: the access tokens die before their time."""
        with self._lock:
            for issued in self._issued.values():
                if issued.username == username:
                    issued.revoked = True

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # --- the endpoints --------------------------------------------------------------------------------

    def token_response(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret"))
        if client_id != self.client_id or (self.client_secret is not None and client_secret != self.client_secret):
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong client secret"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            username = self._refresh_tokens.get(form.get("refresh_token", ""))
            if username is None:
                return 400, {"error": "invalid_grant",
                             "error_description": "AADSTS70000: the provided refresh token is not valid"}
            access = f"at-{secrets.token_urlsafe(24)}"
            self._issued[access] = _Issued(username, time.monotonic() + self.lifetime)
            answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime}
            if form.get("scope"):
                answer["scope"] = form["scope"]
            if self.rotate:
                del self._refresh_tokens[form["refresh_token"]]
                answer["refresh_token"] = f"rt-{secrets.token_urlsafe(16)}"
                self._refresh_tokens[answer["refresh_token"]] = username
            self.refreshes.append(Refresh(username, form["refresh_token"], client_id, form.get("scope"),
                                          answer.get("refresh_token")))
        return 200, answer

    def introspect(self, token: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            issued = self._issued.get(token)
            active = issued is not None and not issued.revoked and now < issued.expires_at
            self.introspections.append((token, active))
        if not active or issued is None:
            return {"active": False}
        return {"active": True, "username": issued.username, "token_type": "Bearer",
                "exp": int(time.time() + issued.expires_at - now)}

    def __enter__(self) -> OAuthProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler_for(provider: OAuthProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if self.path == "/token":
                status, body = provider.token_response(form, _basic_auth(self.headers.get("Authorization")))
            elif self.path == "/introspect":
                status, body = 200, provider.introspect(form.get("token", ""))
            else:  # the HTML page a web server or proxy answers with, not JSON
                self.send_error(404)
                return
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not traffic
            pass

    return Handler


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return urllib.parse.unquote(user), urllib.parse.unquote(password)


def introspect(url: str, token: str) -> dict[str, Any]:
    data = urllib.parse.urlencode({"token": token}).encode()
    with urllib.request.urlopen(url, data=data, timeout=5) as resp:
        return json.loads(resp.read())


# --- SMTP ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpLogin:
    user: str
    token: str = field(repr=False)
    accepted: bool


@dataclass
class _XOAuth2Handler:
    introspection_url: str
    received: list[ReceivedMail] = field(default_factory=list)
    logins: list[SmtpLogin] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def auth_XOAUTH2(self, server: SMTPServer, args: list[str]) -> AuthResult:
        """Google's XOAUTH2: on a bad token a 334 challenge carries a JSON error, the client answers with
        an empty line, then comes the 535."""
        if len(args) == 1:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        fields = dict(part.split("=", 1) for part in blob.decode(errors="replace").split("\x01") if "=" in part)
        user, auth = fields.get("user", ""), fields.get("auth", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        answer = await asyncio.to_thread(introspect, self.introspection_url, token) if token else {}
        accepted = bool(answer.get("active")) and answer.get("username") == user
        with self.lock:
            self.logins.append(SmtpLogin(user, token, accepted))
        if accepted:
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
        if await server.challenge_auth(error) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.lock:
            self.received.append(mail)
        return "250 OK"


class XOAuth2SmtpServer:
    """aiosmtpd on loopback offering only AUTH XOAUTH2, and refusing mail from anyone not logged in."""

    def __init__(self, introspection_url: str) -> None:
        self.handler = _XOAuth2Handler(introspection_url)
        self.host, self.port = "127.0.0.1", free_port()
        self._controller = Controller(
            self.handler, hostname=self.host, port=self.port, decode_data=False,
            auth_required=True, auth_require_tls=False,  # plain text on loopback only
            auth_exclude_mechanism=["PLAIN", "LOGIN"],
        )

    @property
    def received(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def logins(self) -> list[SmtpLogin]:
        with self.handler.lock:
            return list(self.handler.logins)

    def __enter__(self) -> XOAuth2SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


# --- a token_command helper ---------------------------------------------------------------------------------


def token_command(provider: OAuthProvider, refresh_token_file: Path, bare: bool = False) -> str:
    """The command line for ``[oauth2] token_command`` that runs this file as the operator's helper."""
    args = [sys.executable, str(SCRIPT), provider.token_url, provider.client_id, str(refresh_token_file)]
    if provider.client_secret:
        args += ["--client-secret", provider.client_secret]
    return shlex.join([*args, *(["--bare"] if bare else [])])


def _helper_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="print an access token, as an operator's token helper does")
    parser.add_argument("token_url")
    parser.add_argument("client_id")
    parser.add_argument("refresh_token_file", type=Path)
    parser.add_argument("--client-secret")
    parser.add_argument("--bare", action="store_true")
    opts = parser.parse_args(argv)
    form = {"grant_type": "refresh_token", "client_id": opts.client_id,
            "refresh_token": opts.refresh_token_file.read_text().strip()}
    if opts.client_secret:
        form["client_secret"] = opts.client_secret
    request = urllib.request.Request(opts.token_url, data=urllib.parse.urlencode(form).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"token helper: {exc.code} {json.loads(exc.read()).get('error')}", file=sys.stderr)
        return 1
    print(answer["access_token"] if opts.bare else json.dumps(
        {"access_token": answer["access_token"], "expires_in": answer["expires_in"]}))
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
