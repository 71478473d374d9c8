"""The web form's parts that need no server: reading a submission, the mail made of it, the tokens, the
language, the pages' words and the confirmation mail."""

from __future__ import annotations

import email
import email.policy
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ticketd.daemon.intake import webform
from ticketd.mailtemplates.render import make_environment, render
from ticketd.parsers.message import parse_message
from ticketd.parsers.mime import read_mime
from ticketd.rules.channels import form_choices
from ticketd.rules.commands import TYPES

LIMITS = webform.Limits(max_files=2, max_file_bytes=1000, max_total_bytes=1500)
WEB = Path(__file__).parents[2] / "mailtemplates" / "web"
GOOD = {"name": "Ayşe Demir", "email": "Ayse@Musteri.com.tr", "company": "", "type": "complaint",
        "category": "fatura", "subject": "Fatura", "description": "İki kez kesildi."}


def read(files: list[webform.Upload] | None = None, **changes: str) -> webform.Submission:
    return webform.read_submission({**GOOD, **changes}, files or [], ["fatura"],
                                   lambda address: address == "support@acme.example", LIMITS)


def test_a_good_submission_has_no_errors_and_a_lower_cased_address() -> None:
    sub = read()
    assert sub.errors == {} and sub.email == "ayse@musteri.com.tr"


@pytest.mark.parametrize(("field", "value", "key"), [
    ("name", "", "missing"), ("name", "x" * 201, "too_long"), ("subject", "a\nBcc: x@evil.example", "one_line"),
    ("email", "a@b", "bad_email"), ("email", "a@b.com, c@d.com", "bad_email"), ("email", "<a@b.com>", "bad_email"),
    ("email", "support@acme.example", "our_email"), ("email", "ayşe@musteri.com.tr", "bad_email"),
    ("category", "other", "bad_choice"), ("description", "  \n ", "missing"),
    ("description", "x" * (webform.MAX_TEXT + 1), "too_long"),
])
def test_each_bad_field_is_named_with_its_reason(field: str, value: str, key: str) -> None:
    assert read(**{field: value}).errors[field][0] == key


def test_an_international_domain_is_kept_in_the_form_mail_systems_carry() -> None:
    sub = read(email="Deniz@Müşteri.com.tr")
    assert sub.errors == {} and sub.email == "deniz@xn--mteri-kva70e.com.tr"
    raw = webform.build_mail(sub, to="support@acme.example", nonce="n1", client="::1", language="tr",
                             now=datetime(2026, 12, 4, tzinfo=UTC), host="acme.example")
    assert b"From: =?utf-8?q?Ay=C5=9Fe?= Demir <deniz@xn--mteri-kva70e.com.tr>" in raw


def test_file_limits() -> None:
    assert read([webform.Upload("a.pdf", b"x" * 1001)]).errors["attachments"][0] == "file_too_big"
    assert read([webform.Upload("a", b"x")] * 3).errors["attachments"][0] == "too_many_files"
    assert read([webform.Upload("a", b"x" * 800)] * 2).errors["attachments"][0] == "files_too_big"
    assert read([webform.Upload("", b"")]).files == []  # the empty part a browser sends for no file


def test_controls_and_bidi_overrides_are_removed() -> None:
    sub = read(name="Ay\u202eşe\x07 Demir", description="a\r\nb\x00c")
    assert sub.name == "Ayşe Demir" and sub.description == "a\nbc"


def test_the_mail_reads_as_the_customers_with_the_forms_choices() -> None:
    sub = read([webform.Upload("../../etc/passwd", b"root"), webform.Upload("rapor.pdf", b"%PDF")],
               name='Ayşe "Q" Demir, Ltd.', company="Demir Tekstil", subject="Fatura iadesi")
    raw = webform.build_mail(sub, to="support@acme.example", nonce="n1", client="203.0.113.7", language="tr",
                             now=datetime(2026, 12, 4, 10, 0, tzinfo=UTC), host="acme.example")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == 'Ayşe "Q" Demir, Ltd.'
    assert parsed["From"].addresses[0].addr_spec == "ayse@musteri.com.tr" and len(parsed["From"].addresses) == 1
    assert parsed["Message-ID"] == "<web.n1@acme.example>"
    assert parsed["Received"].startswith("from [203.0.113.7] by acme.example (ticketd web form) with HTTP;")
    mail = parse_message(read_mime(raw))
    assert mail.text.strip() == "İki kez kesildi."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("passwd", "application/octet-stream"),
                                                                       ("rapor.pdf", "application/pdf")]
    choices = form_choices(mail, TYPES, ["fatura"], ["en", "tr"])
    assert (choices.type, choices.category, choices.language, choices.company) == ("complaint", "fatura", "tr",
                                                                                   "Demir Tekstil")
    assert form_choices(mail, TYPES, [], ["en"]).category is None  # the tree changed since: not a category now


def test_tokens() -> None:
    token = webform.issue_token("s" * 32, 1000.0)
    nonce = webform.check_token("s" * 32, token, 1000.0 + 3600, 3600)
    assert token.split(".")[1] == nonce
    with pytest.raises(webform.TokenError, match="expired"):
        webform.check_token("s" * 32, token, 1000.0 + 3601, 3600)
    with pytest.raises(webform.TokenError, match="not a form token"):
        webform.check_token("t" * 32, token, 1000.0, 3600)
    with pytest.raises(webform.TokenError):
        webform.check_token("s" * 32, "1000.x", 1000.0, 3600)
    link = webform.confirm_token("s" * 32, 7, nonce)
    assert webform.confirm_id(link) == 7 and webform.same_confirm_token("s" * 32, link, 7, nonce)
    assert not webform.same_confirm_token("s" * 32, link.replace("7.", "8.", 1), 8, nonce)
    with pytest.raises(webform.TokenError):
        webform.confirm_id("../7")


@pytest.mark.parametrize(("header", "expected"), [
    ("tr-TR,tr;q=0.9,en;q=0.8", "tr"), ("de-DE,en;q=0.5,tr;q=0.7", "tr"), ("fr", "en"), ("", "en"),
    ("en;q=0, tr;q=0.1", "tr"), ("tr;q=abc, en", "en"),
])
def test_the_language_follows_accept_language(header: str, expected: str) -> None:
    assert webform.negotiate_language(header, ("en", "tr"), "en") == expected


def test_the_pages_words_exist_in_both_languages_and_every_one_is_used() -> None:
    en, tr = (tomllib.loads((WEB / f"{lang}.toml").read_text("utf-8")) for lang in ("en", "tr"))
    assert set(en) == set(tr)
    sources = [*WEB.glob("*.j2"), Path(webform.__file__), Path(webform.__file__).with_name("web.py")]
    used = {name for path in sources for name in re.findall(r"""t\.(\w+)|["'](\w+)["']""", path.read_text())
            for name in name if name} | {f"type_{name}" for name in TYPES}
    assert set(en) - used == set()
    for lang, words in (("en", en), ("tr", tr)):  # placeholders match: a translation cannot drop a value
        for key, text in words.items():
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", en[key])), (lang, key)


@pytest.mark.parametrize("language", ["en", "tr"])
def test_the_confirmation_mail_renders_with_its_link(language: str) -> None:
    mail = render(make_environment(), "web_confirm", language,
                  {"helpdesk": {"name": "Acme", "address": "support@acme.example"}, "customer": {"name": "Ayşe"},
                   "subject": "Fatura", "link": "https://acme.example/destek/confirm/7.abc", "hours": 24})
    assert mail.language == language and "Fatura" in mail.subject
    assert "https://acme.example/destek/confirm/7.abc" in mail.body and "24" in mail.body


def test_a_company_name_beyond_ascii_is_recorded_as_typed_not_as_encoded_words() -> None:
    sub = read(company="Arslan Gıda Şti.")
    raw = webform.build_mail(sub, to="support@acme.example", nonce="n2", client="203.0.113.7", language="tr",
                             now=datetime(2026, 12, 4, 10, 0, tzinfo=UTC), host="acme.example")
    assert b"=?utf-8?" in raw  # the header goes out encoded ...
    mail = parse_message(read_mime(raw))
    assert form_choices(mail, TYPES, ["fatura"], ["tr"]).company == "Arslan Gıda Şti."  # ... and is read back
