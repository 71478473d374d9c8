"""XOAUTH2 logins against real servers: Dovecot's oauth2 passdb and an XOAUTH2-only aiosmtpd, both checking
every token at a local identity provider, with ticketd run through its CLI as an operator runs it."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import pytest
from imapclient.exceptions import LoginError

from conftest import DATA, Mailbox, Site, decode, start_daemon
from servers.dovecot import DovecotServer, dovecot_available, start_dovecot
from servers.smtp_oauth import OAuthProvider, XOAuth2SmtpServer, token_command
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.outgoing import outbox
from ticketd.daemon.service.connections import Connections

pytestmark = [
    pytest.mark.integration,
    # The XOAUTH2 SMTP server is plain text on loopback, which aiosmtpd rightly warns about elsewhere.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

MICROSOFT_SCOPE = ("https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send "
                   "offline_access")


@pytest.fixture(scope="module")
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider() as p:
        yield p


@pytest.fixture(scope="module")
def oauth_dovecot(provider: OAuthProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    if not dovecot_available():
        if os.environ.get("CI"):
            pytest.fail("Dovecot is not installed; `make test` installs it (apt-get install dovecot-imapd)")
        pytest.skip("Dovecot is not installed (make test installs it)")
    server = start_dovecot(tmp_path_factory.mktemp("dovecot-oauth2"),
                           oauth2_introspection_url=provider.introspection_url)
    yield server
    server.stop()


@pytest.fixture
def smtp_server(provider: OAuthProvider) -> Iterator[XOAuth2SmtpServer]:
    with XOAuth2SmtpServer(provider.introspection_url) as server:
        yield server


@dataclass
class Account:
    """A mailbox (its password only for the test to put mail in) and the refresh token ticketd gets."""

    mailbox: Mailbox
    refresh_token: str

    @property
    def user(self) -> str:
        return self.mailbox.user


@pytest.fixture
def account(oauth_dovecot: DovecotServer, provider: OAuthProvider) -> Account:
    provider.lifetime, provider.rotate = 3600, False
    user = f"support{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    oauth_dovecot.add_user(user, password)
    return Account(Mailbox(oauth_dovecot, user, password), provider.add_account(user))


@pytest.fixture
def oauth_site(site: Site, account: Account, smtp_server: XOAuth2SmtpServer, provider: OAuthProvider) -> Site:
    """IMAP and SMTP both on XOAUTH2 with a refresh token; no password anywhere in the config."""
    for name, value in (("refresh-token", account.refresh_token), ("client-secret", provider.client_secret or "")):
        (site.dir / name).write_text(value + "\n")
        (site.dir / name).chmod(0o600)
    server = account.mailbox.server
    site.sections["imap"] = {"host": server.host, "port": server.port, "tls": "none", "auth": "xoauth2",
                             "username": account.user, "poll_seconds": 2}
    site.sections["smtp"] = {"host": smtp_server.host, "port": smtp_server.port, "tls": "none", "auth": "xoauth2",
                             "username": account.user}
    site.sections["oauth2"] = {"provider": "generic", "token_url": provider.token_url,
                               "client_id": provider.client_id, "client_secret_file": "client-secret",
                               "refresh_token_file": "refresh-token"}
    site.upgrade()
    return site


def inbound(site: Site) -> list[dict[str, Any]]:
    proc = site.cli("inbound", "list", "--json")
    assert proc.returncode == 0, decode(proc)
    return json.loads(proc.stdout)


def assert_no_secrets(text: str, provider: OAuthProvider, *extra: str) -> None:
    for secret in [*provider.issued_tokens(), provider.client_secret or "-", *extra]:
        assert secret not in text


def wait_until(condition: Callable[[], bool], seconds: float, daemon: Any, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if daemon.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.returncode}):\n" + daemon.stderr.read().decode())
        if time.monotonic() > deadline:
            daemon.terminate()
            pytest.fail(f"{what}; daemon log:\n" + daemon.communicate(timeout=10)[1].decode())
        time.sleep(0.1)


@pytest.mark.parametrize(("name", "scope"), [
    ("microsoft", MICROSOFT_SCOPE),  # token_url overrides login.microsoftonline.com; the scopes stay Microsoft's
    ("google", "https://mail.google.com/"),
    ("generic", None),
])
def test_refresh_token_login_fetches_mail_and_sends_the_acknowledgment(
        oauth_site: Site, account: Account, provider: OAuthProvider, smtp_server: XOAuth2SmtpServer, name: str,
        scope: str | None) -> None:
    oauth_site.sections["oauth2"]["provider"] = name
    account.mailbox.append((DATA / "unknown-sender.eml").read_bytes())

    proc = oauth_site.cli("run", "--once")

    out, err = decode(proc)
    assert proc.returncode == 0, (out, err)
    assert [m.envelope_to for m in smtp_server.received] == [["jane@example.org"]]
    assert "[ACME #1]" in smtp_server.received[0].message["Subject"]
    assert account.mailbox.count("INBOX") == 0 and account.mailbox.count("Processed") == 1
    refreshes = provider.refreshes_for(account.user)
    assert len(refreshes) == 1, "IMAP and SMTP share one cached token"
    assert refreshes[0].scope == scope and refreshes[0].client_id == provider.client_id
    assert [(login.user, login.accepted) for login in smtp_server.logins] == [(account.user, True)]
    assert f"user=<{account.user}>, method=XOAUTH2" in account.mailbox.server.log_file.read_text()
    assert_no_secrets(out + err, provider, account.refresh_token)


def test_check_gets_a_token_and_logs_in_with_it(oauth_site: Site, account: Account, provider: OAuthProvider) -> None:
    proc = oauth_site.cli("check")

    out, err = decode(proc)
    assert proc.returncode == 0, (out, err)
    assert f"ok   oauth2: got an access token from generic token endpoint {provider.token_url}, valid for " in out
    assert re.search(r"valid for 3[56]\d\d s; used by imap and smtp", out), out
    assert f"ok   imap: {account.user}@" in out and "logged in" in out
    assert "ok   smtp: " in out and "connected and logged in" in out
    assert_no_secrets(out + err, provider, account.refresh_token)


def test_check_names_the_account_when_the_server_refuses_the_token(
        oauth_site: Site, account: Account, oauth_dovecot: DovecotServer) -> None:
    other = f"other{secrets.token_hex(4)}"
    oauth_dovecot.add_user(other, secrets.token_urlsafe(12))
    oauth_site.sections["imap"]["username"] = other  # the token belongs to account.user

    proc = oauth_site.cli("check")

    out, _ = decode(proc)
    assert proc.returncode == 1
    assert "ok   oauth2: got an access token" in out
    assert f"FAIL imap: {other}@" in out
    assert "login refused, check imap.username and the OAuth2 token's account and scopes ([oauth2])" in out


@pytest.mark.parametrize(("bare", "tokens"), [
    (False, 1),  # JSON with expires_in: one token serves IMAP and SMTP
    (True, 2),  # a bare token's lifetime is unknown: fetched again for each login
])
def test_token_command(oauth_site: Site, account: Account, provider: OAuthProvider,
                       smtp_server: XOAuth2SmtpServer, bare: bool, tokens: int) -> None:
    oauth_site.sections["oauth2"] = {"token_command": token_command(provider, oauth_site.dir / "refresh-token", bare)}
    account.mailbox.append((DATA / "unknown-sender.eml").read_bytes())

    proc = oauth_site.cli("run", "--once")

    out, err = decode(proc)
    assert proc.returncode == 0, (out, err)
    assert [m.envelope_to for m in smtp_server.received] == [["jane@example.org"]]
    assert account.mailbox.count("INBOX") == 0
    assert len(provider.refreshes_for(account.user)) == tokens
    assert all(login.accepted for login in smtp_server.logins)
    assert_no_secrets(out + err, provider, account.refresh_token)


def test_running_daemon_refreshes_a_token_before_it_expires(
        oauth_site: Site, account: Account, provider: OAuthProvider, smtp_server: XOAuth2SmtpServer) -> None:
    """Tokens live 4 s here: the second mail is sent after the first token died, with a new one got by the
    refresh token the provider rotated in the first refresh (the original is no longer valid by then)."""
    provider.lifetime, provider.rotate = 4, True
    daemon = start_daemon(oauth_site)
    try:
        account.mailbox.append((DATA / "unknown-sender.eml").read_bytes())
        wait_until(lambda: len(smtp_server.received) == 1, 20, daemon, "no acknowledgment for the first mail")
        wait_until(lambda: not provider.active_tokens_of(account.user), 10, daemon, "the first token lives on")
        account.mailbox.append((DATA / "iso-8859-9-body.eml").read_bytes())
        wait_until(lambda: len(smtp_server.received) == 2, 20, daemon, "no acknowledgment for the second mail")
    finally:
        daemon.terminate()
        log = daemon.communicate(timeout=10)[1].decode()
    refreshes = provider.refreshes_for(account.user)
    assert len(refreshes) >= 2
    assert refreshes[0].refresh_token == account.refresh_token
    for before, after in itertools.pairwise(refreshes):
        assert after.refresh_token == before.rotated_to, "the rotated refresh token is the one used next"
    assert all(login.accepted for login in smtp_server.logins), smtp_server.logins
    assert '"oauth2.refresh_token_rotated"' in log
    assert_no_secrets(log, provider, account.refresh_token, *(r.rotated_to or "-" for r in refreshes))


def test_wrong_refresh_token_is_a_clear_error_and_loses_nothing(
        oauth_site: Site, account: Account, provider: OAuthProvider, smtp_server: XOAuth2SmtpServer) -> None:
    (oauth_site.dir / "refresh-token").write_text("rt-revoked-long-ago\n")
    account.mailbox.append((DATA / "unknown-sender.eml").read_bytes())

    proc = oauth_site.cli("run", "--once")

    out, err = decode(proc)
    assert proc.returncode == 1
    assert (f"imap: cannot get an OAuth2 access token: token endpoint {provider.token_url} refused the refresh "
            "token: invalid_grant: AADSTS70000") in err
    assert account.mailbox.count("INBOX") == 1, "the mail stays in the inbox"
    assert inbound(oauth_site) == [] and smtp_server.received == []
    check = oauth_site.cli("check")
    check_out, _ = decode(check)
    assert check.returncode == 1
    assert "FAIL oauth2: cannot get an access token: token endpoint" in check_out
    assert "rt-revoked-long-ago" not in out + err + check_out

    (oauth_site.dir / "refresh-token").write_text(account.refresh_token)  # the operator fixes it
    proc = oauth_site.cli("run", "--once")
    assert proc.returncode == 0, decode(proc)
    assert account.mailbox.count("INBOX") == 0 and [m.envelope_to for m in smtp_server.received] == [
        ["jane@example.org"]]


def test_a_refused_token_is_dropped_and_the_next_login_refreshes(
        oauth_site: Site, account: Account, provider: OAuthProvider, smtp_server: XOAuth2SmtpServer) -> None:
    """In process, as the daemon does between its reconnects: the first login caches a token; the provider
    revokes it early (an admin's "sign out everywhere"); the login that is refused drops it, the next refreshes."""
    config = oauth_site.config()
    assert config.imap is not None and config.smtp is not None
    connections = Connections()  # the daemon's, shared by its reconnects

    poller.close(poller.connect(config.imap, connections))
    provider.revoke_access_tokens(account.user)
    with pytest.raises(LoginError):
        poller.connect(config.imap, connections)
    poller.close(poller.connect(config.imap, connections))
    assert len(provider.refreshes_for(account.user)) == 2

    async def smtp_login() -> None:
        client = outbox.smtp_client(config.smtp, connections)  # type: ignore[arg-type]
        await client.connect()
        await client.quit()

    provider.revoke_access_tokens(account.user)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        asyncio.run(smtp_login())
    asyncio.run(smtp_login())
    assert len(provider.refreshes_for(account.user)) == 3
    assert [login.accepted for login in smtp_server.logins] == [False, True]
    assert connections.tokens.source(config.oauth2).remaining() is not None  # type: ignore[arg-type]


def test_unreachable_token_endpoint_keeps_outgoing_mail_queued(
        oauth_site: Site, account: Account, provider: OAuthProvider, smtp_server: XOAuth2SmtpServer) -> None:
    """The SMTP side of a token failure: the acknowledgment waits in the outbox for the next attempt."""
    oauth_site.sections["imap"] = {**account.mailbox.imap_section()}  # intake by password; only SMTP on OAuth2
    oauth_site.sections["oauth2"]["token_url"] = "http://127.0.0.1:9/token"  # discard port: nobody listens
    account.mailbox.append((DATA / "unknown-sender.eml").read_bytes())

    proc = oauth_site.cli("run", "--once")

    assert proc.returncode == 0, decode(proc)
    listed = oauth_site.cli("outbox", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 1)]
    assert "cannot get an OAuth2 access token: cannot reach token endpoint http://127.0.0.1:9/token" \
        in rows[0]["last_error"]
    assert smtp_server.received == [] and provider.refreshes_for(account.user) == []
