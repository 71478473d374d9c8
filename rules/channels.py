"""Mail that arrives through another channel than a customer's own mailbox, read as the customer's mail.

The website's form mailer sends every visitor's request from one address; left alone, every such ticket would
belong to the form mailer and every answer would go back to it. The form names the visitor (in Reply-To, or
in an ``E-mail:`` line of the body), so the request is attributed to them. Whatever the visitor typed is
untrusted: an address that is not exactly one plain address is refused rather than guessed at.

Each form comes in as a ``WebForm`` value, converted from its ``[[webforms]]`` section by the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ticketd.parsers.charsets import decode_header_text
from ticketd.parsers.message import Address, ParsedMail

__all__ = ["CATEGORY_HEADER", "SOURCE_HEADER", "TYPE_HEADER", "FormChoices", "WebForm", "form_choices",
           "from_web_form", "valid_address"]

# What ticketd's own complaint form (``daemon/intake/web.py``) writes into the mail it makes of a submission.
# Anyone can write these headers into a mail: they count only on rows the form server stored itself.
SOURCE_HEADER, TYPE_HEADER, CATEGORY_HEADER = "X-Ticketd-Source", "X-Ticketd-Type", "X-Ticketd-Category"


@dataclass(frozen=True)
class FormChoices:
    """What the customer chose on ticketd's own form: the new ticket's type and category, and their language."""

    type: str | None = None
    category: str | None = None
    language: str | None = None
    company: str | None = None  # as typed: recorded, never used to link the customer to a company

    def defaults(self) -> dict[str, str]:
        return {name: value for name, value in (("type", self.type), ("category", self.category)) if value}


def form_choices(mail: ParsedMail, types: Sequence[str], categories: Sequence[str],
                 languages: Sequence[str]) -> FormChoices:
    """The form's choices, each only if it is still one the helpdesk knows (the tree may have changed between
    the post and its processing)."""
    def known(value: str, allowed: Sequence[str]) -> str | None:
        value = value.strip()
        return value if value in allowed else None

    # As the visitor typed it: the form writes non-ASCII as RFC 2047 encoded words, which were recorded as such.
    company = _single_line(decode_header_text(mail.header("organization"), where="Organization")[0], _MAX_NAME)
    return FormChoices(type=known(mail.header(TYPE_HEADER), types),
                       category=known(mail.header(CATEGORY_HEADER), categories),
                       language=known(mail.header("content-language").lower(), languages),
                       company=company or None)


@dataclass(frozen=True)
class WebForm:
    """A form mailer: the address it sends from (lower-case) and the body lines that name the visitor."""

    sender: str
    use_reply_to: bool = True  # a Reply-To naming someone else than the form is the visitor
    email_field: str = "E-mail"
    name_field: str = "Name"
    subject_field: str | None = "Subject"

_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"]+@[\w-]+(?:\.[\w-]+)+")
_MAX_NAME = 200
_MAX_SUBJECT = 500


def valid_address(value: str) -> str | None:
    """The lower-cased address if it is one plain address (one @, no spaces or line breaks), else None."""
    text = value.strip()
    if len(text) > 320 or text.count("@") != 1 or not _ADDRESS.fullmatch(text):
        return None
    return text.lower()


def from_web_form(mail: ParsedMail, forms: Sequence[WebForm]) -> ParsedMail | None:
    """The form mail as sent by the visitor it names; None for other mail or a form mail naming nobody usable."""
    form = _form_of(mail, forms)
    if form is None:
        return None
    fields = _body_fields(mail.text, form)
    customer = _customer(mail, form, fields)
    if customer is None:
        return None
    subject = _single_line(fields.get(form.subject_field.lower(), "") if form.subject_field else "", _MAX_SUBJECT)
    return replace(mail, sender=customer, subject=subject or mail.subject)


def _form_of(mail: ParsedMail, forms: Sequence[WebForm]) -> WebForm | None:
    sender = mail.sender.email.lower() if mail.sender else None
    return next((form for form in forms if sender and form.sender == sender), None)


def _body_fields(text: str, form: WebForm) -> dict[str, str]:
    """``Field: value`` lines; the first of each name counts, so a visitor's message repeating a field line
    further down cannot replace what the form itself wrote."""
    wanted = {name.lower() for name in (form.email_field, form.name_field, form.subject_field) if name}
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        key = name.strip().lower()
        if sep and key in wanted and key not in found:
            found[key] = value.strip()
    return found


def _customer(mail: ParsedMail, form: WebForm, fields: dict[str, str]) -> Address | None:
    typed_name = _single_line(fields.get(form.name_field.lower(), ""), _MAX_NAME)
    reply = mail.reply_to[0] if form.use_reply_to and mail.reply_to else None
    reply_email = valid_address(reply.email) if reply else None
    if reply is not None and reply_email and reply_email != form.sender:
        return Address(reply_email, typed_name or _single_line(reply.name, _MAX_NAME))
    typed = valid_address(fields.get(form.email_field.lower(), ""))
    if typed is None or typed == form.sender:
        return None
    return Address(typed, typed_name)


def _single_line(value: str, limit: int) -> str:
    return " ".join(value.split())[:limit]
