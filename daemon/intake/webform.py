"""The complaint form's submission, read and turned into a mail: what the form server checks before it stores.

Everything a visitor sends is hostile until checked here: a name or subject with a line break would become a
second header, an address that is not exactly one plain address a recipient we never meant, a file name a path.
What passes becomes an RFC 822 message (``build_mail``) in the shape the pipeline reads every mail in: the visitor
in From, the helpdesk in To, the description as the text, the files as MIME parts, a ``Received:`` line naming
the client address, and the form's own choices in ``X-Ticketd-*`` headers, which the pipeline believes only on
rows the form server itself stored (``inbound.channel = "web"``).

The form token is the page's proof of age (a bot replaying a page fetched long ago is refused) and its identity:
a second post of the same page (the back button, a double click) is the same submission, not a second ticket.

May import: ``daemon.config`` and the packages below it.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from ticketd.parsers.message import sanitize_filename, strip_bidi
from ticketd.rules.channels import CATEGORY_HEADER, SOURCE_HEADER, TYPE_HEADER, valid_address
from ticketd.rules.commands import TYPES

MAX_LINE = 200  # name, company, subject
MAX_TEXT = 20_000  # the description
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


@dataclass(frozen=True)
class Upload:
    filename: str  # as the browser sent it; sanitised when the mail is built
    data: bytes


@dataclass
class Submission:
    """What the visitor filled in, stripped; ``errors`` maps a field to the message key (and its values) shown
    next to it."""

    name: str = ""
    email: str = ""
    company: str = ""
    type: str = ""
    category: str = ""
    subject: str = ""
    description: str = ""
    files: list[Upload] = field(default_factory=list)
    errors: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def values(self) -> dict[str, str]:
        """What the page shows again after an error (files cannot be: the browser does not allow it)."""
        return {"name": self.name, "email": self.email, "company": self.company, "type": self.type,
                "category": self.category, "subject": self.subject, "description": self.description}


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_file_bytes: int
    max_total_bytes: int


def read_submission(fields: Mapping[str, str], files: Sequence[Upload], categories: Sequence[str],
                    is_ours: Callable[[str], bool], limits: Limits) -> Submission:
    """The checked submission. ``is_ours(address)`` says whether an address is one of the helpdesk's own."""
    sub = Submission(name=_text(fields.get("name")), email=_text(fields.get("email")),
                     company=_text(fields.get("company")), type=_text(fields.get("type")),
                     category=_text(fields.get("category")), subject=_text(fields.get("subject")),
                     description=_text(fields.get("description"), multiline=True),
                     files=[f for f in files if f.filename or f.data])
    for name in ("name", "company", "subject"):
        value = getattr(sub, name)
        if not value and name != "company":
            sub.errors[name] = ("missing", {})
        elif len(value) > MAX_LINE:
            sub.errors[name] = ("too_long", {"limit": str(MAX_LINE)})
        elif "\n" in value or "\r" in value:
            sub.errors[name] = ("one_line", {})
    if not sub.email:
        sub.errors["email"] = ("missing", {})
    elif (address := _mailable(sub.email)) is None:
        sub.errors["email"] = ("bad_email", {})
    elif is_ours(address):
        sub.errors["email"] = ("our_email", {})
    else:
        sub.email = address
    if sub.type not in TYPES:
        sub.errors["type"] = ("missing", {}) if not sub.type else ("bad_choice", {})
    if sub.category and sub.category not in categories:
        sub.errors["category"] = ("bad_choice", {})
    if not sub.description.strip():
        sub.errors["description"] = ("missing", {})
    elif len(sub.description) > MAX_TEXT:
        sub.errors["description"] = ("too_long", {"limit": str(MAX_TEXT)})
    _check_files(sub, limits)
    return sub


def _mailable(value: str) -> str | None:
    """One plain address we can write to, lower-cased, its domain in IDNA form (``müşteri.com.tr`` becomes
    ``xn--mteri-...``, as mail systems carry it). A non-ASCII local part needs SMTPUTF8 end to end, which a
    helpdesk cannot count on: refused, so the visitor gives one that works."""
    address = valid_address(value)
    if address is None:
        return None
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return valid_address(f"{local}@{ascii_domain}")


def _check_files(sub: Submission, limits: Limits) -> None:
    if len(sub.files) > limits.max_files:
        sub.errors["attachments"] = ("too_many_files", {"limit": str(limits.max_files)})
        return
    for upload in sub.files:
        if len(upload.data) > limits.max_file_bytes:
            sub.errors["attachments"] = ("file_too_big", {"name": sanitize_filename(upload.filename, "file"),
                                                          "size": size_text(len(upload.data)),
                                                          "limit": size_text(limits.max_file_bytes)})
            return
    total = sum(len(upload.data) for upload in sub.files)
    if total > limits.max_total_bytes:
        sub.errors["attachments"] = ("files_too_big", {"size": size_text(total),
                                                       "limit": size_text(limits.max_total_bytes)})


def _text(value: str | None, multiline: bool = False) -> str:
    """NFC, no bidirectional overrides or control characters; line ends made plain. A single-line field keeps
    its line breaks so the check can refuse them rather than join what the visitor wrote."""
    text = strip_bidi(unicodedata.normalize("NFC", value or "")).replace("\r\n", "\n")
    text = _CONTROLS.sub("", text)
    return text.rstrip() if multiline else text.strip()


def size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
    return f"{max(1, round(size / 1024))} KB"


def build_mail(sub: Submission, *, to: str, nonce: str, client: str, language: str, now: datetime,
               host: str) -> bytes:
    """The submission as the mail the pipeline reads. The Message-ID comes from the form page's token, so the
    same page posted twice is the same mail (the pipeline keeps the first)."""
    msg = EmailMessage(policy=SMTP)
    msg["Received"] = f"from [{client}] by {host} (ticketd web form) with HTTP; {format_datetime(now)}"
    msg["From"] = Address(display_name=sub.name, addr_spec=sub.email)
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = sub.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<web.{nonce}@{host}>"
    if sub.company:
        msg["Organization"] = sub.company
    msg[SOURCE_HEADER] = "web"
    msg[TYPE_HEADER] = sub.type
    if sub.category:
        msg[CATEGORY_HEADER] = sub.category
    msg.set_content(sub.description + "\n", charset="utf-8")
    for upload in sub.files:
        name = sanitize_filename(upload.filename, "file")
        guessed = (mimetypes.guess_type(name)[0] or "application/octet-stream").lower()
        maintype, subtype = (guessed if _MIME_TYPE.fullmatch(guessed) else "application/octet-stream").split("/")
        msg.add_attachment(upload.data, maintype, subtype, filename=name)
    msg["Content-Language"] = language  # last: setting the content would move or drop a Content-* header
    return msg.as_bytes()


# --- tokens -----------------------------------------------------------------------------------------------------

class TokenError(ValueError):
    """A form token or confirmation link that is forged, malformed or too old."""


def _mac(secret: str, purpose: str, payload: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{payload}".encode(), hashlib.sha256).hexdigest()[:32]


def issue_token(secret: str, now: float) -> str:
    """A form page's token: when it was issued and a random nonce, signed."""
    payload = f"{int(now)}.{secrets.token_urlsafe(18)}"
    return f"{payload}.{_mac(secret, 'form', payload)}"


def check_token(secret: str, token: str, now: float, max_age: float) -> str:
    """The nonce of a genuine token not older than ``max_age`` seconds."""
    issued, _, rest = token.partition(".")
    nonce, _, mac = rest.rpartition(".")
    if not issued.isdigit() or not nonce or not hmac.compare_digest(mac, _mac(secret, "form", f"{issued}.{nonce}")):
        raise TokenError("not a form token of ours")
    age = now - int(issued)
    if age > max_age or age < -300:
        raise TokenError("expired")
    return nonce


def confirm_token(secret: str, submission_id: int, nonce: str) -> str:
    """The confirmation link's token: the submission and a signature only the server can make."""
    return f"{submission_id}.{_mac(secret, 'confirm', f'{submission_id}.{nonce}')}"


def confirm_id(token: str) -> int:
    """The submission a confirmation token names (its signature is checked against the stored nonce)."""
    number, _, _ = token.partition(".")
    if not number.isdigit() or len(number) > 18:
        raise TokenError("not a confirmation token")
    return int(number)


def same_confirm_token(secret: str, token: str, submission_id: int, nonce: str) -> bool:
    return hmac.compare_digest(token, confirm_token(secret, submission_id, nonce))


def negotiate_language(accept: str, available: Sequence[str], default: str) -> str:
    """The first language of ``Accept-Language`` (by its q values) that the form speaks."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-quality, index, tag.strip().lower().split("-", 1)[0]))
    for negative, _, tag in sorted(ranked):
        if negative < 0 and tag in available:
            return tag
    return default
