"""OAuth2 access tokens for the IMAP and SMTP logins (SASL XOAUTH2).

Microsoft 365 and Gmail no longer let programs log in with a password: they want a short-lived access token,
which ticketd gets either from the operator's own helper (``token_command``) or with a long-lived refresh token
from the provider's token endpoint.

Why authlib for the refresh-token grant, and not msal or hand-written HTTP: msal only accepts an https
authority that answers Entra instance and OpenID discovery, so it cannot be pointed at a token endpoint running
on loopback for an offline test, and it serves Microsoft alone. authlib's requests ``OAuth2Session`` speaks the
plain RFC 6749 refresh grant to any token endpoint (Microsoft's, Google's or any other), turns the endpoint's
error answers into ``OAuthError`` and hands back a rotated refresh token; the integration tests run it against a
real local token endpoint, with a real Dovecot and a real SMTP server checking the tokens it gets.

A :class:`TokenSource` caches the token with its expiry and fetches a new one *before* it runs out, so a login
never races the expiry; a token the server refuses is dropped, so the next login fetches a fresh one. Tokens
and secrets are never logged nor put into error messages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiosmtplib
import structlog
from aiosmtplib.typing import Default
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from ticketd.daemon.config import ImapConfig, OAuth2Config, ServerConfig, SmtpConfig

log = structlog.get_logger("ticketd.oauth2")

# Refresh when less than this remains, but never more than this fraction of the token's whole life, so a
# one-hour token is renewed five minutes early and a one-minute token is still reused for 54 seconds.
REFRESH_MARGIN_SECONDS = 300.0
REFRESH_MARGIN_FRACTION = 0.1

TOKEN_URLS = {
    "microsoft": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
    "google": "https://oauth2.googleapis.com/token",
}
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    # offline_access keeps the refresh token coming back with each refresh.
    "microsoft": ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send",
                  "offline_access"),
    "google": ("https://mail.google.com/",),
}
MICROSOFT_DEFAULT_TENANT = "common"


class TokenError(Exception):
    """No access token could be had; the message says why in an operator's words, never with a secret in it."""


class TokenUnavailable(LoginError):  # type: ignore[misc]  # imapclient ships no types: LoginError is Any
    """An IMAP login that never reached the server because there was no token: callers handle it like any
    refused login (retry with backoff), and ``ticketd check`` can tell the two apart."""


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_in: float | None = None  # seconds from the request; None: the issuer did not say


@dataclass(frozen=True)
class _Cached:
    value: str = field(repr=False)
    fetched_at: float
    expires_at: float | None


def refresh_due(now: float, fetched_at: float, expires_at: float | None,
                margin_seconds: float = REFRESH_MARGIN_SECONDS,
                margin_fraction: float = REFRESH_MARGIN_FRACTION) -> bool:
    """A token of unknown lifetime is never reused: the next login could be the one after it expired."""
    if expires_at is None:
        return True
    margin = min(margin_seconds, (expires_at - fetched_at) * margin_fraction)
    return now >= expires_at - margin


class TokenSource:
    """One cached access token, renewed before it expires; thread-safe, since IMAP and SMTP share it."""

    def __init__(self, fetch: Callable[[], AccessToken], describe: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 margin_seconds: float = REFRESH_MARGIN_SECONDS,
                 margin_fraction: float = REFRESH_MARGIN_FRACTION) -> None:
        self.describe = describe
        self._fetch = fetch
        self._clock = clock
        self._margin = (margin_seconds, margin_fraction)
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            now = self._clock()  # before the request: the lifetime counts from when we asked
            cached = self._cached
            if cached is not None and not refresh_due(now, cached.fetched_at, cached.expires_at, *self._margin):
                return cached.value
            try:
                got = self._fetch()
            except TokenError as exc:
                if cached is None or cached.expires_at is None or now >= cached.expires_at:
                    raise
                # Renewing early failed, but the current token still works: use it and try again next time.
                log.warning("oauth2.refresh_failed", source=self.describe, error=str(exc),
                            current_expires_in=round(cached.expires_at - now))
                return cached.value
            expires_at = now + got.expires_in if got.expires_in is not None else None
            self._cached = _Cached(got.value, now, expires_at)
            log.info("oauth2.token_obtained", source=self.describe, expires_in=got.expires_in)
            return got.value

    def invalidate(self, token: str) -> None:
        """Called when a server refused ``token``; a newer token fetched meanwhile is kept."""
        with self._lock:
            if self._cached is not None and self._cached.value == token:
                self._cached = None
                log.warning("oauth2.token_refused", source=self.describe)

    def remaining(self) -> float | None:
        """Seconds the cached token is still valid, for `ticketd check`; None if unknown or none cached."""
        with self._lock:
            cached = self._cached
            if cached is None or cached.expires_at is None:
                return None
            return max(0.0, cached.expires_at - self._clock())


# --- where tokens come from ------------------------------------------------------------------------------


def _lifetime(value: Any, who: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TokenError(f"{who} gave expires_in as {value!r}, not a number of seconds")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TokenError(f"{who} gave expires_in as {value!r}, not a number of seconds") from None


def parse_command_output(stdout: bytes, who: str = "token_command") -> AccessToken:
    """The two forms helpers print: a bare token (oama, `gcloud auth print-access-token`) or a JSON token
    response; only the JSON form says how long the token lives."""
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        raise TokenError(f"{who} printed nothing (expected an access token, or JSON with access_token)")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise TokenError(f"{who} printed something that starts like JSON but is not valid JSON") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise TokenError(f'{who} printed JSON without a string "access_token"')
        return AccessToken(token.strip(), _lifetime(data.get("expires_in"), who))
    if any(c.isspace() for c in text):
        raise TokenError(f"{who} printed more than one word (expected a bare access token, or JSON)")
    return AccessToken(text)


@dataclass
class CommandToken:
    """The operator's helper owns the OAuth dance (device login, token storage); we only run it."""

    argv: list[str]
    timeout: float

    def __call__(self) -> AccessToken:
        name = f"token_command {self.argv[0]!r}"
        try:
            proc = subprocess.run(self.argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise TokenError(f"{name} did not finish within {self.timeout:g} s") from None
        except OSError as exc:
            raise TokenError(f"{name} could not be started: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TokenError(f"{name} exited with status {proc.returncode}" + (f": {said[-1][:300]}" if said else ""))
        return parse_command_output(proc.stdout, name)


def token_url(cfg: OAuth2Config) -> str:
    if cfg.token_url:
        return cfg.token_url
    if cfg.provider not in TOKEN_URLS:
        raise TokenError(f"no token_url for provider {cfg.provider!r}")
    return TOKEN_URLS[cfg.provider].format(tenant=cfg.tenant or MICROSOFT_DEFAULT_TENANT)


def scopes(cfg: OAuth2Config) -> tuple[str, ...]:
    return cfg.scopes if cfg.scopes is not None else DEFAULT_SCOPES.get(cfg.provider or "", ())


class RefreshTokenGrant:
    """RFC 6749 §6 at the provider's token endpoint; a rotated refresh token replaces ours, in memory only."""

    def __init__(self, cfg: OAuth2Config) -> None:
        if cfg.refresh_token is None or not cfg.client_id:
            raise TokenError("[oauth2] needs client_id and a refresh token for the refresh-token grant")
        self.url = token_url(cfg)
        self.scopes = scopes(cfg)
        self._client_id = cfg.client_id
        self._client_secret = cfg.client_secret.get_secret_value() if cfg.client_secret else None
        self._refresh_token = cfg.refresh_token.get_secret_value()
        self._timeout = cfg.timeout_seconds

    def __call__(self) -> AccessToken:
        # Imported here: a third of a second that every `ticketd` command would pay and only a refresh needs.
        import requests
        from authlib.integrations.base_client.errors import OAuthError
        from authlib.integrations.requests_client import OAuth2Session

        who = f"token endpoint {self.url}"
        session = OAuth2Session(
            client_id=self._client_id,
            client_secret=self._client_secret,
            scope=list(self.scopes) or None,
            # In the form body: what Microsoft and Google both document, and "none" for public clients.
            token_endpoint_auth_method="client_secret_post" if self._client_secret else "none",
        )
        try:
            with session:
                token = session.refresh_token(self.url, refresh_token=self._refresh_token, timeout=self._timeout)
        except OAuthError as exc:
            detail = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
            raise TokenError(f"{who} refused the refresh token: {detail}") from None
        except (requests.HTTPError, ValueError) as exc:  # not a JSON object: a proxy's or a server's error page
            raise TokenError(f"{who} did not answer with a token: {exc}") from None
        except requests.RequestException as exc:
            raise TokenError(f"cannot reach {who}: {exc}") from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenError(f"{who} answered without an access_token")
        rotated = token.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._refresh_token = rotated
            log.info("oauth2.refresh_token_rotated", token_url=self.url, detail="kept in memory only")
        return AccessToken(access, _lifetime(token.get("expires_in"), who))


def describe(cfg: OAuth2Config) -> str:
    if cfg.token_command:
        return f"token_command {cfg.token_argv[0]!r}"
    return f"{cfg.provider} token endpoint {token_url(cfg)}"


def make_fetcher(cfg: OAuth2Config) -> Callable[[], AccessToken]:
    if cfg.token_command:
        return CommandToken(cfg.token_argv, cfg.timeout_seconds)
    return RefreshTokenGrant(cfg)


class TokenSources:
    """One source per distinct [oauth2] section, so IMAP and SMTP share one token.

    Owned by whatever owns the connections (``Connections``: the daemon's from start to stop, a command's for its
    run), never by this module: two daemons or two tests in one process get their own tokens. The daemon keeps it
    across a reload, so a section left as it was keeps its cached token and a refresh token the provider rotated
    (held in memory only); a changed section is a different key, and gets a fresh source.
    """

    def __init__(self) -> None:
        self._sources: dict[OAuth2Config, TokenSource] = {}
        self._lock = threading.Lock()

    def source(self, cfg: OAuth2Config) -> TokenSource:
        with self._lock:
            source = self._sources.get(cfg)
            if source is None:
                source = self._sources[cfg] = TokenSource(make_fetcher(cfg), describe(cfg))
            return source

    def for_server(self, server: ServerConfig) -> TokenSource:
        if server.oauth2 is None:
            raise TokenError('auth = "xoauth2" but no [oauth2] section was given to this server')
        return self.source(server.oauth2)

    def keep_only(self, cfg: OAuth2Config | None) -> None:
        """After a reload: the sources of sections no longer configured are dropped with their tokens."""
        with self._lock:
            self._sources = {key: value for key, value in self._sources.items() if key == cfg}


# --- the logins ------------------------------------------------------------------------------------------


def imap_login(client: IMAPClient, cfg: ImapConfig, tokens: TokenSources) -> None:
    """XOAUTH2 instead of LOGIN; a refused token is dropped so the next connect fetches a fresh one."""
    try:
        source = tokens.for_server(cfg)
        token = source.token()
    except TokenError as exc:
        raise TokenUnavailable(f"cannot get an OAuth2 access token: {exc}") from exc
    try:
        client.oauth2_login(cfg.username, token)
    except LoginError:
        source.invalidate(token)
        raise


class XOAuth2SMTP(aiosmtplib.SMTP):
    """aiosmtplib's own XOAUTH2 login, fed by a TokenSource, which forgets a token the server refused."""

    def __init__(self, *, token_source: TokenSource, **kwargs: Any) -> None:
        self._token_source = token_source
        super().__init__(oauth_token_generator=self._token, **kwargs)

    async def _token(self) -> str:
        try:
            return await asyncio.to_thread(self._token_source.token)  # the refresh is blocking HTTP
        except TokenError as exc:  # an SMTPException: the outbox keeps its rows and retries later
            raise aiosmtplib.SMTPException(f"cannot get an OAuth2 access token: {exc}") from exc

    async def auth_xoauth2(self, username: str | bytes, access_token: str | bytes, /, *,
                           timeout: float | Literal[Default.token] | None = Default.token,
                           ) -> aiosmtplib.SMTPResponse:
        try:
            return await super().auth_xoauth2(username, access_token, timeout=timeout)
        except aiosmtplib.SMTPAuthenticationError:
            token = access_token.decode() if isinstance(access_token, bytes) else access_token
            self._token_source.invalidate(token)
            raise


def smtp_login(cfg: SmtpConfig, tokens: TokenSources) -> tuple[type[aiosmtplib.SMTP], dict[str, Any]]:
    """The client class and its login arguments: a password, or XOAUTH2 with a token fetched at each login."""
    if cfg.auth == "xoauth2":
        return XOAuth2SMTP, {"username": cfg.username, "token_source": tokens.for_server(cfg)}
    return aiosmtplib.SMTP, {"username": cfg.username or None,
                             "password": cfg.password.get_secret_value() if cfg.password else None}
