"""Whatever arrives, the pipeline gives an outcome, and nothing from a mail reaches a header we write with CR/LF."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from conftest import Desk
from ticketd.storage.models import Outbox

pytestmark = pytest.mark.integration

header_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=header_text, subject=header_text, body=st.binary(max_size=300))
def test_arbitrary_mail_never_escapes_the_pipeline(desk: Desk, name: str, subject: str, body: bytes) -> None:
    crafted = (f"From: {name} <someone@example.org>\r\nTo: support@acme.example\r\nSubject: {subject}\r\n"
               f"Message-ID: <{abs(hash((name, subject, body)))}@example.org>\r\n\r\n").encode() + body
    outcome = desk.deliver(crafted)
    assert outcome.status in ("done", "dropped"), outcome
    with Session(desk.site.engine) as session:
        for row in session.exec(select(Outbox)):
            for value in (row.subject, row.to_addrs, row.cc_addrs, row.message_id, *row.headers.values()):
                assert "\r" not in value and "\n" not in value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_get_an_outcome(desk: Desk, raw: bytes) -> None:
    outcome = desk.deliver(raw or b"\r\n")
    assert outcome.status in ("done", "dropped"), outcome


def _plain(*headers: str, body: str = "Merhaba.") -> bytes:
    return ("\r\n".join(("To: support@acme.example", *headers)) + f"\r\n\r\n{body}\r\n").encode()


OVERSIZED = {  # values the columns cannot hold (PostgreSQL refuses them, SQLite stored them) and NUL characters
    "sender-address": _plain(f"From: X <a@{'b' * 330}.org>", "Subject: hi", "Message-ID: <o1@x>"),
    "message-id": _plain("From: x@example.org", "Subject: hi", f"Message-ID: <{'m' * 1200}@x>"),
    "cc-address": _plain("From: x@example.org", f"Cc: {'c' * 400}@example.org", "Subject: hi", "Message-ID: <o3@x>"),
    "references": _plain("From: x@example.org", "Subject: hi", "Message-ID: <o4@x>",
                         f"In-Reply-To: <{'r' * 1500}@x>", f"References: <{'q' * 1500}@x>"),
    "name-and-subject": _plain(f"From: {'N' * 2000} <n@example.org>", f"Subject: {'S' * 5000}", "Message-ID: <o5@x>"),
    "nul": _plain("From: Ali\x00 <ali@example.org>", "Subject: a\x00b", "Message-ID: <o6\x00@x>", body="x\x00y"),
}


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_oversized_values_and_nul_never_fail_a_mail(desk: Desk, case: str) -> None:
    outcome = desk.deliver(OVERSIZED[case])
    assert outcome.status in ("done", "dropped"), outcome
