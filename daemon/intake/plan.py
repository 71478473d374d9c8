"""Which mailboxes are watched with IDLE, each on a connection of its own, and which are polled.

Two limits decide it. A login may have at most ``connections_per_login`` connections open (servers count them per
account: Dovecot 10 per user and client address, Gmail 15): when one login has more folders than that, all but one
of its connections watch a folder each and the one left polls the others in turn. And at most
``idle_connections`` mailboxes are watched in all; the rest are polled every ``poll_seconds``. Which ones are
watched follows how busy each mailbox has been lately, the config's order breaking ties, and a watched mailbox
keeps its place until another has clearly more mail (``KEEP_BONUS``), so the choice does not flap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ticketd.daemon.config.mailboxes import Mailbox

KEEP_BONUS = 1.0  # a watched mailbox counts as this many mails busier than it has been


@dataclass(frozen=True)
class Login:
    """One account on one server: the unit servers count connections by."""

    host: str
    port: int
    username: str


def login_of(mailbox: Mailbox) -> Login:
    return Login(mailbox.imap.host, mailbox.imap.port, mailbox.imap.username)


def watched(mailboxes: Sequence[Mailbox], activity: Mapping[str, float], *, per_login: int, idle_total: int,
            can_idle: Callable[[Mailbox], bool], now_watched: Iterable[str] = ()) -> frozenset[str]:
    """The names of the mailboxes to watch with IDLE; the others are polled.

    Per login, a polled mailbox needs one connection of the login's ``per_login`` (they share it, one folder after
    the other), so a login whose mailboxes cannot all be watched keeps one connection for them."""
    keep = set(now_watched)
    order = {box.name: index for index, box in enumerate(mailboxes)}

    def rank(box: Mailbox) -> tuple[float, int]:
        return (-(activity.get(box.name, 0.0) + (KEEP_BONUS if box.name in keep else 0.0)), order[box.name])

    by_login: dict[Login, list[Mailbox]] = {}
    for box in mailboxes:
        by_login.setdefault(login_of(box), []).append(box)
    chosen: list[Mailbox] = []
    for boxes in by_login.values():
        candidates = sorted((box for box in boxes if can_idle(box)), key=rank)
        room = per_login if len(candidates) == len(boxes) <= per_login else per_login - 1
        chosen += candidates[:room]
    return frozenset(box.name for box in sorted(chosen, key=rank)[:idle_total])
