"""One inbound message's trip, top to bottom.

``process_inbound`` is the list of stages; each stage is a plain function with explicit inputs and outputs.
The whole trip runs inside one database transaction (shared by a batch of messages): either the ticket,
message, attachments, events, outbox rows and the inbound row's new status are all committed, or none is; a
batch that fails is redone one message per transaction, and the failing row is marked failed with its error
(in a fresh transaction) so it can be retried from the CLI. One bad message never blocks the others. Every
mail takes the same stages, and every stage writes its rows the same way (``storage.batch``: plain INSERTs in
the batch's transaction, no ORM flush).

Each message reads the clock once (``clock``, the wall clock unless a caller pins it) and every stage uses
that reading: a ticket's opening time and the deadlines counted from it are the same instant, whatever the
hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select, SelectOfScalar

from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import storm
from ticketd.daemon.outgoing.outbox import alert_admin
from ticketd.daemon.service.metrics import Metrics
from ticketd.daemon.stages import loops
from ticketd.daemon.stages.agent_mail import handle_agent_mail
from ticketd.daemon.stages.bounce_mail import handle_bounce
from ticketd.daemon.stages.conversation import Incoming, Outcome
from ticketd.daemon.stages.customer_mail import handle_customer_mail
from ticketd.mailtemplates.render import LANGUAGES as TEMPLATE_LANGUAGES
from ticketd.parsers.message import ParsedMail, answered_hashes, message_id_hash, parse_message
from ticketd.parsers.mime import read_mime
from ticketd.parsers.subject import parse_subject
from ticketd.rules.bounces import detect_bounce, is_feedback_report
from ticketd.rules.channels import SOURCE_HEADER, FormChoices, form_choices, from_web_form
from ticketd.rules.commands import TYPES
from ticketd.rules.identify import identify_sender
from ticketd.rules.match import match_ticket
from ticketd.rules.screen import ScreenContext, Verdict, screen
from ticketd.storage.db import reachable, session_scope, shared
from ticketd.storage.inbound import load_heads, load_raw
from ticketd.storage.models import Inbound, Ticket, utcnow

log = structlog.get_logger("ticketd.pipeline")


# --- the trip -----------------------------------------------------------------------------------------------

def process_inbound(session: Session, config: Config, inbound: Inbound, now: datetime,
                    defer: bool = False) -> Outcome:
    storm.answering(session, False)
    assert inbound.id is not None
    mime = read_mime(load_raw(session, inbound.id))  # parsed once, for every reader below; gone at return
    mail = parse_message(mime)
    duplicate_of = find_duplicate(session, inbound)
    if duplicate_of is not None:
        return finish(inbound, Outcome("dropped", reason=f"duplicate of inbound #{duplicate_of}"), now)
    if is_feedback_report(mime):
        return finish(inbound, Outcome("dropped", reason="abuse feedback report (ARF)"), now)
    bounce = detect_bounce(mime)
    if bounce is not None:
        return finish(inbound, handle_bounce(session, config, inbound, mail, bounce), now)
    mail, source, form = attribute_channel(config, mail, inbound)
    answered = storm.automatic_mail_answered(session, [r for r in (mail.in_reply_to, *mail.references) if r])
    storm.answering(session, answered is not None)  # marks the mail this one causes, for the circuit breaker
    screening = screen(mail, ScreenContext(our_addresses=config.our_addresses(),
                                           web_form=source == "web"))
    if screening.verdict is Verdict.DROP or mail.sender is None:
        return finish(inbound, Outcome("dropped", reason=f"{screening.rule}: {screening.reason}"), now)
    subject = parse_subject(mail.subject, config.helpdesk.tag)
    sender = identify_sender(session, mail.sender)
    match = match_ticket(session, config.auth, mail, subject, sender, now)
    if match.ticket is None and defer and answers_mail_in_flight(session, inbound, mail, now):
        return Outcome("deferred", reason="the mail it answers is not processed yet")
    loop = loops.answers_us_automatically(session, mail, subject, sender, screening, match, answered)
    if loop is not None:
        incoming = Incoming(session, config, inbound, mail, loop, sender, subject, match, now, source, form)
        return finish(inbound, loops.record_unanswered(incoming), now)
    incoming = Incoming(session, config, inbound, mail, screening, sender, subject, match, now, source, form)
    if sender.agent is not None and screening.verdict is Verdict.CONTINUE and form is None:
        outcome = handle_agent_mail(incoming)
    else:
        outcome = handle_customer_mail(incoming)
    return finish(inbound, outcome, now)


# --- stages -------------------------------------------------------------------------------------------------

def hold_conversations(session: Session, rows: list[Inbound]) -> None:
    """On PostgreSQL, lock the batch's Message-IDs and the ones they answer until its transaction ends.

    Two instances processing mail of one conversation at the same moment (a request and its reply, which came by
    different mailboxes; two copies of one request) would each look for the other, not see it (not committed
    yet) and open a ticket each. Holding the same lock, the second waits for the first's commit, and its lookups,
    each a new snapshot, then find it. A batch takes all its locks at once, in ascending order, before it writes
    anything: two batches can wait for each other's locks only one way round, never in a cycle (a deadlock).
    SQLite has one writer: nothing to hold.
    """
    if not rows or not shared(session.get_bind()):
        return
    hashes: set[str] = {row.message_id_hash for row in rows}
    for head in load_heads(session, [row.id for row in rows if row.id is not None]).values():
        hashes.update(answered_hashes(head))  # the header blocks only: a batch may hold many big mails
    keys = sorted({int(h[:15], 16) for h in hashes})
    session.connection().execute(sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                                 {"keys": keys})


def attribute_channel(config: Config, mail: ParsedMail,
                      inbound: Inbound) -> tuple[ParsedMail, str, FormChoices | None]:
    """A web form's mail is its customer's request. ticketd's own form (a row its form server stored) already
    reads as sent by the customer, and carries their choices; a form mailer's (``[[webforms]]``) names them in
    its body. Whoever a form names is a customer there: typing an agent's address into it steers nothing."""
    if inbound.channel == "web" and mail.header(SOURCE_HEADER) == "web":
        return mail, "web", form_choices(mail, TYPES, config.categories.all(), TEMPLATE_LANGUAGES)
    if config.web_forms:
        attributed = from_web_form(mail, config.web_forms)
        if attributed is not None:
            return attributed, "web", None
    return mail, "email", None


# The per-mail statements below are built once and run on the transaction's connection: building one (and its
# cache key) for every mail cost more than running it. Inbound rows change only by these plain statements.
_SAME_MAIL = select(Inbound.id, Inbound.status).where(Inbound.message_id_hash == sa.bindparam("hash"))


def find_duplicate(session: Session, inbound: Inbound) -> int | None:
    """The same mail fetched again (UIDVALIDITY change, two folders, a redelivery) is processed once.

    Only the hash narrows the query: with ``status`` in the WHERE clause SQLite picked the status index and
    scanned every processed row, so intake slowed down as the table grew.
    """
    same = session.connection().execute(_SAME_MAIL, {"hash": inbound.message_id_hash})
    return next((row_id for row_id, status in same if row_id != inbound.id and status == "done"), None)


DEFER_AT_MOST = timedelta(minutes=5)


def answers_mail_in_flight(session: Session, inbound: Inbound, mail: ParsedMail, now: datetime) -> bool:
    """A reply whose parent is stored but not processed yet (taken by another instance at this moment, or
    stored later from another mailbox) waits for it, or it would open a second ticket for one conversation.
    Only for a while: a parent that never gets processed must not hold its reply forever."""
    refs = [r for r in (mail.in_reply_to, *mail.references) if r]
    if not refs or inbound.received_at < now - DEFER_AT_MOST:
        return False
    hashes = [message_id_hash(ref, b"") for ref in refs]
    waiting = select(Inbound.id).where(col(Inbound.message_id_hash).in_(hashes), Inbound.status == "new",
                                       Inbound.id != inbound.id).limit(1)
    return session.exec(waiting).first() is not None


_FINISH = sa.update(Inbound).where(col(Inbound.id) == sa.bindparam("row_id"))  # SET: the columns passed


def finish(inbound: Inbound, outcome: Outcome, now: datetime) -> Outcome:
    """Record the outcome on the inbound row with one plain UPDATE (the ORM object is told, not dirtied)."""
    session = Session.object_session(inbound)
    assert session is not None
    values = {"status": outcome.status, "reason": outcome.reason, "processed_at": now,
              "attempts": inbound.attempts + 1, "ticket_id": inbound.ticket_id}
    if outcome.ticket_number is not None:
        values["ticket_id"] = outcome.ticket_id or inbound_ticket_id(inbound, outcome)
    session.connection().execute(_FINISH, {"row_id": inbound.id, **values})
    for key, value in values.items():
        set_committed_value(inbound, key, value)
    return outcome


def inbound_ticket_id(inbound: Inbound, outcome: Outcome) -> int | None:
    session = Session.object_session(inbound)
    assert isinstance(session, Session)
    return session.exec(select(Ticket.id).where(Ticket.number == outcome.ticket_number)).first()


# --- running it over stored rows ----------------------------------------------------------------------------

BATCH_SIZE = 50
# A batch also stops at this many bytes of raw mail (but always takes one message): 40 mails of 20 MB in one
# batch of 50 held 800 MiB of raw at once and peaked at 1,168 MiB RSS. Raw is read one message at a time
# anyway (``load_raw``); the bound keeps what a batch's transaction writes, and so holds, in proportion.
BATCH_BYTES = 16 * 1024 * 1024
Clock = Callable[[], datetime]


def batches(sizes: list[tuple[int, int]]) -> list[list[int]]:
    """(id, size) in order, cut into batches of at most ``BATCH_SIZE`` messages and ``BATCH_BYTES`` bytes of raw
    mail; a message bigger than the budget is a batch of its own."""
    count, budget = BATCH_SIZE, BATCH_BYTES
    result: list[list[int]] = []
    current: list[int] = []
    used = 0
    for inbound_id, size in sizes:
        if current and (len(current) >= count or used + size > budget):
            result.append(current)
            current, used = [], 0
        current.append(inbound_id)
        used += size
    if current:
        result.append(current)
    return result


def process_pending(engine: sa.Engine, config: Config, ids: list[int] | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    after_batch: Callable[[], None] = lambda: None, clock: Clock = utcnow,
                    metrics: Metrics | None = None) -> list[Outcome]:
    """Process every ``new`` inbound row (or the given ones) in batches of ``BATCH_SIZE``.

    Each batch is claimed inside its transaction with ``FOR UPDATE SKIP LOCKED``: instances sharing a
    PostgreSQL database take different rows, and the rows of one that dies are free again at once (SQLite has
    one instance and ignores the clause). A deferred reply is taken again once a batch made progress.
    ``should_stop`` is checked between messages: a stopping daemon finishes the current one, commits the
    batch so far, and leaves the rest ``new`` for the next start. ``after_batch`` runs after each commit,
    so the daemon sends a batch's mail at once instead of after the whole backlog. ``metrics`` are the
    daemon's; a one-shot caller leaves them out and the counts go to a private registry.
    """
    metrics = metrics or Metrics()
    outcomes: list[Outcome] = []
    if ids is not None:  # an operator's choice (retry, deliver): done now, in the order given
        with Session(engine) as session:
            known = dict(session.exec(select(Inbound.id, Inbound.size).where(col(Inbound.id).in_(ids))).all())
        for chunk in batches([(i, known.get(i, 0)) for i in ids]):
            if should_stop():
                break
            outcomes.extend(o for _, o in process_batch(engine, config, chunk, should_stop, clock=clock,
                                                        metrics=metrics))
            after_batch()
        return outcomes
    deferred: set[int] = set()
    progressed = False
    while not should_stop():
        batch = process_batch(engine, config, None, should_stop, skip=deferred, clock=clock, metrics=metrics)
        if not batch:
            if deferred and progressed:  # the mail they answer may be done now
                deferred.clear()
                progressed = False
                continue
            break
        for inbound_id, outcome in batch:
            if outcome.status == "deferred":
                deferred.add(inbound_id)
            else:
                progressed = True
                outcomes.append(outcome)
        after_batch()
    return outcomes


def process_batch(engine: sa.Engine, config: Config, ids: list[int] | None,
                  should_stop: Callable[[], bool] = lambda: False,
                  skip: set[int] | None = None, clock: Clock = utcnow,
                  metrics: Metrics | None = None) -> list[tuple[int, Outcome]]:
    """Many messages, one transaction: the commit, the session and the lookups are paid once per batch.

    Without ``ids`` the batch is the oldest ``new`` rows nobody else is working on, claimed in this transaction
    with ``FOR UPDATE SKIP LOCKED``: instances sharing a PostgreSQL database take different rows, and the rows
    of one that dies are free again at once (SQLite has one instance and ignores the clause). Rows the caller
    names are locked the same way; one another instance holds is left to it. The guarantees stay per message:
    nothing is committed unless the whole batch is, and a batch that fails anywhere is rolled back and redone
    one message per transaction, so the bad message alone is quarantined and the others go through. Logs and
    metrics are written only after the commit they describe.
    """
    metrics = metrics or Metrics()
    handled: list[tuple[int, str | None, Outcome, float]] = []
    defer = ids is None
    todo: list[int] = list(ids or [])
    try:
        with session_scope(engine) as session:
            if ids is None:
                todo = claim(session, skip or set())
                rows = {row.id: row for row in session.exec(lock_rows(todo))}
            else:
                rows = {row.id: row for row in session.exec(lock_rows(ids))}
            hold_conversations(session, list(rows.values()))
            for inbound_id in todo:
                if should_stop():
                    break
                inbound = rows.get(inbound_id)
                if inbound is None:
                    handled.append((inbound_id, None, taken_elsewhere(session, inbound_id), 0.0))
                    continue
                started = time.perf_counter()
                outcome = process_inbound(session, config, inbound, clock(), defer=defer)
                handled.append((inbound_id, inbound.message_id, outcome, time.perf_counter() - started))
    except Exception as exc:  # find the culprit: one transaction per message, the bad one quarantined alone
        if not reachable(engine):
            raise  # the database's failure, not a mail's: every row stays new for the loop's next try
        log.warning("batch.redo_one_by_one", size=len(todo), error=f"{type(exc).__name__}: {exc}"[:500])
        return [(i, process_one(engine, config, i, defer, clock, metrics)) for i in todo if not should_stop()]
    for inbound_id, message_id, outcome, seconds in handled:
        if outcome.status == "deferred":
            if outcome.reason != TAKEN:
                log.info("inbound.deferred", inbound_id=inbound_id, message_id=message_id, reason=outcome.reason)
            continue
        metrics.processed(outcome.status, seconds)
        log.info("inbound.processed", inbound_id=inbound_id, message_id=message_id,
                 status=outcome.status, ticket=outcome.ticket_number, reason=outcome.reason,
                 new_ticket=outcome.new_ticket)
    return [(inbound_id, outcome) for inbound_id, _, outcome, _ in handled]


def claim(session: Session, skip: set[int]) -> list[int]:
    """The next batch: the oldest free ``new`` rows up to ``BATCH_SIZE`` and ``BATCH_BYTES``, locked for this
    transaction with ``FOR UPDATE SKIP LOCKED`` (instances sharing PostgreSQL take different rows).

    The sizes of the oldest rows say how many make a batch; that many free rows are then locked (rows another
    instance holds are passed over, as before), and cut to the byte budget again in case the free ones are bigger.
    No raw is read here.
    """
    def new_rows() -> Select[int, int]:
        stmt = select(Inbound.id, Inbound.size).where(Inbound.status == "new")
        return stmt.where(col(Inbound.id).not_in(skip)) if skip else stmt  # type: ignore[return-value]  # ids: never NULL

    sizes = session.exec(new_rows().order_by(col(Inbound.id)).limit(BATCH_SIZE)).all()
    if not sizes:
        return []
    wanted = len(batches([(i, size) for i, size in sizes])[0])
    locked = session.exec(new_rows().order_by(col(Inbound.id)).limit(wanted)
                          .with_for_update(skip_locked=True)).all()
    return batches([(i, size) for i, size in locked])[0] if locked else []


TAKEN = "taken by another instance"


def lock_rows(ids: list[int], only_new: bool = False) -> SelectOfScalar[Inbound]:
    """The rows (their raw bytes are in ``inbound_raw``, read at each message's turn)."""
    stmt = select(Inbound).where(col(Inbound.id).in_(ids))
    if only_new:
        stmt = stmt.where(Inbound.status == "new")
    return stmt.order_by(col(Inbound.id)).with_for_update(skip_locked=True)


def taken_elsewhere(session: Session, inbound_id: int) -> Outcome:
    """A row missing from the locked set: gone, or another instance's (working on it, or done with it)."""
    if session.get(Inbound, inbound_id) is None:
        return Outcome("failed", reason="no such inbound row")
    return Outcome("deferred", reason=TAKEN)


def process_one(engine: sa.Engine, config: Config, inbound_id: int, defer: bool = False,
                clock: Clock = utcnow, metrics: Metrics | None = None) -> Outcome:
    started = time.perf_counter()
    outcome = _process_one(engine, config, inbound_id, defer, clock)
    if outcome.status != "deferred":
        (metrics or Metrics()).processed(outcome.status, time.perf_counter() - started)
    return outcome


def _process_one(engine: sa.Engine, config: Config, inbound_id: int, defer: bool, clock: Clock) -> Outcome:
    bound = log.bind(inbound_id=inbound_id)
    try:
        with session_scope(engine) as session:
            inbound = session.exec(lock_rows([inbound_id], only_new=defer)).first()
            if inbound is None:
                return taken_elsewhere(session, inbound_id)
            hold_conversations(session, [inbound])
            bound = bound.bind(message_id=inbound.message_id)
            outcome = process_inbound(session, config, inbound, clock(), defer=defer)
    except Exception as exc:  # quarantine: keep the row, its error, and move on
        if not reachable(engine):
            raise  # not this mail's fault: it stays new, and nothing is half-recorded against it
        error = f"{type(exc).__name__}: {exc}"
        bound.exception("inbound.failed", error=error)
        with session_scope(engine) as session:
            inbound = session.get(Inbound, inbound_id)
            if inbound is not None:
                inbound.status, inbound.reason = "failed", error[:2000]
                inbound.attempts += 1
                inbound.processed_at = utcnow()
                alert_admin(session, config, "quarantined mail",
                            f"inbound {inbound_id} ({inbound.message_id or 'no Message-ID'}) failed: {error}\n"
                            f"Retry it with `ticketd inbound retry {inbound_id}` once the cause is fixed.")
        return Outcome("failed", reason=error)
    if outcome.status == "deferred":
        bound.info("inbound.deferred", reason=outcome.reason)
        return outcome
    bound.info("inbound.processed", status=outcome.status, ticket=outcome.ticket_number,
               reason=outcome.reason, new_ticket=outcome.new_ticket)
    return outcome
