"""What one batch's transaction writes and keeps: rows written with plain INSERTs, rows read once.

Every stage writes its rows through ``add`` (a row whose id or object is needed afterwards: ticket, message,
attachment, outbox), ``add_rows`` (rows nobody reads back as objects: participants, awaited ids) or ``event``
(a line of a ticket's history). All are Core INSERTs on the SQLModel tables in the caller's transaction: no
unit of work, no ORM flush. ``add`` runs at once and hands the object to the session as if it had been loaded,
so a later change to it (a ticket's state, ``updated_at``) is tracked and written by the ORM like any other.
Events, the most numerous rows (two or three per mail) and read by nobody in the middle of a batch, are kept in
order and written as one INSERT per batch just before the transaction commits; ``flush`` writes them earlier
for the rare reader in the same transaction (a command asking whether the ticket was marked spam).

Measured on the benchmark's mix of 2,000 mails (tests/benchmarks/ingest.py, no agents): 18.7 statements per
mail before, with the ORM and a separate shortcut for plain new mail, 13.2 after, on one path; end to end on
SQLite 99-111 msgs/s before and 140 after, in alternating runs.

``held`` keeps rows a batch asks for again and again (a company, its domain): the session's identity map
holds them only while someone else does, so the same company was read once per mail. The cache lives in the
session's ``info``, so it ends with the batch's transaction and a redo one message at a time starts afresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import SessionTransaction, make_transient_to_detached
from sqlmodel import Session, SQLModel

from ticketd.storage.models import Event, utcnow

Row = TypeVar("Row", bound=SQLModel)
_HELD = "ticketd.held"
_EVENTS = "ticketd.events"
_MARKS = "ticketd.savepoints"
LAST_TICKET_NUMBER = "ticketd.last_ticket_number"  # kept by the stage that numbers tickets on SQLite


def table_of(obj: SQLModel | type[SQLModel]) -> sa.Table:
    table = obj.__table__  # type: ignore[union-attr]  # SQLModel sets it on table models, undeclared
    assert isinstance(table, sa.Table)
    return table


_EVENT_TABLE = table_of(Event)
# Built once per table: a statement built for every row cost more to build (and to find in SQLAlchemy's
# compiled cache) than to run.
_INSERT_RETURNING_ID = {table: sa.insert(table).returning(table.c.id)
                        for table in SQLModel.metadata.sorted_tables if "id" in table.c}


def columns(obj: SQLModel) -> dict[str, Any]:
    """The model's column values (its own defaults applied), without an id the database is to assign."""
    return {c.key: getattr(obj, c.key) for c in table_of(obj).columns
            if not (c.key == "id" and getattr(obj, "id", None) is None)}


def add(session: Session, obj: Row) -> Row:
    """INSERT the object's row now and make the object a persistent member of ``session``, id filled in."""
    _flush_pending(session)
    table = table_of(obj)
    values = columns(obj)
    conn = session.connection()
    if "id" in table.c and "id" not in values:
        obj.id = conn.execute(_INSERT_RETURNING_ID[table], values).scalar_one()
    else:
        conn.execute(table.insert(), values)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def add_all(session: Session, objs: list[Row]) -> list[Row]:
    """``add`` for many objects of one table with one statement (an INSERT … RETURNING id over all their rows,
    ids given back in the order of the objects). Intake stores a whole fetched chunk of mail this way."""
    if len(objs) <= 1:
        return [add(session, obj) for obj in objs]
    _flush_pending(session)
    table = table_of(objs[0])
    rows = [columns(obj) for obj in objs]
    assert all(table_of(obj) is table and "id" not in row for obj, row in zip(objs, rows, strict=True))
    stmt = sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)
    ids = session.connection().execute(stmt, rows).scalars().all()
    for obj, new_id in zip(objs, ids, strict=True):
        obj.id = new_id
        make_transient_to_detached(obj)
        session.add(obj)
    return objs


def event(session: Session, *, ticket_id: int | None, actor: str, what: str, old: str | None = None,
          new: str | None = None, via_message_id: str | None = None, at: datetime | None = None) -> None:
    """One line of a ticket's history (or the system's, without a ticket), written with the batch's other
    events just before it commits. A plain row, not an ``Event`` object: building the model cost more than
    writing it, and the stages write two or three for every mail."""
    session.info.setdefault(_EVENTS, []).append({
        "ticket_id": ticket_id, "actor": actor, "what": what, "old": old, "new": new,
        "via_message_id": via_message_id, "at": at or utcnow()})


def add_rows(session: Session, objs: Iterable[SQLModel]) -> None:
    """INSERT rows nobody needs back as objects: one statement per table (an executemany for several). Events
    go through ``event``, which keeps them for the batch's commit."""
    _flush_pending(session)
    by_table: dict[sa.Table, list[dict[str, Any]]] = {}
    for obj in objs:
        table = table_of(obj)
        assert table is not _EVENT_TABLE, "events go through batch.event, in order"
        by_table.setdefault(table, []).append(columns(obj))
    conn = session.connection()
    for table, rows in by_table.items():
        conn.execute(sa.insert(table), rows)


def flush(session: sa.orm.Session) -> None:
    """Write the events still waiting, in the order they were added."""
    waiting = session.info.pop(_EVENTS, None)
    if waiting:
        session.connection().execute(sa.insert(_EVENT_TABLE), waiting)


@sa.event.listens_for(sa.orm.Session, "before_commit")  # every session, sqlmodel's included
def _before_commit(session: sa.orm.Session) -> None:
    flush(session)


@sa.event.listens_for(sa.orm.Session, "after_transaction_create")
def _mark(session: sa.orm.Session, transaction: SessionTransaction) -> None:
    """A savepoint (a mail's commands are all-or-nothing) remembers how far the waiting events and the ticket
    numbers had got, so that rolling it back forgets what was added inside it, as the database does."""
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[transaction] = (
            len(session.info.get(_EVENTS, ())), session.info.get(LAST_TICKET_NUMBER))


@sa.event.listens_for(sa.orm.Session, "after_soft_rollback")
def _back_to_mark(session: sa.orm.Session, previous_transaction: SessionTransaction) -> None:
    mark = session.info.get(_MARKS, {}).pop(previous_transaction, None)
    if mark is None:
        return
    events, number = mark
    del session.info.get(_EVENTS, [])[events:]
    session.info[LAST_TICKET_NUMBER] = number
    session.info.pop(_HELD, None)  # a row read inside the savepoint may be gone with it


@sa.event.listens_for(sa.orm.Session, "after_transaction_end")
def _forget(session: sa.orm.Session, transaction: SessionTransaction) -> None:
    """What a transaction kept ends with it: rolled-back events are dropped, and the next transaction reads
    afresh what others may have changed in between."""
    if transaction.parent is None:
        for key in (_EVENTS, _HELD, LAST_TICKET_NUMBER, _MARKS):
            session.info.pop(key, None)


def _flush_pending(session: Session) -> None:
    """An object still pending in the session (a rare path's ``session.add``) is written first: the row about
    to be inserted may point at it."""
    if session.new:
        session.flush()


def held(session: Session, model: type[Row], key: Any) -> Row | None:
    """``session.get`` once per batch: the row (or its absence) is kept for the rest of the transaction."""
    cache: dict[tuple[type[SQLModel], Any], SQLModel | None] = session.info.setdefault(_HELD, {})
    if (model, key) not in cache:
        cache[(model, key)] = session.get(model, key)
    found = cache[(model, key)]
    assert found is None or isinstance(found, model)
    return found
