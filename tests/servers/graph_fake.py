"""A local Microsoft Graph and Entra ID for ticketd's Graph mailboxes: the endpoints ticketd uses, as Microsoft
documents their requests and answers, served over HTTPS on loopback (msal accepts only an https authority).

Entra ID (``/{tenant}/…``): the OpenID configuration msal reads when it starts, and the token endpoint's
client-credentials grant, with a client secret or a certificate's signed client assertion (checked against the
registered certificate, as Entra checks it). Its errors are Entra's: ``invalid_client`` (AADSTS7000215 wrong
secret, AADSTS700027 bad assertion), ``unauthorized_client`` (AADSTS700016 unknown app), an unknown tenant's 400.

Graph (``/v1.0/users/{mailbox}/…``): folders (well-known names, display-name lookup with ``$filter``, creation,
``ErrorFolderExists``), a folder's message delta (``@odata.nextLink`` pages of at most ``page_size``, the last one
with ``@odata.deltaLink``; a later round lists what changed since, moved-out mail as ``@removed``; an unknown
token answers 410), a message's MIME (``$value``), ``move`` (the message gets a new id, as Graph's default ids
do), and ``sendMail`` with base64 MIME (202; recorded in ``sent`` and saved in Sent Items). Errors have Graph's
shape ``{"error": {"code", "message"}}``: 401 ``InvalidAuthenticationToken``, 403 ``ErrorAccessDenied`` for a
missing application permission and ``ErrorSendAsDenied`` for another From, 404 ``ErrorInvalidUser`` and
``ErrorItemNotFound``, 400 ``ErrorInvalidRecipients`` and ``ErrorMimeContentInvalidBase64String``.

Knobs for the tests: ``throttle`` (the next N Graph requests get 429 with Retry-After), ``fail_next`` (the next
N get a given status and error), ``expire_tokens`` (every issued token is refused with 401 from now on),
``drop_next`` (the next matching response is cut off mid-body), and ``roles`` (the app's granted permissions).
Every request is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email
import email.policy
import hashlib
import itertools
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from servers.dovecot import _make_cert

WELL_KNOWN = ("inbox", "drafts", "sentitems", "deleteditems", "junkemail", "archive", "outbox")
DISPLAY_NAMES = {"inbox": "Inbox", "drafts": "Drafts", "sentitems": "Sent Items", "deleteditems": "Deleted Items",
                 "junkemail": "Junk Email", "archive": "Archive", "outbox": "Outbox"}
GRAPH_PERMISSIONS = frozenset({"Mail.ReadWrite", "Mail.Send"})


def _id(prefix: str) -> str:
    """Graph's ids are long base64url strings; these look the part and differ each time."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None  # None: top level (a child of the root)
    well_known: str | None = None


@dataclass
class Message:
    id: str
    raw: bytes
    folder_id: str


@dataclass
class Sent:
    mailbox: str
    raw: bytes


@dataclass
class Logged:
    method: str
    path: str
    query: str
    status: int
    at: float  # time.monotonic() when answered


@dataclass
class Mailbox:
    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    # The change log the delta query reads: (sequence, folder id, message id) for each arrival or departure.
    changes: list[tuple[int, str, str]] = field(default_factory=list)

    def folder(self, name_or_id: str) -> Folder | None:
        lowered = name_or_id.lower()
        return next((f for f in self.folders.values() if f.id == name_or_id or f.well_known == lowered), None)

    def in_folder(self, folder_id: str) -> list[Message]:
        return [m for m in self.messages.values() if m.folder_id == folder_id]


@dataclass
class _Fault:
    status: int
    code: str
    message: str
    retry_after: int | None
    left: int
    on: str  # only requests whose path contains this


class GraphFake:
    """Entra ID and Graph for one tenant and one app registration, holding mailboxes in memory."""

    def __init__(self, folder: Path, tenant: str = "acme.onmicrosoft.com", client_id: str | None = None,
                 client_secret: str | None = "graph-secret-123", certificate_pem: bytes | None = None,
                 token_lifetime: int = 3599, page_size: int = 3) -> None:
        self.tenant, self.tenant_id = tenant, str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret
        self.certificate_pem = certificate_pem
        self.token_lifetime, self.page_size = token_lifetime, page_size
        self.roles: set[str] = set(GRAPH_PERMISSIONS)
        self.mailboxes: dict[str, Mailbox] = {}
        self.sent: list[Sent] = []
        self.requests: list[Logged] = []
        self.token_requests: list[dict[str, str]] = []
        self.discoveries = 0
        self._tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self._faults: list[_Fault] = []
        self._drop: tuple[str, int, int] | None = None  # (path fragment, bytes sent before the cut, to skip first)
        self._rounds: dict[str, tuple[str, str, list[dict[str, Any]], int]] = {}  # skiptoken -> round's rest
        self._deltas: dict[str, tuple[str, str, int]] = {}  # deltatoken -> (mailbox, folder id, sequence)
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()
        self.cafile = folder / "graph-cert.pem"
        _make_cert(self.cafile, folder / "graph-key.pem")
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(
            self._app(), log_config=None, access_log=False, lifespan="off", http="h11", loop="asyncio", ws="none",
            ssl_certfile=str(self.cafile), ssl_keyfile=str(folder / "graph-key.pem"), timeout_keep_alive=5))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
                                        name="graph-fake", daemon=True)

    # --- the tests' side ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> GraphFake:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def section(self, mailbox: str, secret_file: Path | None = None, **overrides: Any) -> dict[str, Any]:
        """A Graph mailbox's config keys pointing here (the secret's file written by the caller)."""
        values: dict[str, Any] = {"tenant": self.tenant, "client_id": self.client_id, "mailbox": mailbox,
                                  "authority_url": self.url, "graph_url": self.url, "cafile": str(self.cafile)}
        if secret_file is not None:
            values["client_secret_file"] = str(secret_file)
        return {**values, **overrides}

    def add_mailbox(self, address: str) -> Mailbox:
        with self._lock:
            box = Mailbox(address.lower())
            for name in WELL_KNOWN:
                folder = Folder(_id("AQMkAD"), DISPLAY_NAMES[name], None, name)
                box.folders[folder.id] = folder
            self.mailboxes[box.address] = box
            return box

    def deliver(self, address: str, raw: bytes, folder: str = "inbox") -> str:
        """Mail arriving in a folder (by well-known name, display name or id); returns its id."""
        with self._lock:
            box = self.mailboxes[address.lower()]
            target = box.folder(folder) or next(f for f in box.folders.values() if f.display_name == folder)
            message = Message(_id("AAMkAG"), raw, target.id)
            box.messages[message.id] = message
            box.changes.append((next(self._sequence), target.id, message.id))
            return message.id

    def contents(self, address: str, folder: str) -> list[bytes]:
        """The raw mail in a folder (well-known name or display name), in arrival order."""
        with self._lock:
            box = self.mailboxes[address.lower()]
            target = box.folder(folder) or next((f for f in box.folders.values() if f.display_name == folder), None)
            return [] if target is None else [m.raw for m in box.in_folder(target.id)]

    def throttle(self, count: int, retry_after: int | None = 1, status: int = 429, on: str = "") -> None:
        code = {429: "ApplicationThrottled", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(status, "Throttled")
        self.fail_next(status, count, code, "Application is over its MailboxConcurrency limit.", retry_after, on)

    def fail_next(self, status: int, count: int = 1, code: str = "", message: str = "",
                  retry_after: int | None = None, on: str = "") -> None:
        """The next ``count`` Graph requests (not the token endpoint's) whose path contains ``on`` answer
        ``status`` with this error."""
        defaults = {500: ("InternalServerError", "An internal server error occurred."),
                    503: ("ServiceUnavailable", "Service is temporarily unavailable."),
                    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
                    400: ("ErrorInvalidRecipients", "At least one recipient is not valid.")}
        default_code, default_message = defaults.get(status, (f"HTTP{status}", "failed"))
        with self._lock:
            self._faults.append(_Fault(status, code or default_code, message or default_message, retry_after, count,
                                       on))

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def drop_next(self, path_fragment: str, after_bytes: int = 20, skip: int = 0) -> None:
        """The response to a path containing ``path_fragment``, after ``skip`` such responses, is cut off after
        ``after_bytes``: the connection closes mid-body."""
        with self._lock:
            self._drop = (path_fragment, after_bytes, skip)

    def graph_requests(self, fragment: str = "") -> list[Logged]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/v1.0/") and fragment in r.path]

    # --- Entra ID -------------------------------------------------------------------------------------

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant.lower(), self.tenant_id)

    def _tenant_error(self, tenant: str) -> JSONResponse:
        return JSONResponse({"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not "
                             "found. Check to make sure you have the correct tenant ID and are signing into the "
                             "correct cloud.", "error_codes": [90002]}, 400)

    async def _openid(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        with self._lock:
            self.discoveries += 1
        if not self._known_tenant(tenant):
            return self._tenant_error(tenant)
        base = f"{self.url}/{self.tenant_id}"
        return JSONResponse({
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
        })

    async def _token(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        with self._lock:
            self.token_requests.append({k: v for k, v in form.items() if k not in ("client_secret",
                                                                                     "client_assertion")})
        if not self._known_tenant(tenant):
            return self._tenant_error(tenant)
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant "
                                "type.")
        if form.get("client_id") != self.client_id:
            return _oauth_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                f"'{form.get('client_id')}' was not found in the directory '{self.tenant}'.")
        if "client_assertion" in form:
            refused = self._check_assertion(form, f"{self.url}/{tenant}/oauth2/v2.0/token")
            if refused:
                return _oauth_error(401, "invalid_client", f"AADSTS700027: Client assertion failed signature "
                                    f"validation. {refused}")
        elif self.client_secret is None or form.get("client_secret") != self.client_secret:
            return _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the "
                                "secret being sent in the request is the client secret value, not the client "
                                "secret ID.")
        if not form.get("scope", "").endswith("/.default"):
            return _oauth_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. "
                                "Client credential flows must have a scope value with /.default suffixed.")
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
        return JSONResponse({"token_type": "Bearer", "expires_in": self.token_lifetime,
                             "ext_expires_in": self.token_lifetime, "access_token": token})

    def _check_assertion(self, form: dict[str, str], audience: str) -> str | None:
        """What Entra checks of a certificate credential: the JWT's signature with the registered certificate,
        its x5t naming that certificate, and its audience, issuer and subject."""
        if self.certificate_pem is None:
            return "No certificate is registered for the app."
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "Wrong client_assertion_type."
        cert = x509.load_pem_x509_certificate(self.certificate_pem)
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
            der = cert.public_bytes(Encoding.DER)
            sha1 = base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest()).decode().rstrip("=")
            if str(header.get("x5t", "")).rstrip("=") != sha1:  # msal pads it, other signers do not
                return "The key identifier does not match a registered certificate."
            # Entra accepts the token endpoint under the tenant's name or its id as the audience.
            claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256", "PS256"],  # type: ignore[arg-type]
                                audience=[audience, f"{self.url}/{self.tenant_id}/oauth2/v2.0/token"])
        except jwt.PyJWTError as exc:
            return str(exc)
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "iss and sub must be the client id."
        return None

    # --- Graph ----------------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        with self._lock:
            expires = self._tokens.get(header[7:])
        if expires is None:
            return _graph_error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if time.monotonic() >= expires:
            return _graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        return None

    def _fault(self, request: Request) -> Response | None:
        with self._lock:
            fault = next((f for f in self._faults if f.on in request.url.path), None)
            if fault is None:
                return None
            fault.left -= 1
            if fault.left <= 0:
                self._faults.remove(fault)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return _graph_error(fault.status, fault.code, fault.message, headers)

    def _mailbox(self, request: Request) -> Mailbox | Response:
        user = request.path_params["user"].lower()
        with self._lock:
            box = self.mailboxes.get(user)
        if box is None:
            return _graph_error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        return box

    def _needs(self, role: str) -> Response | None:
        if role not in self.roles and not (role == "Mail.Read" and "Mail.ReadWrite" in self.roles):
            return _graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return None

    def _app(self) -> Starlette:
        def graph(role: str, handler: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                refused = self._authorize(request) or self._fault(request) or self._needs(role)
                if refused is None:
                    box = self._mailbox(request)
                    refused = box if isinstance(box, Response) else None
                response = refused or await handler(request, box)
                return self._maybe_drop(request, response)
            return endpoint

        routes = [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/v1.0/users/{user}/mailFolders", graph("Mail.ReadWrite", self._folders), methods=["GET", "POST"]),
            Route("/v1.0/users/{user}/mailFolders/{folder}", graph("Mail.Read", self._get_folder)),
            Route("/v1.0/users/{user}/mailFolders/{folder}/childFolders", graph("Mail.ReadWrite", self._folders),
                  methods=["GET", "POST"]),
            Route("/v1.0/users/{user}/mailFolders/{folder}/messages/delta", graph("Mail.Read", self._delta)),
            Route("/v1.0/users/{user}/messages/{message}/$value", graph("Mail.Read", self._value)),
            Route("/v1.0/users/{user}/messages/{message}/move", graph("Mail.ReadWrite", self._move),
                  methods=["POST"]),
            Route("/v1.0/users/{user}/sendMail", graph("Mail.Send", self._send), methods=["POST"]),
        ]
        app = Starlette(routes=routes)

        async def logged(scope: Any, receive: Any, send: Any) -> None:
            status = 0

            async def record(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    with self._lock:
                        self.requests.append(Logged(scope["method"], scope["path"],
                                                    scope.get("query_string", b"").decode(), status, time.monotonic()))
                await send(message)
            await app(scope, receive, record)
        return logged  # type: ignore[return-value]

    def _maybe_drop(self, request: Request, response: Response) -> Response:
        with self._lock:
            drop = self._drop
            if drop is None or drop[0] not in request.url.path:
                return response
            if drop[2] > 0:
                self._drop = (drop[0], drop[1], drop[2] - 1)
                return response
            self._drop = None
        body = bytes(response.body)  # every response here is whole; $value's too

        async def cut() -> AsyncIterator[bytes]:
            yield body[:drop[1]]
            raise ConnectionAbortedError("graph fake: connection dropped mid-response, as asked")

        return StreamingResponse(cut(), response.status_code, media_type=response.media_type,
                                 headers={"Content-Length": str(len(body))})

    async def _get_folder(self, request: Request, box: Mailbox) -> Response:
        folder = box.folder(request.path_params["folder"])
        if folder is None:
            return _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return JSONResponse(_folder_json(folder, box))

    async def _folders(self, request: Request, box: Mailbox) -> Response:
        parent_key = request.path_params.get("folder")
        parent_id = None
        if parent_key is not None:
            parent = box.folder(parent_key)
            if parent is None:
                return _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            parent_id = parent.id
        if request.method == "POST":
            body = await request.json()
            name = body.get("displayName") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name:
                return _graph_error(400, "ErrorInvalidRequest", "The displayName property is required.")
            with self._lock:
                if any(f.parent_id == parent_id and f.display_name.lower() == name.lower()
                       for f in box.folders.values()):
                    return _graph_error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
                folder = Folder(_id("AAMkAD"), name, parent_id)
                box.folders[folder.id] = folder
            return JSONResponse(_folder_json(folder, box), 201)
        children = [f for f in box.folders.values() if f.parent_id == parent_id]
        wanted = request.query_params.get("$filter")
        if wanted is not None:
            match = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", wanted)
            if match is None:
                return _graph_error(400, "BadRequest", f"Invalid filter clause: {wanted}")
            name = match.group(1).replace("''", "'")
            children = [f for f in children if f.display_name.lower() == name.lower()]
        return JSONResponse({"@odata.context": f"{self.url}/v1.0/$metadata#users('{box.address}')/mailFolders",
                             "value": [_folder_json(f, box) for f in children]})

    async def _delta(self, request: Request, box: Mailbox) -> Response:
        folder = box.folder(request.path_params["folder"])
        if folder is None:
            return _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        query = request.query_params
        prefer = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("Prefer", ""))
        size = min(int(prefer.group(1)), self.page_size) if prefer else min(10, self.page_size)
        with self._lock:
            if "$skiptoken" in query:
                found = self._rounds.pop(query["$skiptoken"], None)
                if found is None:
                    return _graph_error(400, "ErrorInvalidUrlQuery", "The skip token is not valid.")
                _, _, entries, sequence = found
            else:
                if "$deltatoken" in query:
                    known = self._deltas.get(query["$deltatoken"])
                    if known is None or known[:2] != (box.address, folder.id):
                        return _graph_error(410, "SyncStateNotFound", "The sync state could not be found. "
                                            "Start a new synchronization.")
                    since = known[2]
                    touched = dict.fromkeys(m for s, f, m in box.changes if s > since and f == folder.id)
                else:  # the first round: everything in the folder now
                    touched = dict.fromkeys(m.id for m in box.in_folder(folder.id))
                entries = [_entry(box.messages.get(m), m, folder.id) for m in touched]
                sequence = box.changes[-1][0] if box.changes else 0
            page, rest = entries[:size], entries[size:]
            base = f"{self.url}/v1.0/users/{box.address}/mailFolders/{folder.id}/messages/delta"
            answer: dict[str, Any] = {"@odata.context": f"{self.url}/v1.0/$metadata#Collection(message)",
                                      "value": page}
            if rest:
                token = secrets.token_urlsafe(16)
                self._rounds[token] = (box.address, folder.id, rest, sequence)
                answer["@odata.nextLink"] = f"{base}?$skiptoken={token}"
            else:
                token = secrets.token_urlsafe(16)
                self._deltas[token] = (box.address, folder.id, sequence)
                answer["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return JSONResponse(answer)

    async def _value(self, request: Request, box: Mailbox) -> Response:
        with self._lock:
            message = box.messages.get(request.path_params["message"])
        if message is None:
            return _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return Response(message.raw, 200, media_type="text/plain")

    async def _move(self, request: Request, box: Mailbox) -> Response:
        body = await request.json()
        target_key = body.get("destinationId") if isinstance(body, dict) else None
        with self._lock:
            message = box.messages.get(request.path_params["message"])
            target = box.folder(target_key) if isinstance(target_key, str) else None
            if message is None or target is None:
                return _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            del box.messages[message.id]
            moved = Message(_id("AAMkAG"), message.raw, target.id)  # a move gives the message a new id
            box.messages[moved.id] = moved
            box.changes.append((next(self._sequence), message.folder_id, message.id))
            box.changes.append((next(self._sequence), target.id, moved.id))
        return JSONResponse({"@odata.context": f"{self.url}/v1.0/$metadata#users('{box.address}')/messages/$entity",
                             "id": moved.id, "parentFolderId": target.id}, 201)

    async def _send(self, request: Request, box: Mailbox) -> Response:
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "text/plain":
            return _graph_error(400, "ErrorInvalidRequest", "This fake takes only MIME (text/plain) bodies.")
        try:
            raw = base64.b64decode(await request.body(), validate=True)
        except (binascii.Error, ValueError):
            return _graph_error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        senders = [a for _, a in getaddresses(parsed.get_all("From", []))]
        if len(senders) != 1 or senders[0].lower() != box.address:
            return _graph_error(403, "ErrorSendAsDenied", "The user account which was used to submit this request "
                                "does not have the right to send mail on behalf of the specified sending account.")
        recipients = [a for _, a in getaddresses(parsed.get_all("To", []) + parsed.get_all("Cc", [])
                                                  + parsed.get_all("Bcc", []))]
        if not recipients:
            return _graph_error(400, "ErrorInvalidRecipientsRequired", "At least one recipient is required.")
        if any(not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", a) for a in recipients):
            return _graph_error(400, "ErrorInvalidRecipients", "At least one recipient is not valid., "
                                "A message can't be sent because it contains no valid recipients.")
        with self._lock:
            self.sent.append(Sent(box.address, raw))
            sent_items = box.folder("sentitems")
            assert sent_items is not None
            copy = Message(_id("AAMkAG"), raw, sent_items.id)
            box.messages[copy.id] = copy
            box.changes.append((next(self._sequence), sent_items.id, copy.id))
        return Response(status_code=202)


def _entry(message: Message | None, message_id: str, folder_id: str) -> dict[str, Any]:
    if message is None or message.folder_id != folder_id:
        return {"@odata.type": "#microsoft.graph.message", "id": message_id, "@removed": {"reason": "deleted"}}
    return {"@odata.type": "#microsoft.graph.message",
            "@odata.etag": f'W/"CQAAABYAAAA{hashlib.sha1(message.id.encode(), usedforsecurity=False).hexdigest()}"',
            "id": message.id}


def _folder_json(folder: Folder, box: Mailbox) -> dict[str, Any]:
    messages = box.in_folder(folder.id)
    return {"id": folder.id, "displayName": folder.display_name, "parentFolderId": folder.parent_id or "root",
            "childFolderCount": sum(1 for f in box.folders.values() if f.parent_id == folder.id),
            "unreadItemCount": len(messages), "totalItemCount": len(messages), "isHidden": False}


def _graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    inner = {"code": code, "message": message,
             "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4()),
                            "client-request-id": str(uuid.uuid4())}}
    return JSONResponse({"error": inner}, status, headers=headers)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    codes = [int(c) for c in re.findall(r"AADSTS(\d+)", description)[:1]]
    return JSONResponse({"error": error, "error_description": description, "error_codes": codes,
                         "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"), "trace_id": str(uuid.uuid4()),
                         "correlation_id": str(uuid.uuid4())}, status)


@pytest.fixture
def graph_fake(tmp_path: Path) -> Iterator[GraphFake]:
    """A fresh Graph and Entra ID on loopback for one test, with the mailbox support@acme.example."""
    fake = GraphFake(tmp_path).start()
    fake.add_mailbox("support@acme.example")
    yield fake
    fake.stop()
