"""Which mail is a robot's and which a person's, classified by hand once; shared by the screening tests.

Paths are relative to tests/data. Robots are the auto-replies, vacation notices, newsletters, list mail,
notifications and receipts of the real-world corpus plus one written fixture per signal (tests/data/robots);
people are the reply fixtures, the hand-written mails elsewhere in tests/data and the corpus mails that are
plainly a person writing.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

# corpus file → what it is (judged by reading it, not by running the screen)
CORPUS_ROBOTS: dict[str, str] = {
    "corpus/sisimai-set-of-emails/bsd/rfc3834-03.eml": "vacation notice (iCloud)",
    "corpus/sisimai-set-of-emails/bsd/rfc3834-04.eml": "auto-reply (Exchange 'Automatic reply')",
    "corpus/sisimai-set-of-emails/bsd/rfc3834-05.eml": "auto-reply",
    "corpus/sisimai-set-of-emails/bsd/rfc3834-06.eml": "auto-reply ('AutoRespons')",
    "corpus/sisimai-set-of-emails/bsd/arf-26.eml": "automatic unsubscribe request (Apple Mail)",
    "corpus/sisimai-set-of-emails/not/rb-issue-368-bug.eml": "postmaster's automatic notification",
    "corpus/sisimai-set-of-emails/bsd/lhost-fml-02.eml": "mailing-list manager's answer",
    "corpus/sisimai-set-of-emails/bsd/lhost-kddi-01.eml": "carrier's error notice from no-reply@",
    "corpus/sisimai-set-of-emails/bsd/lhost-amazonses-11.eml": "SES notification",
    "corpus/sisimai-set-of-emails/bsd/lhost-amazonses-12.eml": "SES notification",
    "corpus/sisimai-set-of-emails/bsd/lhost-amazonses-13.eml": "SES notification",
    "corpus/flanker/disposition-notification.eml": "read receipt (RFC 8098 MDN)",
    "corpus/flanker/apache-message-news-mime.eml": "mailing-list mail",
    "corpus/flanker/from-encoding.eml": "mailing-list mail",
    "corpus/flanker/message-external-body.eml": "IETF announcement list",
    "corpus/rt/8859-15-message-series/dir": "mailing-list mail (rt-users)",
    "corpus/mikel-mail/error_emails/empty_in_reply_to.eml": "mailing-list mail",
    "corpus/mikel-mail/error_emails/bad_date_header2.eml": "newsletter (Free-Quilting enews)",
    "corpus/mikel-mail/error_emails/content_transfer_encoding_7-bit.eml": "newsletter (Discover Card News)",
    "corpus/mikel-mail/error_emails/bad_subject.eml": "newsletter (MySurvey survey invitation)",
    "corpus/mikel-mail/error_emails/encoding_madness.eml": "notification (eBay bid, no-reply@)",
    "corpus/mikel-mail/mime_emails/raw_email_encoded_stack_level_too_deep.eml": "notification (Gmail invitation)",
    "corpus/mikel-mail/plain_emails/raw_email_trailing_dot.eml": "notification (RubyForge tracker)",
    "corpus/mikel-mail/error_emails/cant_parse_from.eml": "newsletter (Apple News)",
    "auto-reply.eml": "out-of-office (Auto-Submitted)",
}
# Robots that carry nothing a screen can read: a plain From, a plain subject, no bulk header. Answered, and
# counted apart so that the gap stays visible (and the test notices when it closes).
KNOWN_MISSES: dict[str, str] = {
    "corpus/mikel-mail/error_emails/cant_parse_from.eml": "Apple's 2009 newsletter: no List-*, Precedence, "
    "Feedback-ID or bounce Return-Path, sender News@; only its content says newsletter",
    "corpus/mikel-mail/error_emails/bad_subject.eml": "MySurvey's 2010 invitation: no bulk header, a personal "
    "Reply-To; only its body ('Please do not reply to this email') says robot",
}

ROBOT_FIXTURES = sorted(p.relative_to(DATA).as_posix() for p in (DATA / "robots").glob("*.eml"))

CORPUS_HUMANS: list[str] = [
    "corpus/django-helpdesk/all-special-chars.eml",
    "corpus/django-helpdesk/quoted_printable.eml",
    "corpus/django-helpdesk/forwarded-message.eml",
    "corpus/django-helpdesk/pgp.eml",
    "corpus/django-helpdesk/utf-nondecodable.eml",
    "corpus/flanker/outlook-express.eml",
    "corpus/flanker/iphone.eml",
    "corpus/mikel-mail/plain_emails/raw_email_reply.eml",
    "corpus/rt/8859-15-message-series/msg1",
    "corpus/redmine/fullname_of_sender_in_parentheses.eml",
    "corpus/redmine/ticket_by_unknown_user.eml",
]
HUMAN_FIXTURES = sorted(
    [p.relative_to(DATA).as_posix() for p in (DATA / "humans").glob("*.eml")]
    + ["charsets/tr-iso-8859-9.eml", "charsets/tr-windows-1254.eml", "charsets/mislabelled-cp1252.eml",
       "unknown-sender.eml", "iso-8859-9-body.eml", "known-customer-rfc2047-subject.eml",
       "process/complaint-tr.eml", "process/information-question.eml", "process/invoice-request.eml"]
)
# Reply bodies (no headers) of real clients' replies: sent as the new mail a person writes with that text.
REPLY_BODIES = sorted(p.relative_to(DATA).as_posix() for p in (DATA / "replies").glob("*.txt"))


def as_new_mail(body_path: str, index: int) -> bytes:
    """A reply fixture's text as the mail a person's client sends: one distinct sender per body."""
    text = (DATA / body_path).read_text(encoding="utf-8")
    headers = [f"From: Müşteri {index} <musteri{index}@kisi{index}.example>", "To: support@acme.example",
               f"Subject: Talep {index}: {Path(body_path).stem}", f"Message-ID: <human.{index}@kisi{index}.example>",
               "Date: Mon, 23 Nov 2026 10:00:00 +0300", "MIME-Version: 1.0",
               "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(headers) + "\r\n\r\n" + text.replace("\n", "\r\n")).encode()
