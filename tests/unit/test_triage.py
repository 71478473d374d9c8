"""Triage: the process sections' validation lines, rule semantics with their reasons, and web-form attribution."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketd.daemon.config import ConfigError, parse_config
from ticketd.daemon.config.process import CategoriesConfig, RuleConfig, WebFormConfig
from ticketd.parsers.message import Address, parse_message
from ticketd.rules.channels import WebForm, from_web_form
from ticketd.rules.triage import Rule, Triage, TriageFacts, compile_rules, facts_from_mail, triage

TREE = ["hardware/modem", "hardware/cable", "billing/invoice", "service/installation"]


# --- configuration --------------------------------------------------------------------------------------------

def base(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    return {
        "helpdesk": {"address": "support@acme.example"},
        "security": {"secret_file": str(tmp_path / "secret")},
        "categories": {"tree": TREE},
        "groups": [{"name": "network", "policy": "round-robin"}],
        "agents": [{"email": "ali@acme.example", "name": "Ali", "groups": ["finance"]}],
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def rule(name: str = "r", match: dict[str, Any] | None = None, **set_: Any) -> dict[str, Any]:
    return {"name": name, "match": match or {}, "set": set_ or {"priority": "high"}}


def test_full_process_config_loads_with_defaults(tmp_path: Path) -> None:
    data = base(tmp_path) | {
        "rules": [rule("invoices", {"subject": "(?i)fatura|invoice", "sender_domain": "musteri.com.tr"},
                       type="complaint", category="billing/invoice", priority="high", group="finance",
                       assignee="Ali@Acme.example")],
        "webforms": [{"sender": "Forms@acme.example"}],
    }
    config = parse_config(data)
    assert config.categories.all() == ["billing", "billing/invoice", "hardware", "hardware/cable",
                                       "hardware/modem", "service", "service/installation"]
    assert config.categories.known("hardware") and not config.categories.known("hard")
    assert config.groups[0].policy == "round-robin"
    only = config.rules[0]
    assert only.continue_ is False and only.set_.assignee == "ali@acme.example"
    assert only.match.subject is not None and only.match.subject.search("FATURA")
    assert config.webforms[0].sender == "forms@acme.example" and config.webforms[0].use_reply_to
    assert config.webforms[0].email_field == "E-mail" and config.webforms[0].subject_field == "Subject"
    assert config.closing.require == {"complaint": ("root_cause", "action_plan")}
    assert config.closing.auto_close_after == timedelta(days=5)
    assert CategoriesConfig().all() == []


def test_closing_durations(tmp_path: Path) -> None:
    data = base(tmp_path) | {"closing": {"auto_close_after": "36h", "require": {"request": ["resolution"]}}}
    closing = parse_config(data).closing
    assert closing.auto_close_after == timedelta(hours=36) and closing.require == {"request": ("resolution",)}


@pytest.mark.parametrize(("section", "expected"), [
    ({"rules": [rule(match={"subject": "(unclosed"})]},
     "rules.0.match.subject: invalid regular expression: missing ), unterminated subpattern at position 0"),
    ({"rules": [rule(match={"body": "a{2,1}"})]},
     "rules.0.match.body: invalid regular expression: min repeat greater than max repeat at position 2"),
    ({"rules": [rule(match={"colour": "blue"})]}, "rules.0.match.colour: unknown key"),
    ({"rules": [rule() | {"stop": True}]}, "rules.0.stop: unknown key"),
    ({"rules": [rule() | {"set": {"priority": "high", "owner": "x"}}]}, "rules.0.set.owner: unknown key"),
    ({"rules": [rule() | {"set": {}}]},
     "rules.0.set: must set at least one of type, category, priority, group, assignee"),
    ({"rules": [{"set": {"priority": "high"}}]}, "rules.0.name: required key is missing"),
    ({"rules": [rule(priority="asap")]}, "rules.0.set.priority: must be 'low', 'normal', 'high' or 'urgent'"),
    ({"rules": [rule(type="bug")]}, "rules.0.set.type: must be 'request', 'complaint' or 'information'"),
    ({"rules": [rule(assignee="ali")]}, "rules.0.set.assignee: must be an e-mail address like support@example.com"),
    ({"rules": [rule(match={"sender_domain": "not a domain"})]},
     "rules.0.match.sender_domain.0: must be a domain like example.com"),
    ({"rules": [rule(match={"sender": []})]},
     "rules.0.match.sender: must name at least one value (leave the key out to match every mail)"),
    ({"rules": [rule(match={"has_attachment": "yes"})]}, "rules.0.match.has_attachment: must be true or false"),
    ({"rules": [rule() | {"continue": "true"}]}, "rules.0.continue: must be true or false"),
    ({"rules": [rule("twice"), rule("twice")]}, "rules.1.name: duplicate rule name 'twice' (also rules.0)"),
    ({"groups": [{"name": "network", "policy": "random"}]},
     "groups.0.policy: must be 'manual', 'round-robin' or 'least-open'"),
    ({"groups": [{"name": "network"}, {"name": "network"}]},
     "groups.1.name: duplicate group 'network' (also groups.0)"),
    ({"categories": {"tree": ["hardware/modem", "Billing/Invoice"]}},
     "categories.tree.1: must be a path of lower-case segments (a-z, 0-9, '_', '-') joined by '/', "
     "like hardware/modem"),
    ({"webforms": [{"sender": "forms@acme.example", "from_field": "Mail"}]}, "webforms.0.from_field: unknown key"),
    ({"webforms": [{"use_reply_to": False}]}, "webforms.0.sender: required key is missing"),
    ({"closing": {"auto_close_after": "5 weeks"}},
     'closing.auto_close_after: must be a calendar duration like "5d" (days) or "12h" (hours)'),
    ({"closing": {"auto_close_after": "0d"}},
     'closing.auto_close_after: must be a calendar duration like "5d" (days) or "12h" (hours)'),
    ({"closing": {"require": {"complaint": ["root"]}}},
     "closing.require.complaint.0: must be 'root_cause', 'action_plan', 'cost', 'resolution' or 'actions_done'"),
    ({"closing": {"require": {"bug": ["cost"]}}},
     "closing.require: unknown ticket type 'bug' (types: request, complaint, information)"),
])
def test_each_problem_is_one_line_naming_its_key(tmp_path: Path, section: dict[str, Any], expected: str) -> None:
    assert problems(base(tmp_path) | section) == [expected]


def test_unknown_category_and_group_are_named_with_a_hint(tmp_path: Path) -> None:
    data = base(tmp_path) | {"rules": [
        rule("ok", category="hardware", group="finance"),  # a prefix is a category; an agent's group is a group
        rule("typo", group="netwrk"),
        rule("modem", category="hardware/modm"),
        rule("nothing-like-it", category="zzz", group="x"),
    ]}
    categories = "billing, billing/invoice, hardware, hardware/cable, hardware/modem, service, service/installation"
    assert problems(data) == [
        "rules.1.set.group: unknown group 'netwrk'; did you mean network? (groups: finance, network)",
        f"rules.2.set.category: unknown category 'hardware/modm'; did you mean hardware/modem? "
        f"(categories: {categories})",
        f"rules.3.set.category: unknown category 'zzz' (categories: {categories})",
        "rules.3.set.group: unknown group 'x' (groups: finance, network)",
    ]


def test_with_no_tree_every_category_is_unknown(tmp_path: Path) -> None:
    data = base(tmp_path) | {"categories": {}, "rules": [rule(category="hardware")]}
    assert problems(data) == ["rules.0.set.category: unknown category 'hardware' (categories: none configured)"]


# --- triage semantics -----------------------------------------------------------------------------------------

def rules(*raw: dict[str, Any]) -> list[Rule]:
    """As the configuration hands them to the rules: validated, then converted."""
    return [RuleConfig.model_validate(r).rule() for r in raw]


def facts(**kw: Any) -> TriageFacts:
    values: dict[str, Any] = {"sender": "cigdem@musteri.com.tr", "company": None,
                              "recipients": ("support@acme.example",), "subject": "Merhaba", "body": "",
                              "has_attachment": False}
    return TriageFacts(**(values | kw))


def run(raw: list[dict[str, Any]], **kw: Any) -> Triage:
    return triage(compile_rules(rules(*raw)), facts(**kw))


def test_first_match_wins_and_says_why() -> None:
    decided = run([
        rule("other", {"subject": "(?i)modem"}, priority="low"),
        rule("invoices", {"subject": "(?i)fatura|invoice", "sender_domain": "musteri.com.tr"},
             type="complaint", category="billing/invoice", priority="high", group="finance",
             assignee="ali@acme.example"),
        rule("later", {"subject": "(?i)fatura"}, priority="urgent", category="hardware/modem"),
    ], subject="Fatura itirazı")
    assert decided == Triage(type="complaint", category="billing/invoice", priority="high", group="finance",
                             assignee="ali@acme.example",
                             matched=(("invoices", "subject matches '(?i)fatura|invoice'; "
                                                   "sender_domain musteri.com.tr"),))


def test_no_rule_matches_decides_nothing() -> None:
    assert run([rule("x", {"subject": "modem"})], subject="fatura") == Triage()
    assert triage([], facts()) == Triage()


def test_continue_fills_only_unset_fields_until_a_rule_without_continue() -> None:
    decided = run([
        rule("complaints", {"subject": "(?i)şikayet"}, type="complaint", priority="high") | {"continue": True},
        rule("skipped", {"subject": "never"}, group="nobody"),
        rule("urgent-too", {"body": "(?i)acil"}, priority="urgent", category="hardware/modem")
        | {"continue": True},
        rule("modem", {"body": "(?i)modem"}, group="network", type="request"),
        rule("after-stop", {}, assignee="ali@acme.example"),
    ], subject="Şikayet", body="Modem acil!")
    assert (decided.type, decided.priority, decided.category, decided.group, decided.assignee) == (
        "complaint", "high", "hardware/modem", "network", None)
    assert [name for name, _ in decided.matched] == ["complaints", "urgent-too", "modem"]


def test_empty_or_missing_match_matches_every_mail() -> None:
    decided = run([{"name": "default", "set": {"group": "network"}}], subject="", body="")
    assert decided.group == "network"
    assert decided.matched == (("default", "every mail (the rule has no match keys)"),)
    assert run([rule("empty", {}, priority="low")]).priority == "low"


@pytest.mark.parametrize(("sender", "hit"), [
    ("a@musteri.com.tr", True), ("a@istanbul.musteri.com.tr", True),
    ("a@notmusteri.com.tr", False), ("a@musteri.com.tr.evil.example", False), ("a@other.example", False),
])
def test_sender_domain_matches_the_domain_and_its_subdomains(sender: str, hit: bool) -> None:
    decided = run([rule("dom", {"sender_domain": ["Other.example.org", "@musteri.com.tr"]})], sender=sender)
    assert (decided.matched == (("dom", "sender_domain musteri.com.tr"),)) is hit


def test_sender_and_company_are_case_insensitive() -> None:
    by_sender = rule("vip", {"sender": ["Boss@Musteri.com.tr", "other@x.example"]})
    assert run([by_sender], sender="boss@musteri.com.tr").matched == (("vip", "sender boss@musteri.com.tr"),)
    assert run([by_sender], sender="clerk@musteri.com.tr").matched == ()
    by_company = rule("co", {"company": "müşteri a.ş."})
    assert run([by_company], company="Müşteri A.Ş.").matched == (("co", "company Müşteri A.Ş."),)
    assert run([by_company], company=None).matched == ()


def test_recipient_matches_any_recipient() -> None:
    complaints = rule("box", {"recipient": "Complaints@acme.example"}, type="complaint")
    decided = run([complaints], recipients=("support@acme.example", "complaints@acme.example"))
    assert decided.type == "complaint" and decided.matched == (("box", "recipient complaints@acme.example"),)
    assert run([complaints], recipients=("support@acme.example",)).type is None


def test_has_attachment_and_all_keys_must_match() -> None:
    both = rule("photo", {"has_attachment": True, "recipient": "complaints@acme.example"}, priority="urgent")
    hit = run([both], has_attachment=True, recipients=("complaints@acme.example",))
    assert hit.matched == (("photo", "has_attachment true; recipient complaints@acme.example"),)
    assert run([both], has_attachment=False, recipients=("complaints@acme.example",)).matched == ()
    assert run([both], has_attachment=True, recipients=("support@acme.example",)).matched == ()
    without = rule("text-only", {"has_attachment": False})
    assert run([without], has_attachment=False).matched == (("text-only", "has_attachment false"),)


def test_body_is_searched_anywhere() -> None:
    decided = run([rule("modem", {"body": r"(?i)\bmodem\b"}, category="hardware/modem")],
                  body="Merhaba,\nevdeki MODEM ışığı yanıp sönüyor.")
    assert decided.matched == (("modem", r"body matches '(?i)\\bmodem\\b'"),)


def test_compiled_once_per_loaded_config(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path) | {"rules": [rule("a"), rule("b", {"subject": "x"}, group="network")]})
    first = config.triage_rules
    assert [r.name for r in first] == ["a", "b"] and config.triage_rules is first
    reloaded = parse_config(base(tmp_path) | {"rules": [rule("a"), rule("b"), rule("c")]})
    assert [r.name for r in reloaded.triage_rules] == ["a", "b", "c"]


def test_a_rule_reaches_the_rules_as_written(tmp_path: Path) -> None:
    """The conversion keeps the operator's key order (the reason reads the same way) and only what is set."""
    config = parse_config(base(tmp_path) | {"rules": [
        rule("r", {"subject": "(?i)modem", "sender": "A@B.example"}, group="network") | {"continue": True}],
        "webforms": [{"sender": "Forms@acme.example", "subject_field": "Topic"}]})
    converted = config.rules[0].rule()
    assert converted.name == "r" and converted.continue_ and converted.set_values == (("group", "network"),)
    assert converted.match.given() == ("subject", "sender") and converted.match.sender == ("a@b.example",)
    assert config.web_forms == (WebForm("forms@acme.example", True, "E-mail", "Name", "Topic"),)


# --- facts from a real mail -----------------------------------------------------------------------------------

COMPLAINT = """\
Delivered-To: complaints@acme.example
X-Original-To: sikayet@acme.example
From: =?utf-8?q?=C3=87i=C4=9Fdem_Y=C4=B1lmaz?= <Cigdem.Yilmaz@Musteri.com.tr>
To: Acme Support <support@acme.example>
Cc: Murat <MURAT@musteri.com.tr>
Subject: =?utf-8?q?Modem_=C5=9Fikayeti?=
Message-ID: <c1@musteri.com.tr>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="b"

--b
Content-Type: text/html; charset=utf-8

<p>Modem yine kapandı.</p><img src="cid:logo@x">
--b
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--b--
""".replace("\n", "\r\n").encode()


def test_facts_from_a_parsed_mail() -> None:
    mail = parse_message(COMPLAINT)
    found = facts_from_mail(mail, "Müşteri A.Ş.")
    assert found.sender == "cigdem.yilmaz@musteri.com.tr" and found.company == "Müşteri A.Ş."
    assert found.recipients == ("support@acme.example", "murat@musteri.com.tr", "complaints@acme.example",
                                "sikayet@acme.example")
    assert found.subject == "Modem şikayeti" and "Modem yine kapandı." in found.body
    assert found.has_attachment is False  # a logo shown in the HTML is not a file the customer sent
    attached = replace(mail, attachments=tuple(replace(a, inline=False) for a in mail.attachments))
    assert facts_from_mail(attached, None).has_attachment is True


def test_rules_against_a_parsed_mail() -> None:
    configured = rules(rule("box", {"recipient": "sikayet@acme.example", "body": "(?i)modem"}, type="complaint"))
    decided = triage(compile_rules(configured), facts_from_mail(parse_message(COMPLAINT), None))
    assert decided.type == "complaint"
    assert decided.matched == (("box", "recipient sikayet@acme.example; body matches '(?i)modem'"),)


# --- web forms ------------------------------------------------------------------------------------------------

FORMS = [WebForm(sender="forms@acme.example")]


def form_mail(body: str, reply_to: str | None = "Mehmet Kaya <Mehmet.Kaya@example.net>",
              sender: str = "Acme web site <forms@acme.example>", subject: str = "Web form: contact request") -> bytes:
    head = [f"From: {sender}", "To: support@acme.example", f"Subject: {subject}",
            "Auto-Submitted: auto-generated", "Message-ID: <form-1@www.acme.example>", "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 8bit"]
    if reply_to:
        head.insert(2, f"Reply-To: {reply_to}")
    return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


BODY = """A visitor filled in the contact form.

Name: Mehmet Kaya
E-mail: mehmet.kaya@example.net
Subject: Kablo kurulumu ne zaman yapılır?
Message:
Yeni adresimize kablo kurulumu için randevu almak istiyoruz.
"""


def test_web_form_mail_becomes_the_customers() -> None:
    mail = parse_message(form_mail(BODY))
    attributed = from_web_form(mail, FORMS)
    assert attributed is not None
    assert attributed.sender == Address("mehmet.kaya@example.net", "Mehmet Kaya")
    assert attributed.subject == "Kablo kurulumu ne zaman yapılır?"
    assert attributed.text == mail.text and attributed.message_id == mail.message_id


def test_sample_web_form_file() -> None:
    mail = parse_message((Path(__file__).parents[1] / "data" / "process" / "webform.eml").read_bytes())
    attributed = from_web_form(mail, FORMS)
    assert attributed is not None and attributed.sender == Address("mehmet.kaya@example.net", "Mehmet Kaya")


def test_reply_to_wins_over_the_body_and_lends_its_name() -> None:
    body = "e-mail: someone.else@example.org\nMessage: hello\n"  # field names are matched case-insensitively
    attributed = from_web_form(parse_message(form_mail(body, reply_to='"Ayşe Demir" <AYSE@example.org>')), FORMS)
    assert attributed is not None and attributed.sender == Address("ayse@example.org", "Ayşe Demir")
    assert attributed.subject == "Web form: contact request"  # no Subject line: the mail's own subject


def test_body_field_when_there_is_no_usable_reply_to() -> None:
    for reply_to in (None, "Acme web site <forms@acme.example>"):
        attributed = from_web_form(parse_message(form_mail(BODY, reply_to=reply_to)), FORMS)
        assert attributed is not None and attributed.sender == Address("mehmet.kaya@example.net", "Mehmet Kaya")
    no_reply_to = [WebForm(sender="forms@acme.example", use_reply_to=False, email_field="Your address",
                           name_field="Full name", subject_field="Topic")]
    body = "Full name: Zeynep Ak\n  Your address :  Zeynep@Example.com.tr\nTopic: Fatura\n"
    attributed = from_web_form(parse_message(form_mail(body)), no_reply_to)
    assert attributed is not None and attributed.sender == Address("zeynep@example.com.tr", "Zeynep Ak")
    assert attributed.subject == "Fatura"


def test_the_first_field_line_counts_not_one_typed_into_the_message() -> None:
    body = BODY + "E-mail: attacker@evil.example\nSubject: ignore me\n"
    attributed = from_web_form(parse_message(form_mail(body, reply_to=None)), FORMS)
    assert attributed is not None and attributed.sender.email == "mehmet.kaya@example.net"
    assert attributed.subject == "Kablo kurulumu ne zaman yapılır?"


@pytest.mark.parametrize("typed", [
    "not-an-address",
    "two@at@signs.example",
    "mehmet kaya@example.net",
    "mehmet@example.net, boss@evil.example",
    "Mehmet <mehmet@example.net>",
    "mehmet@example.net\tBcc: boss@evil.example",
    "forms@acme.example",
    "",
])
def test_a_form_mail_naming_no_valid_customer_is_not_attributed(typed: str) -> None:
    body = f"Name: Mehmet\nE-mail: {typed}\nMessage: hi\n"
    assert from_web_form(parse_message(form_mail(body, reply_to=None)), FORMS) is None


def test_a_header_injection_in_the_form_is_refused() -> None:
    raw = form_mail("Name: X\nE-mail: victim@example.net\rBcc: boss@evil.example\nMessage: hi\n", reply_to=None)
    attributed = from_web_form(parse_message(raw), FORMS)
    # A bare CR ends the line, so the address stands alone and the injected text is a line nobody reads.
    assert attributed is not None and attributed.sender == Address("victim@example.net", "X")


def test_other_mail_is_left_alone() -> None:
    assert from_web_form(parse_message(form_mail(BODY, sender="Mehmet <mehmet.kaya@example.net>")), FORMS) is None
    assert from_web_form(parse_message(b"Subject: no sender\r\n\r\nE-mail: a@b.example\r\n"), FORMS) is None
    assert from_web_form(parse_message(form_mail(BODY)), []) is None
    upper = [WebFormConfig(sender="FORMS@ACME.EXAMPLE").form()]  # the configuration lower-cases it
    assert from_web_form(parse_message(form_mail(BODY, sender="<Forms@Acme.Example>")), upper) is not None
