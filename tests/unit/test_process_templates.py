"""The mails of the complaint process: delay, escalation, resolution, closing, rejection, reopening."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import UndefinedError

from ticketd.mailtemplates.render import make_environment, render

PROCESS_TEMPLATES = ["delayed", "escalation", "resolved", "closed", "rejected", "agent_reopened", "reopened"]
AGENT_TEMPLATES = ["escalation", "agent_reopened"]
TEMPLATE_DIR = Path(__file__).parents[2] / "mailtemplates"

SATISFIED = "mailto:support+12.k3j9@acme.example?subject=%5BACME%20%2312%5D%20Satisfied"
NOT_SATISFIED = "mailto:support+12.k3j9@acme.example?subject=%5BACME%20%2312%5D%20Not%20satisfied"


def context(**changes: Any) -> dict[str, Any]:
    """What notify.compose hands a template for ticket 12, plus every process key; ``changes`` override."""
    ticket = {
        "number": 12, "subject": "Modem bağlantısı kopuyor", "state": "open", "priority": "high",
        "type": "complaint", "category": "hardware/modem", "source": "email", "company": "Müşteri A.Ş.",
        "within_contract": True, "contract_until": "2027-01-31", "requester_name": "Çiğdem Yılmaz",
        "requester_email": "cigdem@musteri.example", "assignee_name": "Ali Veli",
        "assignee_email": "ali@acme.example", "created_at": "2026-12-04 09:12", "root_cause": "",
        "action_plan": "", "resolution": "The modem firmware was updated to 3.2.1.",
        "first_response_due": "2026-12-07 11:00", "resolution_due": "2026-12-09 18:00",
    }
    ticket.update(changes.pop("ticket", {}))
    ctx: dict[str, Any] = {
        "helpdesk": {"name": "Acme Support", "address": "support@acme.example"},
        "tag": "[ACME #12]",
        "ticket": ticket,
        "customer": {"name": "Çiğdem Yılmaz", "email": "cigdem@musteri.example"},
        "agent": {"name": "Ayşe Kaya", "email": "ayse@acme.example"},
        "breach": "resolution", "due": "2026-12-09 18:00", "overdue": "2 h 15 min",
        "text": "Please restart the modem once more.",
        "satisfied_link": SATISFIED, "not_satisfied_link": NOT_SATISFIED, "auto_close_days": 7,
        "reason": "satisfied",
        "explanation": "The outage was caused by the building's own wiring, which is outside our network.",
        "how": "link", "unhappy": True, "reopen_days": 7, "thanks": False,
        "message": {"from_name": "Çiğdem Yılmaz", "from_email": "cigdem@musteri.example",
                    "text": "Bağlantı hâlâ kopuyor."},
        # what notify.compose adds to every context
        "attached": [], "left_out": [], "files_budget": "10.5 MB", "merged_into": "",
    }
    ctx.update(changes)
    return ctx


@pytest.fixture(scope="module")
def env() -> Any:
    return make_environment()


@pytest.mark.parametrize("language", ["en", "tr"])
@pytest.mark.parametrize("name", PROCESS_TEMPLATES)
def test_every_process_template_exists_and_renders(env: Any, name: str, language: str) -> None:
    assert (TEMPLATE_DIR / language / f"{name}.txt.j2").is_file()
    mail = render(env, name, language, context())
    assert mail.subject and "\n" not in mail.subject
    assert "Modem bağlantısı kopuyor" in mail.subject
    assert mail.body.strip()
    if name not in AGENT_TEMPLATES:
        assert "[ACME #12]" not in mail.subject  # the sending code adds the tag
        greeting = "Dear Çiğdem Yılmaz," if language == "en" else "Sayın Çiğdem Yılmaz,"
        assert mail.body.startswith(greeting + "\n\n")
    else:
        assert mail.body.startswith("Ayşe Kaya,\n\n")


@pytest.mark.parametrize("name", ["delayed", "resolved", "closed", "rejected"])
def test_customer_mails_greet_anonymous_customers(env: Any, name: str) -> None:
    anonymous = {"name": "", "email": "x@y.example"}
    assert render(env, name, "en", context(customer=anonymous)).body.startswith("Hello,\n\n")
    assert render(env, name, "tr", context(customer=anonymous)).body.startswith("Merhaba,\n\n")


def test_turkish_versions_are_written_in_turkish(env: Any) -> None:
    bodies = {name: render(env, name, "tr", context()) for name in PROCESS_TEMPLATES}
    for name, mail in bodies.items():
        text = (mail.subject + mail.body).replace("Çiğdem Yılmaz", "").replace("Modem bağlantısı kopuyor", "")
        text = text.replace("Müşteri A.Ş.", "").replace("Bağlantı hâlâ kopuyor.", "").replace("Ayşe Kaya", "")
        assert any(c in text for c in "ğşı"), name  # the template's own words, not the test data
    assert bodies["delayed"].subject == "Talebinizin çözümü planlanandan uzun sürüyor: Modem bağlantısı kopuyor"
    assert "özür dileriz" in bodies["delayed"].body
    assert bodies["resolved"].subject == "Talebiniz çözüldü: Modem bağlantısı kopuyor"
    assert bodies["closed"].subject == "Talebiniz kapatıldı: Modem bağlantısı kopuyor"
    assert "Geri bildiriminiz için teşekkür ederiz" in bodies["closed"].body
    assert bodies["rejected"].subject == "Şikâyetiniz incelendi ve kapatıldı: Modem bağlantısı kopuyor"
    assert bodies["escalation"].subject == "SLA süresi aşıldı (çözüm): Modem bağlantısı kopuyor"
    assert bodies["agent_reopened"].subject == "Müşteri memnun değil, kayıt yeniden açıldı: Modem bağlantısı kopuyor"


def test_delayed_apologises_and_names_the_request(env: Any) -> None:
    mail = render(env, "delayed", "en", context())
    assert mail.subject == "Your request is taking longer than planned: Modem bağlantısı kopuyor"
    assert 'Your request 12 ("Modem bağlantısı kopuyor") is taking longer' in mail.body
    assert "apologise" in mail.body and "as soon as possible" in mail.body
    assert mail.body.rstrip().endswith("Acme Support\nThis is an automatic message.")
    tr = render(env, "delayed", "tr", context())
    assert '12 numaralı talebinizin ("Modem bağlantısı kopuyor")' in tr.body


@pytest.mark.parametrize(("breach", "en_word", "tr_word", "en_status", "tr_status"), [
    ("first_response", "first response", "ilk yanıt", "has not had an answer yet", "henüz yanıt verilmedi"),
    ("resolution", "resolution", "çözüm", "still not resolved", "henüz çözülmedi"),
])
def test_escalation_says_which_deadline_when_and_how_late(env: Any, breach: str, en_word: str, tr_word: str,
                                                          en_status: str, tr_status: str) -> None:
    ctx = context(breach=breach, due="2026-12-07 11:00", overdue="2 h 15 min")
    mail = render(env, "escalation", "en", ctx)
    assert mail.subject == f"SLA deadline missed ({en_word}): Modem bağlantısı kopuyor"
    assert f"The {en_word} deadline of [ACME #12] has been missed." in mail.body
    assert en_status in mail.body
    assert f"  Deadline:  {en_word}, due 2026-12-07 11:00\n" in mail.body
    assert "  Overdue:   2 h 15 min\n" in mail.body
    assert "  Assigned:  Ali Veli\n" in mail.body
    assert "  Company:   Müşteri A.Ş. (contract until 2027-01-31)\n" in mail.body  # _facts is included
    assert "[assign=name]" in mail.body and "[priority=urgent]" in mail.body
    other = "has not had an answer yet" if breach == "resolution" else "still not resolved"
    assert other not in mail.body
    tr = render(env, "escalation", "tr", ctx)
    assert tr.subject == f"SLA süresi aşıldı ({tr_word}): Modem bağlantısı kopuyor"
    assert f"[ACME #12] kaydının {tr_word} süresi aşıldı." in tr.body and tr_status in tr.body
    assert "  Gecikme:   2 h 15 min\n" in tr.body and "  Firma:     Müşteri A.Ş." in tr.body
    assert "[priority=urgent]" in tr.body and "[assign=" in tr.body


def test_escalation_of_an_unassigned_ticket_says_nobody(env: Any) -> None:
    ctx = context(ticket={"assignee_name": "", "assignee_email": ""})
    assert "  Assigned:  nobody\n" in render(env, "escalation", "en", ctx).body
    assert "  Atanan:    kimse\n" in render(env, "escalation", "tr", ctx).body


def test_escalation_refuses_an_unknown_breach(env: Any) -> None:
    with pytest.raises(UndefinedError):
        render(env, "escalation", "en", context(breach="first-response"))


@pytest.mark.parametrize("language", ["en", "tr"])
def test_resolved_puts_each_link_on_its_own_line(env: Any, language: str) -> None:
    mail = render(env, "resolved", language, context())
    lines = mail.body.splitlines()
    yes, no = ("Satisfied", "Not satisfied") if language == "en" else ("Memnunum", "Memnun değilim")
    assert f"{yes}: {SATISFIED}" in lines
    assert f"{no}: {NOT_SATISFIED}" in lines
    assert "The modem firmware was updated to 3.2.1." in lines
    assert "Please restart the modem once more." in lines
    assert "7 day" in mail.body or "7 gün" in mail.body


def test_resolved_says_what_a_reply_and_silence_do(env: Any) -> None:
    mail = render(env, "resolved", "en", context(auto_close_days=10))
    assert mail.subject == "Your request has been resolved: Modem bağlantısı kopuyor"
    flat = " ".join(mail.body.split())
    assert "If something is still not right, reply to this mail and tell us: that reopens your request." in flat
    assert "closed after 10 days" in flat
    assert "closed after 1 day." in " ".join(render(env, "resolved", "en", context(auto_close_days=1)).body.split())
    tr = " ".join(render(env, "resolved", "tr", context(auto_close_days=10)).body.split())
    assert "Hâlâ bir sorun varsa bu e-postayı yanıtlayarak bize yazın; talebiniz yeniden açılır." in tr
    assert "talebiniz 10 gün sonra kapatılacaktır" in tr


def test_resolved_without_resolution_or_text_has_no_empty_paragraphs(env: Any) -> None:
    mail = render(env, "resolved", "en", context(ticket={"resolution": ""}, text=""))
    assert "\n\n\n" not in mail.body
    assert "firmware" not in mail.body and "restart" not in mail.body
    assert 'has been resolved.\n\nAre you satisfied' in mail.body


@pytest.mark.parametrize("missing", ["satisfied_link", "not_satisfied_link", "auto_close_days", "text"])
def test_resolved_really_uses_its_keys(env: Any, missing: str) -> None:
    ctx = context()
    del ctx[missing]
    for language in ("en", "tr"):
        with pytest.raises(UndefinedError):
            render(env, "resolved", language, ctx)


@pytest.mark.parametrize(("name", "missing"), [
    ("escalation", "breach"), ("escalation", "due"), ("escalation", "overdue"), ("closed", "reason"),
    ("rejected", "explanation"), ("agent_reopened", "how"), ("agent_reopened", "message"), ("delayed", "ticket"),
])
def test_process_templates_really_use_their_keys(env: Any, name: str, missing: str) -> None:
    ctx = context()
    del ctx[missing]
    for language in ("en", "tr"):
        with pytest.raises(UndefinedError):
            render(env, name, language, ctx)


@pytest.mark.parametrize(("reason", "en_text", "tr_text"), [
    ("satisfied", "Thank you for your feedback.", "Geri bildiriminiz için teşekkür ederiz."),
    ("auto", "did not hear back from you", "sizden yanıt alamadığımız için"),
    ("agent", "is now closed.", "kapatılmıştır."),
])
def test_closed_explains_why_and_how_to_write_again(env: Any, reason: str, en_text: str, tr_text: str) -> None:
    mail = render(env, "closed", "en", context(reason=reason))
    assert mail.subject == "Your request has been closed: Modem bağlantısı kopuyor"
    flat = " ".join(mail.body.split())
    assert en_text in flat
    assert ("Thank you for your feedback" in flat) == (reason == "satisfied")
    assert "Thank you for contacting Acme Support." in flat
    assert "If the problem comes back within 7 days, reply to this mail and we reopen your request" in flat
    assert "write to support@acme.example: that opens a new request" in flat
    tr = " ".join(render(env, "closed", "tr", context(reason=reason)).body.split())
    assert tr_text in tr
    assert ("Geri bildiriminiz" in tr) == (reason == "satisfied")
    assert "Sorun 7 gün içinde yeniden ortaya çıkarsa bu e-postayı yanıtlayın, talebinizi yeniden açalım" in tr
    assert "support@acme.example adresine yazın: bu, yeni bir talep açar" in tr


def test_rejected_is_polite_and_carries_the_explanation(env: Any) -> None:
    explanation = context()["explanation"]
    mail = render(env, "rejected", "en", context())
    assert mail.subject == "Your complaint has been reviewed and closed: Modem bağlantısı kopuyor"
    assert explanation in mail.body.splitlines()
    flat = " ".join(mail.body.split())
    assert 'carefully reviewed your complaint 12 ("Modem bağlantısı kopuyor")' in flat
    assert "unfounded" in flat and "closed it" in flat and "We are sorry" in flat
    assert explanation in render(env, "rejected", "tr", context()).body.splitlines()
    request = render(env, "rejected", "en", context(ticket={"type": "request"}, explanation=""))
    assert request.subject == "Your request has been reviewed and closed: Modem bağlantısı kopuyor"
    assert "\n\n\n" not in request.body and "wiring" not in request.body
    tr = render(env, "rejected", "tr", context(ticket={"type": "request"}))
    assert tr.subject == "Talebiniz incelendi ve kapatıldı: Modem bağlantısı kopuyor"


@pytest.mark.parametrize(("how", "en_text", "tr_text"), [
    ("link", 'clicked the "not satisfied" link', '"memnun değilim" bağlantısını kullandı'),
    ("reply", "They replied:", "Müşteri yanıt verdi:"),
])
def test_agent_reopened_says_how_the_customer_answered(env: Any, how: str, en_text: str, tr_text: str) -> None:
    mail = render(env, "agent_reopened", "en", context(how=how))
    assert mail.subject == "Customer not satisfied, ticket reopened: Modem bağlantısı kopuyor"
    assert "Çiğdem Yılmaz <cigdem@musteri.example> is not satisfied, so [ACME #12] has been reopened." in mail.body
    assert en_text in mail.body
    assert "Bağlantı hâlâ kopuyor." in mail.body.splitlines()
    assert "  Source:    email    State: open    Assignee: Ali Veli\n" in mail.body
    tr = render(env, "agent_reopened", "tr", context(how=how))
    assert tr_text in tr.body and "  Kaynak:    email" in tr.body
    silent = render(env, "agent_reopened", "en", context(how=how, message={
        "from_name": "", "from_email": "cigdem@musteri.example", "text": ""}))
    assert "cigdem@musteri.example <cigdem@musteri.example> is not satisfied" in silent.body
    assert "\n\n\n" not in silent.body and ".\n\n--" in silent.body


@pytest.mark.parametrize(("first", "resolution", "en_line", "tr_line"), [
    ("2026-12-07 11:00", "2026-12-09 18:00",
     "  Due:       first response 2026-12-07 11:00, resolution 2026-12-09 18:00",
     "  Son tarih: ilk yanıt 2026-12-07 11:00, çözüm 2026-12-09 18:00"),
    ("", "2026-12-09 18:00", "  Due:       resolution 2026-12-09 18:00", "  Son tarih: çözüm 2026-12-09 18:00"),
    ("2026-12-07 11:00", "", "  Due:       first response 2026-12-07 11:00",
     "  Son tarih: ilk yanıt 2026-12-07 11:00"),
    ("", "", None, None),
])
@pytest.mark.parametrize("name", ["agent_new", "agent_update", "escalation", "agent_reopened"])
def test_facts_show_due_times_only_when_set(env: Any, name: str, first: str, resolution: str,
                                            en_line: str | None, tr_line: str | None) -> None:
    ctx = context(ticket={"first_response_due": first, "resolution_due": resolution})
    ctx["message"]["attachments"] = []
    en = render(env, name, "en", ctx).body.splitlines()
    tr = render(env, name, "tr", ctx).body.splitlines()
    source = next(i for i, line in enumerate(en) if line.startswith("  Source:"))
    kaynak = next(i for i, line in enumerate(tr) if line.startswith("  Kaynak:"))
    if en_line is None:
        assert not any(line.startswith("  Due:") for line in en)
        assert not any(line.startswith("  Son tarih:") for line in tr)
        assert en[source + 1] == "" and tr[kaynak + 1] == ""
    else:
        assert en[source + 1] == en_line  # right after the Source line
        assert tr[kaynak + 1] == tr_line
        assert en[source + 2] == "" and tr[kaynak + 2] == ""


def test_operator_override_replaces_only_that_template(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "resolved.txt.j2").write_text(
        "Subject: Done: {{ ticket.subject }}\n\nSee {{ satisfied_link }}\n", encoding="utf-8")
    env = make_environment(tmp_path)
    mail = render(env, "resolved", "en", context())
    assert mail.subject == "Done: Modem bağlantısı kopuyor"
    assert mail.body == f"See {SATISFIED}\n"
    # Everything else still comes from the package, including Turkish `resolved` and the _facts include.
    assert render(env, "resolved", "tr", context()).subject == "Talebiniz çözüldü: Modem bağlantısı kopuyor"
    assert render(env, "closed", "en", context()).subject == "Your request has been closed: Modem bağlantısı kopuyor"
    assert "  Overdue:   2 h 15 min" in render(env, "escalation", "en", context()).body
    # The package's own environment is unaffected.
    assert render(make_environment(), "resolved", "en", context()).subject.startswith("Your request has been resolved")


def test_agent_reopened_tells_a_question_from_dissatisfaction(env: Any) -> None:
    """A customer who asks something after the resolution reopened the ticket, but is not called unhappy."""
    mail = render(env, "agent_reopened", "en", context(how="reply", unhappy=False))
    assert mail.subject == "Customer wrote again, ticket reopened: Modem bağlantısı kopuyor"
    assert "wrote on [ACME #12] after it was finished, so it has been reopened." in mail.body
    assert "not satisfied" not in mail.body
    tr = render(env, "agent_reopened", "tr", context(how="reply", unhappy=False))
    assert tr.subject == "Müşteri yeniden yazdı, kayıt yeniden açıldı: Modem bağlantısı kopuyor"


@pytest.mark.parametrize(("how", "en_text", "tr_text"), [
    ("link", "You told us you are not satisfied", "memnun kalmadığınızı bildirdiniz"),
    ("reply", "Thank you for your message.", "Mesajınız için teşekkür ederiz."),
    ("agent", "We have reopened your request [ACME #12]", "[ACME #12] numaralı talebinizi"),
])
def test_reopened_tells_the_customer_why(env: Any, how: str, en_text: str, tr_text: str) -> None:
    mail = render(env, "reopened", "en", context(how=how))
    assert mail.subject == "Your request has been reopened: Modem bağlantısı kopuyor"
    assert en_text in " ".join(mail.body.split())
    tr = render(env, "reopened", "tr", context(how=how))
    assert tr.subject == "Talebiniz yeniden açıldı: Modem bağlantısı kopuyor"
    assert tr_text in " ".join(tr.body.split())


def test_files_are_listed_and_those_left_out_name_the_command(env: Any) -> None:
    """Agents see what is attached and how to fetch what was too large; customers see no command."""
    files = {"attached": [{"name": "ekran.png", "size": "48.2 kB"}],
             "left_out": [{"name": "video.mp4", "size": "42.0 MB",
                           "command": "ticketd attachments get 9 -o video.mp4"}]}
    agent = render(env, "agent_update", "en", context(thanks=False, **files)).body
    assert "Attached: ekran.png (48.2 kB)" in agent
    assert "Not attached (over the 10.5 MB a mail may carry)" in agent
    assert "  video.mp4 (42.0 MB): ticketd attachments get 9 -o video.mp4" in agent
    customer = render(env, "resolved", "en", context(**files)).body
    assert "Attached: ekran.png (48.2 kB)" in customer and "video.mp4 (42.0 MB)" in customer
    assert "ticketd" not in customer
    tr = render(env, "agent_update", "tr", context(thanks=False, **files)).body
    assert "Ekler: ekran.png (48.2 kB)" in tr and "ticketd attachments get 9" in tr
