"""Events out: the signature, the mapping of event rows to webhook events, the [[webhooks]] section, and the
queue mark every event row is born with (kept or dropped with its transaction)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from ticketd.daemon.config import ConfigError, parse_config
from ticketd.daemon.config.webhooks import event_name_problem, webhook_event
from ticketd.daemon.outgoing.webhooks import body_of, sign, verify
from ticketd.storage import batch, db
from ticketd.storage.models import Event


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    # RFC 4231, test case 1: key 0x0b * 20, data "Hi There"
    assert sign("\x0b" * 20, b"Hi There") == (
        "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    body = '{"event":"ticket.created","ticket":{"subject":"Müşteri"}}'.encode()
    header = sign("a-secret-of-sixteen+", body)
    assert verify("a-secret-of-sixteen+", body, header)
    assert not verify("a-secret-of-sixteen+", body + b" ", header)  # one byte more: another signature
    assert not verify("another-secret-16chars", body, header)


@pytest.mark.parametrize(("what", "event"), [
    ("created", "ticket.created"),
    ("state", "ticket.state"),
    ("assignee", "ticket.assignee"),
    ("action-added", "ticket.action-added"),  # the other parts' events need nothing more
    ("stage", "ticket.stage"),
    ("sla:resolution-overdue", "ticket.sla.resolution-overdue"),
    ("privacy:erased", "ticket.privacy.erased"),
])
def test_every_event_row_maps_to_a_webhook_event(what: str, event: str) -> None:
    assert webhook_event(what) == event


@pytest.mark.parametrize(("name", "problem"), [
    ("ticket.created", None),
    ("ticket.action-added", None),  # not written on this branch: open names are allowed
    ("ticket.action-*", None),
    ("ticket.sla.*", None),
    ("*", None),
    ("ticket.stat", "'ticket.stat' is not an event ticketd writes; did you mean 'ticket.state'?"),
    ("ticket.creatd", "'ticket.creatd' is not an event ticketd writes; did you mean 'ticket.created'?"),
    ("state", "'state' is not an event name"),
    ("Ticket.State", "'Ticket.State' is not an event name"),
    ("ticket.*.x", "'ticket.*.x' is not an event name"),
])
def test_event_names_are_checked(name: str, problem: str | None) -> None:
    found = event_name_problem(name)
    assert found == problem if problem is None else (found or "").startswith(problem)


def base(tmp_path: Path, **hook: Any) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    (tmp_path / "hook-secret").write_text("h" * 24 + "\n")
    return {"helpdesk": {"address": "support@acme.example", "tag": "ACME"},
            "security": {"secret_file": str(tmp_path / "secret")},
            "webhooks": [{"url": "https://dif.example/hook", "secret_file": str(tmp_path / "hook-secret"),
                          "events": ["ticket.created", "ticket.sla.*"], **hook}]}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_webhook_section_defaults_and_subscription(tmp_path: Path) -> None:
    [hook] = parse_config(base(tmp_path)).webhooks
    assert hook.label == "https://dif.example/hook" and hook.secret is not None
    assert hook.secret.get_secret_value() == "h" * 24  # the file's line, without its newline
    assert (hook.timeout_seconds, hook.max_attempts, hook.backoff_seconds) == (10, 15, 30)
    assert hook.wants("ticket.created") and hook.wants("ticket.sla.resolution-overdue")
    assert not hook.wants("ticket.state")
    assert "h" * 24 not in repr(hook)  # the secret never reaches a log line


@pytest.mark.parametrize(("hook", "expected"), [
    ({"url": "http://dif.example/hook"}, "webhooks.0.url: must be an https:// URL (http:// only on loopback"),
    ({"url": "http://127.0.0.1:8080/hook"}, None),
    ({"url": "http://localhost/hook"}, None),
    ({"events": []}, "webhooks.0.events:"),
    ({"events": ["ticket.stat"]},
     "webhooks.0.events: 'ticket.stat' is not an event ticketd writes; did you mean 'ticket.state'?"),
    ({"timeout_seconds": 0}, "webhooks.0.timeout_seconds: must be a positive integer"),
    ({"backoff_seconds": 60, "backoff_max_seconds": 30},
     "webhooks.0.backoff_max_seconds: must not be less than backoff_seconds"),
    ({"secret_file": "/nonexistent/hook-secret"},
     "webhooks.0.secret_file: file /nonexistent/hook-secret does not exist"),
    ({"colour": "red"}, "webhooks.0.colour: "),
])
def test_webhook_section_is_validated_naming_the_key(tmp_path: Path, hook: dict[str, Any],
                                                     expected: str | None) -> None:
    data = base(tmp_path, **hook)
    if expected is None:
        assert parse_config(data).webhooks[0].url == hook["url"]
        return
    assert any(p.startswith(expected) for p in problems(data)), problems(data)


def test_short_secret_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    data = base(tmp_path)
    (tmp_path / "hook-secret").write_text("short")
    assert any("at least 16 characters" in p for p in problems(data))
    data = base(tmp_path)
    data["webhooks"].append(dict(data["webhooks"][0]))
    assert problems(data) == ["webhooks.1.name: 'https://dif.example/hook' is used by another webhook; "
                              "give each a name"]


def test_secret_file_may_be_a_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ticketd.daemon.config import load_config

    (tmp_path / "secret").write_text("s" * 32)
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "webhook-dif").write_text("c" * 20)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "ticketd.toml").write_text(
        '[helpdesk]\naddress = "support@acme.example"\n[security]\nsecret_file = "secret"\n'
        '[[webhooks]]\nname = "dif"\nurl = "https://dif.example/hook"\nsecret_file = "credential:webhook-dif"\n'
        'events = ["*"]\n')
    [hook] = load_config(tmp_path / "ticketd.toml").webhooks
    assert hook.secret is not None and hook.secret.get_secret_value() == "c" * 20 and hook.label == "dif"


def test_body_is_compact_sorted_json_with_offsets() -> None:
    event = Event(id=7, ticket_id=3, actor="ali@acme.example", what="state", old="new", new="open",
                  at=datetime(2026, 12, 4, 9, 30, tzinfo=UTC))
    text = body_of("d-1", event, "ticket.state", {"number": 12, "subject": "Modem"})
    assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    body = json.loads(text)
    assert body == {"id": "d-1", "event": "ticket.state", "at": "2026-12-04T09:30:00+00:00", "event_id": 7,
                    "ticket": {"number": 12, "subject": "Modem"},
                    "change": {"what": "state", "actor": "ali@acme.example", "old": "new", "new": "open",
                               "message_id": None}}


def test_every_event_row_is_born_pending_and_a_rolled_back_savepoint_takes_it_away(engine: sa.Engine) -> None:
    """The queue mark is the event row's own: written by the batch's one INSERT (or the ORM's), in the same
    transaction; a savepoint rolled back (a command mail refused whole) drops its events, so nothing of it is
    ever sent."""
    with db.session_scope(engine) as session:
        batch.event(session, ticket_id=None, actor="a", what="kept")
        savepoint = session.begin_nested()
        batch.event(session, ticket_id=None, actor="a", what="rolled-back")
        savepoint.rollback()
        session.add(Event(ticket_id=None, actor="cli", what="through-the-orm"))
    with db.session_scope(engine) as session:
        session.connection()  # the transaction has begun, as in every stage
        batch.event(session, ticket_id=None, actor="a", what="whole-transaction-rolled-back")
        session.rollback()
    with Session(engine) as session:
        rows = session.execute(sa.select(Event.what, Event.webhook_pending).order_by(Event.id)).all()
    assert [tuple(r) for r in rows] == [("kept", True), ("through-the-orm", True)]


def test_the_example_documents_every_webhook_key_and_loads_uncommented(tmp_path: Path) -> None:
    import tomllib

    from ticketd.daemon.config.webhooks import WebhookConfig

    text = (Path(__file__).parents[2] / "deploy" / "ticketd.toml.example").read_text()
    block = text[text.index("# [[webhooks]]\n"):]
    lines = [line.removeprefix("#").removeprefix(" ") for line in block[:block.index("\n\n") if "\n\n" in block
                                                                           else len(block)].splitlines()]
    [documented] = tomllib.loads("\n".join(lines))["webhooks"]
    assert set(WebhookConfig.model_fields) - {"secret"} == set(documented)
    (tmp_path / "hook-secret").write_text("h" * 24)
    data = base(tmp_path)
    data["webhooks"] = [{**documented, "secret_file": str(tmp_path / "hook-secret")}]
    assert parse_config(data).webhooks[0].label == "dif"


def test_migration_0018_goes_down_and_up_and_old_events_are_not_news(db_url: str) -> None:
    from alembic import command

    engine = db.make_engine(db_url)
    db.upgrade(engine)
    config = db._alembic_config(engine)

    def to(revision: str, step: Any) -> None:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config, revision)

    to("0017", command.downgrade)
    assert "webhook_delivery" not in sa.inspect(engine).get_table_names()
    assert "webhook_pending" not in {c["name"] for c in sa.inspect(engine).get_columns("event")}
    with engine.begin() as conn:
        conn.execute(sa.text("insert into event (actor, what, at) values ('a', 'before', :at)"),
                     {"at": datetime(2026, 1, 1)})
    to("head", command.upgrade)
    with engine.begin() as conn:
        conn.execute(sa.text("insert into event (actor, what, at) values ('a', 'after', :at)"),
                     {"at": datetime(2026, 1, 2)})
        rows = conn.execute(sa.text("select what, webhook_pending from event order by id")).all()
    assert [(what, bool(pending)) for what, pending in rows] == [("before", False), ("after", True)]
    engine.dispose()
