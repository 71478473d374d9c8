"""What a customer writes after their ticket is resolved or closed is read as they mean it (Build 3): a thank-you
leaves the ticket as it is and records no dissatisfaction, a complaint reopens it as not satisfied, a question
reopens it; a closed ticket reopens only within `[closing] reopen_within`. The customer hears of every
reopening. Real SQLite and PostgreSQL, real aiosmtpd; mail enters as through `ticketd deliver`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from conftest import DATA, Desk, body_of, mail_to, reply_to

pytestmark = pytest.mark.integration

ALI, AYSE, CIGDEM = "ali@acme.example", "ayse@acme.example", "cigdem.yilmaz@musteri.com.tr"


def resolved_ticket(desk: Desk) -> Any:
    """Çiğdem's ticket, taken and resolved by Ali; returns the resolved mail she got."""
    desk.deliver((DATA / "known-customer-rfc2047-subject.eml").read_bytes())
    notification = mail_to(desk.new_mail(), ALI)
    desk.deliver(reply_to(notification, ALI, "Modeminizi yeniden başlattık.", subject_suffix="[take; resolve]"))
    return mail_to(desk.new_mail(), CIGDEM)


def kinds(mails: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.envelope_to[0], m.message["X-Ticketd-Kind"]) for m in mails)


@pytest.mark.parametrize("words", [
    "Çok teşekkürler, artık çalışıyor!", "teşekkürler, çalıştı", "Thanks, that fixed it!", "Danke, funktioniert.",
    "Çok teşekkür ederim 🙏\n\nÇiğdem Yılmaz\nMüşteri A.Ş.",
])
def test_a_thank_you_leaves_the_ticket_resolved_and_the_assignee_sees_it(desk: Desk, words: str) -> None:
    resolved = resolved_ticket(desk)
    desk.deliver(reply_to(resolved, CIGDEM, words))
    mails = desk.new_mail()
    assert kinds(mails) == [(ALI, "agent_update")]  # no reopening mail to the customer, nothing to the managers
    assert "Customer thanks you" in mails[0].message["Subject"]
    assert "the ticket stays resolved and no satisfaction answer was recorded" in " ".join(body_of(mails[0]).split())
    ticket = desk.ticket(1)
    assert (ticket["state"], ticket["satisfaction"]) == ("resolved", None)
    assert ("customer-thanks", words.splitlines()[0]) in [(e["what"], e["new"].splitlines()[0])
                                                          for e in ticket["events"] if e["new"]]


def test_still_not_working_reopens_it_as_not_satisfied_and_everyone_hears(desk: Desk) -> None:
    resolved = resolved_ticket(desk)
    desk.deliver(reply_to(resolved, CIGDEM, "Maalesef hâlâ çalışmıyor, bağlantı yine koptu."))
    mails = desk.new_mail()
    assert kinds(mails) == [(ALI, "agent_reopened"), (AYSE, "agent_reopened"), (CIGDEM, "reopened")]
    assert "Customer not satisfied" in mail_to(mails, AYSE).message["Subject"]
    assert mail_to(mails, CIGDEM).message["Subject"] == \
        "[ACME #1] Talebiniz yeniden açıldı: Modem bağlantısı sürekli kopuyor"
    ticket = desk.ticket(1)
    assert (ticket["state"], ticket["satisfaction"]) == ("open", "not-satisfied")


def test_a_question_reopens_it_without_calling_the_customer_unhappy(desk: Desk) -> None:
    resolved = resolved_ticket(desk)
    desk.deliver(reply_to(resolved, CIGDEM, "Peki modemin şifresini nasıl değiştirebilirim?"))
    mails = desk.new_mail()
    assert kinds(mails) == [(ALI, "agent_reopened"), (CIGDEM, "reopened")]  # the assignee; no manager alarm
    assert "Customer wrote again" in mail_to(mails, ALI).message["Subject"]
    ticket = desk.ticket(1)
    assert (ticket["state"], ticket["satisfaction"]) == ("open", None)


def test_the_not_satisfied_link_reopens_and_the_customer_is_told(desk: Desk) -> None:
    from ticketd.daemon.cli.demo import click

    resolved = resolved_ticket(desk)
    desk.deliver(click(resolved, CIGDEM, "not-satisfied"))
    mails = desk.new_mail()
    assert kinds(mails) == [(ALI, "agent_reopened"), (AYSE, "agent_reopened"), (CIGDEM, "reopened")]
    assert "memnun kalmadığınızı bildirdiniz" in " ".join(body_of(mail_to(mails, CIGDEM)).split())


def closed_ticket(desk: Desk) -> tuple[Any, datetime]:
    """Çiğdem's ticket closed by her satisfied click; returns the closed mail and when it was closed."""
    from ticketd.daemon.cli.demo import click

    resolved = resolved_ticket(desk)
    desk.deliver(click(resolved, CIGDEM, "satisfied"))
    closed = mail_to(desk.new_mail(), CIGDEM)
    assert closed.message["X-Ticketd-Kind"] == "closed"
    return closed, datetime.fromisoformat(desk.ticket(1)["closed_at"])


def test_a_closed_ticket_reopens_within_the_window(desk: Desk) -> None:
    closed, at = closed_ticket(desk)
    assert "If the problem comes back within 7 days" not in body_of(closed)  # Turkish customer
    assert "7 gün içinde yeniden ortaya çıkarsa" in " ".join(body_of(closed).split())
    desk.deliver(reply_to(closed, CIGDEM, "Sorun yeniden başladı, modem yine kopuyor."),
                 clock=lambda: at + timedelta(days=6, hours=23))
    mails = desk.new_mail()
    assert (CIGDEM, "reopened") in kinds(mails) and (ALI, "agent_reopened") in kinds(mails)
    assert desk.ticket(1)["state"] == "open"
    assert desk.site.cli("tickets", "list", "--json").stdout.count(b'"number"') == 1  # no new ticket


def test_after_the_window_a_new_ticket_is_linked_to_the_old_one(desk: Desk) -> None:
    closed, at = closed_ticket(desk)
    outcome = desk.deliver(reply_to(closed, CIGDEM, "Sorun yeniden başladı, modem yine kopuyor."),
                           clock=lambda: at + timedelta(days=7, minutes=1))
    assert outcome.new_ticket and outcome.ticket_number == 2
    assert desk.ticket(1)["state"] == "closed"
    assert ("linked", "#1") in [(e["what"], e["new"]) for e in desk.ticket(2)["events"]]
    assert mail_to(desk.new_mail(), CIGDEM).message["X-Ticketd-Kind"] == "received"


def test_reopen_within_is_config(desk: Desk) -> None:
    desk.site.sections["closing"] = {"reopen_within": "2d"}
    closed, at = closed_ticket(desk)
    outcome = desk.deliver(reply_to(closed, CIGDEM, "Modem yine kopuyor."),
                           clock=lambda: at + timedelta(days=3))
    assert outcome.new_ticket


def test_a_thank_you_on_a_closed_ticket_changes_nothing_and_opens_nothing(desk: Desk) -> None:
    closed, at = closed_ticket(desk)
    outcome = desk.deliver(reply_to(closed, CIGDEM, "Teşekkürler!"), clock=lambda: at + timedelta(days=30))
    assert not outcome.new_ticket and outcome.ticket_number == 1
    assert kinds(desk.new_mail()) == [(ALI, "agent_update")]
    assert desk.ticket(1)["state"] == "closed"


def test_an_agent_reopening_a_ticket_tells_the_customer(desk: Desk) -> None:
    resolved_ticket(desk)
    notification = [m for m in desk.sink.received if ALI in m.envelope_to][-1]
    desk.deliver(reply_to(notification, ALI, "", subject_suffix="[reopen]"))
    told = mail_to(desk.new_mail(), CIGDEM)
    assert told.message["X-Ticketd-Kind"] == "reopened"
    assert "yeniden açtık" in body_of(told)


def test_the_reopen_window_must_be_a_duration(desk: Desk) -> None:
    desk.site.sections["closing"] = {"reopen_within": "soon"}
    proc = desk.site.cli("check")
    assert proc.returncode == 2
    assert b'closing.reopen_within: must be a calendar duration like "5d"' in proc.stderr
