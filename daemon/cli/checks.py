"""`ticketd check`: try every outside dependency once and say, in words, what works."""

from __future__ import annotations

import asyncio
import smtplib
import urllib.request
from pathlib import Path

import aiosmtplib
import sqlalchemy as sa
from imapclient.exceptions import IMAPClientError, LoginError

from ticketd.daemon.cli.common import database_name
from ticketd.daemon.config import Config, ServerConfig
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.outgoing.outbox import smtp_client
from ticketd.daemon.service import oauth2
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.graph import GraphError
from ticketd.storage import db

CheckResult = tuple[str, bool, str]


# The start of a database line whose file is not a database at all: `check` exits 2 for it, as every command does.
NOT_A_DATABASE = "not a database ticketd can open"


def check_database(config: Config) -> CheckResult:
    where = database_name(config)
    url = config.database.url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not Path(where).exists():
        # Opening it would make it, owned by whoever runs `check` (root, on a server): the service could not write it.
        return "database", False, (f"{where} does not exist yet: `ticketd db upgrade` makes it (the unit runs that "
                                   "before each start, as the service's user)")
    try:
        current = db.schema_is_current(db.make_engine(config.database.connect_url))
    except sa.exc.OperationalError as exc:
        return "database", False, f"cannot open {where}: {str(exc.orig).strip().splitlines()[0]}"
    except sa.exc.DatabaseError as exc:
        return "database", False, f"{NOT_A_DATABASE}: {where}: {str(exc.orig).strip().splitlines()[0]}"
    except sa.exc.SQLAlchemyError as exc:
        return "database", False, f"cannot open {where}: {exc}"
    if not current:
        return "database", False, "schema is not current: run `ticketd db upgrade`"
    return "database", True, "reachable, schema current"


def check_imap(config: Config, connections: Connections) -> CheckResult:
    cfg = config.imap
    if cfg is None:
        return "imap", True, ("not configured (mail arrives over LMTP and through `ticketd deliver`)" if config.lmtp
                              else "not configured (mail arrives through `ticketd deliver` only)")
    where = f"{cfg.username}@{cfg.host}:{cfg.port} ({cfg.tls})"
    try:
        client = poller.connect(cfg, connections)
    except oauth2.TokenUnavailable as exc:
        return "imap", False, f"{where}: not logged in: {_text(exc)}"
    except LoginError as exc:
        return "imap", False, f"{where}: login refused, check imap.username and {_credential(cfg)}: {_text(exc)}"
    except (IMAPClientError, OSError) as exc:
        return "imap", False, f"{where}: {type(exc).__name__}: {_text(exc)}"
    try:
        exists = client.folder_exists(cfg.folder)
        caps = {c.decode() for c in client.capabilities()}
    finally:
        poller.close(client)
    if not exists:
        return "imap", False, f"{where}: logged in, but folder {cfg.folder!r} (imap.folder) does not exist"
    features = ", ".join(f for f in ("IDLE", "MOVE", "UIDPLUS") if f in caps) or "none of IDLE/MOVE/UIDPLUS"
    return "imap", True, f"{where}: logged in, folder {cfg.folder!r} found; server offers {features}"


def check_smtp(config: Config, connections: Connections) -> CheckResult:
    cfg = config.smtp
    if cfg is None:
        if None in config.graph_senders():
            return "smtp", True, "not configured: every mail leaves through Graph"
        if config.graph_mailboxes():
            return "smtp", False, ("not configured: the Graph mailboxes' mail leaves through Graph, the rest (the "
                                   "helpdesk's own, alerts) stays queued in the outbox")
        return "smtp", False, "not configured: acknowledgments stay queued in the outbox"
    where = f"{cfg.host}:{cfg.port} ({cfg.tls})"

    async def probe() -> None:
        client = smtp_client(cfg, connections)
        await client.connect()
        await client.quit()

    try:
        asyncio.run(probe())
    except aiosmtplib.SMTPAuthenticationError as exc:
        return "smtp", False, f"{where}: login refused, check smtp.username and {_credential(cfg)}: {exc.message}"
    except (aiosmtplib.SMTPException, OSError) as exc:
        return "smtp", False, f"{where}: {type(exc).__name__}: {exc}"
    return "smtp", True, f"{where}: connected" + (" and logged in" if cfg.username else "")


def check_oauth2(config: Config, connections: Connections) -> CheckResult | None:
    """Get a token on its own first, so a broken token source is named as such, not as a refused login; the
    IMAP and SMTP checks after it log in with that token (``connections``)."""
    if config.oauth2 is None:
        return None
    users = [name for name, server in (("imap", config.imap), ("smtp", config.smtp))
             if server is not None and server.auth == "xoauth2"]
    if not users:
        return "oauth2", True, 'configured, but neither [imap] nor [smtp] has auth = "xoauth2"'
    source = connections.tokens.source(config.oauth2)
    try:
        source.token()
    except oauth2.TokenError as exc:
        return "oauth2", False, f"cannot get an access token: {exc}"
    remaining = source.remaining()
    life = f", valid for {round(remaining)} s" if remaining is not None else ""
    return "oauth2", True, f"got an access token from {source.describe}{life}; used by {' and '.join(users)}"


def check_authentication(config: Config) -> CheckResult | None:
    """Agent mail authenticated by Authentication-Results is only as safe as the MTA that writes them: say what
    is trusted and what the MTA must do, and warn when the mode cannot work at all (no authserv-id set).
    A warning, not a failure: signed reply addresses still authenticate agents meanwhile."""
    if config.security.agent_auth != "authentication-results":
        return None
    rule = ("only the topmost Authentication-Results header with that authserv-id counts (DKIM pass with "
            "header.d, or DMARC pass with header.from, equal to the agent's domain); the MTA that writes it must "
            "remove such headers arriving from outside, or a sender can forge one")
    trusted = config.security.trusted_authserv_id
    if not trusted:
        return ("authentication", True, 'warning: agent_auth = "authentication-results" but '
                "security.trusted_authserv_id is not set, so no Authentication-Results header is trusted and "
                "agents are authenticated by signed reply addresses only. Set it to the authserv-id your "
                f"receiving MTA writes; {rule}")
    return "authentication", True, f"agent mail trusted from authserv-id {trusted!r}: {rule}"


def _credential(cfg: ServerConfig) -> str:
    if cfg.auth == "xoauth2":
        return "the OAuth2 token's account and scopes ([oauth2])"
    if cfg.password_file is not None and (cfg.password is None or not cfg.password.get_secret_value()):
        return f"the password ({cfg.password_file} is empty)"  # as `ticketd init` leaves it
    return "the password"


def _text(exc: Exception) -> str:
    return " ".join(str(a.decode() if isinstance(a, bytes) else a) for a in exc.args) or type(exc).__name__


def check_lmtp(config: Config) -> CheckResult | None:
    """The listener is the running daemon's, so this also says whether ``ticketd run`` is up: the mail system
    delivers to it, and while nothing answers there its queue holds the mail."""
    if config.lmtp is None:
        return None
    listen = config.lmtp.listen
    try:
        if listen.startswith("unix:"):
            client = smtplib.LMTP(listen.removeprefix("unix:"), timeout=10)
        else:
            host, _, port = listen.rpartition(":")
            client = smtplib.LMTP(host.strip("[]"), int(port), timeout=10)
    except (OSError, smtplib.SMTPException) as exc:
        return "lmtp", False, (f"{listen}: nothing answers ({type(exc).__name__}: {exc}); is `ticketd run` "
                               "running? The mail system keeps the mail queued until it does")
    try:
        client.ehlo()
        client.mail("")
        rcpt, text = client.rcpt(config.helpdesk.address)
        client.rset()
        client.quit()
    except (OSError, smtplib.SMTPException) as exc:
        return "lmtp", False, f"{listen}: {type(exc).__name__}: {exc}"
    if rcpt != 250:
        return "lmtp", False, (f"{listen}: answers, but refuses {config.helpdesk.address} "
                               f"({rcpt} {text.decode(errors='replace')}): is it another program?")
    return "lmtp", True, f"{listen}: ticketd answers and accepts {config.helpdesk.address}"


def check_webform(config: Config) -> CheckResult | None:
    """The form is the running daemon's too: a page with a form token means customers can send requests."""
    if config.webform is None:
        return None
    listen = config.webform.listen
    host, _, port = listen.rpartition(":")
    bare = host.strip("[]")
    target = f"http://[{bare}]:{port}/" if ":" in bare else f"http://{bare}:{port}/"
    try:
        with urllib.request.urlopen(target, timeout=10) as answer:  # our own listen address
            page = answer.read(200_000).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return "webform", False, f"{listen}: nothing answers ({exc}); is `ticketd run` running?"
    if 'name="token"' not in page:
        return "webform", False, f"{listen}: answers, but not with ticketd's form: is it another program?"
    public = f" (customers reach it at {config.webform.public_url})" if config.webform.public_url else ""
    return "webform", True, f"{listen}: ticketd serves the complaint form{public}"


def check_graph(config: Config, connections: Connections) -> list[CheckResult]:
    """Each Graph mailbox: a token from Entra ID, its folder, what waits in it. A refusal names Graph's code
    (a missing Mail.ReadWrite shows as ErrorAccessDenied)."""
    results: list[CheckResult] = []
    for name, graph in config.graph_mailboxes().items():
        try:
            results.append((f"graph {name}", True, connections.graph.client(graph).check()))
        except GraphError as exc:
            results.append((f"graph {name}", False, f"{graph.mailbox}: {exc}"))
    connections.graph.close()
    return results


def run_checks(config: Config) -> list[CheckResult]:
    results: list[CheckResult] = [("config", True, f"{config.source} is valid"), check_database(config)]
    authentication = check_authentication(config)
    results += [authentication] if authentication else []
    connections = Connections()
    token = check_oauth2(config, connections)
    listeners = [result for result in (check_lmtp(config), check_webform(config)) if result]
    return [*results, *([token] if token else []), check_imap(config, connections), *listeners,
            *check_graph(config, connections), check_smtp(config, connections)]


def loose_permissions(config: Config) -> list[str]:
    """Private files that others on the machine can read: the database holds every customer's raw mail, and the
    secret signs the addresses that authenticate agents' commands. ticketd creates them 0600 (umask 077), but an
    install made before, a copy or a restore from backup may have left them 0644."""
    files: list[tuple[str, Path]] = []
    if config.security.secret_file is not None:
        files.append(("secret file ([security] secret_file)", config.security.secret_file))
    url = config.database.url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        database = Path(url.removeprefix("sqlite:///"))
        files += [("database", database), ("database journal", Path(f"{database}-wal"))]
    for key, server in (("database", config.database), ("imap", config.imap), ("smtp", config.smtp)):
        password_file = getattr(server, "password_file", None) if server is not None else None
        if password_file is not None:
            files.append((f"password file ([{key}] password_file)", password_file))
    warnings = []
    for label, path in files:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            who = "everyone on this machine" if mode & 0o007 else "its group"
            warnings.append(f"{label} {path} is readable by {who} (mode {mode:o}): chmod 600 {path}")
    return warnings

