"""Microsoft 365 mailboxes through Graph, against the local Graph and Entra ID of ``servers/graph_fake.py``: new mail
is stored raw before it is moved, nothing is lost or stored twice whatever fails when, throttling and expired
tokens are ridden out, sendMail gets our MIME with its threading headers, and what Graph refuses for good is told
apart from what may pass later."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import Session, select

from conftest import Site
from servers.graph_fake import GraphFake
from ticketd.daemon import pipeline
from ticketd.daemon.config.graph import GraphConfig
from ticketd.daemon.intake.graph import (
    GRAPH_UIDVALIDITY,
    DeltaCursor,
    GraphIntake,
    GraphPollResult,
    graph_uid,
    poll_graph_once,
)
from ticketd.daemon.outgoing import outbox
from ticketd.daemon.outgoing.graph_send import send_mime
from ticketd.daemon.outgoing.smtp_sink import SmtpSink, free_port
from ticketd.daemon.service.coordination import Coordinator
from ticketd.daemon.service.graph import GraphClient, GraphPermanent, GraphTransient
from ticketd.daemon.service.metrics import Metrics
from ticketd.storage.inbound import load_raw
from ticketd.storage.models import Inbound, Outbox

pytestmark = pytest.mark.integration

SUPPORT = "support@acme.example"
MAX_BYTES = 1024 * 1024


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[GraphFake]:
    server = GraphFake(tmp_path, page_size=3).start()
    server.add_mailbox(SUPPORT)
    yield server
    server.stop()


@pytest.fixture
def cfg(fake: GraphFake, tmp_path: Path) -> GraphConfig:
    secret = tmp_path / "graph-secret"
    secret.write_text("graph-secret-123\n")
    return GraphConfig(**fake.section(SUPPORT, secret, poll_seconds=1))


@pytest.fixture
def client(cfg: GraphConfig) -> Iterator[GraphClient]:
    c = GraphClient(cfg, retry_after_cap=5)
    yield c
    c.close()


def customer_mail(n: int, text: str = "", sender: str = "cem@customer.example") -> bytes:
    body = text or f"My modem number {n} keeps dropping the line, please help.\r\n"
    return (f"From: Cem Yilmaz <{sender}>\r\nTo: {SUPPORT}\r\nSubject: Modem problem {n}\r\n"
            f"Message-ID: <request-{n}@customer.example>\r\nDate: Mon, 07 Dec 2026 10:{n % 60:02d}:00 +0300\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def stored(engine: sa.Engine) -> list[tuple[Inbound, bytes]]:
    with Session(engine) as session:
        rows = list(session.exec(select(Inbound).order_by(Inbound.id)))  # type: ignore[arg-type]
        return [(row, load_raw(session, row.id or 0)) for row in rows]


def poll(client: GraphClient, engine: sa.Engine, cfg: GraphConfig, cursor: DeltaCursor | None = None,
         max_bytes: int = MAX_BYTES) -> GraphPollResult:
    return poll_graph_once(client, engine, cfg, max_bytes, "support", cursor)


# --- intake --------------------------------------------------------------------------------------------------

def test_new_mail_is_stored_raw_then_moved_over_several_pages(fake: GraphFake, client: GraphClient,
                                                             cfg: GraphConfig, engine: sa.Engine) -> None:
    mails = [customer_mail(n) for n in range(8)]  # three delta pages of at most three
    for raw in mails:
        fake.deliver(SUPPORT, raw)
    cursor = DeltaCursor()
    result = poll(client, engine, cfg, cursor)
    rows = stored(engine)
    assert sorted(raw for _, raw in rows) == sorted(mails)  # byte for byte
    assert {(r.mailbox, r.uidvalidity, r.channel, r.status) for r, _ in rows} == {("support", GRAPH_UIDVALIDITY,
                                                                                   "graph", "new")}
    assert fake.contents(SUPPORT, "inbox") == []
    assert sorted(fake.contents(SUPPORT, "Processed")) == sorted(mails)
    assert len([r for r in fake.graph_requests("/messages/delta") if "deltatoken" not in r.query]) == 3
    assert cursor.link is not None and "$deltatoken=" in cursor.link
    assert (result.stored, result.moved) == (8, 8)

    # The next poll starts from the delta link: only what arrived since.
    fake.deliver(SUPPORT, customer_mail(100))
    before = len(fake.graph_requests("/messages/delta"))
    result = poll(client, engine, cfg, cursor)
    assert (result.stored, result.moved, result.already_stored) == (1, 1, 0)
    assert len(stored(engine)) == 9
    assert "$deltatoken=" in fake.graph_requests("/messages/delta")[before].query


def test_stored_mail_becomes_tickets_through_the_pipeline(fake: GraphFake, client: GraphClient, cfg: GraphConfig,
                                                         site: Site, smtp_sink: SmtpSink) -> None:
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    config = site.config()
    fake.deliver(SUPPORT, customer_mail(1))
    fake.deliver(SUPPORT, customer_mail(2, sender="ayse@other.example"))
    poll(client, site.engine, cfg)
    outcomes = pipeline.process_pending(site.engine, config)
    assert len(outcomes) == 2
    outbox.send_due(site.engine, config)
    tickets = json.loads(site.cli("tickets", "list", "--json").stdout)
    assert sorted(t["subject"] for t in tickets) == ["Modem problem 1", "Modem problem 2"]
    acknowledged = {to for m in smtp_sink.received for to in m.envelope_to}
    assert acknowledged == {"cem@customer.example", "ayse@other.example"}


def test_a_crash_between_store_and_move_only_moves_again(fake: GraphFake, client: GraphClient, cfg: GraphConfig,
                                                         engine: sa.Engine) -> None:
    for n in range(3):  # one delta page
        fake.deliver(SUPPORT, customer_mail(n))
    fake.fail_next(500, count=1, on="/move")  # the first move fails: the page is stored, nothing moved yet
    with pytest.raises(GraphTransient):
        poll(client, engine, cfg)
    assert len(stored(engine)) == 3
    assert len(fake.contents(SUPPORT, "inbox")) == 3  # still the queue

    result = poll(client, engine, cfg, DeltaCursor())  # as after a restart: no delta link
    assert (result.stored, result.already_stored, result.moved) == (0, 3, 3)
    assert len(stored(engine)) == 3
    assert fake.contents(SUPPORT, "inbox") == []


@pytest.mark.parametrize("where", ["delta page", "download"])
def test_a_failure_in_the_middle_of_a_page_loses_and_duplicates_nothing(
        where: str, fake: GraphFake, client: GraphClient, cfg: GraphConfig, engine: sa.Engine) -> None:
    mails = [customer_mail(n) for n in range(8)]
    for raw in mails:
        fake.deliver(SUPPORT, raw)
    if where == "delta page":
        fake.drop_next("/messages/delta", after_bytes=40, skip=1)  # the second page is cut off mid-body
    else:
        fake.drop_next("/$value", after_bytes=30, skip=4)  # the fifth message's MIME is cut off
    cursor = DeltaCursor()
    with pytest.raises(GraphTransient):
        poll(client, engine, cfg, cursor)
    assert cursor.link is None  # the unfinished round is not taken as done
    partly = stored(engine)
    assert 0 < len(partly) < 8
    assert all(raw in mails for _, raw in partly)  # nothing half-stored

    poll(client, engine, cfg, cursor)
    rows = stored(engine)
    assert sorted(raw for _, raw in rows) == sorted(mails)  # every one, once
    assert len({r.uid for r, _ in rows}) == 8
    assert fake.contents(SUPPORT, "inbox") == []
    assert len(fake.contents(SUPPORT, "Processed")) == 8


def test_a_poll_stops_at_its_limit_and_the_next_takes_the_rest(fake: GraphFake, client: GraphClient,
                                                                cfg: GraphConfig, engine: sa.Engine) -> None:
    for n in range(7):
        fake.deliver(SUPPORT, customer_mail(n))
    cursor = DeltaCursor()
    first = poll_graph_once(client, engine, cfg, MAX_BYTES, "support", cursor, limit=2)
    assert (first.moved, first.remaining) == (3, True)  # a whole page: the limit is checked between pages
    assert len(fake.contents(SUPPORT, "inbox")) == 4 and cursor.link is None
    rest = poll_graph_once(client, engine, cfg, MAX_BYTES, "support", cursor)
    assert (rest.stored, rest.remaining) == (4, False)
    assert len(stored(engine)) == 7 and fake.contents(SUPPORT, "inbox") == []


def test_an_oversized_message_is_stored_cut_and_moved_whole(fake: GraphFake, client: GraphClient, cfg: GraphConfig,
                                                            engine: sa.Engine) -> None:
    big = customer_mail(7, text="x" * 76 + "\r\n") + b"y" * 600_000 + b"\r\n"
    fake.deliver(SUPPORT, big)
    poll(client, engine, cfg, max_bytes=400_000)
    [(_, raw)] = stored(engine)
    assert raw.startswith(f"X-Ticketd-Truncated: original size {len(big)} bytes\r\n".encode())
    assert b"Message-ID: <request-7@customer.example>" in raw and len(raw) < 300 * 1024
    assert fake.contents(SUPPORT, "Processed") == [big]


def test_a_429_storm_is_ridden_out_with_retry_after(fake: GraphFake, client: GraphClient, cfg: GraphConfig,
                                                    engine: sa.Engine) -> None:
    for n in range(5):
        fake.deliver(SUPPORT, customer_mail(n))
    client.folder_id(cfg.folder)
    client.folder_id(cfg.processed_folder, create=True)
    fake.throttle(3, retry_after=1)
    poll(client, engine, cfg)
    assert len(stored(engine)) == 5 and fake.contents(SUPPORT, "inbox") == []
    log = fake.graph_requests()
    throttled = [i for i, r in enumerate(log) if r.status == 429]
    assert len(throttled) == 3
    for i in throttled:  # each retry waited at least the Retry-After it was given
        assert log[i + 1].at - log[i].at >= 0.95


def test_the_intake_thread_outlasts_throttling_longer_than_the_client_waits(
        fake: GraphFake, cfg: GraphConfig, engine: sa.Engine) -> None:
    client = GraphClient(cfg, max_retries=1, retry_after_cap=5)
    coordinator = Coordinator(engine).start()
    woken: list[bool] = []
    fake.throttle(6, retry_after=1)  # more than one poll's worth of retries: the thread backs off and comes back
    for n in range(4):
        fake.deliver(SUPPORT, customer_mail(n))
    intake = GraphIntake(engine, "support", cfg, client, MAX_BYTES, coordinator, lambda: woken.append(True),
                         Metrics()).start()
    try:
        deadline = time.monotonic() + 60
        while not woken and time.monotonic() < deadline:  # woken once a poll has stored and moved
            time.sleep(0.2)
        assert woken and intake.state.held and intake.state.error is None
        assert len(stored(engine)) == 4
        assert fake.contents(SUPPORT, "inbox") == []
        assert [r.status for r in fake.graph_requests()].count(429) == 6
    finally:
        intake.stop()
        client.close()
        coordinator.stop()


def test_an_expired_token_is_renewed(fake: GraphFake, client: GraphClient, cfg: GraphConfig,
                                     engine: sa.Engine) -> None:
    poll(client, engine, cfg)
    assert len(fake.token_requests) == 1
    fake.expire_tokens()  # Graph now refuses the token the client holds (401 InvalidAuthenticationToken)
    fake.deliver(SUPPORT, customer_mail(1))
    poll(client, engine, cfg)
    assert len(stored(engine)) == 1
    assert len(fake.token_requests) == 2
    assert [r.status for r in fake.graph_requests()].count(401) == 1


def test_a_certificate_credential_signs_in(fake: GraphFake, tmp_path: Path) -> None:
    pem, key = certificate()
    fake.certificate_pem = pem
    fake.client_secret = None
    (tmp_path / "app.pem").write_bytes(key + pem)
    client = GraphClient(GraphConfig(**fake.section(SUPPORT, certificate_file=str(tmp_path / "app.pem"))))
    try:
        assert client.token()
        assert fake.token_requests[-1]["client_assertion_type"].endswith("jwt-bearer")
    finally:
        client.close()
    other_pem, other_key = certificate()  # a certificate the app registration does not know
    (tmp_path / "other.pem").write_bytes(other_key + other_pem)
    stranger = GraphClient(GraphConfig(**fake.section(SUPPORT, certificate_file=str(tmp_path / "other.pem"))))
    with pytest.raises(GraphPermanent) as refused:
        stranger.token()
    assert refused.value.code == "invalid_client"


def certificate() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ticketd graph app")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


# --- sending -------------------------------------------------------------------------------------------------

def reply_bytes(to: str = "Cem Yilmaz <cem@customer.example>", sender: str = SUPPORT) -> bytes:
    """An outbox row as the outbox composes it: our Message-ID and the customer's thread."""
    row = Outbox(kind="received", to_addrs=to, subject="[ACME #1] We received your request: Modem problem",
                 body="Your request has been received.\n",
                 headers={"From": f"Acme Support <{sender}>", "In-Reply-To": "<request-1@customer.example>",
                          "References": "<root@customer.example> <request-1@customer.example>",
                          "Auto-Submitted": "auto-replied", "X-Ticketd-Kind": "received"},
                 message_id="<ticketd.0123456789abcdef@acme.example>")
    return outbox.build_message(row).as_bytes()


def test_send_mime_posts_our_message_with_its_threading_headers(fake: GraphFake, client: GraphClient) -> None:
    raw = reply_bytes()
    asyncio.run(send_mime(client, SUPPORT, raw))
    [sent] = fake.sent
    assert sent.raw == raw and sent.mailbox == SUPPORT
    headers = email.message_from_bytes(sent.raw, policy=email.policy.default)
    assert headers["Message-ID"] == "<ticketd.0123456789abcdef@acme.example>"
    assert headers["In-Reply-To"] == "<request-1@customer.example>"
    assert headers["References"] == "<root@customer.example> <request-1@customer.example>"
    assert fake.contents(SUPPORT, "sentitems") == [raw]
    [post] = fake.graph_requests("/sendMail")
    assert post.status == 202


def test_what_graph_refuses_for_good_is_permanent(fake: GraphFake, client: GraphClient) -> None:
    cases = [
        (reply_bytes(to="not an address"), SUPPORT, "ErrorInvalidRecipients", 400),
        (reply_bytes(sender="someone-else@acme.example"), SUPPORT, "ErrorSendAsDenied", 403),
        (reply_bytes(), "nobody@acme.example", "ErrorInvalidUser", 404),
    ]
    for raw, mailbox, code, status in cases:
        with pytest.raises(GraphPermanent) as refused:
            asyncio.run(send_mime(client, mailbox, raw))
        assert (refused.value.code, refused.value.status) == (code, status)
    fake.roles.discard("Mail.Send")  # the admin never granted it
    with pytest.raises(GraphPermanent) as refused:
        asyncio.run(send_mime(client, SUPPORT, reply_bytes()))
    assert (refused.value.code, refused.value.status) == ("ErrorAccessDenied", 403)
    assert fake.sent == []


def test_a_refused_app_credential_or_tenant_is_permanent(fake: GraphFake, cfg: GraphConfig, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret")
    for client in (GraphClient(GraphConfig(**fake.section(SUPPORT, wrong))),
                   GraphClient(GraphConfig(**{**fake.section(SUPPORT, wrong), "tenant": "other.onmicrosoft.com"}))):
        with pytest.raises(GraphPermanent) as refused:
            asyncio.run(send_mime(client, SUPPORT, reply_bytes()))
        assert refused.value.code in ("invalid_client", "invalid_tenant")
        assert "not-the-secret" not in str(refused.value)
    assert fake.sent == []


def test_what_may_pass_later_is_transient(fake: GraphFake, cfg: GraphConfig) -> None:
    impatient = GraphClient(cfg, max_retries=1, retry_after_cap=5)
    fake.throttle(2, retry_after=1, on="/sendMail")
    with pytest.raises(GraphTransient) as exhausted:
        asyncio.run(send_mime(impatient, SUPPORT, reply_bytes()))
    assert exhausted.value.status == 429

    fake.throttle(1, retry_after=120, on="/sendMail")  # longer than the client waits: handed to the caller at once
    before = len(fake.graph_requests("/sendMail"))
    with pytest.raises(GraphTransient) as later:
        asyncio.run(send_mime(impatient, SUPPORT, reply_bytes()))
    assert later.value.retry_after == 120 and len(fake.graph_requests("/sendMail")) == before + 1

    fake.fail_next(503, count=2, on="/sendMail")
    with pytest.raises(GraphTransient) as unavailable:
        asyncio.run(send_mime(impatient, SUPPORT, reply_bytes()))
    assert unavailable.value.status == 503
    assert fake.sent == []

    closed = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    for section in ({"graph_url": closed}, {"authority_url": closed}):
        away = GraphClient(GraphConfig(**fake.section(SUPPORT, cfg.client_secret_file, **section)))
        with pytest.raises(GraphTransient):
            asyncio.run(send_mime(away, SUPPORT, reply_bytes()))
    impatient.close()


def test_uids_of_graph_ids_are_stable_and_never_an_imap_uidvalidity() -> None:
    assert graph_uid("AAMkAGI2TAAA=") == graph_uid("AAMkAGI2TAAA=")
    assert graph_uid("AAMkAGI2TAAA=") != graph_uid("AAMkAGI2TAAB=")
    assert 0 <= graph_uid("x" * 200) < 2 ** 63
    assert GRAPH_UIDVALIDITY == 0
