"""The small parts behind a day at the helpdesk: the file budget of a mail, the fetch command it prints, the HTML
twin that keeps images inline, which mail the storm caps may hold back, strict addresses, and the one function
every state change passes through."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ticketd.daemon.outgoing.files import File, fetch_command, html_twin, pack, size_text
from ticketd.daemon.outgoing.storm import ALERT_KIND, is_capped
from ticketd.parsers.message import strict_address
from ticketd.rules.sla import BusinessCalendar
from ticketd.rules.states import StateError, change_state
from ticketd.storage.models import Event, Ticket

IST = ZoneInfo("Europe/Istanbul")


def file(n: int, size: int, inline: bool = False, name: str | None = None) -> File:
    return File(n, name or f"f{n}.bin", "application/pdf", b"x" * size, f"cid{n}@x" if inline else None, inline)


def test_pack_keeps_files_in_order_within_the_budget_and_lets_small_ones_past_a_big_one() -> None:
    packed = pack([file(1, 400), file(2, 700), file(3, 500), file(4, 100)], budget=1000)
    assert [p.filename for p in packed.parts] == ["f1.bin", "f3.bin", "f4.bin"]
    assert [f["name"] for f in packed.attached] == ["f1.bin", "f3.bin", "f4.bin"]
    assert [(f["name"], f["id"], f["bytes"]) for f in packed.left_out] == [("f2.bin", 2, 700)]
    assert packed.left_out[0]["command"] == "ticketd attachments get 2 -o f2.bin"
    assert pack([file(1, 1000)], budget=1000).left_out == ()  # exactly the budget still goes


def test_only_inline_files_keep_a_content_id() -> None:
    packed = pack([file(1, 10, inline=True), file(2, 10)], budget=100)
    assert [p.content_id for p in packed.parts] == ["cid1@x", None]
    assert packed.has_inline
    assert not pack([file(2, 10)], budget=100).has_inline


@pytest.mark.parametrize(("name", "safe"), [
    ("kılavuz.pdf", "k_lavuz.pdf"),
    ("$(rm -rf ~).pdf", "__rm_-rf___.pdf"),
    ("-rf", "rf"),
    (".bashrc", "bashrc"),
    ("a b;c|d`e'.txt", "a_b_c_d_e_.txt"),
    ("...", "attachment"),
])
def test_the_fetch_command_is_safe_to_paste_whatever_the_sender_named_the_file(name: str, safe: str) -> None:
    assert fetch_command(File(7, name, "text/plain", b"")) == f"ticketd attachments get 7 -o {safe}"


def test_html_twin_escapes_our_text_and_shows_each_inline_image() -> None:
    packed = pack([file(1, 10, inline=True, name='a"<b>.png'), file(2, 10)], budget=100)
    html = html_twin("Merhaba <script>alert(1)</script> & hoşça kal", packed.parts)
    assert "&lt;script&gt;" in html and "<script>" not in html and "&amp; hoşça kal" in html
    assert html.count("<img ") == 1
    assert 'src="cid:cid1@x"' in html and 'alt="a&quot;&lt;b&gt;.png"' in html


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (48_213, "47.1 KiB"),
                                            (1_048_575, "1.0 MiB"), (10 * 1024 * 1024, "10.0 MiB"),
                                            (3 * 1024 ** 3, "3.0 GiB")])
def test_sizes_read_as_mail_clients_show_them(size: int, text: str) -> None:
    assert size_text(size) == text


@pytest.mark.parametrize(("cause", "kind", "capped"), [
    ("inbound", "received", True), ("inbound", "agent_new", True), ("agent", "resolved", False),
    ("agent", "assigned", False), ("timer", "delayed", False), ("system", ALERT_KIND, False),
    ("inbound", ALERT_KIND, False),
])
def test_only_automatic_answers_to_inbound_mail_are_capped(cause: str, kind: str, capped: bool) -> None:
    assert is_capped(cause, kind) is capped


@pytest.mark.parametrize(("value", "expected"), [
    ("boss@musteri.com.tr", "boss@musteri.com.tr"), ("  Boss@Musteri.COM.tr ", "boss@musteri.com.tr"),
    ("Boss <boss@musteri.com.tr>", None), ("a@b.com, c@d.com", None), ("boss@localhost", None),
    ("boss@-x.com", None), ("boss@x..com", None), (".boss@x.com", None), ("bo..ss@x.com", None),
    ("boss@x.com\r\nBcc: eve@evil.example", None), ("", None), ("@x.com", None), ("a" * 320 + "@x.com", None),
])
def test_addresses_an_agent_types_are_parsed_strictly(value: str, expected: str | None) -> None:
    assert strict_address(value) == expected


class FakeSession:
    """What ``change_state`` touches of a session: its events wait in ``info`` for the batch's commit."""

    def __init__(self) -> None:
        self.info: dict[str, list[dict[str, object]]] = {}
        self.new: tuple[object, ...] = ()

    @property
    def added(self) -> list[Event]:
        return [Event(**row) for row in self.info.get("ticketd.events", [])]


CALENDAR = BusinessCalendar(IST, {d: ((time(9), time(18)),) for d in range(5)})


def test_change_state_records_stamps_and_moves_the_sla_clock() -> None:
    monday_10 = datetime(2026, 12, 7, 10, tzinfo=IST)
    due = datetime(2026, 12, 8, 10, tzinfo=IST).astimezone(UTC)
    ticket = Ticket(number=1, subject="s", requester_id=1, state="open", resolution_due=due)
    session = FakeSession()
    assert change_state(session, ticket, "pending", by="agent", actor="ali", now=monday_10,  # type: ignore[arg-type]
                        calendar=CALENDAR).changed
    assert ticket.sla_paused_at == monday_10
    back = monday_10 + timedelta(hours=3)
    change_state(session, ticket, "closed", by="agent", actor="ticketd", now=back, calendar=CALENDAR)  # type: ignore[arg-type]
    assert ticket.sla_paused_at is None and ticket.sla_paused_seconds == 3 * 3600
    assert ticket.resolution_due == due + timedelta(hours=3)  # the pause no longer hangs on after closing
    assert ticket.closed_at == back and ticket.updated_at == back
    assert [(e.what, e.old, e.new, e.at) for e in session.added if isinstance(e, Event)] == [
        ("state", "open", "pending", monday_10), ("state", "pending", "closed", back)]
    assert not change_state(session, ticket, "closed", by="agent", actor="x", now=back,  # type: ignore[arg-type]
                            calendar=CALENDAR).changed


def test_change_state_refuses_moves_outside_the_graph_unless_forced() -> None:
    ticket = Ticket(number=1, subject="s", requester_id=1, state="resolved")
    session = FakeSession()
    now = datetime(2026, 12, 7, 10, tzinfo=IST)
    with pytest.raises(StateError, match="a resolved ticket cannot become pending"):
        change_state(session, ticket, "pending", by="agent", actor="ali", now=now, calendar=CALENDAR)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="unknown state 'resolvd'; did you mean resolved"):
        change_state(session, ticket, "resolvd", by="agent", actor="ali", now=now, calendar=CALENDAR)  # type: ignore[arg-type]
    assert ticket.state == "resolved" and not session.added
    ticket.state = "rejected"
    change_state(session, ticket, "closed", by="agent", actor="ticketd", now=now, calendar=CALENDAR,  # type: ignore[arg-type]
                 force=True)
    assert ticket.state == "closed"
