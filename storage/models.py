"""The data model of DESIGN.md §3.

Every table exists from the first migration so later features add columns, not tables. Timestamps are stored
as UTC and always come back timezone-aware (SQLite has no time zones), so JSON output can carry an offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import JSON, Column, Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Naive UTC in the database, aware UTC in Python, whatever the backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def ts(nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, **kw))


def created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Company(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(sa.String(200), unique=True, nullable=False))
    contract_until: datetime | None = ts()
    sla_plan: str | None = None
    created_at: datetime = created()


class CompanyDomain(SQLModel, table=True):
    """A domain belongs to one company; a table (not a list column) so the lookup is an index hit."""

    __tablename__ = "company_domain"
    domain: str = Field(primary_key=True, max_length=255)
    company_id: int = Field(foreign_key="company.id", index=True)


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(sa.String(320), unique=True, nullable=False))
    name: str | None = None
    company_id: int | None = Field(default=None, foreign_key="company.id", index=True)
    language: str | None = Field(default=None, max_length=8)
    phone: str | None = None
    blocked: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))
    created_at: datetime = created()
    # Set by `ticketd customers erase`: the row is kept (tickets point at it) with an invalid address and no name.
    erased_at: datetime | None = ts()


class Agent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(sa.String(320), unique=True, nullable=False))
    name: str
    role: str = Field(default="agent", max_length=16)
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = True
    away: bool = False
    created_at: datetime = created()


class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(sa_column=Column(sa.Integer, unique=True, nullable=False))
    subject: str
    requester_id: int = Field(foreign_key="customer.id", index=True)
    company_id: int | None = Field(default=None, foreign_key="company.id", index=True)
    source: str = Field(default="email", max_length=16)
    # The [[mailboxes]] identity its mail leaves as (the one it came in through); None: the helpdesk's.
    mailbox: str | None = Field(default=None, max_length=255)
    type: str = Field(default="request", max_length=16)
    category: str | None = None
    priority: str = Field(default="normal", max_length=16)
    state: str = Field(default="new", max_length=16, index=True)
    assignee_id: int | None = Field(default=None, foreign_key="agent.id", index=True)
    group: str | None = None
    within_contract: bool | None = None
    root_cause: str | None = None
    action_plan: str | None = None
    resolution: str | None = None
    cost: str | None = None
    satisfaction: str | None = Field(default=None, max_length=16)
    first_response_due: datetime | None = ts()
    first_response_at: datetime | None = ts()
    resolution_due: datetime | None = ts()
    resolution_at: datetime | None = ts()
    closed_at: datetime | None = ts()
    # SLA clock: business seconds spent in `pending` are added to the due times; each breach fires once.
    sla_paused_at: datetime | None = ts()
    sla_paused_seconds: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))
    first_response_breached_at: datetime | None = ts()
    resolution_breached_at: datetime | None = ts()
    merged_into_id: int | None = Field(default=None, foreign_key="ticket.id")
    linked_to_id: int | None = Field(default=None, foreign_key="ticket.id")
    # Issue 18, the organisation's own stages ([process.<type>]) and child tickets (migration 0017): the stage
    # the ticket is in, since when, its deadline there and its breach (fired once); the ticket it is a child of.
    stage: str | None = Field(default=None, max_length=64)
    stage_since: datetime | None = ts()
    stage_due: datetime | None = ts()
    stage_breached_at: datetime | None = ts()
    parent_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    created_at: datetime = created()
    updated_at: datetime = created()
    # The requester was erased: the conversation's words are gone, the row stays so reports still count it.
    erased_at: datetime | None = ts()


class Participant(SQLModel, table=True):
    """Who may write to a ticket besides its requester: people on CC, colleagues who replied-all."""

    __table_args__ = (sa.UniqueConstraint("ticket_id", "email", name="uq_participant_ticket_email"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    email: str = Field(max_length=320, index=True)
    name: str | None = None
    role: str = Field(default="cc", max_length=16)  # cc
    added_at: datetime = created()


class Message(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    direction: str = Field(max_length=3)  # in | out
    kind: str = Field(max_length=16)  # customer | agent-reply | note | auto
    message_id: str = Field(sa_column=Column(sa.String(998), unique=True, nullable=False))
    in_reply_to: str | None = Field(default=None, index=True)  # a reply that overtook its original finds it
    references: str | None = None
    from_addr: str
    from_name: str | None = None
    to_addrs: str = ""
    cc_addrs: str = ""
    subject: str = ""
    date: datetime | None = ts()
    text: str = ""
    html: str | None = None
    inbound_id: int | None = Field(default=None, foreign_key="inbound.id", index=True)
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id")
    created_at: datetime = created()


class Awaited(SQLModel, table=True):
    """A Message-ID a ticket's mail answers that was not stored when it came: the reply overtook the mail it
    answers (another mailbox, another instance). When that mail comes, it joins this ticket instead of opening
    one, however far up the thread it sits (``Message.in_reply_to`` only finds the direct parent)."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=998, index=True)
    ticket_id: int = Field(foreign_key="ticket.id")


class Blob(SQLModel, table=True):
    """Attachment bytes keyed by content hash: the same logo in a hundred signatures is stored once."""

    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    data: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    filename: str
    content_type: str
    size: int
    sha256: str = Field(foreign_key="blob.sha256", index=True)
    content_id: str | None = None
    inline: bool = False


SYSTEM_ACTOR = "ticketd"  # the actor of an event nobody's mail caused: rules, timers, policies


class Event(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    actor: str
    what: str
    old: str | None = None
    new: str | None = None
    via_message_id: str | None = None
    at: datetime = created()
    # issue 18, webhooks: the event is its own entry in the webhook outbox, written by the same INSERT in the same
    # transaction; the sender turns it into one ``webhook_delivery`` per subscription and clears the mark.
    webhook_pending: bool = Field(default=True, sa_column=Column(sa.Boolean, nullable=False,
                                                                 server_default=sa.true()))

    __table_args__ = (sa.Index("ix_event_webhook_pending", "id", sqlite_where=sa.text("webhook_pending"),
                               postgresql_where=sa.text("webhook_pending")),)


DONE_ONCE_WHERE = sa.text("status = 'done'")


class Inbound(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_inbound_server_uid"),
        # The same mail stored from two mailboxes (or twice by a redelivery) is processed into a ticket once,
        # even when two instances take both copies at the same moment: the second commit fails here and is redone,
        # and then finds the first one done.
        sa.Index("uq_inbound_done_once", "message_id_hash", unique=True,
                 sqlite_where=DONE_ONCE_WHERE, postgresql_where=DONE_ONCE_WHERE),
    )
    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=255)
    uidvalidity: int | None = Field(default=None, sa_column=Column(sa.BigInteger))
    uid: int | None = Field(default=None, sa_column=Column(sa.BigInteger))
    message_id: str | None = None
    message_id_hash: str = Field(max_length=64, index=True)
    size: int  # of the raw bytes, which live in ``inbound_raw``
    # The envelope's recipients, one per line, when the mail system handed the mail over itself (LMTP): what a
    # header cannot prove. None for IMAP and `deliver`, where only the headers are known.
    recipients: str | None = None
    # How it came in: imap, lmtp, web or cli (``ticketd deliver``): latency is shown per channel.
    channel: str = Field(default="imap", sa_column=Column(sa.String(8), nullable=False, server_default="imap"))
    status: str = Field(default="new", max_length=8, index=True)  # new | done | dropped | failed
    reason: str | None = None
    attempts: int = 0
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    received_at: datetime = created()
    processed_at: datetime | None = ts()
    # The raw bytes were deleted (retention or erasure; ``inbound_raw`` has no row): this one stays for
    # deduplication.
    raw_purged_at: datetime | None = ts()


class WebSubmission(SQLModel, table=True):
    """A post of the web form: what its rate limit counts (per client, per address), what makes a second post of
    one form page (the browser's back button, a double click) the same submission, and, with double opt-in, the
    submission waiting for its confirmation (its inbound row is ``held`` until then)."""

    __tablename__ = "web_submission"
    id: int | None = Field(default=None, primary_key=True)
    nonce: str = Field(max_length=64, sa_column_kwargs={"unique": True})  # the form page's, one submission each
    client: str = Field(max_length=64, index=True)
    email: str = Field(max_length=320, index=True)
    inbound_id: int | None = Field(default=None, foreign_key="inbound.id")
    language: str = Field(default="en", max_length=8)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True))
    confirmed_at: datetime | None = ts()


class InboundRaw(SQLModel, table=True):
    """The bytes of an inbound mail, in a table of their own: SQLite rewrites a whole row on every UPDATE, so
    while they lived in ``inbound`` each status change of a 20 MB mail read and wrote 20 MB and held 40 MiB."""

    __tablename__ = "inbound_raw"
    inbound_id: int = Field(foreign_key="inbound.id", primary_key=True)
    raw: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))


class Outbox(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    to_addrs: str
    cc_addrs: str = ""
    subject: str
    body: str
    html: str | None = None  # an HTML alternative to the body (a report showing its charts inline)
    headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    message_id: str = Field(sa_column=Column(sa.String(998), unique=True, nullable=False))
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    mailbox: str | None = Field(default=None, max_length=255)  # the identity it leaves as, and so its transport
    recipient: str = Field(default="", sa_column=Column(sa.String(320), nullable=False, server_default="", index=True))
    automatic: bool = Field(default=True, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.true()))
    # What made ticketd write it: "inbound" (an automatic answer to a mail: the only kind the storm caps hold
    # back), "agent" (an agent's or manager's action), "timer" (SLA, auto-close, digest, report), "system".
    cause: str = Field(default="inbound", sa_column=Column(sa.String(8), nullable=False, server_default="inbound"))
    announces: str | None = Field(default=None, max_length=320)  # an "assigned" mail: the agent it names
    # Caused by a mail that answers an automatic mail of ours (a robot answering us, or a customer answering a
    # receipt): the only mail the circuit breaker counts, so it measures loops, not the volume of new requests.
    answers_automatic: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False,
                                                                   server_default=sa.false()))
    # queued|sent|failed|dead|suppressed (held back by the storm caps)|superseded (a later mail says it better)
    status: str = Field(default="queued", max_length=10, index=True)
    attempts: int = 0
    next_attempt_at: datetime = created()
    last_error: str | None = None
    created_at: datetime = created()
    sent_at: datetime | None = ts()


class MailboxState(SQLModel, table=True):
    __tablename__ = "mailbox_state"
    mailbox: str = Field(primary_key=True, max_length=255)
    uidvalidity: int | None = Field(default=None, sa_column=Column(sa.BigInteger))
    last_uid: int = Field(default=0, sa_column=Column(sa.BigInteger, nullable=False, server_default="0"))
    last_poll_at: datetime | None = ts()
    holder: str | None = Field(default=None, max_length=64)  # the instance polling it now (see `ticketd status`)
    held_since: datetime | None = ts()


class Instance(SQLModel, table=True):
    """A running (or once running) daemon. Whether it is alive is not read from here but from the lock it holds
    (PostgreSQL advisory lock, or the SQLite lock file), which its death releases; the row says who it was."""

    id: str = Field(primary_key=True, max_length=64)
    hostname: str = Field(max_length=255)
    pid: int
    started_at: datetime = created()
    seen_at: datetime = created()  # the main loop's last turn
    stopped_at: datetime | None = ts()
    db_pid: int | None = None  # PostgreSQL backend holding its locks


class JobRun(SQLModel, table=True):
    """A scheduled job's firing (a report for one period), written with what it queued: with several instances
    running the same schedule, the first one's insert wins and the others do nothing."""

    __tablename__ = "job_run"
    job: str = Field(primary_key=True, max_length=200)
    slot: str = Field(primary_key=True, max_length=64)
    instance: str | None = Field(default=None, max_length=64)
    at: datetime = created()


class OutboxAttachment(SQLModel, table=True):
    """A file of an outgoing mail, or an image its HTML part shows (``content_id``); the bytes are a blob, so a
    retry sends exactly what was queued and the same chart in many mails is stored once."""

    __tablename__ = "outbox_attachment"
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    filename: str
    content_type: str
    sha256: str = Field(foreign_key="blob.sha256", max_length=64)
    content_id: str | None = None
    inline: bool = False


# --- issue 18: webhooks ---

class WebhookDelivery(SQLModel, table=True):
    """One event for one ``[[webhooks]]`` subscription: its body fixed when made (a retry sends the same bytes
    under the same delivery id, so the receiver can drop a repeat), its attempts, its outcome."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (sa.Index("ix_webhook_delivery_chain", "webhook", "ticket_id", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(sa_column=Column(sa.String(64), unique=True, nullable=False))  # X-Ticketd-Delivery
    webhook: str = Field(max_length=200)  # the subscription's name
    event_id: int = Field(foreign_key="event.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    event: str = Field(max_length=200)  # ticket.created, ticket.state, ticket.<what>
    body: str  # the JSON exactly as signed and sent
    status: str = Field(default="queued", max_length=10, index=True)  # queued | failed | sent | dead
    attempts: int = 0
    next_attempt_at: datetime = created()
    last_error: str | None = None
    created_at: datetime = created()
    sent_at: datetime | None = ts()


# --- issue 18: actions ---

class Action(SQLModel, table=True):
    """An action item: something an agent must do by a date, followed until it is done (or cancelled) with its
    result. On a ticket (a complaint's corrective action) or outside any (an improvement action decided from the
    reports, ISO 10002 §8.7). Its id is global: agents and the CLI name an action by it, whatever its ticket."""

    __tablename__ = "action_item"  # ACTION is an SQL keyword
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    what: str = Field(sa_column=Column(sa.Text, nullable=False))
    owner_id: int = Field(foreign_key="agent.id", index=True)
    due: datetime = ts(nullable=False)
    customer: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))
    required: bool = Field(default=True, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.true()))
    category: str | None = None  # an improvement action's; a ticket's action counts under its ticket's category
    source: str | None = None  # where an improvement action came from ("report 2026-11: …")
    status: str = Field(default="open", max_length=16, index=True)  # open | done | cancelled
    result: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    created_by: str = Field(max_length=320)
    created_at: datetime = created()
    closed_by: str | None = Field(default=None, max_length=320)
    closed_at: datetime | None = ts()
    # The reminders: each fires once. ``remind_at`` is when the next one is due (None: none left); ``reminders``
    # how many went out (1: the "due" one, 2: the "overdue" one), written with the mail in one transaction.
    remind_at: datetime | None = ts(index=True)
    reminders: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))
# --- issue 18: process (stages, children and links) ---


class TicketLink(SQLModel, table=True):
    """Two related tickets ([link=#N]); one row per pair, the lower id first, read from both sides."""

    __tablename__ = "ticket_link"
    __table_args__ = (sa.UniqueConstraint("ticket_id", "other_id", name="uq_ticket_link_pair"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    other_id: int = Field(foreign_key="ticket.id", index=True)
    created_at: datetime = created()
# --- issue 18: ledger (costs, time worked, evidence) ---


class CostEntry(SQLModel, table=True):
    """One ``Cost:`` line. SQLite has no decimal type and a float cannot hold 0.10 exactly, so the amount is its
    decimal text with exactly the currency's minor unit ("1250.50", "300" for JPY), written once from a ``Decimal``
    and summed as ``Decimal``; currencies are never added to each other."""

    __tablename__ = "cost_entry"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    amount: str = Field(sa_column=Column(sa.String(40), nullable=False))
    currency: str = Field(sa_column=Column(sa.String(3), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(sa.String(500), nullable=True))
    agent_id: int = Field(foreign_key="agent.id")
    via_message_id: str | None = Field(default=None, sa_column=Column(sa.String(998), nullable=True))
    at: datetime = created()


class TimeEntry(SQLModel, table=True):
    """One ``Time:`` line (or ``[time=…]``): minutes an agent worked on a ticket, negative to correct."""

    __tablename__ = "time_entry"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    agent_id: int = Field(foreign_key="agent.id", index=True)
    minutes: int
    via_message_id: str | None = Field(default=None, sa_column=Column(sa.String(998), nullable=True))
    at: datetime = created()


class Evidence(SQLModel, table=True):
    """A file of a command mail, kept as the evidence of that step. The step is the mail: its events carry the
    same ``at`` (the mail's one clock reading) and ``via_message_id``, which is how ``tickets show`` hangs the
    files on them. Erasing the file (``customers erase``) erases the row with it."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    attachment_id: int = Field(sa_column=Column(sa.Integer, sa.ForeignKey("attachment.id", ondelete="CASCADE"),
                                                nullable=False, index=True))
    actor: str = Field(sa_column=Column(sa.String(320), nullable=False))
    via_message_id: str | None = Field(default=None, sa_column=Column(sa.String(998), nullable=True))
    at: datetime = created()
