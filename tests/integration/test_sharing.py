"""The pieces several instances rely on, each shown on its own, on both backends where they apply: a reply
processed before its original, the same request at two mailboxes, mail sent by two senders at once, SLA timers
swept by two sweeps at once, a report's firing, and a mailbox's lock passing to another instance."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from conftest import Desk
from ticketd.daemon import pipeline
from ticketd.daemon.config.reports import ReportConfig
from ticketd.daemon.outgoing import outbox
from ticketd.daemon.reports.mail import send_report
from ticketd.daemon.service.coordination import Coordinator
from ticketd.daemon.stages import sweep
from ticketd.storage import db
from ticketd.storage.inbound import store_inbound
from ticketd.storage.models import Inbound, MailboxState, Message, Outbox, Ticket, utcnow

pytestmark = pytest.mark.integration

CUSTOMER = "cigdem.yilmaz@musteri.com.tr"


def request(n: int, parent: int | None = None, customer: str = CUSTOMER, ancestors: tuple[int, ...] = ()) -> bytes:
    references = " ".join(f"<req-{a}@musteri.com.tr>" for a in (*ancestors, parent))
    threading_headers = f"In-Reply-To: <req-{parent}@musteri.com.tr>\r\nReferences: {references}\r\n" \
        if parent is not None else ""
    subject = f"Re: Modem {parent}" if parent is not None else f"Modem {n}"
    return (f"From: Çiğdem Yılmaz <{customer}>\r\nTo: support@acme.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <req-{n}@musteri.com.tr>\r\n{threading_headers}\r\nText {n}.\r\n").encode()


def store(desk: Desk, *mails: tuple[str, bytes]) -> list[int]:
    with db.session_scope(desk.site.engine) as session:
        return [store_inbound(session, raw, mailbox).id for mailbox, raw in mails]  # type: ignore[misc]


def ticket_of(desk: Desk, message_id: str) -> int:
    with Session(desk.site.engine) as session:
        return session.exec(select(Ticket.number).join(Message, Message.ticket_id == Ticket.id)
                            .where(Message.message_id == message_id)).one()


def test_a_reply_stored_before_its_original_waits_for_it(desk: Desk) -> None:
    """Both stored, the reply first: it is deferred while the original is unprocessed, then joins its ticket."""
    reply_id, original_id = store(desk, ("test", request(2, parent=1)), ("test", request(1)))
    outcomes = pipeline.process_pending(desk.site.engine, desk.site.config())
    assert [o.status for o in outcomes] == ["done", "done"]
    assert ticket_of(desk, "<req-1@musteri.com.tr>") == ticket_of(desk, "<req-2@musteri.com.tr>") == 1
    with Session(desk.site.engine) as session:
        assert session.exec(select(sa.func.count()).select_from(Ticket)).one() == 1
        first = session.exec(select(Message.inbound_id).order_by(Message.id)).first()
    assert first == original_id  # the original opened it; the reply was held back, not dropped
    assert reply_id != original_id


def test_a_reply_processed_before_its_original_arrived_keeps_one_ticket(desk: Desk) -> None:
    """The reply came by another mailbox and was processed before the original was even stored."""
    desk.deliver(request(2, parent=1))
    outcome = desk.deliver(request(1))
    assert outcome.status == "done" and not outcome.new_ticket
    assert ticket_of(desk, "<req-1@musteri.com.tr>") == ticket_of(desk, "<req-2@musteri.com.tr>")
    with Session(desk.site.engine) as session:
        assert session.exec(select(sa.func.count()).select_from(Ticket)).one() == 1


def test_two_replies_that_overtook_their_original_keep_one_ticket(desk: Desk) -> None:
    """Both answer a request not stored yet: the second joins the first's ticket, and so does the request."""
    desk.deliver(request(2, parent=1))
    assert not desk.deliver(request(3, parent=1)).new_ticket
    assert not desk.deliver(request(1)).new_ticket
    assert len({ticket_of(desk, f"<req-{n}@musteri.com.tr>") for n in (1, 2, 3)}) == 1


def test_a_reply_to_a_reply_that_overtook_both_keeps_one_ticket(desk: Desk) -> None:
    """A conversation's third mail came by another mailbox before the first two were stored: the first, which it
    names only in References, joins its ticket, and so does the second."""
    desk.deliver(request(3, parent=2, ancestors=(1,)))
    assert not desk.deliver(request(1)).new_ticket
    assert not desk.deliver(request(2, parent=1)).new_ticket
    assert len({ticket_of(desk, f"<req-{n}@musteri.com.tr>") for n in (1, 2, 3)}) == 1


def test_the_same_request_at_two_mailboxes_is_one_ticket(desk: Desk) -> None:
    store(desk, ("support", request(1)), ("complaints", request(1)))
    outcomes = pipeline.process_pending(desk.site.engine, desk.site.config())
    assert [o.status for o in outcomes] == ["done", "dropped"]
    assert outcomes[1].reason is not None and outcomes[1].reason.startswith("duplicate of inbound")
    with Session(desk.site.engine) as session:
        assert session.exec(select(sa.func.count()).select_from(Ticket)).one() == 1


def test_processed_mail_is_unique_per_message_id(desk: Desk) -> None:
    """What keeps two instances from both opening a ticket for the two copies: the database refuses a second
    ``done`` row with the same Message-ID hash (the loser's batch is redone and finds the copy done)."""
    first, second = store(desk, ("support", request(1)), ("complaints", request(1)))
    with db.session_scope(desk.site.engine) as session:
        session.execute(sa.update(Inbound).where(Inbound.id == first).values(status="done"))
    with pytest.raises(sa.exc.IntegrityError), db.session_scope(desk.site.engine) as session:
        session.execute(sa.update(Inbound).where(Inbound.id == second).values(status="done"))


def customer(n: int) -> str:
    """A customer per request: the storm caps hold back a sixth automatic mail to one address within the hour."""
    return f"customer{n}@musteri.com.tr"


def queue(desk: Desk, count: int) -> None:
    for n in range(count):
        desk.deliver(request(n, customer=customer(n)))  # a ticket each: acknowledgment, two agent notifications


def test_two_senders_at_once_send_each_mail_once(desk: Desk, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one instance: its sender claims nothing")
    config = desk.site.config()
    store(desk, *[("support", request(n, customer=customer(n))) for n in range(30)])
    pipeline.process_pending(desk.site.engine, config)  # queued, not sent
    with Session(desk.site.engine) as session:
        queued = session.exec(select(sa.func.count()).select_from(Outbox).where(Outbox.status == "queued")).one()
    assert queued == 90  # each ticket: the acknowledgment and two agent notifications
    barrier = threading.Barrier(2)
    sent: list[int] = []

    def sender() -> None:
        barrier.wait()
        sent.append(outbox.send_due(desk.site.engine, config))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    got = [m.message["Message-ID"] for m in desk.new_mail()]
    assert len(got) == len(set(got)) == 90 and sum(sent) == 90, (len(got), len(set(got)), sent)
    assert min(sent) > 0  # both took part


def test_two_sweeps_at_once_fire_each_breach_once(desk: Desk, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one instance: one sweep at a time")
    queue(desk, 12)
    desk.new_mail()
    later = utcnow() + timedelta(days=30)
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def sweeper() -> None:
        barrier.wait()
        results.append(sweep.sweep(desk.site.engine, desk.site.config(), now=later))

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.first_response for r in results) == 12 and sum(r.resolution for r in results) == 12
    outbox.send_due(desk.site.engine, desk.site.config())
    delayed = [m.message["Subject"] for m in desk.new_mail() if m.message["X-Ticketd-Kind"] == "delayed"]
    assert len(delayed) == len(set(delayed)) == 12, delayed
    with Session(desk.site.engine) as session:
        breached = session.exec(select(sa.func.count()).select_from(Ticket).where(
            Ticket.first_response_breached_at.is_not(None), Ticket.resolution_breached_at.is_not(None))).one()
    assert breached == 12


def test_a_report_firing_is_sent_once(desk: Desk) -> None:
    """Every instance runs the same schedule; the first to commit the firing sends it, the others see it sent."""
    report = ReportConfig(name="monthly", schedule="0 8 1 * *", recipients=["gm@acme.example"])
    now = utcnow().replace(second=0, microsecond=0)
    assert send_report(desk.site.engine, desk.site.config(), report, now=now) is not None
    assert send_report(desk.site.engine, desk.site.config(), report, now=now + timedelta(seconds=20)) is None
    assert send_report(desk.site.engine, desk.site.config(), report, now=now + timedelta(minutes=1)) is not None
    outbox.send_due(desk.site.engine, desk.site.config())
    assert len([m for m in desk.new_mail() if m.message["X-Ticketd-Kind"] == "report"]) == 2


def test_a_mailbox_lock_passes_on_when_its_holder_goes(desk: Desk, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; on SQLite the one instance holds every mailbox")
    engine = desk.site.engine
    first, second = Coordinator(engine).start(), Coordinator(engine).start()
    try:
        lease = first.try_mailbox("support")
        assert lease is not None and second.try_mailbox("support") is None
        assert second.try_mailbox("complaints") is not None  # another mailbox is free
        assert lease.locks is not None
        lease.locks.invalidate()  # the holder's connection is gone, as when its process is killed
        # The server ends the holder's session, and frees its locks, only once it sees the socket closed; that is
        # asynchronous, so the second instance tries again the way its loop would, until a deadline.
        deadline = time.monotonic() + 10
        taken = second.try_mailbox("support")
        while taken is None and time.monotonic() < deadline:
            time.sleep(0.05)
            taken = second.try_mailbox("support")
        assert taken is not None
        with Session(engine) as session:
            assert session.get(MailboxState, "support").holder == second.id  # type: ignore[union-attr]
    finally:
        first.stop()
        second.stop()


def test_instances_share_the_mailboxes_out(desk: Desk, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("one instance on SQLite")
    engine = desk.site.engine
    first = Coordinator(engine).start()
    first.mailbox_count = 2
    try:
        assert first.share() == 2 and first.try_mailbox("support") and first.try_mailbox("complaints")
        assert not first.should_give_up("support")
        second = Coordinator(engine).start()
        second.mailbox_count = 2
        first._alive = (0.0, 1)  # count again now rather than in two seconds
        assert first.share() == 1
        assert first.should_give_up("support") is True and first.should_give_up("complaints") is False
        assert second.may_take()
        second.stop()
        first._alive = (0.0, 1)
        assert first.share() == 2 and not first.should_give_up("support")
    finally:
        first.stop()


def test_an_instance_shows_as_gone_once_its_lock_is(desk: Desk) -> None:
    from ticketd.daemon.cli.status import collect_status

    engine = desk.site.engine
    coordinator = Coordinator(engine).start()
    lease = coordinator.try_mailbox("support")
    assert lease is not None
    shown = collect_status(engine, ["support"])
    assert [(i["id"], i["running"], i["mailboxes"]) for i in shown["instances"]] == [
        (coordinator.id, True, ["support"])]
    lease.release()
    coordinator.stop()
    shown = collect_status(engine, ["support"])
    assert shown["instances"] == [] and shown["mailboxes"][0]["holder"] is None
