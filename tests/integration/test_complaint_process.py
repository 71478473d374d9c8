"""The complaint process of ISO 10002, end to end through the real pipeline, SQLite and the SMTP server:
triage rules, web forms, the contract check and [quote], assignment policies, and the closing workflow with
the customer's satisfaction answer (one-click links and plain replies) and auto-closing."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from fakeclock import ahead

from conftest import DATA, TICKETD, Desk, Site, body_of, decode, mail_to, reply_to

pytestmark = pytest.mark.integration

ALI, AYSE, MURAT, SELIN = "ali@acme.example", "ayse@acme.example", "murat@acme.example", "selin@acme.example"
CIGDEM = "cigdem.yilmaz@musteri.com.tr"
PROCESS = DATA / "process"
RULES = [
    {"name": "complaints-by-word", "match": {"subject": "(?i)şikayet|complain"},
     "set": {"type": "complaint", "priority": "high"}, "continue": True},
    {"name": "modem", "match": {"body": "(?i)modem"}, "set": {"category": "hardware/modem", "group": "network"}},
    {"name": "complaints-mailbox", "match": {"recipient": "complaints@acme.example", "has_attachment": True},
     "set": {"type": "complaint", "category": "hardware/cable", "priority": "urgent", "assignee": ALI}},
    {"name": "invoices", "match": {"sender_domain": "ozturk-insaat.com.tr", "subject": "(?i)fatura"},
     "set": {"category": "billing/invoice", "group": "finance"}},
    {"name": "questions", "match": {"subject": r"\?$"}, "set": {"type": "information", "priority": "low"}},
]


def process_sections(site: Site, rules: list[dict[str, Any]] = RULES) -> None:
    site.sections["categories"] = {"tree": ["hardware/modem", "hardware/cable", "billing/invoice",
                                            "service/installation"]}
    site.sections["groups"] = [{"name": "network", "policy": "round-robin"},
                               {"name": "finance", "policy": "least-open"}]
    site.sections["rules"] = rules
    site.sections["webforms"] = [{"sender": "forms@acme.example"}]


@pytest.fixture
def pdesk(desk: Desk) -> Desk:
    from ticketd.storage import db
    from ticketd.storage.directory import upsert_agent

    process_sections(desk.site)
    with db.session_scope(desk.site.engine) as session:
        upsert_agent(session, MURAT, "Murat Kaya", "agent", ["finance"])
        upsert_agent(session, SELIN, "Selin Aksoy", "agent", ["finance"])
    return desk


def deliver(desk: Desk, name: str) -> tuple[dict[str, Any], list[Any]]:
    outcome = desk.deliver((PROCESS / name).read_bytes())
    assert outcome.status == "done", outcome
    return desk.ticket(outcome.ticket_number), desk.new_mail()


def whats(ticket: dict[str, Any], *names: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["what"], e["old"], e["new"]) for e in ticket["events"] if e["what"] in names]


# --- 1. triage rules --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("eml", "expected", "rules"), [
    ("complaint-tr.eml", {"type": "complaint", "priority": "high", "category": "hardware/modem", "group": "network",
                          "source": "email"}, ["complaints-by-word", "modem"]),
    ("complaint-with-attachment.eml", {"type": "complaint", "priority": "urgent", "category": "hardware/cable",
                                       "assignee": ALI, "state": "open"}, ["complaints-mailbox"]),
    ("invoice-request.eml", {"type": "request", "priority": "normal", "category": "billing/invoice",
                             "group": "finance"}, ["invoices"]),
    ("information-question.eml", {"type": "information", "priority": "low", "category": None, "group": None,
                                  "assignee": None, "state": "new"}, ["questions"]),
    # The web form's mail is the customer's: the rules read the subject the visitor typed.
    ("webform.eml", {"source": "web", "requester": "mehmet.kaya@example.net", "type": "information",
                     "subject": "Kablo kurulumu ne zaman yapılır?"}, ["questions"]),
])
def test_rules_route_sample_mail(pdesk: Desk, eml: str, expected: dict[str, Any], rules: list[str]) -> None:
    ticket, mails = deliver(pdesk, eml)
    assert {k: ticket[k] for k in expected} == expected
    matched = [new.split(":")[0] for _, _, new in whats(ticket, "rule")]
    assert matched == rules
    assert all(e["actor"] == "ticketd" for e in ticket["events"] if e["what"] == "rule")
    acks = [m for m in mails if ticket["requester"] in m.envelope_to]
    assert "received" in acks[0].message["Subject"].lower() or "alındı" in acks[0].message["Subject"].lower()


def test_web_form_mail_answers_the_customer_and_shows_its_source(pdesk: Desk) -> None:
    _, mails = deliver(pdesk, "webform.eml")
    ack = mail_to(mails, "mehmet.kaya@example.net")
    assert "Mehmet Kaya" in str(ack.message["To"])
    notification = mail_to(mails, ALI)
    assert "Source:    web" in body_of(notification)
    assert not any("forms@acme.example" in m.envelope_to for m in mails)


def test_a_rule_naming_an_unknown_category_stops_start_up(site: Site) -> None:
    process_sections(site, [{"name": "typo", "match": {"subject": "modem"}, "set": {"category": "hardware/modm"}}])
    proc = site.cli("check")
    out, err = decode(proc)
    assert proc.returncode == 2, out + err
    assert "rules.0.set.category: unknown category 'hardware/modm'" in err
    assert "hardware/modem" in err  # the hint names the category they meant


def test_a_rule_with_a_broken_regex_stops_start_up(site: Site) -> None:
    process_sections(site, [{"name": "broken", "match": {"subject": "(unclosed"}, "set": {"priority": "high"}}])
    proc = site.cli("run", "--once")
    out, err = decode(proc)
    assert proc.returncode == 2, out + err
    assert "rules.0.match.subject" in err and "regular expression" in err


# --- 4. contracts and [quote] -----------------------------------------------------------------------------------

def test_out_of_contract_request_is_flagged_and_quote_sends_the_offer(pdesk: Desk) -> None:
    from datetime import UTC, datetime

    from sqlmodel import select

    from ticketd.storage import db
    from ticketd.storage.models import Company

    with db.session_scope(pdesk.site.engine) as session:
        company = session.exec(select(Company)).one()
        company.contract_until = datetime(2026, 6, 30, tzinfo=UTC)
    ticket, mails = deliver(pdesk, "complaint-tr.eml")
    assert ticket["within_contract"] is False
    assert ("contract", None, "out of contract (ended 2026-06-30)") in whats(ticket, "contract")
    notification = mail_to(mails, ALI)
    assert "OUT OF CONTRACT, ended 2026-06-30" in body_of(notification)
    pdesk.deliver(reply_to(notification, ALI, "", subject_suffix="[quote]"))
    quote = mail_to(pdesk.new_mail(), CIGDEM)
    assert "teklif" in body_of(quote)  # Çiğdem reads Turkish: "an offer will follow"


def test_a_company_with_a_running_contract_is_within_it(pdesk: Desk) -> None:
    from datetime import UTC, datetime

    from sqlmodel import select

    from ticketd.storage import db
    from ticketd.storage.models import Company

    with db.session_scope(pdesk.site.engine) as session:
        session.exec(select(Company)).one().contract_until = datetime(2030, 1, 1, tzinfo=UTC)
    ticket, mails = deliver(pdesk, "complaint-tr.eml")
    assert ticket["within_contract"] is True
    assert "OUT OF CONTRACT" not in body_of(mail_to(mails, ALI))


# --- 5. assignment policies -------------------------------------------------------------------------------------

def new_request(desk: Desk, n: int, subject: str) -> dict[str, Any]:
    msg = EmailMessage()
    msg["From"] = f"Customer {n} <customer{n}@example.com>"
    msg["To"] = "support@acme.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<req-{n}-{secrets.token_hex(4)}@example.com>"
    msg.set_content(f"My modem number {n} keeps dropping the line.\n")
    outcome = desk.deliver(bytes(msg))
    return desk.ticket(outcome.ticket_number)


def test_round_robin_spreads_tickets_and_skips_an_away_agent(pdesk: Desk) -> None:
    from ticketd.storage import db
    from ticketd.storage.directory import upsert_agent

    with db.session_scope(pdesk.site.engine) as session:
        upsert_agent(session, "deniz@acme.example", "Deniz Uçar", "agent", ["network"])
    assignees = [new_request(pdesk, n, f"modem {n}")["assignee"] for n in range(15)]
    assert assignees == [ALI, AYSE, "deniz@acme.example"] * 5
    assert pdesk.site.cli("agents", "away", "deniz@acme.example").returncode == 0
    assignees = [new_request(pdesk, n, f"modem {n}")["assignee"] for n in range(15, 30)]
    assert assignees == [ALI, AYSE] * 7 + [ALI]
    mails = pdesk.new_mail()
    assigned = [m for m in mails if m.envelope_to == ["customer29@example.com"] and "assigned" in
                m.message["Subject"].lower()]
    assert len(assigned) == 1 and "Ali Veli" in assigned[0].message["Subject"]
    assert not any("deniz@acme.example" in m.envelope_to for m in mails[-40:])


def test_least_open_balances_the_load_and_skips_an_away_agent(pdesk: Desk) -> None:
    from ticketd.storage import db
    from ticketd.storage.directory import upsert_agent

    with db.session_scope(pdesk.site.engine) as session:
        upsert_agent(session, "emre@acme.example", "Emre Tekin", "agent", ["finance"])
    assert pdesk.site.cli("agents", "away", "emre@acme.example").returncode == 0
    # Murat already carries 6 open tickets (taken by hand); Selin none.
    for n in range(6):
        ticket = new_request(pdesk, 100 + n, "Genel soru")
        notification = mail_to(pdesk.new_mail(), ALI)
        pdesk.deliver(reply_to(notification, ALI, "", subject_suffix=f"[assign={MURAT}]"))
        assert pdesk.ticket(ticket["number"])["assignee"] == MURAT
    load = {MURAT: 6, SELIN: 0}
    for n in range(30):
        msg_subject = f"fatura {n}"
        ticket = new_request_from(pdesk, n, "ozturk-insaat.com.tr", msg_subject)
        assert ticket["assignee"] in load, ticket
        least = min(load.values())
        assert load[ticket["assignee"]] == least  # always someone with the fewest open tickets
        load[ticket["assignee"]] += 1
    assert load == {MURAT: 18, SELIN: 18}


def new_request_from(desk: Desk, n: int, domain: str, subject: str) -> dict[str, Any]:
    msg = EmailMessage()
    msg["From"] = f"Person {n} <person{n}@{domain}>"
    msg["To"] = "support@acme.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<inv-{n}-{secrets.token_hex(4)}@{domain}>"
    msg.set_content("Faturamız hakkında.\n")
    return desk.ticket(desk.deliver(bytes(msg)).ticket_number)


# --- 3. the closing workflow ------------------------------------------------------------------------------------

def answer_link(link: str, customer: str, body: str = "") -> bytes:
    """What a mail client sends for a mailto: link: to its address, with its subject."""
    parts = urlsplit(link)
    subject = unquote(parts.query.removeprefix("subject="))
    return (f"From: {customer}\r\nTo: {parts.path}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@client.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def links(mail: Any) -> dict[str, str]:
    found = {}
    for line in body_of(mail).splitlines():
        if "mailto:" in line:
            link = line[line.index("mailto:"):].strip()
            found["not-satisfied" if "not-satisfied" in unquote(link) else "satisfied"] = link
    return found


def test_full_complaint_path_with_every_step_in_the_history(pdesk: Desk) -> None:
    ticket, mails = deliver(pdesk, "complaint-tr.eml")
    number = ticket["number"]
    assigned_to = ticket["assignee"]
    assert assigned_to == ALI and ticket["state"] == "open"  # round-robin in "network" starts with Ali
    customer_mails = [m for m in mails if CIGDEM in m.envelope_to]
    # "Talebiniz alındı", then "Talebiniz Ali Veli adlı çalışanımıza atandı": Çiğdem reads Turkish.
    assert [m.message["Subject"].split(":")[0] for m in customer_mails] == [
        "[ACME #1] Talebiniz alındı", "[ACME #1] Talebiniz Ali Veli adlı çalışanımıza atandı"]
    notification = mail_to(mails, ALI)

    # Resolving a complaint without its root cause and action plan is refused, and nothing changes.
    pdesk.deliver(reply_to(notification, ALI, "Modem değiştirildi.", subject_suffix="[resolve]"))
    refusal = mail_to(pdesk.new_mail(), ALI)
    assert "Root-Cause:" in body_of(refusal) and "Action-Plan:" in body_of(refusal)
    assert pdesk.ticket(number)["state"] == "open"

    body = ("Root-Cause: faulty modem power supply\nAction-Plan: replace the supply in every modem of the batch\n"
            "Modeminizin güç adaptörünü değiştirdik.")
    pdesk.deliver(reply_to(notification, ALI, body, subject_suffix="[resolve]"))
    [resolved] = pdesk.new_mail()
    assert resolved.envelope_to == [CIGDEM]
    assert "güç adaptörünü" in body_of(resolved)
    first_links = links(resolved)
    assert set(first_links) == {"satisfied", "not-satisfied"}

    # Not satisfied: reopened, the assignee and the managers are told, and the customer hears it is open again.
    pdesk.deliver(answer_link(first_links["not-satisfied"], CIGDEM))
    told = pdesk.new_mail()
    assert sorted(a for m in told for a in m.envelope_to) == [ALI, AYSE, CIGDEM]
    assert pdesk.ticket(number)["state"] == "open"

    pdesk.deliver(reply_to(notification, ALI, "Yeni adaptör kargoya verildi.", subject_suffix="[resolve]"))
    [resolved_again] = pdesk.new_mail()
    pdesk.deliver(answer_link(links(resolved_again)["satisfied"], CIGDEM))
    [closed] = pdesk.new_mail()
    assert closed.envelope_to == [CIGDEM]
    final = pdesk.ticket(number)
    assert final["state"] == "closed" and final["satisfaction"] == "satisfied"
    assert final["root_cause"] == "faulty modem power supply"
    states = [(old, new) for what, old, new in whats(final, "state")]
    assert states == [("new", "open"), ("open", "resolved"), ("resolved", "open"), ("open", "resolved"),
                      ("resolved", "closed")]
    answers = [new for _, _, new in whats(final, "satisfaction")]
    assert answers == ["not-satisfied", "satisfied"]


def test_a_question_after_the_answer_reopens_without_dissatisfaction(pdesk: Desk) -> None:
    ticket, mails = deliver(pdesk, "information-question.eml")
    notification = mail_to(mails, ALI)
    pdesk.deliver(reply_to(notification, ALI, "We are open 09:00-18:00 on weekdays.", subject_suffix="[resolve]"))
    [resolved] = pdesk.new_mail()
    assert "09:00-18:00" in body_of(resolved)  # an information request answered and resolved in one reply
    pdesk.deliver(reply_to(resolved, "jane@example.org", "And on December 31st?"))
    told = pdesk.new_mail()
    after = pdesk.ticket(ticket["number"])
    assert after["state"] == "open" and after["satisfaction"] is None  # a question is more work, not a complaint
    assert any("December 31st" in body_of(m) for m in told)


def test_a_complaint_about_the_answer_means_not_satisfied(pdesk: Desk) -> None:
    ticket, mails = deliver(pdesk, "information-question.eml")
    pdesk.deliver(reply_to(mail_to(mails, ALI), ALI, "We are open 09:00-18:00.", subject_suffix="[resolve]"))
    [resolved] = pdesk.new_mail()
    pdesk.deliver(reply_to(resolved, "jane@example.org", "That is not true, you were closed at 17:00 and nobody "
                           "answered. I am not satisfied."))
    after = pdesk.ticket(ticket["number"])
    assert after["state"] == "open" and after["satisfaction"] == "not-satisfied"
    told = {a for m in pdesk.new_mail() for a in m.envelope_to}
    assert {ALI, AYSE, "jane@example.org"} <= told  # nobody had it: every agent at work, and the manager


def test_reject_closes_with_the_agents_explanation(pdesk: Desk) -> None:
    ticket, mails = deliver(pdesk, "complaint-tr.eml")
    notification = mail_to(mails, ALI)
    pdesk.deliver(reply_to(notification, ALI, "Kayıtlarımıza göre bağlantı kesintisi yaşanmamıştır.",
                           subject_suffix="[reject]"))
    [rejected] = pdesk.new_mail()
    assert rejected.envelope_to == [CIGDEM] and "kesintisi yaşanmamıştır" in body_of(rejected)
    assert pdesk.ticket(ticket["number"])["state"] == "rejected"


def test_auto_close_after_the_configured_days_with_the_real_command(pdesk: Desk) -> None:
    if shutil.which("faketime") is None:
        pytest.fail("faketime is not installed; `make test` installs it (apt-get install faketime)")
    pdesk.site.sections["closing"] = {"auto_close_after": "5d"}
    ticket, mails = deliver(pdesk, "information-question.eml")
    pdesk.deliver(reply_to(mail_to(mails, ALI), ALI, "Weekdays 09:00-18:00.", subject_suffix="[resolve]"))
    pdesk.new_mail()
    config = str(pdesk.site.write())

    def run_once(days: int) -> None:
        proc = subprocess.run([*ahead(days * 86400), str(TICKETD), "--config", config, "run", "--once"],
                              capture_output=True, env={**os.environ}, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr.decode()

    run_once(4)
    assert pdesk.new_mail() == [] and pdesk.ticket(ticket["number"])["state"] == "resolved"
    run_once(6)
    [closed] = pdesk.new_mail()
    assert closed.envelope_to == ["jane@example.org"]
    after = pdesk.ticket(ticket["number"])
    assert after["state"] == "closed" and any(e["what"] == "auto-close" for e in after["events"])
    run_once(8)
    assert pdesk.new_mail() == []  # closed once


# --- templates ------------------------------------------------------------------------------------------------

def test_operator_templates_replace_the_packaged_ones(pdesk: Desk) -> None:
    own = pdesk.site.dir / "templates" / "en"
    own.mkdir(parents=True)
    (own / "received.txt.j2").write_text("Subject: We have it: {{ ticket.subject }}\n\n"
                                         "Ticket {{ ticket.number }} is ours now.\n")
    pdesk.site.sections["helpdesk"]["templates_dir"] = "templates"
    ticket, mails = deliver(pdesk, "information-question.eml")
    [ack] = [m for m in mails if m.message["X-Ticketd-Kind"] == "received"]
    assert ack.message["Subject"] == f"[ACME #{ticket['number']}] We have it: What are your opening hours?"
    assert body_of(ack).strip() == f"Ticket {ticket['number']} is ours now."
    agent_mail = mail_to(mails, ALI)  # everything else still comes from the package
    assert "Reply to this mail to answer the customer" in body_of(agent_mail)


def test_a_missing_templates_dir_stops_start_up(site: Site) -> None:
    site.sections["helpdesk"]["templates_dir"] = "no-such-folder"
    proc = site.cli("check")
    out, err = decode(proc)
    assert proc.returncode == 2 and "helpdesk.templates_dir:" in err and "is not a directory" in err, out + err


# --- deadlines and classification by command --------------------------------------------------------------------

def test_sla_plan_and_priority_change_set_the_deadlines(pdesk: Desk) -> None:
    from datetime import datetime

    from sqlmodel import select

    from ticketd.storage import db
    from ticketd.storage.models import Company

    pdesk.site.sections["sla.plans.gold.first_response"] = {"high": "30m"}
    pdesk.site.sections["sla.plans.gold.resolution"] = {"urgent": "2h"}
    with db.session_scope(pdesk.site.engine) as session:
        session.exec(select(Company)).one().sla_plan = "gold"
    ticket, mails = deliver(pdesk, "complaint-tr.eml")  # high priority by the rules, Çiğdem's company is gold
    calendar = pdesk.site.config().calendar
    opened = datetime.fromisoformat(ticket["created_at"])
    assert datetime.fromisoformat(ticket["first_response_due"]) == calendar.add(opened, parse("30m"))
    assert datetime.fromisoformat(ticket["resolution_due"]) == calendar.add(opened, parse("1d"))  # plan: only urgent
    assert "Due:" in body_of(mail_to(mails, ALI))

    pdesk.deliver(reply_to(mail_to(mails, ALI), ALI, "", subject_suffix="[priority=urgent]"))
    after = pdesk.ticket(ticket["number"])
    assert datetime.fromisoformat(after["resolution_due"]) == calendar.add(opened, parse("2h"))
    assert datetime.fromisoformat(after["first_response_due"]) == calendar.add(opened, parse("1h"))  # default


def parse(text: str) -> Any:
    from ticketd.rules.sla import parse_duration

    return parse_duration(text)


def test_a_category_outside_the_tree_is_refused_with_a_hint(pdesk: Desk) -> None:
    ticket, mails = deliver(pdesk, "information-question.eml")
    pdesk.deliver(reply_to(mail_to(mails, ALI), ALI, "", subject_suffix="[category=hardwre/modem; priority=high]"))
    refusal = body_of(mail_to(pdesk.new_mail(), ALI))
    assert "unknown category 'hardwre/modem'; did you mean hardware/modem?" in refusal
    after = pdesk.ticket(ticket["number"])
    assert (after["category"], after["priority"]) == (None, "low")  # nothing half-applied
