"""Batched processing keeps the per-message guarantees: a batch with a bad message in the middle is redone one
message per transaction, so the others go through in order and the bad one alone is quarantined."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from conftest import Desk
from ticketd.daemon import pipeline
from ticketd.daemon.outgoing import notify, outbox
from ticketd.storage import db
from ticketd.storage.inbound import store_inbound
from ticketd.storage.models import Event, Inbound, InboundRaw, Outbox, Ticket

pytestmark = pytest.mark.integration


def mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@acme.example\r\nSubject: Problem {n}\r\n"
            f"Message-ID: <batch-{n}@example.org>\r\n\r\nSomething is broken ({n}).\r\n").encode()


def store(desk: Desk, count: int) -> list[int]:
    with db.session_scope(desk.site.engine) as session:
        return [store_inbound(session, mail(n), "test").id for n in range(count)]  # type: ignore[misc]


def test_a_bad_message_in_a_batch_is_quarantined_alone(desk: Desk, monkeypatch: pytest.MonkeyPatch,
                                                       backend: str) -> None:
    real = notify.compose

    def compose(session: Session, config: object, **kwargs: Any) -> Any:
        if kwargs["ticket"] is not None and kwargs["ticket"].subject == "Problem 3":
            raise RuntimeError("simulated bug")
        return real(session, config, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(notify, "compose", compose)
    ids = store(desk, 7)
    outcomes = pipeline.process_pending(desk.site.engine, desk.site.config())
    assert [o.status for o in outcomes] == ["done", "done", "done", "failed", "done", "done", "done"]
    with Session(desk.site.engine) as session:
        tickets = session.exec(select(Ticket).order_by(Ticket.number)).all()
        assert [t.subject for t in tickets] == [f"Problem {n}" for n in [0, 1, 2, 4, 5, 6]]  # in arrival order
        numbers = [t.number for t in tickets]
        # SQLite numbers from the highest; PostgreSQL's sequence does not give back the rolled-back batch's numbers
        assert numbers == [1, 2, 3, 4, 5, 6] if backend == "sqlite" else numbers == sorted(set(numbers))
        rows = {r.id: r for r in session.exec(select(Inbound))}
        assert rows[ids[3]].status == "failed" and rows[ids[3]].reason == "RuntimeError: simulated bug"
        assert rows[ids[3]].ticket_id is None
        # nothing of the failed attempt survived, nothing of the good ones was recorded twice
        assert len(session.exec(select(Outbox).where(Outbox.kind == "received")).all()) == 6
        assert len(session.exec(select(Event).where(Event.what == "created")).all()) == 6


def test_a_stop_request_commits_the_batch_so_far(desk: Desk) -> None:
    ids = store(desk, 5)
    calls = iter(range(100))
    outcomes = pipeline.process_pending(desk.site.engine, desk.site.config(), should_stop=lambda: next(calls) >= 3)
    assert len(outcomes) == 2  # one check before the batch, then one before each message
    with Session(desk.site.engine) as session:
        status = [session.get(Inbound, i).status for i in ids]  # type: ignore[union-attr]
    assert status == ["done", "done", "new", "new", "new"]
    rest = pipeline.process_pending(desk.site.engine, desk.site.config())
    assert [o.ticket_number for o in rest] == [3, 4, 5]
    assert outbox.send_due(desk.site.engine, desk.site.config()) == 5 * 3  # each: the ack and two agents
    assert sorted(m.envelope_to[0] for m in desk.new_mail() if "@example.org" in m.envelope_to[0]) == \
        [f"c{n}@example.org" for n in range(5)]


def sized_mail(n: int, size: int) -> bytes:
    head = mail(n)
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


def test_a_batch_is_bounded_by_bytes_and_holds_one_raw_message_at_a_time(desk: Desk, backend: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Big mails: a batch stops at BATCH_BYTES of raw (at least one message), and a processed message's raw is
    let go before the next one's is read. Scaled down (a 5,000-byte budget) so the test stays quick; the figures
    for 40 mails of 20 MB are tests/benchmarks/memory.py's."""
    monkeypatch.setattr(pipeline, "BATCH_BYTES", 5000, raising=False)
    sizes = [2000, 2000, 2000, 9000, 1000, 1000, 1000, 1000, 1000, 1000]
    with db.session_scope(desk.site.engine) as session:
        ids = [store_inbound(session, sized_mail(n, size), "test").id for n, size in enumerate(sizes)]

    held: list[int] = []
    real = pipeline.process_inbound

    def watched(session: Session, *args: Any, **kwargs: Any) -> Any:
        held.append(sum(1 for obj in session.identity_map.values() if isinstance(obj, InboundRaw)))
        return real(session, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process_inbound", watched)
    done_after_each: list[list[int]] = []

    def after_batch() -> None:
        with Session(desk.site.engine) as session:
            done_after_each.append(sorted(session.exec(select(Inbound.id).where(Inbound.status != "new"))))

    outcomes = pipeline.process_pending(desk.site.engine, desk.site.config(), after_batch=after_batch)
    assert [o.status for o in outcomes] == ["done"] * 10
    batches = [sorted(set(now) - set(before)) for before, now in zip([[], *done_after_each], done_after_each,
                                                                      strict=False)]
    assert batches == [ids[0:2], ids[2:3], ids[3:4], ids[4:9], ids[9:10]]
    assert held == [0] * 10  # raw is read as a value: no earlier message's bytes stay in the session

    # The operator's path (deliver, retry) is cut the same way.
    with db.session_scope(desk.site.engine) as session:
        more = [store_inbound(session, sized_mail(100 + n, 3000), "test").id for n in range(3)]
    done_after_each.clear()
    pipeline.process_pending(desk.site.engine, desk.site.config(), ids=more, after_batch=after_batch)
    assert len(done_after_each) == 3
