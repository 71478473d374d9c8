"""OAuth2 tokens: when a cached token is renewed, what helpers may print, how the refresh grant fails, and the
[oauth2] config errors, each naming its key."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from servers.smtp_oauth import OAuthProvider
from ticketd.daemon.config import ConfigError, OAuth2Config, load_config, parse_config
from ticketd.daemon.service import oauth2
from ticketd.daemon.service.oauth2 import AccessToken, TokenError, TokenSource, refresh_due


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """Hands out numbered tokens of a fixed lifetime, or fails when told to."""

    def __init__(self, lifetime: float | None) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.fail: str | None = None

    def __call__(self) -> AccessToken:
        if self.fail:
            raise TokenError(self.fail)
        self.calls += 1
        return AccessToken(f"token-{self.calls}", self.lifetime)


def source(lifetime: float | None) -> tuple[TokenSource, Issuer, Clock]:
    issuer, clock = Issuer(lifetime), Clock()
    return TokenSource(issuer, "test issuer", clock=clock), issuer, clock


# --- when to refresh ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lifetime", "reused_until", "renewed_at"), [
    (3600, 3299.9, 3300),  # an hour: five minutes early
    (600, 539.9, 540),  # ten minutes: a tenth of its life, not half of it
    (60, 53.9, 54),  # a minute: still reused for 54 s, not fetched for every login
])
def test_a_token_is_renewed_before_it_expires(lifetime: float, reused_until: float, renewed_at: float) -> None:
    tokens, issuer, clock = source(lifetime)
    assert tokens.token() == "token-1"
    clock.now += reused_until
    assert tokens.token() == "token-1"
    clock.now += renewed_at - reused_until
    assert tokens.token() == "token-2"
    assert issuer.calls == 2


def test_refresh_due_margin_is_the_smaller_of_five_minutes_and_a_tenth() -> None:
    assert not refresh_due(now=3299, fetched_at=0, expires_at=3600)
    assert refresh_due(now=3300, fetched_at=0, expires_at=3600)
    assert not refresh_due(now=89, fetched_at=0, expires_at=100, margin_seconds=300, margin_fraction=0.1)
    assert refresh_due(now=90, fetched_at=0, expires_at=100, margin_seconds=300, margin_fraction=0.1)
    assert refresh_due(now=0, fetched_at=0, expires_at=None)  # unknown lifetime: never reused
    assert refresh_due(now=0, fetched_at=0, expires_at=0)  # expires_in 0: already gone


def test_a_token_of_unknown_lifetime_is_fetched_for_every_login() -> None:
    tokens, issuer, _ = source(None)
    assert [tokens.token() for _ in range(3)] == ["token-1", "token-2", "token-3"]
    assert tokens.remaining() is None and issuer.calls == 3


def test_remaining_counts_down() -> None:
    tokens, _, clock = source(3600)
    assert tokens.remaining() is None  # nothing fetched yet
    tokens.token()
    clock.now += 100
    assert tokens.remaining() == 3500


def test_a_refused_token_is_dropped_but_a_newer_one_is_kept() -> None:
    tokens, issuer, _ = source(3600)
    first = tokens.token()
    tokens.invalidate(first)
    second = tokens.token()
    assert second == "token-2"
    tokens.invalidate(first)  # a late report about the old token must not throw away the new one
    assert tokens.token() == second and issuer.calls == 2


def test_a_failed_early_refresh_keeps_the_current_token_until_it_expires() -> None:
    tokens, issuer, clock = source(3600)
    tokens.token()
    issuer.fail = "token endpoint down"
    clock.now += 3400  # inside the margin: a refresh is tried, fails, the still-valid token is used
    assert tokens.token() == "token-1"
    clock.now += 200  # now it has expired: the failure is the caller's
    with pytest.raises(TokenError, match="token endpoint down"):
        tokens.token()
    issuer.fail = None
    assert tokens.token() == "token-2"


def test_a_failure_with_nothing_cached_is_raised() -> None:
    tokens, issuer, _ = source(3600)
    issuer.fail = "invalid_grant"
    with pytest.raises(TokenError, match="invalid_grant"):
        tokens.token()


def test_tokens_do_not_show_in_reprs() -> None:
    token = AccessToken("at-very-secret", 60)
    assert "at-very-secret" not in repr(token)


# --- token_command ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stdout", "value", "expires_in"), [
    (b"ya29.a0AfH6SMBx\n", "ya29.a0AfH6SMBx", None),
    (b'{"access_token": "eyJ0eXAi", "expires_in": 3599, "token_type": "Bearer"}', "eyJ0eXAi", 3599),
    (b'{"access_token": "abc", "expires_in": "3600"}', "abc", 3600),
    (b'  {"access_token": "abc"}  \n', "abc", None),
])
def test_command_output_forms(stdout: bytes, value: str, expires_in: float | None) -> None:
    token = oauth2.parse_command_output(stdout)
    assert (token.value, token.expires_in) == (value, expires_in)


@pytest.mark.parametrize(("stdout", "reason"), [
    (b"", "printed nothing"),
    (b"\n  \n", "printed nothing"),
    (b"Error: not logged in\n", "printed more than one word"),
    (b'{"access_token": ', "not valid JSON"),
    (b'{"token": "abc"}', 'without a string "access_token"'),
    (b'{"access_token": "abc", "expires_in": "soon"}', "expires_in as 'soon', not a number"),
    (b'{"access_token": "abc", "expires_in": true}', "expires_in as True, not a number"),
])
def test_bad_command_output_says_why(stdout: bytes, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        oauth2.parse_command_output(stdout)


def test_command_is_run_without_a_shell_and_its_failure_reported() -> None:
    ok = oauth2.CommandToken([sys.executable, "-c", "print('tok-$HOME')"], timeout=10)()
    assert ok.value == "tok-$HOME"  # no shell: nothing expanded
    failing = oauth2.CommandToken([sys.executable, "-c", "import sys; sys.exit('not logged in; run: helper login')"],
                                  timeout=10)
    with pytest.raises(TokenError, match=r"exited with status 1: not logged in; run: helper login"):
        failing()


def test_command_that_hangs_or_is_missing() -> None:
    with pytest.raises(TokenError, match=r"did not finish within 0.5 s"):
        oauth2.CommandToken([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)()
    with pytest.raises(TokenError, match="could not be started"):
        oauth2.CommandToken(["/nonexistent/helper"], timeout=5)()


# --- the refresh grant, against a real local token endpoint -------------------------------------------------

@pytest.fixture
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider(lifetime=1800) as p:
        yield p


@pytest.fixture
def grant_config(provider: OAuthProvider, monkeypatch: pytest.MonkeyPatch) -> Callable[..., OAuth2Config]:
    """An [oauth2] section for the local provider, its refresh token given the way an operator may give it."""

    def make(refresh_token: str, **overrides: Any) -> OAuth2Config:
        monkeypatch.setenv("TICKETD_OAUTH2_REFRESH_TOKEN", refresh_token)
        values = {"provider": "generic", "token_url": provider.token_url, "client_id": provider.client_id,
                  "client_secret": provider.client_secret, **overrides}
        return OAuth2Config.model_validate({k: v for k, v in values.items() if v is not None})

    return make


def test_refresh_grant_gets_a_token_and_keeps_a_rotated_refresh_token(
        provider: OAuthProvider, grant_config: Callable[..., OAuth2Config]) -> None:
    provider.rotate = True
    first = provider.add_account("support@acme.example")
    grant = oauth2.RefreshTokenGrant(grant_config(first, scopes=["mail.read", "mail.send"]))
    token = grant()
    assert token.expires_in == 1800 and token.value in provider.issued_tokens()
    grant()  # the provider rotated and forgot `first`: this works only with the new refresh token
    used = [r.refresh_token for r in provider.refreshes]
    assert used[0] == first and used[1] == provider.refreshes[0].rotated_to
    assert provider.refreshes[0].scope == "mail.read mail.send"


def test_refresh_grant_public_client_sends_no_secret(provider: OAuthProvider,
                                                     grant_config: Callable[..., OAuth2Config]) -> None:
    provider.client_secret = None
    token = oauth2.RefreshTokenGrant(grant_config(provider.add_account("a@b.example"), client_secret=None))()
    assert token.value in provider.issued_tokens()


def test_refresh_grant_errors_name_the_endpoint_and_the_reason(provider: OAuthProvider,
                                                               grant_config: Callable[..., OAuth2Config]) -> None:
    with pytest.raises(TokenError) as refused:
        oauth2.RefreshTokenGrant(grant_config("rt-wrong"))()
    assert str(refused.value) == (f"token endpoint {provider.token_url} refused the refresh token: invalid_grant: "
                                  "AADSTS70000: the provided refresh token is not valid")
    assert "rt-wrong" not in str(refused.value)
    good = provider.add_account("a@b.example")
    with pytest.raises(TokenError, match="invalid_client: unknown client or wrong client secret"):
        oauth2.RefreshTokenGrant(grant_config(good, client_secret="wrong"))()
    with pytest.raises(TokenError, match=r"cannot reach token endpoint http://127.0.0.1:9/token"):
        oauth2.RefreshTokenGrant(grant_config(good, token_url="http://127.0.0.1:9/token"))()


def test_not_a_token_response(provider: OAuthProvider, grant_config: Callable[..., OAuth2Config]) -> None:
    """An HTML error page, as a wrong token_url or a proxy in the way answers."""
    with pytest.raises(TokenError, match=r"did not answer with a token: 404 Client Error: Not Found for url: "):
        oauth2.RefreshTokenGrant(grant_config("x", token_url=provider.base_url + "/nothing-here"))()


# --- provider defaults --------------------------------------------------------------------------------------

def test_provider_token_urls_and_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETD_OAUTH2_REFRESH_TOKEN", "rt")  # the refresh flow needs one to validate
    microsoft = OAuth2Config(provider="microsoft", client_id="c", tenant="acme.onmicrosoft.com")
    assert oauth2.token_url(microsoft) == "https://login.microsoftonline.com/acme.onmicrosoft.com/oauth2/v2.0/token"
    assert oauth2.scopes(microsoft) == ("https://outlook.office.com/IMAP.AccessAsUser.All",
                                        "https://outlook.office.com/SMTP.Send", "offline_access")
    common = OAuth2Config(provider="microsoft", client_id="c")
    assert oauth2.token_url(common) == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    google = OAuth2Config(provider="google", client_id="c")
    assert oauth2.token_url(google) == "https://oauth2.googleapis.com/token"
    assert oauth2.scopes(google) == ("https://mail.google.com/",)
    overridden = OAuth2Config(provider="google", client_id="c", token_url="https://proxy.acme.example/token",
                              scopes=["x"])
    assert (oauth2.token_url(overridden), oauth2.scopes(overridden)) == ("https://proxy.acme.example/token", ("x",))
    generic = OAuth2Config(provider="generic", client_id="c", token_url="https://id.acme.example/token")
    assert oauth2.scopes(generic) == ()


def test_one_source_per_section_shared_by_imap_and_smtp(tmp_path: Path) -> None:
    config = parse_config(xoauth2_config(tmp_path))
    assert config.imap is not None and config.smtp is not None and config.oauth2 is not None
    assert config.imap.oauth2 is config.oauth2 and config.smtp.oauth2 is config.oauth2
    tokens = oauth2.TokenSources()
    shared = tokens.for_server(config.imap)
    assert tokens.for_server(config.smtp) is shared
    reloaded = parse_config(xoauth2_config(tmp_path))  # SIGHUP with the section unchanged: the cached token stays
    assert reloaded.oauth2 is not None and tokens.source(reloaded.oauth2) is shared
    tokens.keep_only(reloaded.oauth2)
    assert tokens.source(config.oauth2) is shared
    smtp_class, login = oauth2.smtp_login(config.smtp, tokens)
    assert smtp_class is oauth2.XOAuth2SMTP and login == {"username": "support@acme.example", "token_source": shared}


def test_tokens_belong_to_their_owner_not_to_the_module(tmp_path: Path) -> None:
    """Two daemons (or two tests) in one process never share a token; a changed section gets a fresh source,
    and a reload drops the sources of sections no longer configured."""
    config = parse_config(xoauth2_config(tmp_path))
    assert config.oauth2 is not None
    first, second = oauth2.TokenSources(), oauth2.TokenSources()
    assert first.source(config.oauth2) is not second.source(config.oauth2)
    kept = first.source(config.oauth2)
    changed = parse_config(xoauth2_config(tmp_path, timeout_seconds=7)).oauth2
    assert changed is not None and changed != config.oauth2
    fresh = first.source(changed)
    assert fresh is not kept
    first.keep_only(changed)  # the reload that changed the section
    assert first.source(changed) is fresh and first.source(config.oauth2) is not kept


def test_password_login_arguments_are_unchanged(tmp_path: Path) -> None:
    data = xoauth2_config(tmp_path)
    data["smtp"] = {"host": "smtp.acme.example", "username": "u", "password": "pw"}
    del data["oauth2"]
    data["imap"]["auth"] = "password"
    config = parse_config(data)
    assert config.smtp is not None and config.smtp.oauth2 is None
    assert oauth2.smtp_login(config.smtp, oauth2.TokenSources()) == (aiosmtplib.SMTP,
                                                                     {"username": "u", "password": "pw"})


# --- config -------------------------------------------------------------------------------------------------

def xoauth2_config(tmp_path: Path, **oauth: Any) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    (tmp_path / "refresh-token").write_text("rt-from-file\n")
    return {
        "helpdesk": {"address": "support@acme.example", "tag": "ACME"},
        "security": {"secret_file": str(tmp_path / "secret")},
        "imap": {"host": "outlook.office365.com", "auth": "xoauth2", "username": "support@acme.example"},
        "smtp": {"host": "smtp.office365.com", "auth": "xoauth2", "username": "support@acme.example"},
        "oauth2": {"provider": "microsoft", "client_id": "0000-1111",
                   "refresh_token_file": str(tmp_path / "refresh-token"), **oauth},
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


@pytest.fixture
def no_oauth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETD_OAUTH2_REFRESH_TOKEN", raising=False)
    monkeypatch.delenv("TICKETD_OAUTH2_CLIENT_SECRET", raising=False)


@pytest.mark.usefixtures("no_oauth_env")
@pytest.mark.parametrize(("change", "expected"), [
    ({"oauth2": None}, 'imap.auth: "xoauth2" needs an [oauth2] section with token_command, or provider, client_id'),
    ({"imap": {"auth": "password", "password": "pw"}, "smtp": {"auth": "xoauth2", "username": ""}},
     'smtp.username: required with auth = "xoauth2" (the mailbox the token was issued for)'),
    ({"imap": {"auth": "oauth"}}, "imap.auth: must be 'password' or 'xoauth2'"),
    ({"oauth2": {}}, "oauth2.provider: required (microsoft | google | generic), or give token_command"),
    ({"oauth2": {"provider": "yahoo"}}, "oauth2.provider: must be 'microsoft', 'google' or 'generic'"),
    ({"oauth2": {"provider": "microsoft"}}, "oauth2.client_id: required with provider"),
    ({"oauth2": {"provider": "generic", "client_id": "c"}}, 'oauth2.token_url: required with provider = "generic"'),
    ({"oauth2": {"provider": "microsoft", "client_id": "c"}},
     "oauth2.refresh_token_file: required with provider (a file holding the refresh token), or set "
     "TICKETD_OAUTH2_REFRESH_TOKEN"),
    ({"oauth2": {"provider": "microsoft", "client_id": "c", "refresh_token": "rt-inline"}},
     "oauth2.refresh_token: not accepted in the config file: put it in refresh_token_file or "
     "TICKETD_OAUTH2_REFRESH_TOKEN"),
    ({"oauth2": {"provider": "microsoft", "client_id": "c", "refresh_token_file": "/nonexistent/rt"}},
     "oauth2.refresh_token_file: file /nonexistent/rt does not exist"),
    ({"oauth2": {"provider": "google", "client_id": "c", "tenant": "acme"}},
     'oauth2.tenant: only for provider = "microsoft"'),
    ({"oauth2": {"provider": "microsoft", "client_id": "c", "tenant": "acme/../x"}},
     "oauth2.tenant: must be a tenant ID or domain"),
    ({"oauth2": {"provider": "generic", "client_id": "c", "token_url": "http://id.acme.example/token"}},
     "oauth2.token_url: must be an https:// URL (http:// only on the loopback address)"),
    ({"oauth2": {"provider": "google", "client_id": "c", "scopes": []}}, "oauth2.scopes: must be a non-empty list"),
    ({"oauth2": {"provider": "google", "client_id": "c", "scopes": ["a b"]}}, "oauth2.scopes: must be a non-empty"),
    ({"oauth2": {"token_command": "helper 'unclosed"}}, "oauth2.token_command: cannot be split into a command"),
    ({"oauth2": {"token_command": "no-such-token-helper access"}},
     "oauth2.token_command: program 'no-such-token-helper' not found or not executable"),
    ({"oauth2": {"token_command": f"{sys.executable} -c pass", "provider": "google"}},
     "oauth2.provider: not used with token_command (give one token source, not both)"),
    ({"oauth2": {"token_command": f"{sys.executable} -c pass", "client_id": "c"}},
     "oauth2.client_id: not used with token_command"),
    ({"oauth2": {"token_command": f"{sys.executable} -c pass", "colour": "blue"}}, "oauth2.colour: unknown key"),
])
def test_oauth2_config_errors_name_the_key(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    data = xoauth2_config(tmp_path)
    for section, values in change.items():
        if values is None:
            del data[section]
        elif section == "oauth2":
            data[section] = values
        else:
            data[section] = {**data[section], **values}
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_secrets_from_files_relative_to_the_config(tmp_path: Path, no_oauth_env: None) -> None:
    (tmp_path / "secret").write_text("s" * 32)
    (tmp_path / "client-secret").write_text("cs-from-file\n")
    (tmp_path / "refresh-token").write_text("rt-from-file\n")
    (tmp_path / "ticketd.toml").write_text(
        '[helpdesk]\naddress = "support@acme.example"\n[security]\nsecret_file = "secret"\n'
        '[imap]\nhost = "imap.gmail.com"\nauth = "xoauth2"\nusername = "support@acme.example"\n'
        '[oauth2]\nprovider = "google"\nclient_id = "c.apps.googleusercontent.com"\n'
        'client_secret_file = "client-secret"\nrefresh_token_file = "refresh-token"\n')
    config = load_config(tmp_path / "ticketd.toml")
    cfg = config.oauth2
    assert cfg is not None and cfg.client_secret is not None and cfg.refresh_token is not None
    assert cfg.client_secret.get_secret_value() == "cs-from-file"
    assert cfg.refresh_token.get_secret_value() == "rt-from-file"
    assert "cs-from-file" not in repr(config) and "rt-from-file" not in repr(config)
    assert "rt-from-file" not in config.model_dump_json()


def test_secrets_from_the_environment_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETD_OAUTH2_REFRESH_TOKEN", "rt-env")
    monkeypatch.setenv("TICKETD_OAUTH2_CLIENT_SECRET", "cs-env")
    (tmp_path / "cs").write_text("cs-file")
    config = parse_config(xoauth2_config(tmp_path, client_secret_file=str(tmp_path / "cs")))
    assert config.oauth2 is not None and config.oauth2.refresh_token is not None
    assert config.oauth2.refresh_token.get_secret_value() == "rt-env"
    assert config.oauth2.client_secret is not None and config.oauth2.client_secret.get_secret_value() == "cs-env"


def test_token_command_alone_is_enough(tmp_path: Path, no_oauth_env: None) -> None:
    data = xoauth2_config(tmp_path)
    data["oauth2"] = {"token_command": f"'{sys.executable}' -c 'print(1)'"}
    config = parse_config(data)
    assert config.oauth2 is not None and config.oauth2.token_argv == [sys.executable, "-c", "print(1)"]
    assert oauth2.describe(config.oauth2) == f"token_command {sys.executable!r}"


def test_an_unused_oauth2_section_is_harmless(tmp_path: Path) -> None:
    data = xoauth2_config(tmp_path)
    data["imap"] = {"host": "imap.acme.example", "username": "u", "password": "pw"}
    del data["smtp"]
    config = parse_config(data)
    assert config.imap is not None and config.imap.auth == "password" and config.imap.oauth2 is None
