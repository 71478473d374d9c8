"""An outbox row's bytes on the wire, built cheaply.

Every header value of a row is ours (rendered, cleaned of CR/LF, stored), so there is nothing to parse: the
modern ``email`` policy's header registry parses each value back before writing it, which made composing a
mail cost more than sending it. Here non-ASCII words are RFC 2047-encoded with the legacy (compat32) API and
the text body is quoted-printable UTF-8. Anything the fast path cannot express (a non-ASCII address, RFC
6532) goes through the full ``email`` package instead, and so does a mail with more than a text body: its
attachments and HTML alternative are assembled here by ``add_parts``, with boundaries that repeat on a retry.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage, Message
from email.policy import compat32
from email.utils import formataddr, getaddresses, parseaddr
from io import BytesIO
from typing import Any

from ticketd.parsers.message import strip_bidi

_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP
_WIRE = compat32.clone(linesep="\r\n", max_line_length=78)
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})
ID_HEADERS = frozenset({"in-reply-to", "references"})
# A msg-id cannot be folded inside (RFC 5322 3.6.4), so a longer one cannot be written under the 998-character
# line limit after "In-Reply-To: ": it is left out of what we write (the thread then rests on the others).
MAX_ID_LENGTH = 998 - len("In-Reply-To: ")
MAX_REFERENCES = 20
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_CID_UNSAFE = re.compile(r"[^A-Za-z0-9.@_-]")


@dataclass(frozen=True)
class MailAttachment:
    """A part besides the text: a file, or (with ``content_id``) an image the HTML alternative shows inline."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None  # without angle brackets; the HTML refers to it as cid:<content_id>


class NeedsFullComposer(ValueError):
    """The row holds something only the full ``email`` package writes correctly."""


def clean(value: str) -> str:
    """Header values never carry CR/LF: folding them away defeats header injection from mail content."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def thread_ids(ids: Sequence[str]) -> list[str]:
    """The ids a References header carries: writable ones only, each once; of a long thread the first (the
    conversation's root, which threads it in every client) and the last ones (RFC 5322 3.6.4's advice)."""
    kept = [i for i in dict.fromkeys(ids) if i and len(i) <= MAX_ID_LENGTH]
    return kept if len(kept) <= MAX_REFERENCES else [kept[0], *kept[-(MAX_REFERENCES - 1):]]


def fold_ids(name: str, value: str, linesep: str = "\r\n", width: int = 78) -> str:
    """``Name: <a> <b>`` folded between ids, lines of at most ``width`` unless one id is longer by itself."""
    lines = [f"{name}:"]
    for msgid in value.split():
        if len(lines[-1]) + 1 + len(msgid) > width and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += " " + msgid
    return linesep.join(lines) + linesep


class FoldedIds(str):
    """An In-Reply-To/References value the ``email`` package folds between ids. Left to itself its policy
    treats the value as text and RFC 2047-encodes any id longer than a line (an Outlook Message-ID is ~90
    characters), which breaks the thread in the customer's client. A value with a ``name`` and a ``fold``
    is a header object to ``email.policy.EmailPolicy``: stored as is, folded by this ``fold``."""

    name: str

    def __new__(cls, name: str, value: str) -> FoldedIds:
        obj = super().__new__(cls, " ".join(value.split()))
        obj.name = name
        return obj

    def fold(self, *, policy: Any) -> str:
        return fold_ids(self.name, str(self), policy.linesep, policy.max_line_length or 78)


def _addresses(value: str) -> str:
    parts = []
    for name, address in getaddresses([value]):
        if not address.isascii():
            raise NeedsFullComposer(f"non-ASCII address {address!r}")
        parts.append(formataddr((name, address), charset=_UTF8))
    return ", ".join(parts)


def _header(name: str, value: str) -> str | Header:
    value = clean(value)
    if name.lower() in ADDRESS_HEADERS:
        return _addresses(value)
    return value if value.isascii() else Header(value, _UTF8, header_name=name)


def headers_of(to_addrs: str, cc_addrs: str, subject: str, message_id: str,
               extra: dict[str, str]) -> list[tuple[str, str]]:
    """The header list in the order the mail shows them; ``extra`` holds From, Date, threading and the rest."""
    headers = [("From", extra["From"]), ("To", to_addrs)]
    if cc_addrs:
        headers.append(("Cc", cc_addrs))
    headers += [("Subject", subject), ("Message-ID", message_id)]
    headers += [(name, value) for name, value in extra.items() if name != "From"]
    return headers


def wire_bytes(headers: list[tuple[str, str]], body: str, multipart: bool = False) -> bytes:
    """``multipart``: the row also has attachments or an HTML part, which only the ``email`` package nests."""
    if multipart:
        raise NeedsFullComposer("attachments or an HTML alternative")
    msg: Message[str, str | Header] = Message(policy=_WIRE)
    for name, value in headers:
        msg[clean(name)] = _header(name, value)
    msg.set_payload(body, _UTF8)
    out = BytesIO()
    BytesGenerator(out, policy=_WIRE).flatten(msg)
    return out.getvalue()


def envelope_sender(from_header: str) -> str:
    return parseaddr(clean(from_header))[1]


def compose(headers: list[tuple[str, str]], body: str, full: Callable[[], bytes], multipart: bool = False) -> bytes:
    """The fast path, or ``full()`` when the row needs the whole ``email`` package."""
    try:
        return wire_bytes(headers, body, multipart)
    except (NeedsFullComposer, UnicodeError):
        return full()


def safe_filename(name: str, fallback: str = "attachment") -> str:
    """A file name is only a label for the recipient: no directories (a client saving it must not climb out of
    its folder), no control characters (CR/LF would break the header it travels in), no bidirectional controls
    (the name must show what it is: "invoice\u202efdp.exe" shows as "invoiceexe.pdf")."""
    name = "".join(" " if unicodedata.category(c).startswith("C") else c for c in strip_bidi(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join(name.split()).strip(". ")
    return name[:200].strip() or fallback


def safe_content_type(value: str) -> tuple[str, str]:
    """(maintype, subtype); anything but a plain ``type/subtype`` of a leaf part goes out as opaque bytes."""
    value = value.strip().lower()
    if not _MIME_TYPE.fullmatch(value) or value.startswith(("multipart/", "message/")):
        return "application", "octet-stream"
    maintype, subtype = value.split("/", 1)
    return maintype, subtype


def safe_content_id(value: str) -> str:
    return _CID_UNSAFE.sub("", value.strip().strip("<>"))


def add_parts(msg: EmailMessage, html: str | None, attachments: Sequence[MailAttachment], seed: str) -> None:
    """Grow a text message into the usual shape: multipart/mixed holding multipart/alternative (the text; the
    HTML in multipart/related with the images it shows) and then the files.

    An image with a Content-ID goes inline only when the HTML refers to it; one shown by nothing would be a
    hidden part many clients drop, so it is attached as a file instead. The boundaries derive from ``seed``
    (the Message-ID): every retry of the row is the same bytes.
    """
    cids = [safe_content_id(part.content_id or "") for part in attachments]
    inline = {i for i, cid in enumerate(cids) if html is not None and cid and f"cid:{cid}" in html}
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        html_part = list(msg.iter_parts())[-1]  # the alternative just added
        for i in sorted(inline):
            maintype, subtype = safe_content_type(attachments[i].content_type)
            html_part.add_related(attachments[i].data, maintype, subtype, cid=f"<{cids[i]}>", disposition="inline",
                                  filename=safe_filename(attachments[i].filename))
        if inline:
            html_part.set_param("type", "text/html")  # RFC 2387: the root part's type
    for i, att in enumerate(attachments):
        if i not in inline:
            maintype, subtype = safe_content_type(att.content_type)
            msg.add_attachment(att.data, maintype, subtype, filename=safe_filename(att.filename))
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # the email package repeats it on every part it makes; it belongs on top
    multiparts = [part for part in msg.walk() if part.is_multipart()]
    for number, part in enumerate(multiparts):
        digest = hashlib.sha256(f"{seed}/{number}".encode()).hexdigest()[:40]
        part.set_boundary(f"=_ticketd_{digest}")  # "=_" cannot occur in base64 or quoted-printable text
