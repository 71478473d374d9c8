"""IMAP intake: store every new message's raw bytes, commit, and only then move it out of the inbox.

The inbox itself is the work queue: whatever is still in it has not been moved yet. A message already stored
under the same (folder, UIDVALIDITY, UID) — because we crashed between commit and move — is just moved again,
never stored twice. A UIDVALIDITY change makes every UID new; the pipeline's Message-ID check then drops the
copies of mail it has already handled.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from imapclient.imap_utf7 import decode as decode_folder
from imapclient.response_parser import parse_response
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ticketd.daemon.config import ImapConfig
from ticketd.daemon.service import oauth2
from ticketd.daemon.service.connections import Connections
from ticketd.storage.db import session_scope
from ticketd.storage.inbound import OVERSIZE_PREFIX, store_inbound, store_inbound_many, truncated_message
from ticketd.storage.models import Inbound, MailboxState, utcnow

log = structlog.get_logger("ticketd.poller")

FETCH_BATCH = 50
@dataclass
class PollResult:
    stored: int = 0
    moved: int = 0
    already_stored: int = 0
    remaining: int = 0  # left in the inbox because of ``limit``
    news: set[str] = field(default_factory=set)  # NOTIFY's news of other folders, read before SELECT dropped it


def connect(cfg: ImapConfig, connections: Connections | None = None) -> IMAPClient:
    """Log in with the configured TLS mode; raises imapclient's errors or OSError with the server's words.

    An XOAUTH2 login takes its token from ``connections`` (the daemon's, shared by its reconnects); without, a
    fresh token is fetched for this one connection."""
    context = ssl.create_default_context(cafile=str(cfg.cafile) if cfg.cafile else None)
    client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.tls == "implicit",
                        ssl_context=context if cfg.tls == "implicit" else None, timeout=cfg.timeout_seconds)
    try:
        if cfg.tls == "starttls":
            client.starttls(context)
        if cfg.auth == "xoauth2":  # Microsoft 365, Gmail: a bearer token instead of a password
            oauth2.imap_login(client, cfg, (connections or Connections()).tokens)
        else:
            client.login(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
    except BaseException:
        close(client)
        raise
    return client


def close(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError):
        with contextlib.suppress(IMAPClientError, OSError):
            client.shutdown()


def ensure_folder(client: IMAPClient, folder: str) -> None:
    """Create ``folder`` if missing. Another connection of the same login (another folder's, sharing the processed
    folder) may create it between our look and our CREATE: its refusal then is no error."""
    if client.folder_exists(folder):
        return
    try:
        client.create_folder(folder)
    except IMAPClientAbortError:
        raise
    except IMAPClientError:
        if not client.folder_exists(folder):
            raise
        return
    log.info("imap.folder_created", folder=folder)


def move_out(client: IMAPClient, uids: list[int], target: str) -> None:
    """MOVE where the server has it (RFC 6851), else COPY, flag deleted and expunge just those UIDs."""
    if not uids:
        return
    if client.has_capability("MOVE"):
        client.move(uids, target)
        return
    client.copy(uids, target)
    client.delete_messages(uids)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        client.expunge()


def poll_once(client: IMAPClient, engine: sa.Engine, cfg: ImapConfig,
              max_bytes: int = 25 * 1024 * 1024, limit: int | None = None, mailbox: str | None = None) -> PollResult:
    """Store and move the inbox's messages (the oldest ``limit`` of them, or all); returns what was done.

    A caller with a backlog passes ``limit`` so it can process and answer the first mails while the rest
    wait in the inbox, which stays the work queue. A message over ``max_bytes`` (by the server's
    RFC822.SIZE) is stored as its headers and the first ``OVERSIZE_PREFIX`` bytes of its body, marked with
    ``X-Ticketd-Truncated``; the whole message stays on the server in the processed folder. ``mailbox`` is the
    name rows are recorded under (``[[mailboxes]]``); the folder's name without it.
    """
    name = mailbox or cfg.folder
    result = PollResult()
    ensure_folder(client, cfg.processed_folder)
    result.news = news_left(client)  # imaplib forgets every untagged line it kept at a SELECT
    info = client.select_folder(cfg.folder)
    uidvalidity = int(info[b"UIDVALIDITY"])
    everything = sorted(client.search("ALL"))
    uids = everything[:limit] if limit else everything
    result.remaining = len(everything) - len(uids)
    with Session(engine) as session:
        known = set(session.exec(select(Inbound.uid).where(
            Inbound.mailbox == name, Inbound.uidvalidity == uidvalidity, col(Inbound.uid).in_(uids))))
    fresh = [u for u in uids if u not in known]
    result.already_stored = len(uids) - len(fresh)
    sizes = {uid: int(d.get(b"RFC822.SIZE", 0)) for uid, d in client.fetch(fresh, ["RFC822.SIZE"]).items()} \
        if fresh else {}
    oversized = [u for u in fresh if sizes.get(u, 0) > max_bytes]
    normal = [u for u in fresh if u not in oversized]
    for start in range(0, len(normal), FETCH_BATCH):
        batch = normal[start:start + FETCH_BATCH]
        fetched = client.fetch(batch, ["BODY.PEEK[]"])
        found = [(uid, bytes(fetched[uid][b"BODY[]"])) for uid in batch
                 if b"BODY[]" in fetched.get(uid, {})]  # a missing one was expunged by someone else meanwhile
        result.stored += _store_batch(engine, name, uidvalidity, found)
    for uid in oversized:  # never pulled whole into memory: the headers and the start of the body
        data = client.fetch([uid], ["BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{OVERSIZE_PREFIX}>"]).get(uid)
        if data is None:
            continue
        head = bytes(data.get(b"BODY[HEADER]", b""))
        text = bytes(next((v for k, v in data.items() if k.startswith(b"BODY[TEXT]")), b"") or b"")
        if _store(engine, name, uidvalidity, uid, truncated_message(head, text, sizes[uid])):
            result.stored += 1
    _remember(engine, name, uidvalidity, max(uids, default=0))
    move_out(client, uids, cfg.processed_folder)  # only after every stored row is committed
    result.moved = len(uids)
    if uids:
        log.info("imap.polled", mailbox=name, folder=cfg.folder, stored=result.stored, moved=result.moved,
                 already_stored=result.already_stored)
    return result


def _store_batch(engine: sa.Engine, folder: str, uidvalidity: int, found: list[tuple[int, bytes]]) -> int:
    """One commit for a fetched batch; if a concurrent poll stored some already, one commit per message."""
    try:
        with session_scope(engine) as session:
            rows = store_inbound_many(session, found, folder, uidvalidity)
    except IntegrityError:
        return sum(_store(engine, folder, uidvalidity, uid, raw) for uid, raw in found)
    for (uid, _), row in zip(found, rows, strict=True):
        log.info("inbound.stored", inbound_id=row.id, message_id=row.message_id, uid=uid, size=row.size)
    return len(rows)


def _store(engine: sa.Engine, folder: str, uidvalidity: int, uid: int, raw: bytes) -> bool:
    try:
        with session_scope(engine) as session:
            row = store_inbound(session, raw, folder, uidvalidity, uid)
            log.info("inbound.stored", inbound_id=row.id, message_id=row.message_id, uid=uid, size=row.size)
        return True
    except IntegrityError:  # stored already by a concurrent poll: the unique key is the guard
        return False


def _remember(engine: sa.Engine, folder: str, uidvalidity: int, last_uid: int) -> None:
    with session_scope(engine) as session:
        state = session.get(MailboxState, folder) or MailboxState(mailbox=folder)
        if state.uidvalidity not in (None, uidvalidity):
            log.warning("imap.uidvalidity_changed", folder=folder, old=state.uidvalidity, new=uidvalidity)
            state.last_uid = 0
        state.uidvalidity = uidvalidity
        state.last_uid = max(state.last_uid or 0, last_uid)
        state.last_poll_at = utcnow()
        session.add(state)


def mail_waiting(client: IMAPClient) -> bool:
    """The look before IDLE: whether mail is in the folder that IDLE would not announce.

    Mail that arrived since the last SEARCH was announced already (perhaps in the MOVE's untagged responses, which
    imapclient drops) and IDLE will not announce it again. Mail that lands after this look and before IDLE starts
    is not announced either (Dovecot tells of it only at its own check, 30 to 50 s later, measured): the renewal
    (``news``) finds it."""
    return bool(client.search("ALL")) or _announced(client)


def news(client: IMAPClient) -> tuple[bool, set[str]]:
    """The look under a renewed IDLE: NOOP makes the server look at the folder and report what came meanwhile,
    which costs a third of a SEARCH's time (measured on Dovecot) and is done every few seconds per connection.
    Whether mail waits in the folder, and the other folders NOTIFY told of in the answer."""
    _, responses = client.noop()
    return announces_new_mail(responses) or _announced(client), folders_with_news(responses) | news_left(client)


def offers_idle(client: IMAPClient, cfg: ImapConfig) -> bool:
    return cfg.idle and client.has_capability("IDLE")


def notify(client: IMAPClient, folders: Sequence[str], replacing: bool = False) -> bool:
    """RFC 5465 NOTIFY on this connection: besides its selected folder, tell of new mail in ``folders`` (other
    folders of the login, polled) as ``* STATUS`` lines, in IDLE or with any command's answer; none turns it off.

    ``replacing`` a list set before on the connection sends NOTIFY NONE first: Dovecot 2.3 otherwise keeps telling
    only of the first list's folders under IDLE (measured; the others only at the next command). imapclient has no
    NOTIFY, so the command goes out raw. ``STATUS`` makes the server tell at once what each folder holds now: mail
    that came while no connection listened (at start, after a reconnect) is fetched now, not at ``poll_seconds``
    (``news_left`` reads it). False when the server refuses it (a folder it does not know, say): those
    folders are then only polled. A broken connection raises as any command does."""
    commands: list[list[bytes]] = [[b"NONE"]] if replacing or not folders else []
    if folders:
        quoted = (client._normalise_folder(folder) for folder in folders)  # str when folder_encode is off
        names = b" ".join(name if isinstance(name, bytes) else name.encode() for name in quoted)
        events = b"(MessageNew MessageExpunge)"
        commands.append([b"SET", b"STATUS", b"(selected " + events + b") (mailboxes (" + names + b") " + events + b")"])
    try:
        for args in commands:
            client._raw_command_untagged(b"NOTIFY", args, uid=False)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        log.warning("imap.notify_refused", folders=list(folders), error=str(exc))
        return False
    return True


def start_idle(client: IMAPClient) -> bool:
    """IDLE; True when mail in the folder was announced before the server's go-ahead, which IDLE will not tell again.

    imapclient's ``idle()`` takes any line before the ``+`` for an error; with NOTIFY a ``* STATUS`` of another
    folder comes there whenever mail lands at that moment (seen under load: the connection was dropped, and the
    folders' mail waited for their next poll). Such lines are kept for ``news_left`` and ``_announced``."""
    imap = client._imap
    tag = imap._command("IDLE")
    client._idle_tag = tag
    while imap._get_response() is not None:  # None is the continuation
        if imap.tagged_commands.get(tag) is not None:
            raise IMAPClientError(f"IDLE refused: {imap.tagged_commands[tag]!r}")
    return _announced(client)


def folders_with_news(responses: Iterable[tuple[object, ...]]) -> set[str]:
    """The folders a NOTIFY ``* STATUS`` line says hold mail (ours are emptied after each poll)."""
    found = set()
    for response in responses:
        if len(response) == 3 and response[0] == b"STATUS" and isinstance(response[2], tuple):
            counts = dict(zip(response[2][::2], response[2][1::2], strict=False))
            messages = counts.get(b"MESSAGES")
            if isinstance(messages, int) and messages > 0 and isinstance(response[1], bytes | str):
                found.add(decode_folder(response[1]))
    return found


def news_left(client: IMAPClient) -> set[str]:
    """NOTIFY's ``* STATUS`` lines that came with the answers of other commands (a SEARCH, a FETCH), which imapclient
    leaves in imaplib's untagged responses, until the next SELECT throws them away: read before each SELECT, after
    IDLE and before the next one, so no news is lost (it was, under load: mail in polled folders then waited for
    ``poll_seconds``)."""
    lines = client._imap.untagged_responses.pop("STATUS", [])
    return folders_with_news((b"STATUS", *parse_response([line])) for line in lines)


def _announced(client: IMAPClient) -> bool:
    """New mail the server told of in an earlier answer, which IDLE will not tell again.

    Dovecot runs a SEARCH before it looks at the mailbox again and reports what came in meanwhile after the
    results: mail appended since the previous command is missing from ``SEARCH ALL`` and announced as
    ``* n EXISTS`` in the same answer. imapclient leaves that line in imaplib's untagged responses, unread; taken
    from there, it sends us back to fetch at once instead of after ``poll_seconds``. A count left from an earlier
    answer costs one more SEARCH, nothing else."""
    counts = client._imap.untagged_responses.pop("EXISTS", [])
    return bool(counts) and counts[-1].isdigit() and int(counts[-1]) > 0


def announces_new_mail(responses: list[tuple[object, ...]]) -> bool:
    """EXISTS/RECENT with a count above zero: our inbox is emptied after each poll, so that is new mail."""
    return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") and isinstance(r[0], int) and r[0] > 0
               for r in responses)
