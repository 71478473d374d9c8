"""Personal data a person may ask for, or ask to be forgotten, and raw mail that is not kept forever.

- ``export_person``: a zip of what ticketd holds about one address (GDPR art. 15): the customer row, their tickets
  with the conversation agents had with them, their own messages on other people's tickets, the mail sent to them
  and their files. Internal notes and other customers' messages on shared tickets stay out (ISO 10002 §4.7:
  confidentiality towards third parties).
- ``erase_person``: the person's name, addresses and words replaced in every table that can hold them (art. 17),
  raw mail that is theirs or names them deleted, files only they sent deleted. Their tickets stay, marked
  ``erased_at``, with category, company and dates, so reports keep counting them. On SQLite the erase runs with
  ``secure_delete`` and is followed by a WAL checkpoint and ``VACUUM``, so the bytes are gone from the files, not
  only from the rows; on PostgreSQL the touched tables are vacuumed (the WAL and backups keep the old rows until
  they age out: README "Privacy").
- ``purge_raw_mail``: ``[retention] raw_mail_days``. Raw mail is needed to process or retry it; once a row is
  done or dropped its parsed text and files are what the helpdesk uses, so the raw bytes go after that many days.

An erased or purged inbound row keeps its Message-ID hash, so the same mail fetched again is still recognised as
a duplicate; ``raw`` is then empty and ``raw_purged_at`` says when it went.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlmodel import Session, col, select

from ticketd.storage import batch
from ticketd.storage.db import insert_new
from ticketd.storage.inbound import drop_raw
from ticketd.storage.models import (
    SYSTEM_ACTOR,
    Action,
    Attachment,
    Blob,
    Company,
    CostEntry,
    Customer,
    Event,
    Inbound,
    InboundRaw,
    JobRun,
    Message,
    Outbox,
    OutboxAttachment,
    Participant,
    Ticket,
    utcnow,
)

log = structlog.get_logger("ticketd.privacy")

ERASED = "[erased]"
RETENTION_JOB = "retention:raw-mail"
SCAN_BATCH = 200  # raw messages read at once while looking for an address: bounded memory on big tables
PURGE_BATCH = 500  # rows per purge transaction: a first purge of years of mail does not hold one huge transaction
# Tables an erase rewrites; PostgreSQL vacuums them afterwards so the old row versions are not kept in the heap.
TOUCHED_TABLES = ("customer", "ticket", "message", "attachment", "blob", "inbound", "inbound_raw", "participant",
                  "event", "outbox", "outbox_attachment")


class UnknownPerson(LookupError):
    """Nothing in the database carries the address: the operator mistyped it, or it was erased already."""


def normalise(email: str) -> str:
    return email.strip().lower()


def anonymous_address(customer_id: int | None) -> str:
    """``.invalid`` (RFC 2606) can never receive mail, so a forgotten customer cannot be written to by mistake."""
    return f"erased-{customer_id if customer_id is not None else 'participant'}@invalid"


def safe_filename(name: str, fallback: str = "file") -> str:
    """A name that cannot leave the export's folder nor disguise itself: no path, no control or bidi characters
    (``invoice\\u202efdp.exe``), no leading dot."""
    cleaned = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] not in "CZ"
                      or c == " ")
    cleaned = cleaned.replace("/", "_").replace("\\", "_").strip(" .")
    return cleaned[:120] or fallback


# --- export -------------------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _find_customer(session: Session, email: str) -> Customer | None:
    return session.exec(select(Customer).where(sa.func.lower(Customer.email) == email)).first()


def _participant_ticket_ids(session: Session, email: str) -> list[int]:
    return list(session.exec(select(Participant.ticket_id).where(sa.func.lower(Participant.email) == email)))


def _requester_tickets(session: Session, customer: Customer | None) -> list[Ticket]:
    if customer is None:
        return []
    return list(session.exec(select(Ticket).where(Ticket.requester_id == customer.id).order_by(col(Ticket.number))))


def _message_json(session: Session, m: Message, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    attachments = []
    for a in session.exec(select(Attachment).where(Attachment.message_pk == m.id).order_by(col(Attachment.id))):
        blob = session.get(Blob, a.sha256)
        path = f"attachments/{a.id}-{safe_filename(a.filename)}"
        if blob is not None:
            files.append((path, blob.data))
        attachments.append({"filename": a.filename, "content_type": a.content_type, "size": a.size,
                            "sha256": a.sha256, "file": path if blob is not None else None})
    return {"message_id": m.message_id, "direction": m.direction, "kind": m.kind, "from": m.from_addr,
            "from_name": m.from_name, "to": m.to_addrs, "cc": m.cc_addrs, "subject": m.subject,
            "date": _iso(m.date or m.created_at), "text": m.text, "html": m.html, "attachments": attachments}


def export_person(session: Session, email: str, now: datetime | None = None) -> bytes:
    """The zip ``customers export`` writes: ``person.json`` and ``attachments/<id>-<name>``.

    On their own tickets they get the whole conversation except internal notes, and the ticket's history; on
    tickets where they were only copied, only the messages they wrote (the rest is the requester's business).
    """
    email = normalise(email)
    customer = _find_customer(session, email)
    requested = _requester_tickets(session, customer)
    own_ids = {t.id for t in requested}
    copied_ids = [i for i in _participant_ticket_ids(session, email) if i not in own_ids]
    if customer is None and not copied_ids:
        raise UnknownPerson(email)
    files: list[tuple[str, bytes]] = []
    tickets = []
    for t in requested:
        messages = session.exec(select(Message).where(Message.ticket_id == t.id, Message.kind != "note")
                                .order_by(col(Message.id)))
        batch.flush(session)
        events = session.exec(select(Event).where(Event.ticket_id == t.id).order_by(col(Event.id)))
        tickets.append({
            "number": t.number, "role": "requester", "subject": t.subject, "state": t.state, "type": t.type,
            "category": t.category, "priority": t.priority, "created_at": _iso(t.created_at),
            "closed_at": _iso(t.closed_at), "resolution": t.resolution, "satisfaction": t.satisfaction,
            "messages": [_message_json(session, m, files) for m in messages],
            "events": [{"what": e.what, "actor": e.actor, "old": e.old, "new": e.new, "at": _iso(e.at)}
                       for e in events],
        })
    for ticket_id in copied_ids:
        copied = session.get(Ticket, ticket_id)
        if copied is None:
            continue
        messages = session.exec(select(Message).where(Message.ticket_id == ticket_id,
                                                      sa.func.lower(Message.from_addr) == email)
                                .order_by(col(Message.id)))
        tickets.append({"number": copied.number, "role": "participant",
                        "messages": [_message_json(session, m, files) for m in messages]})
    sent = session.exec(select(Outbox).where(sa.func.lower(Outbox.recipient) == email).order_by(col(Outbox.id)))
    person = {
        "exported_at": _iso(now or utcnow()),
        "email": email,
        "customer": None if customer is None else {
            "email": customer.email, "name": customer.name, "phone": customer.phone, "language": customer.language,
            "company": customer.company_id and _company_name(session, customer.company_id),
            "blocked": customer.blocked, "created_at": _iso(customer.created_at)},
        "tickets": tickets,
        "mail_sent_to_them": [{"kind": o.kind, "subject": o.subject, "body": o.body, "status": o.status,
                               "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at)} for o in sent],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("person.json", json.dumps(person, ensure_ascii=False, indent=2))
        written: set[str] = set()
        for path, data in files:
            if path not in written:  # a file quoted in two messages is one attachment id: written once
                archive.writestr(path, data)
                written.add(path)
    return buffer.getvalue()


def _company_name(session: Session, company_id: int) -> str | None:
    company = session.get(Company, company_id)
    return company.name if company else None


# --- erase --------------------------------------------------------------------------------------------------

@dataclass
class Erasure:
    """What an erase changed, counted per table; printed by the CLI and recorded (without any data) as an event."""

    customer: int = 0
    tickets: int = 0
    messages: int = 0
    attachments: int = 0
    blobs: int = 0
    raw_mail: int = 0
    participants: int = 0
    events: int = 0
    outbox: int = 0
    outbox_attachments: int = 0

    def summary(self) -> str:
        return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in asdict(self).items())


class _Scrubber:
    """Replaces the person's address and name wherever they occur in someone else's text (case-insensitive)."""

    def __init__(self, email: str, name: str | None, subjects: list[str] | None = None) -> None:
        # Their tickets' subjects are their words too, and mail about several tickets (an agent's digest, a
        # notification listing tickets) repeats them outside their tickets. Short ones ("Help") would blank
        # other people's text: only subjects of 8 characters and more.
        words = [email] + ([name] if name and len(name.strip()) >= 3 else [])
        words += [s for s in (subjects or []) if len(s.strip()) >= 8]
        self.words = sorted({w.strip() for w in words}, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(w) for w in self.words), re.IGNORECASE)

    def __call__(self, value: str | None) -> str | None:
        return self.pattern.sub(ERASED, value) if value else value

    def found(self, value: str | None) -> bool:
        return bool(value) and self.pattern.search(value or "") is not None

    def raw_found(self, raw: bytes) -> bool:
        lowered = raw.lower()
        return any(w.lower().encode() in lowered for w in self.words)

    def mentions(self, *columns: Any) -> Any:
        """A SQL pre-filter (LIKE; ``_`` matching too much is fine, ``_Scrubber.found`` decides)."""
        return sa.or_(*(sa.func.lower(c).contains(w.lower(), autoescape=True) for c in columns for w in self.words))


@contextmanager
def _erasing_session(engine: sa.Engine) -> Iterator[Session]:
    """On SQLite, ``secure_delete`` on the connection that does the erase: freed cells and pages are zeroed, not
    left in the file for anyone with a hex editor."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
            conn.commit()
        try:
            with Session(bind=conn, expire_on_commit=False) as session:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA secure_delete=OFF")
                conn.commit()


def compact(engine: sa.Engine, full: bool = False) -> str:
    """After an erase: SQLite's WAL copied into the file and emptied, and the file rebuilt; PostgreSQL's touched
    tables vacuumed. Returns what happened, for the operator.

    A plain PostgreSQL ``VACUUM`` marks the old row versions' space free but does not overwrite it (measured: the
    erased words were still in the table files afterwards); ``full`` rewrites the tables into new files
    (``VACUUM FULL``), which locks each table while it runs, so it is the operator's choice.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if conn.dialect.name == "sqlite":
            busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
            try:
                conn.exec_driver_sql("VACUUM")
            except sa.exc.OperationalError as exc:  # the daemon mid-write past the busy timeout
                return (f"rows erased and freed pages zeroed (secure_delete); VACUUM could not run now ({exc.orig}):"
                        " run the erase again later to rebuild the file")
            busy = busy or conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
            if busy:  # a reader (the daemon's) held old pages: they are overwritten at its next checkpoint
                return "database rebuilt (VACUUM); the WAL is still in use by a reader, checkpointed later"
            return "database rebuilt (VACUUM) and its WAL emptied"
        try:
            conn.exec_driver_sql(("VACUUM FULL " if full else "VACUUM ") + ", ".join(f'"{t}"' for t in TOUCHED_TABLES))
        except sa.exc.DBAPIError as exc:  # not the tables' owner: the rows are rewritten, autovacuum comes later
            return f"rows rewritten; VACUUM not allowed here ({exc.orig}), autovacuum will reclaim them"
        if full:
            return "rows rewritten and the tables rebuilt into new files (VACUUM FULL)"
        return ("rows rewritten and the tables vacuumed; the old versions' bytes stay in the table files until "
                "reused (--vacuum-full rewrites them) and in the WAL and backups until those age out")


def _drop_orphan_blobs(session: Session, hashes: set[str]) -> int:
    """Delete the bytes no attachment nor outgoing file uses any more: a logo others sent too stays."""
    gone = 0
    for sha in sorted(hashes):
        used = session.exec(select(Attachment.id).where(Attachment.sha256 == sha).limit(1)).first() is not None
        used = used or session.exec(select(OutboxAttachment.id).where(OutboxAttachment.sha256 == sha)
                                    .limit(1)).first() is not None
        if not used:
            gone += session.exec(sa.delete(Blob).where(col(Blob.sha256) == sha)).rowcount or 0
    return gone


def erase_person(engine: sa.Engine, email: str, now: datetime | None = None) -> Erasure:
    """Forget ``email`` in one transaction; raises ``UnknownPerson`` when nothing carries the address."""
    now = now or utcnow()
    email = normalise(email)
    with _erasing_session(engine) as session:
        counts = _erase(session, email, now)
    log.info("privacy.erased", **asdict(counts))  # counts only: the address is exactly what must not be logged
    return counts


def _erase(session: Session, email: str, now: datetime) -> Erasure:
    counts = Erasure()
    customer = _find_customer(session, email)
    copied = _participant_ticket_ids(session, email)
    if customer is None and not copied:
        raise UnknownPerson(email)
    requested = _requester_tickets(session, customer)
    scrub = _Scrubber(email, customer.name if customer else None, [t.subject for t in requested])
    anon = anonymous_address(customer.id if customer else None)
    own = {t.id for t in requested if t.id is not None}

    # Messages: on their own tickets every message carries their words (agents' replies quote them), elsewhere
    # the ones they wrote; any other message naming them has the name and address replaced.
    hashes: set[str] = set()
    inbound_ids: set[int] = set()
    wholly = sa.or_(col(Message.ticket_id).in_(own), sa.func.lower(Message.from_addr) == email)
    for m in session.exec(select(Message).where(sa.or_(wholly, scrub.mentions(
            Message.from_addr, Message.from_name, Message.to_addrs, Message.cc_addrs, Message.subject,
            Message.text, Message.html, Message.message_id, Message.in_reply_to, Message.references)))):
        if m.ticket_id in own or m.from_addr.lower() == email:
            m.subject, m.text, m.html = ERASED, "", None
            if m.from_addr.lower() == email:
                m.from_addr, m.from_name = anon, None
            for a in session.exec(select(Attachment).where(Attachment.message_pk == m.id)):
                hashes.add(a.sha256)
                session.delete(a)
                counts.attachments += 1
            if m.inbound_id is not None:
                inbound_ids.add(m.inbound_id)
        m.from_name = scrub(m.from_name)
        m.subject, m.text, m.html = scrub(m.subject) or "", scrub(m.text) or "", scrub(m.html)
        m.to_addrs, m.cc_addrs = scrub(m.to_addrs) or "", scrub(m.cc_addrs) or ""
        # Some mailers build the Message-ID from the sender's address: it goes too, and with it the threading of
        # later replies to that mail (they open a ticket of their own).
        m.message_id = scrub(m.message_id) or m.message_id
        m.in_reply_to, m.references = scrub(m.in_reply_to), scrub(m.references)
        counts.messages += 1

    # Outgoing mail: to them or on their tickets it is about them; elsewhere their name and address go.
    for o in session.exec(select(Outbox).where(sa.or_(col(Outbox.ticket_id).in_(own), scrub.mentions(
            Outbox.recipient, Outbox.to_addrs, Outbox.cc_addrs, Outbox.subject, Outbox.body, Outbox.html)))):
        if o.ticket_id in own or o.recipient.lower() == email:
            o.subject, o.body, o.html = ERASED, "", None
            if o.status in ("queued", "failed"):  # never sent now: the address it would go to is gone
                o.status, o.last_error = "superseded", "personal data erased"
            for f in session.exec(select(OutboxAttachment).where(OutboxAttachment.outbox_id == o.id)):
                hashes.add(f.sha256)
                session.delete(f)
                counts.outbox_attachments += 1
        o.subject, o.body, o.html = scrub(o.subject) or "", scrub(o.body) or "", scrub(o.html)
        o.to_addrs, o.cc_addrs, o.recipient = scrub(o.to_addrs) or "", scrub(o.cc_addrs) or "", scrub(o.recipient) or ""
        o.headers = {k: scrub(v) or "" for k, v in (o.headers or {}).items()}
        counts.outbox += 1
    for o in session.exec(select(Outbox).where(col(Outbox.id).in_(
            select(Outbox.id).where(sa.func.lower(sa.cast(Outbox.headers, sa.String)).contains(email))))):
        o.headers = {k: scrub(v) or "" for k, v in (o.headers or {}).items()}  # only a header named them

    session.flush()
    counts.blobs = _drop_orphan_blobs(session, hashes)

    # Raw mail: theirs, on their tickets, or naming them anywhere (a mail they were only copied on). The address
    # is searched in the bytes, a batch at a time.
    erased_raw = select(Inbound).where(sa.or_(col(Inbound.id).in_(inbound_ids), col(Inbound.ticket_id).in_(own)),
                                       col(Inbound.raw_purged_at).is_(None))
    rows = list(session.exec(erased_raw))
    last = 0
    while True:
        chunk = session.execute(select(InboundRaw.inbound_id, InboundRaw.raw).where(col(InboundRaw.inbound_id) > last)
                                .order_by(col(InboundRaw.inbound_id)).limit(SCAN_BATCH)).all()
        if not chunk:
            break
        last = chunk[-1][0]
        hits = [row_id for row_id, raw in chunk if scrub.raw_found(raw) and row_id not in {r.id for r in rows}]
        rows.extend(session.exec(select(Inbound).where(col(Inbound.id).in_(hits))))
    drop_raw(session, [row.id for row in rows if row.id is not None])
    for row in session.exec(select(Inbound).where(scrub.mentions(Inbound.message_id, Inbound.reason))):
        row.reason, row.message_id = scrub(row.reason), scrub(row.message_id)  # purged earlier, or another's
    for row in rows:
        row.raw_purged_at, row.reason, row.message_id = now, scrub(row.reason), scrub(row.message_id)
        if row.status in ("new", "failed"):  # without its bytes it can never be processed: say why
            row.status, row.reason = "dropped", "personal data erased"
        counts.raw_mail += 1

    counts.participants = session.exec(
        sa.delete(Participant).where(sa.func.lower(Participant.email) == email)).rowcount or 0

    batch.flush(session)  # events written earlier in this transaction are searched too
    for e in session.exec(select(Event).where(sa.or_(sa.func.lower(Event.actor) == email,
                                                     scrub.mentions(Event.old, Event.new, Event.what,
                                                                    Event.via_message_id)))):
        e.actor = anon if e.actor.lower() == email else e.actor
        e.what, e.old, e.new = scrub(e.what) or "", scrub(e.old), scrub(e.new)
        e.via_message_id = scrub(e.via_message_id)
        counts.events += 1

    for c in session.exec(select(CostEntry).where(col(CostEntry.ticket_id).in_(own))):  # a reason may name them
        c.reason = scrub(c.reason)
    for t in requested:
        t.subject, t.erased_at = ERASED, now
        t.root_cause, t.action_plan, t.resolution = scrub(t.root_cause), scrub(t.action_plan), scrub(t.resolution)
        batch.event(session, ticket_id=t.id, actor=SYSTEM_ACTOR, what="privacy:erased", at=now)
        counts.tickets += 1
    if requested:  # an action's text and result may quote the customer, like the root cause
        for action in session.exec(select(Action).where(col(Action.ticket_id).in_([t.id for t in requested]))):
            action.what, action.result = scrub(action.what) or "", scrub(action.result)
    if customer is not None:
        customer.email, customer.name, customer.phone, customer.erased_at = anon, None, None, now
        counts.customer = 1
    # One record of the erase itself, without the erased data: who (by row id), when, how much.
    batch.event(session, ticket_id=None, actor=SYSTEM_ACTOR, what="privacy:erased",
                old=f"customer {customer.id}" if customer else "participant only",
                new=counts.summary(), at=now)
    return counts


# --- retention ----------------------------------------------------------------------------------------------

def purge_raw_mail(engine: sa.Engine, days: int, now: datetime | None = None) -> int | None:
    """Delete the raw bytes of processed mail (done or dropped) received more than ``days`` ago; ``new`` and
    ``failed`` rows keep theirs, they still need them to be processed or retried. Returns the rows purged, or
    None when another instance already ran this hour's purge (its ``job_run`` row won).
    """
    if days <= 0:
        return 0
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    with _erasing_session(engine) as session:  # secure_delete: purged mail is gone from the file, too
        # The hour's slot, taken by the first instance to insert it; the others see the conflict and skip.
        slot = {"job": RETENTION_JOB, "slot": f"{now.astimezone(UTC):%Y-%m-%dT%H}", "at": now}
        claim = insert_new(session.connection(), JobRun.__table__, slot, ("job", "slot"))  # type: ignore[attr-defined]  # SQLModel sets __table__ without declaring it
    if not claim:
        return None
    total = 0
    while True:
        with _erasing_session(engine) as session:
            ids = [i for i in session.exec(select(Inbound.id).where(
                col(Inbound.status).in_(["done", "dropped"]), col(Inbound.received_at) < cutoff,
                col(Inbound.raw_purged_at).is_(None)).order_by(col(Inbound.id)).limit(PURGE_BATCH)
                .with_for_update(skip_locked=True)) if i is not None]  # a key is never None
            if ids:
                drop_raw(session, ids)
                session.execute(sa.update(Inbound).where(col(Inbound.id).in_(ids),
                                                         col(Inbound.raw_purged_at).is_(None))
                                .values(raw_purged_at=now))
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            break
    if total:
        with _erasing_session(engine) as session:
            batch.event(session, ticket_id=None, actor=SYSTEM_ACTOR, what="retention:raw-mail-purged",
                        old=f"received before {cutoff.isoformat()}", new=f"{total} raw messages",
                        at=now)
    log.info("retention.raw_mail_purged", purged=total, days=days, cutoff=cutoff.isoformat())
    return total


