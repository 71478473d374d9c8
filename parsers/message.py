"""Raw bytes → ParsedMail: decoded headers, text, HTML and attachments, for any bytes at all.

Inbound mail is whatever a sender's client or a spammer produced, and a message that fails to parse is a
customer who never gets a ticket. So every header and every MIME part is read on its own guard: one broken
part costs that part (kept as raw bytes, with a note in `decode_notes`), never the message. Charset labels
are treated as hints (see charsets.py). Nothing here touches the database or the network.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import _header_value_parser as rfc5322  # the parser behind email.policy.default's address headers
from email.errors import NonASCIILocalPartDefect
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime, unquote

import mailparser

from ticketd.parsers.charsets import decode_bytes, decode_header_text, unescape_8bit
from ticketd.parsers.html import html_to_text
from ticketd.parsers.mime import Mime, read_mime

_MSGID_RE = re.compile(r"<[^<>\s]+>")
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
# Unicode's bidirectional controls (embeddings, overrides, isolates, marks): "invoice\u202efdp.exe" shows as
# "invoiceexe.pdf". Nothing a customer legitimately names or signs with needs them in a file name or a header.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CID_REF = re.compile(r"cid:([^\s\"'<>)]+)", re.IGNORECASE)
# mail-parser reads the whole mail when the walk found no text; above this it reads the cut copy (parsers/mime.py).
MAILPARSER_MAX_BYTES = 4 * 1024 * 1024
_MAX_DEPTH = 50
_MAX_PARTS = 2000


def _no_nul(text: str) -> str:
    """NUL marked as a replaced character: PostgreSQL's text cannot hold it (SQLite's can), and no mail client
    shows one, so both backends store the same text."""
    return text.replace("\x00", "\ufffd")


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
    decode_notes: tuple[str, ...] = ()  # what was guessed, replaced or kept undecoded, for support and triage
    # Every Authentication-Results header, topmost first: which one counts depends on who wrote it (rules/auth.py).
    authentication_results: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def is_one_of(address: str, ours: Collection[str]) -> bool:
    """``address`` is one of ``ours`` or a ``+``-tagged subaddress of one (RFC 5233): ``support+7.x@d`` is
    still the mailbox ``support@d``, however the tag was made, so it is ours too."""
    user, at, host = address.strip().lower().partition("@")
    if not at:
        return False
    return f"{user}@{host}" in ours or f"{user.split('+', 1)[0]}@{host}" in ours


def message_id_hash(message_id: str | None, raw: bytes) -> str:
    """Identity used to spot the same mail fetched twice; falls back to the bytes when there is no Message-ID."""
    basis = message_id.strip().lower().encode() if message_id else raw
    return hashlib.sha256(basis).hexdigest()


def header_block(raw: bytes) -> bytes:
    """The header section and the blank line after it. The stdlib's header-only parser still copies the whole
    body, line by line (three copies of a 20 MB mail), before it returns the headers."""
    ends = [found for found in (raw.find(b"\n\n"), raw.find(b"\r\n\r\n"), raw.find(b"\n\r\n")) if found >= 0]
    if not ends:
        return raw
    end = min(ends)
    return raw[:end + (4 if raw.startswith(b"\r\n\r\n", end) else 3 if raw.startswith(b"\n\r\n", end) else 2)]


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block alone: cheap, and safe to call before the mail is stored."""
    try:
        value = _no_nul(str(BytesHeaderParser(policy=compat32).parsebytes(header_block(raw)).get("Message-ID", "")
                            or ""))
    except Exception:
        return None
    found = _MSGID_RE.search(value)
    return found.group(0)[:_MAX_MESSAGE_ID] if found else None


def answered_hashes(raw: bytes) -> list[str]:
    """The identity hashes of the mails this one answers (In-Reply-To, References), from the header block alone:
    cheap enough to take before the whole mail is parsed."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
        value = " ".join(str(v) for name in ("In-Reply-To", "References") for v in headers.get_all(name) or [])
    except Exception:
        return []
    return [message_id_hash(ref[:_MAX_MESSAGE_ID], b"") for ref in _MSGID_RE.findall(_no_nul(value))]


def strip_bidi(text: str) -> str:
    """The text without bidirectional controls, which make what is shown differ from what is stored."""
    return _BIDI_CONTROLS.sub("", text)


def sanitize_filename(name: str | None, fallback: str = "attachment") -> str:
    """A name safe on any file system and shown as it is: no path parts, control characters, bidirectional
    overrides or leading dots; at most 200 chars."""
    name = strip_bidi(unicodedata.normalize("NFC", name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME.sub("_", name).strip(" .")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else name[:200]
        name = name.strip(" .")
    return name or fallback


# One @, no whitespace, brackets, quotes or separators: anything else cannot be answered over SMTP.
_USABLE_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"]+@[^\s@<>()\[\]\\,;:\"]+")
# Nor can a longer one (RFC 5321 allows 64 + 1 + 255 at most); the address columns hold exactly that much.
_MAX_ADDRESS = 320
_MAX_MESSAGE_ID = 998  # a header line's limit, and the Message-ID columns'


def strict_address(value: str) -> str | None:
    """One bare address an agent typed (``[cc=…]``, ``[customer=…]``), lower-cased; None for anything else:
    a display name, a list, a comment, a route, a domain without a dot. What goes into a recipient list is
    exactly one mailbox or nothing."""
    value = value.strip().lower()
    if len(value) > _MAX_ADDRESS or not _USABLE_ADDRESS.fullmatch(value):
        return None
    local, domain = value.rsplit("@", 1)
    labels = domain.split(".")
    if len(labels) < 2 or any(not label or label.startswith("-") or label.endswith("-") for label in labels):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return value


# The stdlib parser copies the rest of the header at every token: quadratic. 32 KB is ~1,000 addresses, far more
# than anyone is answered with ([limits] max_participants); the rest of a longer list is not read.
_MAX_ADDRESS_LIST = 32 * 1024


@dataclass(frozen=True)
class _AddressList:
    addresses: tuple[Address, ...]
    clean: bool  # every mailbox valid, no group, no unparsable rest: what a From must be


def _defects_outside_names(token: rfc5322.TokenList) -> list[Exception]:
    """Defects of the addresses' structure; a display name's (an odd charset, a dot in "John Q. Public") never
    makes an address wrong, so they do not count, nor does a UTF-8 local part (RFC 6532 allows it)."""
    if token.token_type == "display-name":
        return []
    own: list[Exception] = [d for d in token.defects if not isinstance(d, NonASCIILocalPartDefect)]
    for child in token:
        if isinstance(child, rfc5322.TokenList):
            own.extend(_defects_outside_names(child))
    return own


def _display_name(mailbox: rfc5322.TokenList) -> str:
    try:
        name = (mailbox[0].display_name  # type: ignore[union-attr]  # a name-addr token has one
                if mailbox[0].token_type == "name-addr" else "") or ""
    except Exception:
        return ""
    name = "".join(c for c in _no_nul(_clean(name)) if unicodedata.category(c) != "Cc")  # CR/LF, NUL-marked first
    return " ".join(strip_bidi(name).split())


def _address_list(values: list[str], notes: list[str], where: str) -> _AddressList:
    """Strict RFC 5322 reading (what CVE-2023-27043 made ``getaddresses`` grow a ``strict`` flag for, which this
    Python lacks): a mailbox counts only when its addr-spec parses without defect and is usable
    (``strict_address``). A display name is never read as an address: "a@x <b@y>" is neither a nor b."""
    value = ", ".join(values)
    cut = len(value) > _MAX_ADDRESS_LIST
    if cut:
        notes.append(f"{where}: address list over {_MAX_ADDRESS_LIST} characters; the rest was not read")
        value = value[:_MAX_ADDRESS_LIST]
    try:
        parsed, rest = rfc5322.get_address_list(value)
        tokens = list(parsed.addresses)
    except Exception:
        notes.append(f"{where}: unparsable address list dropped")
        return _AddressList((), False)
    if cut and tokens:
        tokens.pop()  # the cut may have shortened it into another address
    clean = not rest and not cut and not _defects_outside_names(parsed)
    out: list[Address] = []
    for token in tokens:
        if token[0].token_type == "group":
            clean = False  # a group: valid in To/Cc, not as the author
        for mailbox in token.all_mailboxes:
            email = _mailbox_address(mailbox)
            if email is None:
                clean = False
                continue
            out.append(Address(email=email, name=_display_name(mailbox)))
    if not out and value.strip() and not clean:
        notes.append(f"{where}: no valid address")
    return _AddressList(tuple(out), clean)


def _mailbox_address(mailbox: rfc5322.TokenList) -> str | None:
    """The parser calls a mailbox whose display name alone is faulty "invalid" too: its parts are read here."""
    if not len(mailbox) or mailbox[0].token_type not in ("name-addr", "addr-spec") or _defects_outside_names(mailbox):
        return None
    try:
        local, domain = mailbox[0].local_part, mailbox[0].domain  # type: ignore[union-attr]  # name-addr or addr-spec
    except Exception:
        return None
    if not local or not domain:
        return None
    return received_address(f"{local}@{domain}")


def received_address(value: str) -> str | None:
    """An addr-spec a mail carried, lower-cased, if it is one we could answer over SMTP; None otherwise. Unlike
    ``strict_address`` (what an agent types), a one-label domain (``root@localhost``) is kept: it is a valid
    address on the mail's own network, and mail from there is real mail."""
    value = value.strip().lower()
    if len(value) > _MAX_ADDRESS or not _USABLE_ADDRESS.fullmatch(value):
        return None
    local, domain = value.rsplit("@", 1)
    if any(not label or label.startswith("-") or label.endswith("-") for label in domain.split(".")):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return value


def _addresses(values: list[str], notes: list[str], where: str = "header") -> tuple[Address, ...]:
    return _address_list(values, notes, where).addresses


def parse_addresses(value: str) -> tuple[Address, ...]:
    """The valid mailboxes of one address header, read as strictly as an incoming mail's."""
    return _addresses([value], [])


def _sender(values: list[str], notes: list[str]) -> Address | None:
    """The author, or None: a From that is not exactly one valid mailbox (two From headers, a list, a group, a
    display name dressed as an address, anything unparsable) names nobody we may answer or file mail under."""
    if len(values) != 1:
        if values:
            notes.append(f"from: {len(values)} From headers; no sender taken")
        return None
    found = _address_list(values, notes, "from")
    if not found.clean or len(found.addresses) != 1:
        if found.addresses:
            notes.append("from: not exactly one valid address; no sender taken")
        return None
    return found.addresses[0]


def _decode(value: str, notes: list[str], where: str = "header") -> str:
    text, more = decode_header_text(value, where=where)
    notes.extend(more)
    return _no_nul(text)  # an encoded word can carry one


def _msgids(value: str) -> tuple[str, ...]:
    return tuple(_MSGID_RE.findall(value or ""))


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except Exception:  # out-of-range years and offsets raise more than ValueError
        return None


def _raw_headers(raw: bytes) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Lower-cased header map (first value) and all values per name, 8-bit bytes decoded, one guard each."""
    first: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    try:
        items = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw)).raw_items()
    except Exception:
        return first, every
    for key, value in items:
        try:
            name = _no_nul(unescape_8bit(str(key)).strip().lower())
            text = _no_nul(unescape_8bit(str(value)).replace("\r", "").replace("\n", ""))
        except Exception:
            continue
        every.setdefault(name, []).append(text)
        first.setdefault(name, " ".join(text.split()))
    return first, every


def parse_message(raw: bytes | Mime) -> ParsedMail:
    """Never raises: a mail that cannot be read still becomes a ticket, with its bytes kept and notes saying why.

    The stdlib parser (compat32, which keeps undecodable bytes) walks the MIME tree and each part is decoded on
    its own guard; mail-parser is a second reader whose body text is used when the walk finds none. Pass the
    ``Mime`` the caller already read (``read_mime``) so the mail is parsed once for every reader.
    """
    try:
        mime = raw if isinstance(raw, Mime) else read_mime(bytes(raw))
    except Exception:
        mime = read_mime(b"")
    try:
        return _parse(mime)
    except BaseException as exc:  # RecursionError, MemoryError on hostile input: last line of defence
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        note = f"parser failed ({type(exc).__name__}); whole message kept as undecodable-part-0.bin"
        return ParsedMail(
            message_id=header_message_id(mime.raw),
            subject="",
            sender=None,
            text=_no_nul(mime.raw.decode("utf-8", "replace")),
            attachments=(ParsedAttachment("undecodable-part-0.bin", "application/octet-stream", mime.raw),),
            decode_notes=(note,),
        )


def _parse(mime: Mime) -> ParsedMail:
    raw = mime.raw
    notes: list[str] = []
    headers, every = _raw_headers(raw)
    message_ids = _msgids(headers.get("message-id", ""))
    sender = _sender(every.get("from", []), notes)
    subject = " ".join(_decode(headers.get("subject", ""), notes, "subject").split())

    body = walk_body(mime, notes)
    plain, html = body.plain, body.html
    if not plain and not html:
        plain, html, defects = _mailparser_bodies(mime, notes)
    else:
        defects = ()
    text = _no_nul(_newlines("\n".join(plain)).strip("\n"))
    html_text = _no_nul("\n".join(html)) or None
    if not text.strip() and html_text:
        text, more = html_to_text(html_text)
        notes.extend(more)
    return ParsedMail(
        message_id=message_ids[0][:_MAX_MESSAGE_ID] if message_ids else None,  # as header_message_id has it
        subject=subject,
        sender=sender,
        to=_addresses(every.get("to", []), notes, "to"),
        cc=_addresses(every.get("cc", []), notes, "cc"),
        reply_to=_addresses(every.get("reply-to", []), notes, "reply-to"),
        date=_date(headers.get("date", "")),
        in_reply_to=next(iter(_msgids(headers.get("in-reply-to", ""))), None),
        references=_msgids(" ".join(every.get("references", []))),
        text=text,
        html=html_text,
        attachments=body.attachments,
        headers=headers,
        defects=tuple(body.defects) + defects,
        decode_notes=tuple(dict.fromkeys(notes)),
        authentication_results=tuple(every.get("authentication-results", [])),
    )


def _newlines(text: str) -> str:
    """One line ending everywhere: CRLF from the wire and bare CR from old Mac clients both become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _mailparser_bodies(mime: Mime, notes: list[str]) -> tuple[list[str], list[str], tuple[str, ...]]:
    """mail-parser's reading of the bodies, for mails the walk got no text from (it recovers epilogue parts).
    Over ``MAILPARSER_MAX_BYTES`` it reads the cut copy (a 20 MB mail would cost it what it cost the stdlib
    parser): a cut run inside a text it recovers is put back, a base64 body it would have decoded stays out."""
    whole = len(mime.raw) <= MAILPARSER_MAX_BYTES or not mime.runs
    try:
        parsed = mailparser.parse_from_bytes(mime.raw if whole else mime.cut)
        plain = [mime.restore_text(str(t)) for t in parsed.text_plain]
        html = [mime.restore_text(str(t)) for t in parsed.text_html]
        defects = tuple(str(d) for d in (parsed.defects or []))
    except Exception as exc:
        notes.append(f"mail-parser failed ({type(exc).__name__})")
        return [], [], ()
    plain = [_clean(t) for t in plain]
    html = [_clean(t) for t in html]
    if any(t.strip() for t in plain + html):
        notes.append("body text recovered by mail-parser" + ("" if whole else ", without the large base64 parts"))
    return plain, html, defects


def _clean(text: str) -> str:
    """Lone surrogates (undecoded bytes) cannot be stored as UTF-8; mark them as replaced instead."""
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: tuple[ParsedAttachment, ...] = ()
    defects: list[str] = field(default_factory=list)


def walk_body(mime: Mime, notes: list[str]) -> _Body:
    """Text, HTML and attachments of every MIME part, each part on its own guard."""
    body = _Body()
    root = mime.tree
    if root is None:  # deep nesting: the parser recurses per level
        notes.append(f"MIME structure unreadable ({mime.error}); body kept as undecodable-part-0.bin")
        _, _, rest = mime.raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        body.attachments = (ParsedAttachment("undecodable-part-0.bin", "application/octet-stream", rest),)
        return body
    found: list[ParsedAttachment] = []
    leaves = _leaves(root, body.defects)
    if leaves and body.defects and body.defects[-1].startswith("MIME tree"):
        notes.append(body.defects[-1])
    for index, (part, in_attachment) in enumerate(leaves, start=1):
        try:
            _read_part(mime, part, index, in_attachment, body, found, notes)
        except Exception as exc:
            notes.append(f"part {index}: {type(exc).__name__}; kept as undecodable-part-{index}.bin")
            found.append(ParsedAttachment(f"undecodable-part-{index}.bin", "application/octet-stream",
                                          _raw_part_bytes(mime, part)))
    referenced = {m.lower() for m in _CID_REF.findall("\n".join(body.html))}
    body.attachments = tuple(
        replace(att, inline=True) if att.content_id and att.content_id.lower() in referenced else att
        for att in found
    )
    return body


def _leaves(root: Message, defects: list[str]) -> list[tuple[Message, bool]]:
    """Depth-first non-container parts, iteratively: hostile nesting must not exhaust the stack."""
    out: list[tuple[Message, bool]] = []
    stack: list[tuple[Message, bool, int]] = [(root, False, 0)]
    while stack:
        part, in_attachment, depth = stack.pop()
        if len(out) > _MAX_PARTS or depth > _MAX_DEPTH:
            defects.append("MIME tree too large or deep; the rest was not read")
            break
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list) and not _is_attached_message(part):
            blocks = in_attachment or _disposition(part) not in ("", "inline")
            stack.extend((child, blocks, depth + 1) for child in reversed(payload) if isinstance(child, Message))
        else:
            out.append((part, in_attachment))
        defects.extend(type(d).__name__ for d in getattr(part, "defects", [])[:5])
    return out


def _read_part(mime: Mime, part: Message, index: int, in_attachment: bool, body: _Body,
               found: list[ParsedAttachment], notes: list[str]) -> None:
    view = _mime_view(part)
    ctype = view.get_content_type().lower()
    disposition = _disposition(view)
    filename = _filename(view, notes, index)
    cid = unescape_8bit(str(view.get("content-id", ""))).strip().strip("<> ") or None
    if _is_attached_message(part):
        attached = part.get_payload()
        data = _raw_part_bytes(mime, attached[0]) if isinstance(attached, list) else b""
        found.append(ParsedAttachment(sanitize_filename(filename, f"message-{index}.eml"), ctype, data, cid,
                                      disposition == "inline"))
        return
    decoded = mime.decoded(part)
    data = decoded if isinstance(decoded, bytes) else _raw_part_bytes(mime, part)
    is_body = (ctype in ("text/plain", "text/html") and not filename and not in_attachment
               and disposition != "attachment")
    if is_body:
        text, more = decode_bytes(data, view.get_param("charset") and view.get_content_charset(),
                                  where=f"part {index} {ctype}")
        notes.extend(more)
        (body.html if ctype == "text/html" else body.plain).append(text)
        return
    if not data and not filename:
        return
    if not filename and not cid and disposition != "attachment" and ctype.startswith("text/"):
        return  # unnamed side texts (delivery reports, calendars' text twins) are not files the customer sent
    fallback = f"part-{index}{mimetypes.guess_extension(ctype) or '.bin'}"
    found.append(ParsedAttachment(sanitize_filename(filename, fallback), ctype, data, cid, disposition == "inline"))


def _mime_view(part: Message) -> Message:
    """The part's MIME headers with 8-bit bytes decoded, so parameters come out as text, not Header objects."""
    view = Message()
    for key, value in part.raw_items():
        if key.lower() in ("content-type", "content-disposition", "content-id", "content-transfer-encoding"):
            view[key] = _no_nul(unescape_8bit(str(value)))
    return view


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        return ""


def _is_attached_message(part: Message) -> bool:
    """A forwarded mail sent as an attachment stays one file; an inline one is read as part of the body."""
    if part.get_content_type() != "message/rfc822":
        return False
    return _disposition(part) == "attachment" or bool(part.get_filename() or part.get_param("name"))


def _filename(view: Message, notes: list[str], index: int) -> str | None:
    """RFC 2231 (`filename*=UTF-8''...`, continuations) and RFC 2047 names, disposition first, then `name`."""
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        value = view.get_param(param, None, header=header)
        if isinstance(value, tuple):
            charset, _lang, text = value
            try:
                data = text.encode("latin-1")
            except UnicodeEncodeError:
                return text
            decoded, more = decode_bytes(data, charset or "utf-8", where=f"part {index} file name")
            notes.extend(more)
            return decoded
        if value:
            return _decode(unquote(str(value)), notes, f"part {index} file name")
    return None


def _raw_part_bytes(mime: Mime, part: object) -> bytes:
    """The part as it came over the wire, for keeping what could not be decoded."""
    try:
        if isinstance(part, Message):
            return mime.restore(part.as_bytes(policy=compat32))
        return mime.restore_text(str(part)).encode("utf-8", "surrogateescape")
    except Exception:
        try:
            return str(part).encode("utf-8", "replace")
        except Exception:
            return b""
