"""Who a customer's mail may make a participant of a ticket (someone who receives every later answer).

A From header is not authenticated: anyone can write "From: <a customer>" with a stranger on Cc. So the people
on a mail's To/Cc join only when the mail shows it comes from someone who reads the ticket's mail, or when there
is nothing of anyone's to disclose yet. Each reason is one named function in ``VOUCHES``, tried in order; the
first that answers is recorded on the ticket's event. Without one, only colleagues of the requester's company
join (they may write to the ticket anyway, ``rules.match.takes_part``). A ticket never has more than
``[limits] max_participants``; what is left out is recorded, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ticketd.parsers.message import Address


@dataclass(frozen=True)
class Circumstances:
    """What is known of the mail that names the people, decided by the caller (which has the database)."""

    new_ticket: bool  # the mail opens the ticket
    new_contact: bool  # its sender had no customer record before this mail
    via: str | None  # how it was matched to an existing ticket (``rules.match.Match.via``)
    answers_our_mail: bool  # its In-Reply-To/References name a mail we sent on this ticket


def answers_our_signed_address(c: Circumstances) -> str | None:
    if c.via == "signed-address":
        return "written to the ticket's signed reply address, which only the ticket's people received"
    return None


def answers_our_message_id(c: Circumstances) -> str | None:
    if c.answers_our_mail:
        return "answers a mail we sent on this ticket (its Message-ID is random and went only to its people)"
    return None


def first_mail_of_a_new_contact(c: Circumstances) -> str | None:
    if c.new_ticket and c.new_contact:
        return "the first mail of a new contact: the ticket holds nothing but what this mail says"
    return None


VOUCHES: list[Callable[[Circumstances], str | None]] = [
    answers_our_signed_address,
    answers_our_message_id,
    first_mail_of_a_new_contact,
]


def vouched(c: Circumstances) -> str | None:
    """The first rule's reason for letting the mail's To/Cc people join, or None."""
    return next((reason for rule in VOUCHES if (reason := rule(c)) is not None), None)


@dataclass
class Choice:
    added: list[Address] = field(default_factory=list)
    unvouched: list[str] = field(default_factory=list)  # named on a mail that cannot vouch for them
    over_limit: list[str] = field(default_factory=list)  # past ``max_participants``


def choose(people: Sequence[Address], *, skip: Callable[[str], bool], known: set[str], reason: str | None,
           colleague: Callable[[str], bool], room: int, trusted: Sequence[Address] = ()) -> Choice:
    """Split the named people into those who join and those who do not (and why). ``trusted`` (the sender
    itself, already taking part) join without a reason; ``skip`` is us, the requester, and the like."""
    choice = Choice()
    seen = set(known)
    for person, is_trusted in [*((p, True) for p in trusted), *((p, False) for p in people)]:
        email = person.email
        if email in seen or skip(email):
            continue
        seen.add(email)
        if not is_trusted and reason is None and not colleague(email):
            choice.unvouched.append(email)
        elif len(choice.added) >= room:
            choice.over_limit.append(email)
        else:
            choice.added.append(person)
    return choice


def refusal_note(choice: Choice, limit: int) -> str | None:
    """The event text for the people left out: how many, the first few, and why."""
    parts = []
    for emails, why in ((choice.unvouched, "the mail does not show it comes from the ticket's people (its From is "
                         "not authenticated); an agent adds them with [cc=…]"),
                        (choice.over_limit, f"the ticket has its {limit} participants ([limits] max_participants)")):
        if emails:
            shown = ", ".join(emails[:5]) + (f" and {len(emails) - 5} more" if len(emails) > 5 else "")
            parts.append(f"{len(emails)} not added ({shown}): {why}")
    return "; ".join(parts) or None
