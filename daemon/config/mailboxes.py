"""``[[mailboxes]]``: several inboxes (support@, complaints@ …) on the ``[imap]`` server, polled by one daemon.

Each has its folders, optionally its own login, and the defaults a new ticket from it gets (type, category,
priority, group) before the ``[[rules]]`` run, which may still override them. Without ``[[mailboxes]]`` the
``[imap]`` section is the one mailbox, named after its folder (as ticketd has always recorded it).

A mailbox with an ``address`` is also an identity: every mail about a ticket that came in through it leaves
from that address, under its name and signature, with reply addresses on its domain, written from its
templates. A customer who wrote to complaints@ never hears from support@ (``Identity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from ticketd.daemon.config.fields import Email, Section, existing_dir, existing_file
from ticketd.daemon.config.graph import GraphConfig
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
    # imap: a folder on the [imap] server (or delivered by LMTP to its address); graph: a Microsoft 365 mailbox
    # read and sent through Microsoft Graph, its ``graph`` table saying where (daemon/config/graph.py).
    kind: Literal["imap", "graph"] = "imap"
    graph: GraphConfig | None = None
    address: Email | None = None  # what customers write to; ticketd never answers itself at it
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    username: str | None = None  # another account on the [imap] server; the [imap] login when unset
    password_file: Path | None = None
    defaults: MailboxDefaults = MailboxDefaults()
    # The identity (all need ``address``): the sender's name, the domain of signed reply addresses (the
    # address's own when unset), a signature file ending the customers' mails, and templates used first.
    display_name: str | None = None
    reply_domain: str | None = None
    signature_file: Path | None = None
    templates_dir: Path | None = None
    # Another login on the [smtp] server to send this mailbox's mail as (the [smtp] login when unset).
    smtp_username: str | None = None
    smtp_password_file: Path | None = None

    @field_validator("password_file", "signature_file", "smtp_password_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path | None) -> Path | None:
        return existing_dir(value)

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c in value for c in "\r\n")):
            raise ValueError("must be a name on one line (it goes into the From header)")
        return value

    @field_validator("reply_domain")
    @classmethod
    def _reply_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower().rstrip(".")
        labels = value.split(".")
        if len(labels) < 2 or not all(label and label.isascii() and all(c.isalnum() or c == "-" for c in label)
                                      and not label.startswith("-") for label in labels):
            raise ValueError("must be a domain like reply.example.com (IDNA form for an international one)")
        return value

    @model_validator(mode="after")
    def _graph(self) -> MailboxConfig:
        if self.kind == "graph":
            if self.graph is None:
                raise ValueError('graph: required with kind = "graph" (tenant, client_id, a credential, mailbox)')
            for key in ("username", "password_file", "smtp_username", "smtp_password_file"):
                if getattr(self, key) is not None:
                    raise ValueError(f'{key}: not used with kind = "graph" (Graph signs in as the app)')
            if self.address is None:  # the Graph mailbox is the address it answers as
                object.__setattr__(self, "address", self.graph.mailbox)
            elif self.address != self.graph.mailbox:
                raise ValueError(f"address: must be graph.mailbox ({self.graph.mailbox}): Graph sends from the "
                                 "mailbox itself")
        elif self.graph is not None:
            raise ValueError('graph: only with kind = "graph"')
        return self

    def password(self) -> SecretStr | None:
        if self.password_file is None:
            return None
        return SecretStr(self.password_file.read_text(encoding="utf-8").strip())

    def smtp_password(self) -> SecretStr | None:
        if self.smtp_password_file is None:
            return None
        return SecretStr(self.smtp_password_file.read_text(encoding="utf-8").strip())

    def signature(self) -> str | None:
        if self.signature_file is None:
            return None
        return self.signature_file.read_text(encoding="utf-8").strip("\n")


@dataclass(frozen=True)
class Mailbox:
    """A mailbox as the daemon polls it: ``imap`` is the ``[imap]`` section with this mailbox's folders and login."""

    name: str
    imap: ImapConfig
    address: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    """Who a mail about a ticket comes from: the helpdesk (``mailbox`` None) or one ``[[mailboxes]]`` entry.

    ``reply_base`` is the address signed reply addresses are made of (``local+…@domain``): the mailbox's
    address, on ``reply_domain`` when one is set. ``signature`` ends the mails customers get."""

    mailbox: str | None
    name: str
    address: str
    reply_base: str
    signature: str
    templates_dirs: tuple[Path, ...] = ()

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    def context(self) -> dict[str, str]:
        """What every template knows as ``helpdesk``."""
        return {"name": self.name, "address": self.address, "signature": self.signature}


def identity_of(box: MailboxConfig, helpdesk_name: str, helpdesk_templates: Path | None) -> Identity:
    assert box.address is not None
    local, domain = box.address.rsplit("@", 1)
    name = box.display_name or helpdesk_name
    dirs = tuple(d for d in (box.templates_dir, helpdesk_templates) if d is not None)
    return Identity(box.name, name, box.address, f"{local}@{box.reply_domain or domain}",
                    box.signature() or name, dirs)


def mailbox_problems(mailboxes: list[MailboxConfig], has_imap: bool, categories: CategoriesConfig,
                     known_groups: set[str], has_lmtp: bool = False) -> list[str]:
    """Without ``[imap]``, a mailbox is an address mail is delivered to (by LMTP, ``ticketd deliver`` or the
    form; its defaults apply to mail sent to it), so it must have one. A Graph mailbox has its own."""
    problems = _duplicates("mailboxes", (m.name for m in mailboxes), "mailbox name")
    if not has_imap:  # mail comes by LMTP, the form or `ticketd deliver`, each to an address
        way_in = "LMTP knows" if has_lmtp else "mail delivered by `ticketd deliver` or the form knows"
        problems += [f"mailboxes.{index}.address: required without [imap]: {way_in} a mailbox by its address"
                     for index, box in enumerate(mailboxes) if box.address is None]
    seen: dict[tuple[str | None, str], int] = {}
    for index, box in enumerate(mailboxes):
        key = (box.username, box.folder)
        if box.kind == "imap" and key in seen and has_imap:  # without [imap] the folders are not read
            problems.append(f"mailboxes.{index}.folder: {box.folder!r} of the same login is mailbox "
                            f"{mailboxes[seen[key]].name!r} already")
        if box.kind == "imap":
            seen.setdefault(key, index)
        if box.username and not box.password_file:
            problems.append(f"mailboxes.{index}.password_file: required with its own username")
        if box.smtp_username and not box.smtp_password_file:
            problems.append(f"mailboxes.{index}.smtp_password_file: required with its own smtp_username")
        if box.address is None:
            problems += [f"mailboxes.{index}.{key}: needs address (the identity it belongs to)"
                         for key in ("display_name", "reply_domain", "signature_file", "templates_dir",
                                     "smtp_username") if getattr(box, key) is not None]
        category = box.defaults.category
        if category is not None and not categories.known(category):
            problems.append(f"mailboxes.{index}.defaults.category: " + _unknown("category", category, categories.all()))
        group = box.defaults.group
        if group is not None and group not in known_groups:
            problems.append(f"mailboxes.{index}.defaults.group: " + _unknown("group", group, sorted(known_groups)))
    return problems
