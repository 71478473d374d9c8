"""Bounce (non-delivery report) recognition.

A helpdesk that opens tickets for bounces, or answers them, ends up in mail loops with MTAs and buries
agents in noise. Recognising them also lets the caller attach a failure to the outgoing mail that caused it,
via the original Message-IDs quoted in the report. RFC 3464 reports are trusted first because they are
machine-readable; everything else is a deliberately conservative heuristic: it needs BOTH an automatic sender
and a failure phrase, because a human writing "your mail was undeliverable" must still get a ticket.
Malformed input must never raise: the caller runs this on every inbound mail before anything else.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Literal

from ticketd.parsers.mime import Mime, read_mime

__all__ = ["Bounce", "detect_bounce", "is_feedback_report"]

_DIAG_MAX = 500
_TEXT_MAX = 200_000  # cap scanned text so a huge bounce cannot make regexes slow


@dataclass(frozen=True)
class Bounce:
    kind: str  # "dsn" or "heuristic"
    permanent: bool
    recipients: tuple[str, ...]
    status: str | None
    diagnostic: str | None
    message_ids: tuple[str, ...]


_DAEMON_LOCAL = re.compile(
    r"^(mailer[-_.]?daemon|mail[-_.]?daemon|post[-_]?master|poostmaster|mail[-_.]?delivery[-_.]?(sub)?system"
    r"|double-bounce|bounces?)$",
    re.I,
)
_DAEMON_NAME = re.compile(r"mailer[-_ ]?daemon|mail delivery (sub)?system", re.I)
_NULL_PATHS = {"", "<>", "<mailer-daemon>", "<null>", "mailer-daemon"}
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ _-]?(reply|response|respons|antwort)|out of (the )?office|abwesenheit|vacation"
    r"|absence|otomatik yan[ıi]t|réponse automatique|risposta automatica)",
    re.I,
)
_FAILURE = re.compile(
    r"qmail-send program|created automatically by mail delivery software|delivery has failed to these recipients"
    r"|undeliverable|undelivered mail|mail delivery failed|returned mail|delivery status notification"
    r"|address not found|failure notice|deliver(y|ing)? (failure|failed|error)|failed delivery|failure delivery"
    r"|(could not|couldn't|can ?not|can't|wasn't|was not|has not been|unable to) (be )?deliver|not (been )?delivered"
    r"|delivery has failed|did not reach the following recipient|mail failed|failed addresses|error delivering"
    r"|no such user|user unknown|unknown user|invalid user address|smtp server: errors from"
    r"|(配信|送信|配達)(でき|出来)ませんでした"
    r"|message delivery has failed|mail system error|non remis|non recapitabile|teslim edilemedi"
    r"|unzustellbar|nicht zustellbar|не доставлено|permanent (fatal )?error|mail failure|delayed mail"
    r"|could not send (mail|message) for past|message .{0,40} delayed|error sending your mail"
    r"|i'm afraid i wasn't able to deliver|delivery to the following recipients? failed"
    r"|the following address(es)? failed|unable to deliver|message could not be delivered",
    re.I,
)
_DELAY = re.compile(
    r"\(delay\)|delayed|still being retried|will (continue|keep) (trying|to try)|could not send (mail|message) for"
    r"|has not (yet )?been delivered|notification: warning|^\s*warning\b|will be retried",
    re.I,
)
_ENHANCED = re.compile(r"(?<![\d.vV])([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_SMTP_CODE = re.compile(r"(?<![\d.\-])([45]\d\d)(?=[ -]\D)")
_ADDR = r"([^\s<>()\"',;:@]+@[A-Za-z0-9][A-Za-z0-9.\-]*\.[A-Za-z]{2,})"
_RCPT_PATTERNS = (
    re.compile(r"^\s*<" + _ADDR + r">:", re.M),  # qmail, Postfix, Yahoo
    re.compile(r"^ {2,}<?" + _ADDR + r">?\s*(?::|$)", re.M),  # Exim indented lines
    re.compile(r"RCPT TO:\s*<" + _ADDR + r">", re.I),
    re.compile(r"<" + _ADDR + r">\.\.\.", re.I),  # sendmail
    re.compile(r"(?:wasn't|was not|couldn't be|could not be) delivered to:?\s*<?" + _ADDR, re.I),
    re.compile(r"(?:address(?:es)? failed|failed permanently|recipients or groups|following address)"
               r"[^\n]*:\s*\n(?:[^\n]*\n){0,2}?[^\n]*?<?" + _ADDR, re.I),
)
_RETURNED_HEADERS = re.compile(r"^(?:Received|Return-Path|Message-I[Dd]|DKIM-Signature):", re.M)
_MSGID_IN_TEXT = re.compile(r"Message-ID:\s*(<[^<>\s]+>)", re.I)
_ORIG_MSGID_HEADERS = ("X-Original-Message-ID", "Original-Message-ID")
_DELIVERED_ACTIONS = {"delivered", "relayed", "expanded"}


def _parse(raw: bytes | Mime) -> tuple[Mime, Message] | None:
    """The mail read once (or as the caller read it) and its tree; None when it has no readable tree."""
    try:
        mime = raw if isinstance(raw, Mime) else read_mime(bytes(raw or b""))
    except Exception:
        return None
    return (mime, mime.tree) if mime.tree is not None else None


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
        return "" if value is None else str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:
        try:
            return str(msg.get(name) or "")
        except Exception:
            return ""


def _parts(msg: Message) -> list[Message]:
    """The report's own parts, not descending into attached originals: a forwarded DSN is not our bounce."""
    out: list[Message] = []
    stack = [msg]
    while stack and len(out) < 500:
        part = stack.pop(0)
        out.append(part)
        try:
            ctype = part.get_content_type()
            if part.is_multipart() and ctype != "message/rfc822" and ctype != "message/delivery-status":
                stack[0:0] = [p for p in part.get_payload() if isinstance(p, Message)]
        except Exception:
            continue
    return out


def _text(mime: Mime, part: Message) -> str:
    try:
        payload = mime.decoded(part)
        if payload is None:
            body = part.get_payload()
            return mime.restore_text(body)[:_TEXT_MAX] if isinstance(body, str) else ""
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, errors="replace")
        except LookupError:
            text = payload.decode("utf-8", errors="replace")
        if part.get_content_subtype() == "html":
            text = re.sub(r"<[^>]*>", " ", text)
        return text[:_TEXT_MAX]
    except Exception:
        return ""


def is_feedback_report(raw: bytes | Mime) -> bool:
    """ARF complaints look like DSNs structurally but mean "someone called us spam", not "delivery failed"."""
    read = _parse(raw)
    if read is None:
        return False
    try:
        for part in _parts(read[1]):
            ctype = part.get_content_type()
            if ctype == "message/feedback-report":
                return True
            if ctype == "multipart/report" and str(part.get_param("report-type") or "").lower() == "feedback-report":
                return True
    except Exception:
        return False
    return False


def _dsn_blocks(mime: Mime, part: Message) -> list[dict[str, str]]:
    """Field blocks of a message/delivery-status part; compat32 pre-parses them, but not reliably."""
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        items = [[(k, str(v)) for k, v in p.items()] for p in payload if isinstance(p, Message)]
    else:
        text = _text(mime, part)
        items = [HeaderParser().parsestr(chunk.strip() + "\n").items() for chunk in re.split(r"\n\s*\n", text)]
    for fields in items:
        block = {k.strip().lower(): re.sub(r"\s+", " ", str(v)).strip() for k, v in fields}
        if block:
            blocks.append(block)
    return blocks


def _recipient(block: dict[str, str]) -> str | None:
    """Original-Recipient first: it is the address as our mail gave it (RFC 3464 §2.3.1), the one an Outbox row
    holds; Final-Recipient is what a forward or alias turned it into, which we never wrote to."""
    for key in ("original-recipient", "final-recipient", "x-actual-recipient"):
        value = block.get(key, "")
        addr = value.split(";", 1)[-1].strip().strip("<>").strip().lower()
        if "@" in addr:
            return addr
    return None


def _from_dsn(mime: Mime, msg: Message, parts: list[Message]) -> Bounce | Literal[False] | None:
    """Returns False when the mail has no delivery-status part at all, so the heuristic may take over."""
    ds_types = ("message/delivery-status", "message/global-delivery-status")
    ds_parts = [p for p in parts if p.get_content_type() in ds_types]
    if not ds_parts:
        return False
    blocks = [b for p in ds_parts for b in _dsn_blocks(mime, p)]
    per_rcpt = [b for b in blocks if "action" in b or "final-recipient" in b or "status" in b]
    actions = {b.get("action", "").split()[0].lower() for b in per_rcpt if b.get("action", "").split()}
    if actions and actions <= _DELIVERED_ACTIONS:
        return None  # a success notification: nothing failed
    failing = [b for b in per_rcpt if b.get("action", "").lower().split()[:1] not in (["delivered"], ["relayed"],
                                                                                        ["expanded"])]
    statuses = [m.group(1) for b in failing if (m := _ENHANCED.search(b.get("status", "")))]
    # The status class decides when present: "failed" + 4.x.x (gave up after retries on a transient cause,
    # e.g. mailbox full) does not mean the address is bad, and that is what the caller wants to know.
    if statuses:
        permanent = any(s.startswith("5") for s in statuses) or not any(s.startswith("4") for s in statuses)
    else:
        permanent = "delayed" not in actions or "failed" in actions
    recipients = _unique(r for b in failing if (r := _recipient(b)))
    diag = next((b["diagnostic-code"] for b in failing if b.get("diagnostic-code")), None)
    if diag:
        diag = re.sub(r"^\s*(smtp|x-[\w-]+)\s*;\s*", "", diag, flags=re.I)[:_DIAG_MAX]
    status = next((s for s in statuses if s[0] in "45"), statuses[0] if statuses else None)
    if not recipients:
        recipients = _failed_recipients_header(msg) or _text_recipients(_first_text(mime, parts),
                                                                            _own_addresses(msg))
    ids = _message_ids(mime, msg, parts, extra=[b.get(h.lower(), "") for b in blocks for h in _ORIG_MSGID_HEADERS])
    return Bounce("dsn", permanent, recipients, status, diag, ids)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return tuple(seen)


def _failed_recipients_header(msg: Message) -> tuple[str, ...]:
    values = [str(v) for v in (msg.get_all("X-Failed-Recipients") or [])]
    return _unique(a.lower() for _, a in getaddresses(values) if "@" in a)


def _text_recipients(text: str, exclude: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Known phrasings first; else the first stranger's address before the returned headers start."""
    found: list[tuple[int, str]] = []
    for pattern in _RCPT_PATTERNS:
        found.extend((m.start(), m.group(1).lower().rstrip(".")) for m in pattern.finditer(text))
    ok = [a for _, a in sorted(found) if a not in exclude and not _DAEMON_LOCAL.match(a.split("@")[0])]
    if not ok:
        head = _RETURNED_HEADERS.split(text, 1)[0]
        ok = [a for a in (m.lower().rstrip(".") for m in re.findall(_ADDR, head))
              if a not in exclude and not _DAEMON_LOCAL.match(a.split("@")[0])][:1]
    return _unique(ok)


def _own_addresses(msg: Message) -> frozenset[str]:
    values = [str(v) for h in ("From", "To", "Cc", "Reply-To", "Sender") for v in (msg.get_all(h) or [])]
    return frozenset(a.lower() for _, a in getaddresses(values) if "@" in a)


def _first_text(mime: Mime, parts: list[Message]) -> str:
    for part in parts:
        if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
            return _text(mime, part)
        if part.get_content_maintype() == "multipart" and isinstance(body := part.get_payload(), str):
            return mime.restore_text(body)[:_TEXT_MAX]  # no usable boundary: the body is all we have
    return ""


def _message_ids(mime: Mime, msg: Message, parts: list[Message], extra: Iterable[str] = ()) -> tuple[str, ...]:
    found: list[str] = []
    for name in _ORIG_MSGID_HEADERS:
        found.extend(re.findall(r"<[^<>\s]+>", _header(msg, name)))
    for value in extra:
        found.extend(re.findall(r"<[^<>\s]+>", value))
    for part in parts:
        try:
            ctype = part.get_content_type()
            if ctype in ("message/rfc822", "message/global"):
                inner = part.get_payload()
                inner = inner[0] if isinstance(inner, list) and inner else inner
                if isinstance(inner, Message):
                    found.extend(re.findall(r"<[^<>\s]+>", str(inner.get("Message-ID") or "")))
            elif part.get_content_maintype() == "text" or ctype == "message/delivery-status":
                found.extend(_MSGID_IN_TEXT.findall(_text(mime, part)))
        except Exception:
            continue
    return _unique(found)


def _is_automatic(msg: Message) -> bool:
    senders = [parseaddr(_header(msg, "From"))[1], parseaddr(_header(msg, "Sender"))[1]]
    unixfrom = (msg.get_unixfrom() or "").split()
    if len(unixfrom) > 1:
        senders.append(unixfrom[1])
    for sender in senders:
        if sender and _DAEMON_LOCAL.match(sender.split("@")[0].strip("<>")):
            return True
    # A missing From is no evidence: a person's broken client sends mail without one too, and dropping that as
    # a bounce loses a customer's mail. MTAs' reports carry a daemon sender or a null path, checked here.
    name, _ = parseaddr(_header(msg, "From"))
    if _DAEMON_NAME.search(name):
        return True
    return_paths = [str(v).strip().lower() for v in (msg.get_all("Return-Path") or [])]
    if any(rp in _NULL_PATHS for rp in return_paths[:1]):
        return True
    auto = _header(msg, "Auto-Submitted").lower()
    return auto.startswith(("auto-replied", "auto-generated")) or bool(msg.get("X-Failed-Recipients"))


def _is_auto_reply(msg: Message) -> bool:
    """RFC 3834 vacation notices share a null sender with bounces but report nothing about delivery."""
    if _AUTO_REPLY_SUBJECT.search(_header(msg, "Subject")):
        return True
    return any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Vacation"))


def _heuristic(mime: Mime, msg: Message, parts: list[Message]) -> Bounce | None:
    if not _is_automatic(msg) or _is_auto_reply(msg):
        return None
    subject = _header(msg, "Subject")
    text = _first_text(mime, parts)
    if not (_FAILURE.search(subject) or _FAILURE.search(text[:20_000])):
        return None
    enhanced = [m.group(1) for m in _ENHANCED.finditer(text) if m.group(1)[0] in "45"]
    codes = enhanced or _SMTP_CODE.findall(text)
    # Same rule as for DSNs: the code class says whether the cause is lasting; wording only breaks a tie.
    if any(c.startswith("5") for c in codes):
        permanent = True
    elif codes:
        permanent = False
    else:
        permanent = not (_DELAY.search(subject) or _DELAY.search(text[:5_000]))
    recipients = _failed_recipients_header(msg) or _text_recipients(text, _own_addresses(msg))
    diag = None
    for line in text.splitlines():
        if any(m.group(1)[0] in "45" for m in _ENHANCED.finditer(line)) or _SMTP_CODE.search(line):
            diag = line.strip()[:_DIAG_MAX]
            break
    status = next((c for c in codes if c.startswith("5")), codes[0] if codes else None)
    return Bounce("heuristic", permanent, recipients, status, diag, _message_ids(mime, msg, parts))


def _ses_notification(mime: Mime, msg: Message, parts: list[Message]) -> Bounce | None:
    """Amazon SES bounce notifications relayed by SNS e-mail carry the DSN as JSON, not as MIME."""
    if not parseaddr(_header(msg, "From"))[1].lower().endswith("@sns.amazonaws.com"):
        return None
    text = _first_text(mime, parts).strip()
    try:
        data = json.loads(text[: text.rfind("}") + 1], strict=False)
        if isinstance(data, dict) and isinstance(data.get("Message"), str):  # raw SNS envelope
            data = json.loads(data["Message"], strict=False)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("notificationType") != "Bounce":
        return None
    bounce, mail = data.get("bounce") or {}, data.get("mail") or {}
    rcpts = [r for r in bounce.get("bouncedRecipients") or [] if isinstance(r, dict)]
    first = rcpts[0] if rcpts else {}
    ids = [h.get("value", "") for h in mail.get("headers") or [] if isinstance(h, dict)
           and str(h.get("name", "")).lower() == "message-id"]
    diag = str(first.get("diagnosticCode") or "")[:_DIAG_MAX] or None
    recipients = _unique(str(r.get("emailAddress", "")).lower() for r in rcpts if r.get("emailAddress"))
    return Bounce("heuristic", bounce.get("bounceType") != "Transient", recipients, first.get("status"), diag,
                  _unique(str(i) for i in ids if i))


def detect_bounce(raw: bytes | Mime) -> Bounce | None:
    """None for anything that is not a failed or delayed delivery, so the caller can treat it as normal mail."""
    try:
        read = _parse(raw)
        if read is None or is_feedback_report(read[0]):
            return None
        mime, msg = read
        parts = _parts(msg)
        dsn = _from_dsn(mime, msg, parts)
        if dsn is not False:
            return dsn
        return _ses_notification(mime, msg, parts) or _heuristic(mime, msg, parts)
    except Exception:
        return None
