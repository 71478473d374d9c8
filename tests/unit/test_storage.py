"""Schema: the Alembic migration builds exactly the models (on each backend); SQLite runs in WAL; timestamps keep
their zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from ticketd.storage import db
from ticketd.storage.directory import DirectoryError, add_company, import_customers, upsert_customer
from ticketd.storage.models import Company, Customer, Inbound


def test_migration_matches_models(db_url: str) -> None:
    engine = db.make_engine(db_url)
    assert not db.schema_is_current(engine)
    db.upgrade(engine)
    assert db.schema_is_current(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    tables = set(sa.inspect(engine).get_table_names())
    assert {"company", "customer", "agent", "ticket", "message", "attachment", "event", "inbound", "outbox",
            "mailbox_state"} <= tables
    engine.dispose()


def test_sqlite_is_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/t.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_timestamps_come_back_aware_utc(engine: sa.Engine) -> None:
    istanbul = timezone(timedelta(hours=3))
    with db.session_scope(engine) as session:
        session.add(Inbound(mailbox="m", message_id_hash="h", size=1,
                            received_at=datetime(2026, 1, 1, 12, 0, tzinfo=istanbul)))
    with Session(engine) as session:
        row = session.exec(select(Inbound)).one()
    assert row.received_at == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert row.received_at.tzinfo is not None


def test_customer_import_is_all_or_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("email,name,company,language,phone,domains\n"
                    "Cigdem@Musteri.com.tr,Çiğdem Yılmaz,Müşteri A.Ş.,tr,+90 212 000,musteri.com.tr\n"
                    "jane@example.org,Jane,,,,\n", encoding="utf-8")
    with db.session_scope(engine) as session:
        assert import_customers(session, good).customers == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,company\nnew@x.example,New,\nnot-an-address,Broken,\n")
    try:
        with db.session_scope(engine) as session:
            import_customers(session, bad)
    except ValueError as exc:
        assert "bad.csv:3: " in str(exc)
    else:
        raise AssertionError("a bad line must be refused")
    with Session(engine) as session:
        emails = sorted(c.email for c in session.exec(select(Customer)))
        company = session.exec(select(Company)).one()
    assert emails == ["cigdem@musteri.com.tr", "jane@example.org"]
    assert company.name == "Müşteri A.Ş."


def test_domain_belongs_to_one_company(engine: sa.Engine) -> None:
    with db.session_scope(engine) as session:
        add_company(session, "A", ["a.example"])
    try:
        with db.session_scope(engine) as session:
            add_company(session, "B", ["a.example"])
    except ValueError as exc:
        assert "already belongs to A" in str(exc)
    else:
        raise AssertionError("a domain cannot move silently")


def test_values_longer_than_their_columns_are_refused_by_name(engine: sa.Engine) -> None:
    """PostgreSQL enforces VARCHAR(n) where SQLite stores anything: the directory refuses such values itself."""
    for call, message in ((lambda s: add_company(s, "A" * 201), "longer than 200"),
                          (lambda s: add_company(s, "A", ["x" * 250 + ".example"]), "longer than 255"),
                          (lambda s: upsert_customer(s, "a" * 320 + "@x.example"), "longer than 320")):
        with pytest.raises(DirectoryError, match=message), db.session_scope(engine) as session:
            call(session)


def test_big_values_round_trip_and_the_statement_keeps_none_of_them(engine: sa.Engine) -> None:
    """Raw mail and attachment bytes over ``LARGE_BYTES`` are written into a zeroblob on SQLite (no driver or
    record copy); on both backends they come back byte for byte, a second insert of the same key changes
    nothing, and no statement object still holds the bytes once the insert returned (SQLAlchemy's compiled cache
    kept the first statement of each shape with its values: a 15 MB attachment for the life of the process)."""
    import gc
    import hashlib
    import os

    from ticketd.storage.inbound import drop_raw, load_heads, load_raw, store_inbound
    from ticketd.storage.models import Blob

    raw = b"Subject: big\r\nMessage-ID: <big@x.example>\r\n\r\n" + os.urandom(db.LARGE_BYTES * 3 + 17)
    data = os.urandom(db.LARGE_BYTES + 1)
    with db.session_scope(engine) as session:
        row = store_inbound(session, raw, "m")
        conn = session.connection()
        digest = hashlib.sha256(data).hexdigest()
        values = {"sha256": digest, "size": len(data), "data": data}
        assert db.insert_new(conn, Blob.__table__, values, "sha256", large="data")  # type: ignore[attr-defined]
        assert not db.insert_new(conn, Blob.__table__, {**values, "data": b"x" * len(data)}, "sha256",  # type: ignore[attr-defined]
                                 large="data")
    gc.collect()
    held = [obj for obj in gc.get_objects() if isinstance(obj, dict)
            and any(value is raw or value is data for value in list(obj.values()))]
    assert held == []
    with Session(engine) as session:
        assert row.id is not None
        assert load_raw(session, row.id) == raw
        assert load_heads(session, [row.id]) == {row.id: raw[:64 * 1024]}
        assert session.get(Blob, digest).data == data  # type: ignore[union-attr]
    with db.session_scope(engine) as session:
        drop_raw(session, [row.id])
    with Session(engine) as session:
        assert load_raw(session, row.id) == b""
        assert load_heads(session, [row.id]) == {row.id: b""}


def test_a_fetched_chunk_is_stored_in_order_small_mail_in_groups_big_mail_alone(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake writes a chunk with one INSERT for the rows and one per group of small raw mail: every row must
    still get its own uid, hash and bytes, in the order fetched, across group boundaries and beside a big mail."""
    import os

    from ticketd.parsers.message import message_id_hash
    from ticketd.storage import inbound

    monkeypatch.setattr(inbound, "GROUP_BYTES", 3000)  # a group closes every two or three small mails
    chunk = [(uid, f"Message-ID: <m{uid}@x.example>\r\nSubject: {uid}\r\n\r\n".encode() + os.urandom(900 + uid))
             for uid in range(10, 20)]
    big = (20, b"Message-ID: <big@x.example>\r\n\r\n" + os.urandom(db.LARGE_BYTES + 5))
    chunk.insert(4, big)
    with db.session_scope(engine) as session:
        rows = inbound.store_inbound_many(session, chunk, "INBOX", uidvalidity=7)
        ids = [row.id for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(chunk)
    with Session(engine) as session:
        for row_id, (uid, raw) in zip(ids, chunk, strict=True):
            assert row_id is not None
            stored = session.get(Inbound, row_id)
            assert stored is not None and (stored.uid, stored.uidvalidity, stored.size) == (uid, 7, len(raw))
            assert stored.message_id_hash == message_id_hash(stored.message_id, raw)
            assert inbound.load_raw(session, row_id) == raw


def test_the_schema_check_knows_the_heads_alembic_knows(engine: sa.Engine) -> None:
    """`ticketd run` checks the schema without alembic; the heads it reads from the scripts must be alembic's."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db._alembic_config(engine))
    assert db.head_revisions() == set(script.get_heads())


def test_the_daemon_and_the_cli_start_without_alembic() -> None:
    """alembic (10 MiB of resident memory) is loaded only by an upgrade, not by every `ticketd run`."""
    import subprocess
    import sys

    probe = "import sys, ticketd.daemon.cli.main, ticketd.daemon.runner; print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
