"""A small Microsoft Graph client: the few mail requests ticketd makes, with the app's own token.

Why this and not Microsoft's Graph SDK: ticketd needs six requests (a folder's delta, a message's MIME, a move, a
folder lookup and creation, sendMail with MIME); the SDK is async-only and large. ``requests`` is already a
dependency. Tokens come from msal's client-credentials grant (a client secret or a certificate): msal builds
and signs the certificate's client assertion and knows Entra's token endpoint and its errors.

How it behaves toward Graph, after Microsoft's throttling guidance: a 429, 503 or 504 is retried after its
``Retry-After`` (a few times, each wait capped); a wait longer than the cap, or too many, surfaces as
:class:`GraphTransient`, which the callers back off from. A 401 ``InvalidAuthenticationToken`` (the token expired
or was revoked early) is retried once with a fresh token. Everything Graph refuses for good (a bad recipient,
a missing permission, an unknown mailbox, the token endpoint's ``invalid_client``) is :class:`GraphPermanent`;
both carry Graph's error code and message. The token is cached on the client, never in the module; secrets and
tokens are never logged nor put into errors.

``requests`` and ``msal`` are imported when the first request is made: every ``ticketd`` command imports the
service room, and only a Graph mailbox needs them.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import structlog

from ticketd.daemon.config.graph import WELL_KNOWN_FOLDERS, GraphConfig
from ticketd.daemon.service.oauth2 import AccessToken, TokenError, TokenSource

if TYPE_CHECKING:
    import msal
    import requests

log = structlog.get_logger("ticketd.graph")

API_VERSION = "v1.0"
RETRY_STATUSES = frozenset({429, 503, 504})  # what Graph answers with Retry-After when it wants us to slow down
MAX_RETRIES = 4  # per request, for those
RETRY_AFTER_CAP = 30.0  # seconds: a longer Retry-After is handed to the caller's backoff instead of slept here
DEFAULT_BACKOFF = 1.0  # without Retry-After: 1, 2, 4 … seconds
DELTA_PAGE_SIZE = 50  # Prefer: odata.maxpagesize (Graph's default for messages is 10)
CHUNK_BYTES = 64 * 1024
# The token endpoint's errors that a retry may cure; every other one needs the operator (a wrong secret, an
# unknown tenant or app, consent not granted).
TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


class GraphError(Exception):
    """Graph (or its token endpoint) said no, or could not be reached: ``code`` and ``message`` are its words."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.message, self.code, self.status, self.retry_after = message, code, status, retry_after
        super().__init__(f"{code}: {message}" if code else message)


class GraphTransient(GraphError):
    """Worth trying again later: the network, throttling that outlasted our patience, Graph's own failures."""


class GraphPermanent(GraphError):
    """Will fail the same way until someone changes something: a bad recipient, a missing permission, an unknown
    mailbox or folder, a refused app credential."""


class _TokenFailure(TokenError):
    """The token endpoint's refusal, with whether a retry may cure it (``TokenSource`` passes it through)."""

    def __init__(self, message: str, code: str | None, permanent: bool) -> None:
        super().__init__(message)
        self.code, self.permanent = code, permanent


@dataclass(frozen=True)
class DeltaPage:
    """One page of a folder's delta round: the messages now in it (removals left out), and where to go next."""

    ids: list[str]
    next_link: str | None
    delta_link: str | None


@dataclass(frozen=True)
class MimeDownload:
    """A message's MIME, or its first ``limit`` bytes when it is larger: ``size`` is the whole message's."""

    data: bytes
    size: int

    @property
    def complete(self) -> bool:
        return len(self.data) == self.size


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with its single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _segment(value: str) -> str:
    return quote(value, safe="@")


def retry_after_seconds(value: str | None) -> float | None:
    """Graph sends seconds; HTTP also allows a date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:  # requests' JSONDecodeError: cut off, or a gateway's page with a 200
        raise GraphTransient("Graph answered with something other than JSON") from None
    if not isinstance(body, dict):
        raise GraphTransient("Graph answered with something other than a JSON object")
    return body


class GraphClient:
    """One mailbox's way to Graph: an HTTP session, an msal app and the token it gives, for as long as the
    owner keeps it (the daemon, from start to stop; a command, for its run). Safe to share between the intake
    thread and the sending threads."""

    def __init__(self, cfg: GraphConfig, *, max_retries: int = MAX_RETRIES,
                 retry_after_cap: float = RETRY_AFTER_CAP) -> None:
        self.cfg = cfg
        self.max_retries, self.retry_after_cap = max_retries, retry_after_cap
        self.tokens = TokenSource(self._fetch_token, f"Graph app {cfg.client_id} of tenant {cfg.tenant}")
        self._origin = urlsplit(cfg.graph_url)[:2]
        self._session: requests.Session | None = None
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._folders: dict[tuple[str, bool], str] = {}

    # --- plumbing ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops a wait for Retry-After at once; later requests fail as transient."""
        self._closed.set()
        with self._lock:
            if self._session is not None:
                self._session.close()

    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                import requests

                session = requests.Session()
                # Given with each request, not as the session's ``verify``: requests lets REQUESTS_CA_BUNDLE
                # override that one. msal's requests get no timeout of their own: every request here has one.
                session.request = functools.partial(  # type: ignore[method-assign]  # as msal does it itself
                    session.request, timeout=self.cfg.timeout_seconds,
                    verify=str(self.cfg.cafile) if self.cfg.cafile else True)
                self._session = session
            return self._session

    def _fetch_token(self) -> AccessToken:
        import requests

        app = self._msal_app()
        try:
            app.remove_tokens_for_client()  # msal's own cache would hand back the token Graph just refused
            result = app.acquire_token_for_client(scopes=[self.cfg.scope])
        except requests.RequestException as exc:
            raise _TokenFailure(f"cannot reach the token endpoint at {self.cfg.authority_url}: {exc}", None,
                                permanent=False) from None
        except ValueError as exc:  # not JSON: a proxy's or a server's error page
            raise _TokenFailure(f"the token endpoint at {self.cfg.authority_url} did not answer with JSON: {exc}",
                                None, permanent=False) from None
        if "access_token" not in result:
            code = str(result.get("error") or "unknown_error")
            said = str(result.get("error_description") or "").splitlines()
            raise _TokenFailure(f"the token endpoint refused the app's credential: {code}"
                                + (f": {said[0][:300]}" if said else ""), code,
                                permanent=code not in TRANSIENT_TOKEN_ERRORS)
        expires = result.get("expires_in")
        return AccessToken(str(result["access_token"]), float(expires) if isinstance(expires, int | float) else None)

    def _msal_app(self) -> msal.ConfidentialClientApplication:
        """Made at the first token request: msal asks the authority's OpenID configuration as it starts."""
        with self._lock:
            app = self._app
        if app is not None:
            return app
        import msal
        import requests

        cfg = self.cfg
        credential: str | dict[str, str]
        if cfg.private_key is not None and cfg.certificate_thumbprint is not None:
            credential = {"private_key": cfg.private_key.get_secret_value(), "thumbprint": cfg.certificate_thumbprint}
        else:
            credential = cfg.client_secret.get_secret_value() if cfg.client_secret else ""
        authority = f"{cfg.authority_url}/{cfg.tenant}"
        try:
            # instance_discovery=False: the authority is the configured one (a national cloud, a test's), not
            # whatever Microsoft's discovery service would name.
            app = msal.ConfidentialClientApplication(
                cfg.client_id, client_credential=credential, authority=authority, instance_discovery=False,
                http_client=self.session(), token_cache=msal.TokenCache())
        except requests.HTTPError as exc:  # a 5xx from the OpenID configuration
            raise _TokenFailure(f"the authority {authority} failed: {exc}", None, permanent=False) from None
        except requests.RequestException as exc:
            raise _TokenFailure(f"cannot reach the authority {authority}: {exc}", None, permanent=False) from None
        except ValueError as exc:  # msal's word for a 4xx there: an unknown tenant
            raise _TokenFailure(f"the authority {authority} is not usable (is tenant {cfg.tenant!r} right?): "
                                f"{str(exc)[:300]}", "invalid_tenant", permanent=True) from None
        with self._lock:
            self._app = self._app or app
            return self._app

    def token(self) -> str:
        try:
            return self.tokens.token()
        except _TokenFailure as exc:
            raise (GraphPermanent if exc.permanent else GraphTransient)(str(exc), exc.code) from None
        except TokenError as exc:
            raise GraphTransient(str(exc)) from None

    def url(self, path_or_link: str) -> str:
        """A path under ``graph_url``'s API version, or a link Graph handed us (``@odata.nextLink``), which must
        point back at Graph: the token is never sent anywhere else."""
        if "://" not in path_or_link:
            return f"{self.cfg.graph_url}/{API_VERSION}{path_or_link}"
        if urlsplit(path_or_link)[:2] != self._origin:
            raise GraphPermanent(f"Graph handed a link to another server: {path_or_link[:200]}")
        return path_or_link

    def user_path(self, mailbox: str | None = None) -> str:
        return f"/users/{_segment(mailbox or self.cfg.mailbox)}"

    def request(self, method: str, path_or_link: str, *, ok: tuple[int, ...] = (200,), stream: bool = False,
                headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """One request, retried on throttling and once on an expired token; a response whose status is not in
        ``ok`` raises the error it carries."""
        import requests

        url = self.url(path_or_link)
        refreshed = False
        attempt = 0
        while True:
            if self._closed.is_set():
                raise GraphTransient("the Graph client is closed (ticketd is stopping)")
            token = self.token()
            try:
                response = self.session().request(
                    method, url, headers={"Authorization": f"Bearer {token}", **(headers or {})}, stream=stream,
                    **kwargs)
            except requests.RequestException as exc:
                raise GraphTransient(f"cannot reach Graph at {self.cfg.graph_url}: {type(exc).__name__}: {exc}") \
                    from None
            if response.status_code in ok:
                return response
            error = self._error(response)
            response.close()
            if response.status_code == 401 and error.code == "InvalidAuthenticationToken" and not refreshed:
                self.tokens.invalidate(token)  # expired or revoked early: one more try with a fresh one
                refreshed = True
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                wait = error.retry_after if error.retry_after is not None else DEFAULT_BACKOFF * 2 ** attempt
                if wait <= self.retry_after_cap:
                    attempt += 1
                    log.warning("graph.throttled", status=response.status_code, code=error.code, wait=wait,
                                attempt=attempt, mailbox=self.cfg.mailbox)
                    if self._closed.wait(wait):
                        raise error
                    continue
            raise error

    @staticmethod
    def _error(response: requests.Response) -> GraphError:
        status = response.status_code
        code, message = None, ""
        try:
            body = response.json()
            inner = body.get("error") if isinstance(body, dict) else None
            if isinstance(inner, dict):
                code, message = inner.get("code"), str(inner.get("message") or "")
        except ValueError:  # not JSON: a gateway's page
            message = response.text[:300]
        message = message or response.reason or f"HTTP {status}"
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        kind = GraphTransient if status in (408, 429) or status >= 500 else GraphPermanent
        return kind(message[:500], str(code) if code else f"HTTP{status}", status, retry_after)

    # --- mail -------------------------------------------------------------------------------------------

    def folder_id(self, path: str, create: bool = False) -> str:
        """The id of ``path``: a well-known name, a display name (``"Inbox/Support"`` walks child folders, the
        first part may be well-known) or an id. With ``create``, missing folders on the way are made."""
        key = (path, create)
        with self._lock:
            if key in self._folders:
                return self._folders[key]
        parent: str | None = None
        for index, name in enumerate(path.split("/")):
            if index == 0 and name.casefold() in WELL_KNOWN_FOLDERS:
                parent = str(self._get(f"{self.user_path()}/mailFolders/{name.casefold()}", **{"$select": "id"})["id"])
                continue
            found = self._child(parent, name)
            if found is None and index == 0 and not create and "/" not in path:
                found = self._by_id(name)
            if found is None:
                if not create:
                    raise GraphPermanent(f"mailbox {self.cfg.mailbox} has no folder {path!r}", "ErrorFolderNotFound",
                                         404)
                found = self._create(parent, name)
            parent = found
        assert parent is not None
        with self._lock:
            self._folders[key] = parent
        return parent

    def forget_folders(self) -> None:
        """After a folder was deleted or renamed under us: look the names up again."""
        with self._lock:
            self._folders.clear()

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        return _json(self.request("GET", path, params=params or None))

    def _children_path(self, parent: str | None) -> str:
        base = f"{self.user_path()}/mailFolders"
        return f"{base}/{_segment(parent)}/childFolders" if parent else base

    def _child(self, parent: str | None, name: str) -> str | None:
        query = {"$filter": f"displayName eq {odata_string(name)}", "$select": "id"}
        for folder in self._get(self._children_path(parent), **query).get("value", []):
            return str(folder["id"])
        return None

    def _by_id(self, folder_id: str) -> str | None:
        try:
            return str(self._get(f"{self.user_path()}/mailFolders/{_segment(folder_id)}", **{"$select": "id"})["id"])
        except GraphPermanent as exc:
            if exc.status in (400, 404):  # not an id either: ErrorInvalidIdMalformed, ErrorItemNotFound
                return None
            raise

    def _create(self, parent: str | None, name: str) -> str:
        try:
            created = _json(self.request("POST", self._children_path(parent), ok=(200, 201),
                                         json={"displayName": name}))
        except GraphPermanent as exc:
            if exc.status == 409:  # ErrorFolderExists: made meanwhile by another instance or a person
                found = self._child(parent, name)
                if found is not None:
                    return found
            raise
        log.info("graph.folder_created", mailbox=self.cfg.mailbox, folder=name)
        return str(created["id"])

    def delta_start(self, folder_id: str) -> str:
        return f"{self.user_path()}/mailFolders/{_segment(folder_id)}/messages/delta?$select=id"

    def delta_page(self, path_or_link: str) -> DeltaPage:
        """One page of a delta round (Graph keeps our query options in the links it hands back)."""
        body = _json(self.request("GET", path_or_link, headers={"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}"}))
        if not isinstance(body.get("value"), list):
            raise GraphTransient("Graph's delta page has no list of messages")
        ids = [str(m["id"]) for m in body["value"] if isinstance(m, dict) and "id" in m and "@removed" not in m]
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if next_link is None and delta_link is None:
            raise GraphTransient("Graph's delta page has neither a next link nor a delta link")
        return DeltaPage(ids, str(next_link) if next_link else None, str(delta_link) if delta_link else None)

    def download_mime(self, message_id: str, limit: int) -> MimeDownload:
        """The message's MIME bytes, streamed: never more than ``limit`` of them held. Graph's message resource
        has no size; past the limit the rest is counted (or the length taken from Content-Length) and let go."""
        import requests

        path = f"{self.user_path()}/messages/{_segment(message_id)}/$value"
        response = self.request("GET", path, stream=True)
        with contextlib.closing(response):
            kept = bytearray()
            size = 0
            try:
                for chunk in self._chunks(response):
                    size += len(chunk)
                    room = limit - len(kept)
                    if room > 0:
                        kept += chunk[:room]
                    if size > limit:
                        declared = response.headers.get("Content-Length", "")
                        if declared.isdigit() and int(declared) > limit:
                            return MimeDownload(bytes(kept), int(declared))
            except requests.RequestException as exc:
                raise GraphTransient(f"the download of a message from Graph broke off: {exc}") from None
        return MimeDownload(bytes(kept), size)

    @staticmethod
    def _chunks(response: requests.Response) -> Iterator[bytes]:
        yield from response.iter_content(CHUNK_BYTES)

    def move(self, message_id: str, folder_id: str) -> str:
        """The message's id in its new folder (Graph gives a moved message a new one)."""
        path = f"{self.user_path()}/messages/{_segment(message_id)}/move"
        return str(_json(self.request("POST", path, ok=(200, 201), json={"destinationId": folder_id})).get("id", ""))

    def send_mime(self, raw: bytes, mailbox: str | None = None) -> None:
        """sendMail with the message as base64 MIME (``Content-Type: text/plain``): Graph sends it with our
        headers (Message-ID and the threading ones included) and saves it in Sent Items; 202 when accepted."""
        self.request("POST", f"{self.user_path(mailbox)}/sendMail", ok=(202,),
                     data=base64.b64encode(raw), headers={"Content-Type": "text/plain"})

    def check(self) -> str:
        """For ``ticketd check``: a token, the folder, and how much waits in it."""
        self.token()
        folder = self.folder_id(self.cfg.folder)
        info = self._get(f"{self.user_path()}/mailFolders/{_segment(folder)}",
                         **{"$select": "displayName,totalItemCount"})
        return (f"Graph mailbox {self.cfg.mailbox}: folder {info.get('displayName', self.cfg.folder)!r} holds "
                f"{info.get('totalItemCount', '?')} message(s)")


class GraphClients:
    """One client per distinct Graph mailbox section, so a mailbox's intake and its sending share a token.

    Owned by whatever owns the connections (the daemon, a command), never by this module; a reload keeps the
    clients of sections left as they were and closes the others."""

    def __init__(self) -> None:
        self._clients: dict[GraphConfig, GraphClient] = {}
        self._lock = threading.Lock()

    def client(self, cfg: GraphConfig) -> GraphClient:
        with self._lock:
            found = self._clients.get(cfg)
            if found is None:
                found = self._clients[cfg] = GraphClient(cfg)
            return found

    def keep_only(self, configs: list[GraphConfig]) -> None:
        with self._lock:
            gone = [c for key, c in self._clients.items() if key not in configs]
            self._clients = {key: c for key, c in self._clients.items() if key in configs}
        for client in gone:
            client.close()

    def close(self) -> None:
        self.keep_only([])
