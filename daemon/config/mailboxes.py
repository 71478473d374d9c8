"""``[[mailboxes]]``: several inboxes (support@, complaints@ …) on the ``[imap]`` server, polled by one daemon.

Each has its folders, optionally its own login, and the defaults a new ticket from it gets (type, category,
priority, group) before the ``[[rules]]`` run, which may still override them. Without ``[[mailboxes]]`` the
``[imap]`` section is the one mailbox, named after its folder (as ticketd has always recorded it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator

from ticketd.daemon.config.fields import Email, Section, existing_file
from ticketd.daemon.config.process import CategoriesConfig, CategoryPath, Label, _duplicates, _unknown
from ticketd.daemon.config.servers import ImapConfig


class MailboxDefaults(Section):
    type: Literal["request", "complaint", "information"] | None = None
    category: CategoryPath | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    group: Label | None = None

    def values(self) -> dict[str, str]:
        return {name: value for name in type(self).model_fields if (value := getattr(self, name)) is not None}


class MailboxConfig(Section):
    name: Label
    address: Email | None = None  # what customers write to; ticketd never answers itself at it
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    username: str | None = None  # another account on the [imap] server; the [imap] login when unset
    password_file: Path | None = None
    defaults: MailboxDefaults = MailboxDefaults()

    @field_validator("password_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    def password(self) -> SecretStr | None:
        if self.password_file is None:
            return None
        return SecretStr(self.password_file.read_text(encoding="utf-8").strip())


@dataclass(frozen=True)
class Mailbox:
    """A mailbox as the daemon polls it: ``imap`` is the ``[imap]`` section with this mailbox's folders and login."""

    name: str
    imap: ImapConfig
    address: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)


def mailbox_problems(mailboxes: list[MailboxConfig], has_imap: bool, categories: CategoriesConfig,
                     known_groups: set[str], has_lmtp: bool = False) -> list[str]:
    """With ``[lmtp]`` and no ``[imap]``, a mailbox is an address the mail system delivers to (its defaults
    apply to mail sent to it), so it must have one."""
    problems = _duplicates("mailboxes", (m.name for m in mailboxes), "mailbox name")
    if mailboxes and not has_imap and not has_lmtp:
        problems.append("mailboxes: needs an [imap] section (the server and login the mailboxes share), or [lmtp] "
                        "(the mail system delivers to each mailbox's address)")
    if not has_imap and has_lmtp:
        problems += [f"mailboxes.{index}.address: required without [imap]: LMTP knows a mailbox by its address"
                     for index, box in enumerate(mailboxes) if box.address is None]
    seen: dict[tuple[str | None, str], int] = {}
    for index, box in enumerate(mailboxes):
        key = (box.username, box.folder)
        if key in seen and has_imap:  # without [imap] the folders are not read
            problems.append(f"mailboxes.{index}.folder: {box.folder!r} of the same login is mailbox "
                            f"{mailboxes[seen[key]].name!r} already")
        seen.setdefault(key, index)
        if box.username and not box.password_file:
            problems.append(f"mailboxes.{index}.password_file: required with its own username")
        category = box.defaults.category
        if category is not None and not categories.known(category):
            problems.append(f"mailboxes.{index}.defaults.category: " + _unknown("category", category, categories.all()))
        group = box.defaults.group
        if group is not None and group not in known_groups:
            problems.append(f"mailboxes.{index}.defaults.group: " + _unknown("group", group, sorted(known_groups)))
    return problems
