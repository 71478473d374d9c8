"""Raw bytes → ParsedMail: decoded headers, text, HTML and attachments.

mail-parser does the MIME walking and charset decoding; every header access is guarded on its own so one
broken header costs that header, not the message. Nothing here touches the database or the network.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

import mailparser

_MSGID_RE = re.compile(r"<[^<>\s]+>")
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


@dataclass(frozen=True)
class Address:
    email: str
    name: str = ""


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    payload: bytes
    content_id: str | None = None
    inline: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    subject: str
    sender: Address | None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    date: datetime | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    text: str = ""
    html: str | None = None
    attachments: tuple[ParsedAttachment, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def message_id_hash(message_id: str | None, raw: bytes) -> str:
    """Identity used to spot the same mail fetched twice; falls back to the bytes when there is no Message-ID."""
    basis = message_id.strip().lower().encode() if message_id else raw
    return hashlib.sha256(basis).hexdigest()


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block alone: cheap, and safe to call before the mail is stored."""
    try:
        value = str(BytesHeaderParser(policy=compat32).parsebytes(raw).get("Message-ID", "") or "")
    except Exception:
        return None
    found = _MSGID_RE.search(value)
    return found.group(0)[:998] if found else None


def sanitize_filename(name: str | None, fallback: str = "attachment") -> str:
    """A name safe on any file system: no path parts, control characters or leading dots; at most 200 chars."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME.sub("_", name).strip(" .")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else name[:200]
    return name or fallback


def _decode_header_value(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _addresses(values: list[str]) -> tuple[Address, ...]:
    out = []
    for name, addr in getaddresses([_decode_header_value(v) for v in values]):
        addr = addr.strip().lower()
        if "@" in addr and not any(c in addr for c in "\r\n"):
            out.append(Address(email=addr, name=" ".join(name.split())))
    return tuple(out)


def _msgids(value: str) -> tuple[str, ...]:
    return tuple(_MSGID_RE.findall(value or ""))


def _date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _unescape_8bit(value: str) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or an old client's local charset) as real text."""
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    data = value.encode("ascii", "surrogateescape")
    for charset in ("utf-8", "cp1254"):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _raw_headers(raw: bytes) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Lower-cased header map (first value) and all values per name, 8-bit bytes decoded, one guard each."""
    first: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    try:
        items = BytesHeaderParser(policy=compat32).parsebytes(raw).raw_items()
    except Exception:
        return first, every
    for key, value in items:
        try:
            text = _unescape_8bit(str(value)).replace("\r", "").replace("\n", "")
        except Exception:
            continue
        every.setdefault(key.lower(), []).append(text)
        first.setdefault(key.lower(), " ".join(text.split()))
    return first, every


def parse_message(raw: bytes) -> ParsedMail:
    parsed = mailparser.parse_from_bytes(raw)
    headers, every = _raw_headers(raw)
    defects = tuple(str(d) for d in (parsed.defects or []))

    message_ids = _msgids(headers.get("message-id", ""))
    senders = _addresses(every.get("from", []))
    subject = " ".join(_decode_header_value(headers.get("subject", "")).split())

    attachments = []
    for att in parsed.attachments:
        payload = att["payload"]
        data = _attachment_bytes(payload, att.get("binary", False))
        disposition = (att.get("content-disposition") or "").lower()
        cid = (att.get("content-id") or "").strip("<> ") or None
        attachments.append(
            ParsedAttachment(
                filename=sanitize_filename(att.get("filename")),
                content_type=(att.get("mail_content_type") or "application/octet-stream").lower(),
                payload=data,
                content_id=cid,
                inline=disposition.startswith("inline"),
            )
        )

    text = "\n".join(parsed.text_plain).strip("\n")
    html = "\n".join(parsed.text_html) or None
    return ParsedMail(
        message_id=message_ids[0] if message_ids else None,
        subject=subject,
        sender=senders[0] if senders else None,
        to=_addresses(every.get("to", [])),
        cc=_addresses(every.get("cc", [])),
        reply_to=_addresses(every.get("reply-to", [])),
        date=_date(headers.get("date", "")),
        in_reply_to=next(iter(_msgids(headers.get("in-reply-to", ""))), None),
        references=_msgids(" ".join(every.get("references", []))),
        text=text,
        html=html,
        attachments=tuple(attachments),
        headers=headers,
        defects=defects,
    )


def _attachment_bytes(payload: str | bytes, binary: bool) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if binary:
        try:
            return base64.b64decode(payload)
        except ValueError:
            return payload.encode("utf-8", "surrogateescape")
    return payload.encode("utf-8", "surrogateescape")
