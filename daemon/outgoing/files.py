"""Files that travel with ticketd's mail: the customer's screenshot in the agent's notification, the agent's PDF
in the reply the customer gets.

A mail carries files up to a budget (``[limits] forward_attachments_bytes``); past it the mail names what was
left out, with its size, and the agents' copy the command that fetches it, so a 40 MB video neither bounces the
notification nor vanishes. Images the text shows (``cid:``) stay inline: the mail gets an HTML twin of its text
with the images placed after it. That HTML is written here from our own text, never the sender's HTML, so
nothing a sender wrote reaches an agent's mail client as markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from ticketd.daemon.outgoing.wire import MailAttachment, safe_content_id

_SHELL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class File:
    """A file of a stored message: its attachment row (``ticketd attachments get ID``) and its bytes."""

    id: int | None
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Packed:
    """What goes into one mail: the parts, their list for the text, and what the budget left out."""

    parts: tuple[MailAttachment, ...] = ()
    attached: tuple[dict[str, object], ...] = ()
    left_out: tuple[dict[str, object], ...] = ()

    @property
    def has_inline(self) -> bool:
        return any(part.content_id for part in self.parts)


def size_text(size: int) -> str:
    """Binary units, as `ls -lh` and file managers show them, and as the budget is set (10 MiB)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if round(value, 1) < 1024 or unit == "GiB":  # rounded, or 1048575 bytes would read "1024.0 KiB"
            break
    return f"{value:.1f} {unit}"


def pack(files: Iterable[File], budget: int) -> Packed:
    """The files in their order, each while the running total stays within ``budget``; a big one is left out
    and smaller ones after it still go (the screenshot need not wait for the video)."""
    parts: list[MailAttachment] = []
    attached: list[dict[str, object]] = []
    left_out: list[dict[str, object]] = []
    total = 0
    for file in files:
        described = {"name": file.filename, "size": size_text(file.size), "bytes": file.size, "id": file.id,
                     "command": fetch_command(file)}
        if total + file.size > budget:
            left_out.append(described)
            continue
        total += file.size
        cid = safe_content_id(file.content_id) if file.inline and file.content_id else None
        parts.append(MailAttachment(file.filename, file.content_type, file.data, cid or None))
        attached.append(described)
    return Packed(tuple(parts), tuple(attached), tuple(left_out))


def fetch_command(file: File) -> str:
    """The command an operator copies to fetch a file; the output name is the file's own made shell-safe, since
    a sender chooses file names and a name like ``$(…).pdf`` must not run when pasted into a terminal."""
    safe = _SHELL_UNSAFE.sub("_", file.filename).lstrip("-.")[:80] or "attachment"
    return f"ticketd attachments get {file.id} -o {safe}"


def html_twin(body: str, parts: Sequence[MailAttachment]) -> str:
    """Our own text as HTML, followed by the inline images it carried, so they show where the sender put them
    into view rather than as loose files."""
    images = "".join(f'<p><img src="cid:{escape(part.content_id, quote=True)}" '
                     f'alt="{escape(part.filename, quote=True)}" style="max-width: 100%"></p>\n'
                     for part in parts if part.content_id)
    return ('<!DOCTYPE html>\n<html><body>\n<pre style="white-space: pre-wrap; font-family: inherit">'
            f"{escape(body)}</pre>\n{images}</body></html>\n")
