"""Subject lines: the ticket reference, reply/forward prefixes and the clean title."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Reply and forward prefixes of real clients: English, German, Nordic, Turkish, Dutch, French, Spanish, Italian…
_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|ynt|cvp|rif|r|ref|odp|wg|tr|fw|fwd|fwdd|i|İlt|ilt|enc|doorst|vb|res)"
    r"(?:\[\d+\]|\(\d+\))?\s*[:：])\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SubjectInfo:
    ticket_number: int | None
    title: str


def ticket_tag(tag: str, number: int) -> str:
    return f"[{tag} #{number}]"


def strip_prefixes(subject: str) -> str:
    previous = None
    while previous != subject:
        previous, subject = subject, _PREFIX.sub("", subject, count=1)
    return subject.strip()


def parse_subject(subject: str, tag: str) -> SubjectInfo:
    ref = re.compile(r"\[\s*" + re.escape(tag) + r"\s*#\s*(\d{1,12})\s*\]", re.IGNORECASE)
    match = ref.search(subject)
    number = int(match.group(1)) if match else None
    title = ref.sub(" ", subject)
    title = strip_prefixes(" ".join(title.split()))
    return SubjectInfo(ticket_number=number, title=title or "(no subject)")
