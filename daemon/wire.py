"""An outbox row's bytes on the wire, built cheaply.

Every header value of a row is ours (rendered, cleaned of CR/LF, stored), so there is nothing to parse: the
modern ``email`` policy's header registry parses each value back before writing it, which made composing a
mail cost more than sending it. Here non-ASCII words are RFC 2047-encoded with the legacy (compat32) API and
the text body is quoted-printable UTF-8. Anything the fast path cannot express (a non-ASCII address, RFC
6532) goes through the full ``email`` package instead.
"""

from __future__ import annotations

from collections.abc import Callable
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import formataddr, getaddresses, parseaddr
from io import BytesIO

_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP
_WIRE = compat32.clone(linesep="\r\n", max_line_length=78)
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})


class NeedsFullComposer(ValueError):
    """The row holds something only the full ``email`` package writes correctly."""


def clean(value: str) -> str:
    """Header values never carry CR/LF: folding them away defeats header injection from mail content."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


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


def wire_bytes(headers: list[tuple[str, str]], body: str) -> bytes:
    msg = Message(policy=_WIRE)
    for name, value in headers:
        msg[clean(name)] = _header(name, value)
    msg.set_payload(body, _UTF8)
    out = BytesIO()
    BytesGenerator(out, policy=_WIRE).flatten(msg)
    return out.getvalue()


def envelope_sender(from_header: str) -> str:
    return parseaddr(clean(from_header))[1]


def compose(headers: list[tuple[str, str]], body: str, full: Callable[[], bytes]) -> bytes:
    """The fast path, or ``full()`` when the row needs the whole ``email`` package."""
    try:
        return wire_bytes(headers, body)
    except (NeedsFullComposer, UnicodeError):
        return full()
