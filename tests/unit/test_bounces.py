"""Bounce recognition against the real-world corpus and hand-built reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.rules.bounces import Bounce, detect_bounce, is_feedback_report

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
SISIMAI_BSD = CORPUS / "sisimai-set-of-emails" / "bsd"
SISIMAI_NOT = CORPUS / "sisimai-set-of-emails" / "not"
FLANKER_BOUNCE = CORPUS / "flanker" / "bounce"


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml"))


def _ids(files: list[Path]) -> list[str]:
    return [f.name for f in files]


# Files of sisimai bsd/ that are NOT bounces for a helpdesk, with the reason.
_ARF = "ARF feedback report (abuse complaint), not a delivery failure"
NOT_BOUNCES: dict[str, str] = {
    **{f"arf-{n:02d}.eml": _ARF for n in (1, 2, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 25)},
    **{f"arf-{n}.eml": "Hotmail JMRP complaint (multipart/mixed + message/rfc822), not a bounce" for n in (22, 23, 24)},
    "arf-26.eml": "Apple Mail unsubscribe request, not a bounce",
    "lhost-amazonses-11.eml": "SES JSON notification of type Complaint",
    "lhost-amazonses-12.eml": "SES JSON notification of type Delivery (a success)",
    "lhost-amazonses-13.eml": "SES JSON notification of type Delivery (a success)",
    "lhost-fml-02.eml": "mailing-list manager reply 'you are not a member', from a list admin address",
    "lhost-fml-03.eml": "mailing-list manager loop alert, from a list admin address",
    "lhost-kddi-01.eml": "sender is an ordinary no-reply@ address with no null Return-Path/Auto-Submitted: "
    "the automatic-sender rule deliberately declines it",
    "lhost-sendmail-14.eml": "a human forwarded a bounce ('Fwd: Returned mail'): that is a customer mail",
    **{f"rfc3834-{n:02d}.eml": "RFC 3834 auto-reply (vacation notice), not a bounce" for n in (3, 4, 5, 6)},
}
FEEDBACK_REPORTS = {name for name, reason in NOT_BOUNCES.items() if reason == _ARF}

BSD_FILES = _files(SISIMAI_BSD)


def test_exception_list_names_real_files() -> None:
    names = {f.name for f in BSD_FILES}
    assert set(NOT_BOUNCES) <= names
    assert len(BSD_FILES) == 627
    assert len(BSD_FILES) - len(NOT_BOUNCES) == 599


@pytest.mark.parametrize("path", BSD_FILES, ids=_ids(BSD_FILES))
def test_sisimai_bsd(path: Path) -> None:
    raw = path.read_bytes()
    result = detect_bounce(raw)
    if path.name in NOT_BOUNCES:
        assert result is None
    else:
        assert isinstance(result, Bounce)
        assert result.kind in ("dsn", "heuristic")
    assert is_feedback_report(raw) is (path.name in FEEDBACK_REPORTS)


@pytest.mark.parametrize("path", _files(SISIMAI_NOT), ids=_ids(_files(SISIMAI_NOT)))
def test_sisimai_not_bounces(path: Path) -> None:
    assert detect_bounce(path.read_bytes()) is None


# delayed*.eml say "Action: failed" but Status 4.x.x (gave up on a transient cause); no-mx.eml is
# "Action: delayed" / 4.4.4. All three are temporary: the address itself is not known to be bad.
FLANKER_PERMANENT = {
    "broken-mime.eml": True, "delayed-broken.eml": False, "delayed.eml": False, "gmail-invalid-address.eml": True,
    "gmail-no-dns.eml": True, "mailbox-full.eml": True, "no-mx.eml": False, "zed.eml": True,
}


def test_flanker_folder_is_fully_listed() -> None:
    assert sorted(FLANKER_PERMANENT) == _ids(_files(FLANKER_BOUNCE))


@pytest.mark.parametrize("name", sorted(FLANKER_PERMANENT))
def test_flanker_bounces(name: str) -> None:
    result = detect_bounce((FLANKER_BOUNCE / name).read_bytes())
    assert result is not None
    assert result.permanent is FLANKER_PERMANENT[name]


@pytest.mark.parametrize("name", ["aol.eml", "yahoo.eml"])
def test_flanker_complaints_are_feedback_not_bounces(name: str) -> None:
    raw = (CORPUS / "flanker" / "complaints" / name).read_bytes()
    assert is_feedback_report(raw) is True
    assert detect_bounce(raw) is None


@pytest.mark.parametrize(
    ("path", "kind", "permanent", "recipients", "status", "message_ids"),
    [
        (FLANKER_BOUNCE / "mailbox-full.eml", "dsn", True, ("user@aol.com",), "5.2.2",
         ("<4E326A95.3010907@example.com>",)),
        (CORPUS / "mikel-mail" / "multipart_report_emails" / "report_530.eml", "dsn", True, ("edwin@zzzzzzz.com",),
         "5.3.0", ("<200712232303.lBNN3jDq002941@mail12.rrrr.com.au>",)),
        (CORPUS / "mikel-mail" / "multipart_report_emails" / "report_422.eml", "dsn", False,
         ("fraser@oooooooo.com.au",), "4.2.2",
         ("<15655788.13.1200472642578.JavaMail.Administrator@mail.ttttt.com.au>",)),
        (SISIMAI_BSD / "lhost-qmail-01.eml", "heuristic", True, ("kijitora@example.ne.jp",), "5.5.0",
         ("<000000000.9999999999999.JavaMail.postmaster@mailhub>",)),
        (SISIMAI_BSD / "lhost-dragonfly-24.eml", "heuristic", True, ("userunknown@libsisimai.net",), "5.1.1",
         ("<666822d6.e0732.f6410e7@df.example.jp>",)),
        (FLANKER_BOUNCE / "gmail-invalid-address.eml", "heuristic", True, ("awfawfawfawfawfaw@someserverhere.com",),
         "5.1.0", ("<CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com>",)),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else None,
)
def test_exact_facts(path: Path, kind: str, permanent: bool, recipients: tuple[str, ...], status: str,
                     message_ids: tuple[str, ...]) -> None:
    result = detect_bounce(path.read_bytes())
    assert result is not None
    assert (result.kind, result.permanent, result.recipients, result.status, result.message_ids) == (
        kind, permanent, recipients, status, message_ids)


def test_ses_json_bounce() -> None:
    result = detect_bounce((SISIMAI_BSD / "lhost-amazonses-09.eml").read_bytes())
    assert result == Bounce("heuristic", True, ("bounce@simulator.amazonses.com",), "5.1.1",
                            "smtp; 550 5.1.1 user unknown", ())


def _dsn(action: str, status: str, diagnostic: str = "smtp; 550 5.1.1 user unknown") -> bytes:
    """An RFC 3464 report for an outgoing ticketd mail, written out by hand so every byte is known."""
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: support@acme.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; Customer@Example.ORG\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n\r\n"
        "--B1\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: support@acme.example\r\nTo: Customer@Example.ORG\r\nSubject: [#42] Your ticket\r\n"
        "Message-ID: <ticketd.abc123@acme.example>\r\n\r\nHello\r\n"
        "--B1--\r\n"
    ).encode()


def test_built_dsn_returns_original_message_id() -> None:
    result = detect_bounce(_dsn("failed", "5.1.1"))
    assert result == Bounce("dsn", True, ("customer@example.org",), "5.1.1", "550 5.1.1 user unknown",
                            ("<ticketd.abc123@acme.example>",))


def test_built_dsn_delayed_is_temporary() -> None:
    result = detect_bounce(_dsn("delayed", "4.4.7", "smtp; 451 4.4.7 try later"))
    assert result is not None
    assert (result.permanent, result.status) == (False, "4.4.7")


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_success_notifications_are_not_bounces(action: str) -> None:
    assert detect_bounce(_dsn(action, "2.0.0", "smtp; 250 ok")) is None


def test_heuristic_needs_automatic_sender() -> None:
    text = b"From: Alice <alice@example.org>\r\nSubject: Undeliverable: meeting\r\n\r\nMail delivery failed for bob\r\n"
    assert detect_bounce(text) is None
    daemon = text.replace(b"Alice <alice@example.org>", b"MAILER-DAEMON@example.org")
    result = detect_bounce(daemon)
    assert result is not None and result.kind == "heuristic" and result.permanent is True


def test_out_of_office_is_not_bounce() -> None:
    raw = (b"From: bob@example.org\r\nReturn-Path: <>\r\nAuto-Submitted: auto-replied\r\n"
           b"Subject: Automatic reply: delivery failed\r\n\r\nI am out of the office.\r\n")
    assert detect_bounce(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff",
        b"\xff" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=X\r\n\r\n--X\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nAction: fail",
        b"Content-Type: multipart/report; report-type=delivery-status\r\nFrom: <>\r\n\r\nno boundary here",
        b"From: MAILER-DAEMON\r\nContent-Type: message/rfc822\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n",
        _dsn("failed", "5.1.1")[:300],
    ],
)
def test_malformed_input_never_raises(raw: bytes) -> None:
    result = detect_bounce(raw)
    assert result is None or isinstance(result, Bounce)
    assert is_feedback_report(raw) in (True, False)


# Reports whose Original-Recipient (the address our mail went to) differs from Final-Recipient (what an alias or
# forward made of it): the failure must be matched against the former, the one an Outbox row holds.
ORIGINAL_RECIPIENT = {
    "lhost-exchange2007-04.eml": "neko-nyaan@cat.example.jp",
    "lhost-messagingserver-02.eml": "kijitora@example.net",
    "lhost-postfix-01.eml": "kijitora@example.org",
    "lhost-postfix-32.eml": "neko....nyaan....@libsisimai.org",
    "lhost-postfix-77.eml": "neko@example.co.jp",
    "lhost-postfix-78.eml": "neko@example.co.jp",
    "lhost-postfix-79.eml": "nekko@c.example.co.jp",
    "rfc3464-09.eml": "kijitora-nyaaaaaan@example.co.jp",
    "rhost-google-03.eml": "neko@example.co.jp",
    "rhost-google-04.eml": "contact@example.co.jp",
    "rhost-google-06.eml": "michitsuna@example.org",
}


@pytest.mark.parametrize("name", sorted(ORIGINAL_RECIPIENT))
def test_original_recipient_before_final_recipient(name: str) -> None:
    result = detect_bounce((SISIMAI_BSD / name).read_bytes())
    assert result is not None
    assert result.recipients[0] == ORIGINAL_RECIPIENT[name]


def test_built_dsn_original_recipient_wins() -> None:
    raw = _dsn("failed", "5.1.1").replace(
        b"Final-Recipient: rfc822; Customer@Example.ORG\r\n",
        b"Original-Recipient: rfc822; Customer@Example.ORG\r\nFinal-Recipient: rfc822; c.smith@mbox3.example.org\r\n")
    result = detect_bounce(raw)
    assert result is not None and result.recipients == ("customer@example.org",)


def test_customer_mail_without_from_is_not_a_bounce() -> None:
    """redmine's fixture: a person's mail with no From: header that says "unknown user"."""
    assert detect_bounce((CORPUS / "redmine" / "ticket_by_empty_user.eml").read_bytes()) is None
    raw = (b"To: support@acme.example\r\nSubject: Undeliverable invoice?\r\nMessage-ID: <a1@pc.example>\r\n\r\n"
           b"Hello, your portal says unknown user when I log in, and my mail could not be delivered to billing.\r\n")
    assert detect_bounce(raw) is None
