"""Signed reply addresses, screening rules, template rendering and outgoing headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from ticketd.daemon.outgoing.outbox import build_message, clean_header, format_address
from ticketd.mailtemplates.render import TemplateError, make_environment, render
from ticketd.parsers.message import parse_message
from ticketd.rules.screen import ScreenContext, Verdict, screen
from ticketd.rules.signing import Verified, day_number, reply_address, verify_reply_address
from ticketd.storage.models import Outbox

DATA = Path(__file__).parents[1] / "data"
SECRET = "k" * 32


def test_reply_address_round_trip_and_binding() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)

    def verify(address: str, party: str = "ali@acme.example", secret: str = SECRET, at: datetime = now,
               days: int = 90) -> Verified | None:
        return verify_reply_address(address, "support@acme.example", party, secret, at, days)

    addr = reply_address("support@acme.example", 42, "Ali@Acme.example", SECRET, now)
    assert addr.startswith(f"support+42.{day_number(now)}.") and addr.endswith("@acme.example")
    assert len(addr.split("@")[0]) <= 64  # RFC 5321's limit for a local part
    assert verify(addr) == Verified(42, False, now.date())
    assert verify(addr, party="eve@evil.example") is None
    assert verify(addr, secret="x" * 32) is None
    assert verify(addr.replace("+42.", "+43.")) is None
    # The day is signed: moving it forward to extend the address breaks the MAC.
    assert verify(addr.replace(f".{day_number(now)}.", f".{day_number(now) + 30}.")) is None
    assert verify(addr, at=now + timedelta(days=90)) == Verified(42, False, now.date())
    assert verify(addr, at=now + timedelta(days=91)) == Verified(42, True, now.date())
    assert verify(addr, at=now + timedelta(days=11), days=10) == Verified(42, True, now.date())


def test_old_shape_reply_address_is_recognised_but_never_valid() -> None:
    """``support+<n>.<mac>`` (before addresses carried a day) still names its ticket and party, so the refusal
    can say it expired; it never authenticates again."""
    import hashlib
    import hmac

    mac = hmac.new(SECRET.encode(), b"42:ali@acme.example", hashlib.sha256).hexdigest()[:12]
    old = f"support+42.{mac}@acme.example"
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert verify_reply_address(old, "support@acme.example", "ali@acme.example", SECRET, now, 90) == \
        Verified(42, True, None)
    assert verify_reply_address(old, "support@acme.example", "eve@evil.example", SECRET, now, 90) is None


def _ctx() -> ScreenContext:
    return ScreenContext(our_addresses=frozenset({"support@acme.example"}))


@pytest.mark.parametrize(("headers", "verdict", "rule"), [
    ("From: a@b.example\r\n", Verdict.CONTINUE, None),
    ("From: support@acme.example\r\n", Verdict.DROP, "from_ourselves"),
    ("Subject: x\r\n", Verdict.DROP, "no_sender"),
    ("From: a@b.example\r\nAuto-Submitted: auto-replied\r\n", Verdict.NO_AUTOREPLY, "auto_submitted"),
    ("From: a@b.example\r\nAuto-Submitted: no\r\n", Verdict.CONTINUE, None),
    ("From: a@b.example\r\nPrecedence: bulk\r\n", Verdict.NO_AUTOREPLY, "automatic_precedence"),
    ("From: MAILER-DAEMON@b.example\r\n", Verdict.NO_AUTOREPLY, "robot_sender"),
    ("From: a@b.example\r\nMessage-ID: <ticketd.abc@acme.example>\r\n", Verdict.DROP, "our_own_message"),
    ("From: a@b.example\r\nMessage-ID: <ticketd.abc@other.example>\r\n", Verdict.CONTINUE, None),
    ("From: a@b.example\r\nX-Autoreply: yes\r\n", Verdict.NO_AUTOREPLY, "autoreply_headers"),
    ("From: a@b.example\r\nX-Autorespond: yes\r\n", Verdict.NO_AUTOREPLY, "autoreply_headers"),
    ("From: a@b.example\r\nX-Auto-Response-Suppress: All\r\n", Verdict.NO_AUTOREPLY, "auto_response_suppress"),
    ("From: a@b.example\r\nX-Auto-Response-Suppress: None\r\n", Verdict.CONTINUE, None),
    ("From: a@b.example\r\nList-Id: <news.b.example>\r\n", Verdict.NO_AUTOREPLY, "mailing_list"),
    ("From: a@b.example\r\nList-Unsubscribe: <mailto:u@b.example>\r\n", Verdict.NO_AUTOREPLY, "mailing_list"),
    ("Return-Path: <>\r\nFrom: a@b.example\r\n", Verdict.NO_AUTOREPLY, "empty_return_path"),
    ("From: noreply@b.example\r\n", Verdict.NO_AUTOREPLY, "robot_sender"),
])
def test_screening_rules(headers: str, verdict: Verdict, rule: str | None) -> None:
    mail = parse_message((headers + "Subject: hi\r\n\r\nbody\r\n").encode())
    result = screen(mail, _ctx())
    assert (result.verdict, result.rule) == (verdict, rule)
    if rule:
        assert result.reason


def test_templates_render_in_both_languages() -> None:
    env = make_environment()
    ctx = {"helpdesk": {"name": "Acme", "address": "s@a.example"}, "ticket": {"number": 7, "subject": "Modem"},
           "customer": {"name": "Çiğdem", "email": "c@x.example"}, "tag": "[ACME #7]"}
    en = render(env, "received", "en", ctx)
    tr = render(env, "received", "tr", ctx)
    assert en.subject == "Your request has been received: Modem" and "number 7" in en.body
    assert tr.subject == "Talebiniz alındı: Modem" and "Sayın Çiğdem" in tr.body
    assert render(env, "received", "de", ctx).subject == en.subject  # unknown language: English


def test_templates_are_strict_and_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "received.txt.j2").write_text("Subject: {{ typo }}\n\nx")
    with pytest.raises(UndefinedError):
        render(make_environment(tmp_path), "received", "en", {})
    (tmp_path / "en" / "received.txt.j2").write_text("Subject: {{ x.__class__.__mro__ }}\n\nx")
    with pytest.raises(SecurityError):
        render(make_environment(tmp_path), "received", "en", {"x": 1})
    (tmp_path / "en" / "received.txt.j2").write_text("no subject line")
    with pytest.raises(TemplateError):
        render(make_environment(tmp_path), "received", "en", {})


def test_outgoing_headers_never_carry_newlines_and_are_encoded() -> None:
    assert clean_header("a\r\nBcc: victim@x") == "a Bcc: victim@x"
    row = Outbox(kind="received", to_addrs=format_address("Şener\r\nBcc: x@y", "s@x.example"),
                 subject="[ACME #1] Talebiniz alındı\r\nBcc: evil@x", body="merhaba\n",
                 headers={"From": format_address("Acme", "support@acme.example"), "Date": "Mon, 1 Jan 2024 00:00:00"},
                 message_id="<m@acme.example>")
    raw = build_message(row).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "=?utf-8?" in head  # RFC 2047 subject and name
    assert "\nBcc:" not in head
    parsed = parse_message(raw)
    assert parsed.subject.startswith("[ACME #1] Talebiniz alındı")


def _full_context(with_ticket: bool = True) -> dict[str, object]:
    ctx: dict[str, object] = {
        "helpdesk": {"name": "Acme", "address": "support@acme.example"}, "helpdesk_tag": "ACME",
        "customer": {"name": "Çiğdem", "email": "c@x.example"}, "agent": {"name": "Ali Veli", "email": "a@x"},
        "message": {"from_name": "Çiğdem", "from_email": "c@x.example", "text": "Merhaba"},
        "results": [{"raw": "priority=hgh", "ok": False, "message": "unknown priority 'hgh'"}],
        "commands": [{"syntax": "[take]", "help": "assign to yourself"}], "new_ticket_address": "support+0.x@a",
        "text": "Modemi yeniden başlatın.", "claimed_from": "a@x", "reason": "unsigned", "subject": "S",
        "message_id": "<m@x>", "fresh_address": "support+7.20424.0123456789ab@a", "expired": True,
        "limit_mb": 25, "note": "original size 1 bytes", "topic": "t", "detail": "d",
        "bounce": {"summary": "bounce: a@b (5.1.1)", "diagnostic": "user unknown", "subject": "S"},
        "thanks": False, "how": "agent", "by": {"name": "Ayşe", "email": "ayse@x"}, "new_assignee": "Ayşe",
        "new_assignee_email": "ayse@x",
        "group": "network", "why": "list", "mine": [], "free": [], "overdue": 0,
        "groups": ["network"], "at": "2026-12-07 08:30", "too_big": [{"name": "v.mp4", "size": "40 MB"}],
        "categories": ["hardware/modem"], "agents": ["ali@acme.example"], "replies": ["restart"],
        # what notify.compose adds to every context
        "attached": [{"name": "a.pdf", "size": "1.2 kB"}], "left_out": [], "files_budget": "10.5 MB",
        "merged_into": "",
    }
    if with_ticket:
        ctx["tag"] = "[ACME #7]"
        ctx["ticket"] = {"number": 7, "subject": "Modem", "state": "open", "priority": "high", "type": "complaint",
                         "category": "hardware/modem", "source": "email", "company": "Müşteri A.Ş.",
                         "within_contract": False, "contract_until": "2026-01-31", "requester_name": "Çiğdem",
                         "requester_email": "c@x.example", "assignee_name": "Ali Veli", "assignee_email": "a@x",
                         "created_at": "2026-11-23 10:00", "root_cause": "", "action_plan": "", "resolution": ""}
    return ctx


TEMPLATES = ["received", "oversized", "admin_alert", "assigned", "relay", "quote", "agent_new", "agent_update",
             "command_result", "help", "security_alert", "agent_bounce", "reopened", "agent_unassigned",
             "agent_mention", "agent_list", "agent_files_left_out"]


@pytest.mark.parametrize("language", ["en", "tr"])
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_renders_in_both_languages(name: str, language: str) -> None:
    env = make_environment()
    assert (Path(__file__).parents[2] / "mailtemplates" / language / f"{name}.txt.j2").is_file()
    mail = render(env, name, language, _full_context())
    assert mail.subject and mail.body.strip()
    assert "\n" not in mail.subject


def test_contract_state_and_errors_reach_the_agent() -> None:
    env = make_environment()
    assert "OUT OF CONTRACT, ended 2026-01-31" in render(env, "agent_new", "en", _full_context()).body
    assert "SÖZLEŞME DIŞI" in render(env, "agent_new", "tr", _full_context()).body
    result = render(env, "command_result", "en", _full_context(with_ticket=False))
    assert "ERROR priority=hgh: unknown priority 'hgh'" in result.body


def test_every_template_file_is_rendered_by_a_test_in_both_languages() -> None:
    """A mail added to one language only, or added without a rendering test, fails here (DESIGN §11)."""
    from test_process_templates import PROCESS_TEMPLATES  # this folder is on the path (pytest rootdir-less import)

    folder = Path(__file__).parents[2] / "mailtemplates"
    names = {language: {p.name.removesuffix(".txt.j2") for p in (folder / language).glob("*.txt.j2")
                        if not p.name.startswith("_")} for language in ("en", "tr")}
    assert names["en"] == names["tr"]
    # the scheduled report mail: test_report_mail_parts.py; the web form's confirmation: test_webform_parts.py;
    # the action items' mails: test_action_parts.py
    rendered_elsewhere = {"report", "web_confirm", "agent_action", "agent_action_reminder"}
    assert names["en"] == set(TEMPLATES) | set(PROCESS_TEMPLATES) | rendered_elsewhere


def test_a_turkish_agent_reads_the_type_in_turkish() -> None:
    context = {k: v for k, v in _full_context().items() if k != "by"}  # a new ticket, not one handed over
    words = {"request": "Yeni talep:", "complaint": "Yeni şikâyet:", "information": "Yeni bilgi talebi:"}
    for kind, word in words.items():
        context["ticket"] = {**context["ticket"], "type": kind}
        assert render(make_environment(), "agent_new", "tr", context).subject.startswith(word)
