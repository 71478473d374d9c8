"""The complaint form against the real daemon, over HTTP as a browser posts it (the browser itself drives it in
``test_webform_browser.py``): a submission is stored as a mail and answered as one; what is refused is refused
with the reason next to the field and nothing stored."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from conftest import Site, start_daemon, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink, free_port
from ticketd.storage import db
from ticketd.storage.inbound import load_raw

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
CUSTOMER = "ayse.demir@musteri.com.tr"


def web_site(site: Site, sink: SmtpSink, **webform: Any) -> Site:
    site.sections["smtp"] = {"host": sink.host, "port": sink.port, "tls": "none"}
    site.sections["categories"] = {"tree": ["fatura/iade", "teknik/internet"]}
    site.sections["webform"] = {"listen": f"127.0.0.1:{free_port()}", **webform}
    site.upgrade()
    return site


def url(site: Site, path: str = "/") -> str:
    return f"http://{site.sections['webform']['listen']}{path}"


def serving(site: Site) -> bool:
    try:
        return requests.get(url(site), timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def one_backend(backend: str) -> None:
    """What is refused at the form never reaches the database: one backend shows it (asked for first, so the
    other backend's run starts no daemon)."""
    if backend != "sqlite":
        pytest.skip("refused before anything is stored: the same on both databases")


@pytest.fixture
def form_daemon(site: Site, smtp_sink: SmtpSink, request: pytest.FixtureRequest) -> Iterator[Any]:
    marker = request.node.get_closest_marker("webform")
    web_site(site, smtp_sink, **(marker.kwargs if marker else {}))
    proc = start_daemon(site)
    wait_for("the web form", lambda: serving(site), proc)
    yield proc
    stop_daemon(proc)


def token_of(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def fields(token: str, **changes: str) -> dict[str, str]:
    values = {"token": token, "lang": "tr", "name": "Ayşe Demir", "email": CUSTOMER, "company": "Demir Tekstil",
              "type": "complaint", "category": "fatura/iade", "subject": "Faturam iki kez kesildi",
              "description": "Kasım faturası iki kez geldi.\nLütfen birini iptal edin.", "website": ""}
    values.update(changes)
    return values


def post(site: Site, data: dict[str, str], files: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
         session: requests.Session | None = None, headers: dict[str, str] | None = None) -> requests.Response:
    parts = [("attachments", (name, content, "application/octet-stream")) for name, content in files]
    # The page's form posts to "?lang=…" (its action), so a refusal before the fields are read is in its language.
    return (session or requests).post(url(site, f"/?lang={data.get('lang', 'tr')}"), data=data,
                                      files=parts or None, timeout=30, headers=headers)


def fresh_token(site: Site) -> str:
    return token_of(requests.get(url(site), timeout=10).text)


def inbound_rows(site: Site) -> list[Any]:
    with db.session_scope(site.engine) as session:
        return list(session.execute(sa.text("SELECT id, mailbox, channel, status FROM inbound ORDER BY id")))


def show(site: Site, number: int) -> dict[str, Any]:
    proc = site.cli("tickets", "show", str(number), "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def acks(sink: SmtpSink, address: str = CUSTOMER, kind: str = "received") -> list[Any]:
    return [m for m in sink.received if address in m.envelope_to and m.message["X-Ticketd-Kind"] == kind]


def test_the_page_speaks_the_visitors_language(one_backend: None, site: Site, form_daemon: Any) -> None:
    turkish = requests.get(url(site), headers={"Accept-Language": "tr-TR,tr;q=0.9,en;q=0.5"}, timeout=10)
    assert turkish.status_code == 200
    assert '<html lang="tr">' in turkish.text and "Bize ulaşın" in turkish.text
    assert 'value="fatura/iade"' in turkish.text  # the category tree
    english = requests.get(url(site), headers={"Accept-Language": "de-DE,en;q=0.8,tr;q=0.5"}, timeout=10)
    assert '<html lang="en">' in english.text and "Contact us" in english.text
    chosen = requests.get(url(site, "/?lang=tr"), headers={"Accept-Language": "en"}, timeout=10)
    assert '<html lang="tr">' in chosen.text
    assert "<script" not in turkish.text  # it works without JavaScript: there is none
    assert turkish.headers["X-Frame-Options"] == "DENY"


def test_a_submission_becomes_a_ticket_with_its_attachment_and_the_received_mail(
        site: Site, smtp_sink: SmtpSink, form_daemon: Any) -> None:
    answer = post(site, fields(fresh_token(site)), files=[("../../fatura\u202egnp.pdf", PDF)])
    assert answer.status_code == 200, answer.text
    assert "Talebinizi aldık" in answer.text and CUSTOMER in answer.text
    wait_for("the received mail", lambda: acks(smtp_sink), form_daemon)
    ack = acks(smtp_sink)[0].message
    assert "[ACME #1]" in ack["Subject"] and "Talebiniz alındı" in ack["Subject"]  # in the form's language
    rows = inbound_rows(site)
    assert [(r.mailbox, r.channel, r.status) for r in rows] == [("web", "web", "done")]
    ticket = show(site, 1)
    assert (ticket["source"], ticket["type"], ticket["category"]) == ("web", "complaint", "fatura/iade")
    assert ticket["requester"] == CUSTOMER and ticket["subject"] == "Faturam iki kez kesildi"
    [attachment] = ticket["messages"][0]["attachments"]
    assert attachment["filename"] == "faturagnp.pdf"  # no path, no right-to-left override
    assert attachment["size"] == len(PDF)
    assert any("company as typed: Demir Tekstil" in (e.get("new") or "") for e in ticket["events"])
    with db.session_scope(site.engine) as session:
        stored = email.message_from_bytes(load_raw(session, rows[0].id), policy=email.policy.default)
    assert stored["Received"].startswith("from [127.0.0.1] by acme.example (ticketd web form)")
    assert stored["From"].addresses[0].addr_spec == CUSTOMER
    assert stored["Content-Language"] == "tr"


def test_errors_are_shown_next_to_their_fields_and_nothing_is_stored(one_backend: None, site: Site,
                                                                      form_daemon: Any) -> None:
    answer = post(site, fields(fresh_token(site), name="", email="ayse@", subject="Konu\r\nBcc: x@evil.example",
                               type="urgent"))
    assert answer.status_code == 422
    page = answer.text
    assert 'id="name-error"' in page and 'aria-describedby=" name-error"' in page
    assert 'id="email-error">Bu adrese yazamıyoruz' in page
    assert 'id="subject-error">Lütfen bunu tek satırda yazın.' in page
    assert 'id="type-error">Lütfen seçeneklerden birini seçin.' in page
    assert 'value="Demir Tekstil"' in page and "Kasım faturası iki kez geldi." in page  # what was typed stays
    ours = post(site, fields(fresh_token(site), email="support@acme.example"))
    assert ours.status_code == 422 and 'id="email-error">Bu bizim adresimiz' in ours.text
    assert inbound_rows(site) == []


def test_a_forged_or_old_token_and_the_honeypot_store_nothing(one_backend: None, site: Site, form_daemon: Any) -> None:
    token = fresh_token(site)
    issued, nonce, mac = token.split(".")
    forged = post(site, fields(f"{int(issued) + 10}.{nonce}.{mac}"))
    assert forged.status_code == 400 and "çok uzun süre açık kaldı" in forged.text
    assert 'value="Ayşe Demir"' in forged.text
    trapped = post(site, fields(token, website="http://spam.example"))
    assert trapped.status_code == 200 and "Talebinizi aldık" in trapped.text  # a bot learns nothing
    assert inbound_rows(site) == []


@pytest.mark.webform(token_hours=1)
def test_a_page_older_than_token_hours_is_refused(site: Site, form_daemon: Any) -> None:
    from ticketd.daemon.intake.webform import issue_token

    secret = site.config().security.secret
    assert secret is not None
    old = issue_token(secret.get_secret_value(), time.time() - 3601)
    answer = post(site, fields(old))
    assert answer.status_code == 400 and "çok uzun süre açık kaldı" in answer.text
    assert post(site, fields(issue_token(secret.get_secret_value(), time.time() - 3500))).status_code == 200
    assert len(inbound_rows(site)) == 1


def test_the_same_page_posted_twice_is_one_request(site: Site, smtp_sink: SmtpSink, form_daemon: Any) -> None:
    token = fresh_token(site)
    first, second = post(site, fields(token)), post(site, fields(token))
    assert first.status_code == second.status_code == 200
    wait_for("the received mail", lambda: acks(smtp_sink), form_daemon)
    time.sleep(1)
    assert len(inbound_rows(site)) == 1 and len(acks(smtp_sink)) == 1


@pytest.mark.webform(rate_per_hour=2)
def test_the_rate_limit_counts_per_client_and_per_address(site: Site, form_daemon: Any) -> None:
    assert post(site, fields(fresh_token(site))).status_code == 200
    assert post(site, fields(fresh_token(site), email="ikinci@musteri.com.tr")).status_code == 200
    third = post(site, fields(fresh_token(site), email="ucuncu@musteri.com.tr"))
    assert third.status_code == 429 and "Son bir saatte sizden birkaç talep aldık" in third.text
    assert "support@acme.example" in third.text and 'value="ucuncu@musteri.com.tr"' in third.text
    # Behind the reverse proxy (a trusted peer) each visitor is counted by their own address...
    other = post(site, fields(fresh_token(site), email="dorduncu@musteri.com.tr"),
                 headers={"X-Forwarded-For": "203.0.113.7"})
    assert other.status_code == 200
    # ... and one address cannot be flooded from many clients either.
    assert post(site, fields(fresh_token(site)), headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200
    flooded = post(site, fields(fresh_token(site)), headers={"X-Forwarded-For": "203.0.113.9"})
    assert flooded.status_code == 429
    assert len(inbound_rows(site)) == 4


@pytest.mark.webform(max_file_bytes=50_000, max_files=2)
def test_file_limits_are_told_next_to_the_field(one_backend: None, site: Site, form_daemon: Any) -> None:
    big = post(site, fields(fresh_token(site)), files=[("ek.pdf", PDF), ("büyük.zip", b"0" * 60_000)])
    assert big.status_code == 422
    assert re.search(r'id="attachments-error">büyük.zip 59 KB büyüklüğünde; her dosya en çok 49 KB olabilir', big.text)
    many = post(site, fields(fresh_token(site)), files=[("a.pdf", PDF), ("b.pdf", PDF), ("c.pdf", PDF)])
    assert many.status_code == 422 and 'id="attachments-error">Lütfen en çok 2 dosya ekleyin.' in many.text
    assert inbound_rows(site) == []


def test_a_request_over_the_size_limit_is_cut_off(one_backend: None, site: Site, smtp_sink: SmtpSink) -> None:
    site.sections["limits"] = {"max_message_bytes": 200_000}
    web_site(site, smtp_sink)
    proc = start_daemon(site)
    try:
        wait_for("the web form", lambda: serving(site), proc)
        answer = post(site, fields(fresh_token(site)), files=[("a.bin", b"1" * 300_000)])
        assert answer.status_code == 413 and "çok büyük" in answer.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            yield b"--x\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"a.bin\"\r\n\r\n"
            for _ in range(30):
                yield b"y" * 10_000
        chunked = requests.post(url(site, "/?lang=tr"), data=chunks(), timeout=30,
                                headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 413
        assert inbound_rows(site) == [] and proc.poll() is None
    finally:
        stop_daemon(proc)


def test_an_agents_address_typed_into_the_form_steers_nothing(site: Site, smtp_sink: SmtpSink) -> None:
    agent = "ali@acme.example"
    site.sections["agents"] = [{"email": agent, "name": "Ali Yılmaz"}]
    web_site(site, smtp_sink)
    proc = start_daemon(site)
    try:
        _steers_nothing(site, proc, agent)
    finally:
        stop_daemon(proc)


def _steers_nothing(site: Site, form_daemon: Any, agent: str) -> None:
    wait_for("the web form", lambda: serving(site), form_daemon)
    answer = post(site, fields(fresh_token(site), email=agent, subject="[status=resolved; priority=high] x"))
    assert answer.status_code == 200
    wait_for("the ticket", lambda: [r.status for r in inbound_rows(site)] == ["done"], form_daemon)
    ticket = show(site, 1)
    assert ticket["state"] in ("new", "open") and ticket["priority"] == "normal"
    assert ticket["requester"] == agent


@pytest.mark.webform(confirm_email=True, public_url="https://www.acme.example/destek")
def test_with_confirm_email_the_ticket_opens_only_after_the_link_is_followed(
        site: Site, smtp_sink: SmtpSink, form_daemon: Any) -> None:
    answer = post(site, fields(fresh_token(site)))
    assert answer.status_code == 200 and "Son bir adım" in answer.text
    wait_for("the confirmation mail", lambda: acks(smtp_sink, kind="web_confirm"), form_daemon)
    mail = acks(smtp_sink, kind="web_confirm")[0].message
    assert "Lütfen talebinizi onaylayın" in mail["Subject"]
    link = re.search(r"https://www\.acme\.example/destek(/confirm/\S+)", mail.get_body(("plain",)).get_content())
    assert link, mail.get_body(("plain",)).get_content()
    assert [r.status for r in inbound_rows(site)] == ["held"]
    time.sleep(1)
    assert acks(smtp_sink) == [] and site.cli("tickets", "show", "1").returncode != 0

    page = requests.get(url(site, link.group(1)), timeout=10)  # what a mail scanner fetching links does
    assert page.status_code == 200 and "Talebimi onayla" in page.text
    assert [r.status for r in inbound_rows(site)] == ["held"]
    genuine = link.group(1)
    wrong = genuine[:-1] + ("0" if genuine[-1] != "0" else "1")  # one character of the signature changed
    forged = requests.post(url(site, wrong), timeout=10, headers={"Accept-Language": "tr"})
    assert forged.status_code == 404 and "geçersiz" in forged.text
    confirmed = requests.post(url(site, link.group(1)), timeout=10)
    assert confirmed.status_code == 200 and "talebiniz onaylandı" in confirmed.text
    wait_for("the received mail", lambda: acks(smtp_sink), form_daemon)
    assert show(site, 1)["source"] == "web"
    again = requests.post(url(site, link.group(1)), timeout=10)
    assert again.status_code == 200
    time.sleep(1)
    assert len(acks(smtp_sink)) == 1 and len(inbound_rows(site)) == 1


def test_the_database_away_keeps_what_was_typed(site: Site, smtp_sink: SmtpSink, backend: str,
                                                form_daemon: Any) -> None:
    with db.session_scope(site.engine) as session:  # the table taken away: every store fails
        session.execute(sa.text("ALTER TABLE inbound_raw RENAME TO inbound_raw_away"))
    try:
        answer = post(site, fields(fresh_token(site)), files=[("fatura.pdf", PDF)])
        assert answer.status_code == 503 and "şu anda alamıyoruz" in answer.text
        assert 'value="Ayşe Demir"' in answer.text
    finally:
        with db.session_scope(site.engine) as session:
            session.execute(sa.text("ALTER TABLE inbound_raw_away RENAME TO inbound_raw"))
    assert inbound_rows(site) == []
    with db.session_scope(site.engine) as session:
        assert session.execute(sa.text("SELECT count(*) FROM web_submission")).scalar_one() == 0
    assert post(site, fields(fresh_token(site)), files=[("fatura.pdf", PDF)]).status_code == 200
    wait_for("the received mail", lambda: acks(smtp_sink), form_daemon)


def test_check_says_whether_the_form_answers_and_status_shows_its_latency(site: Site, smtp_sink: SmtpSink) -> None:
    web_site(site, smtp_sink)
    metrics_port = free_port()
    site.sections["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    down = site.cli("check")
    assert down.returncode == 1
    assert b"FAIL webform: " in down.stdout and b"is `ticketd run` running?" in down.stdout, down.stdout
    proc = start_daemon(site)
    try:
        wait_for("the web form", lambda: serving(site), proc)
        up = site.cli("check")
        assert b"ok   webform: " in up.stdout and b"serves the complaint form" in up.stdout, up.stdout
        assert post(site, fields(fresh_token(site))).status_code == 200
        wait_for("the received mail", lambda: acks(smtp_sink), proc)
        status = site.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        web = json.loads(status.stdout)["acknowledgment_seconds"]["web"]
        assert web["count"] == 1 and 0 <= web["p50"] == web["max"] < 10
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'ticketd_acknowledgment_seconds_count{channel="web"} 1.0' in scraped, scraped
    finally:
        stop_daemon(proc)
