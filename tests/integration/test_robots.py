"""Must show 2: every robot of the corpus and of the written fixtures goes through the real pipeline (stored,
processed, outgoing mail sent to a real SMTP server) and gets no automatic answer; every person's mail of the
human set gets its acknowledgment. Both counts are printed and asserted."""

from __future__ import annotations

import pytest
from robot_corpus import (
    CORPUS_HUMANS,
    CORPUS_ROBOTS,
    DATA,
    HUMAN_FIXTURES,
    KNOWN_MISSES,
    REPLY_BODIES,
    ROBOT_FIXTURES,
    as_new_mail,
)

from conftest import Desk
from ticketd.storage.inbound import load_raw

pytestmark = pytest.mark.integration


def _answers(mails: list, ours: str = "@acme.example") -> list[str]:  # type: ignore[type-arg]
    """Addresses outside the helpdesk that the run wrote to: an automatic answer to the sender, or to anyone."""
    return [rcpt for m in mails for rcpt in m.envelope_to if not rcpt.lower().endswith(ours)]


def test_robots_get_no_answer_and_people_get_theirs(desk: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    robots = [*sorted(set(CORPUS_ROBOTS) - set(KNOWN_MISSES)), *ROBOT_FIXTURES]
    answered_robots: dict[str, list[str]] = {}
    outcomes: dict[str, str] = {}
    for name in robots:
        outcome = desk.deliver((DATA / name).read_bytes())
        outcomes[name] = f"{outcome.status}: {outcome.reason}"
        if sent := _answers(desk.new_mail()):
            answered_robots[name] = sent

    humans = [(name, (DATA / name).read_bytes()) for name in CORPUS_HUMANS + HUMAN_FIXTURES]
    humans += [(name, as_new_mail(name, i)) for i, name in enumerate(REPLY_BODIES)]
    unanswered: dict[str, str] = {}
    for name, raw in humans:
        outcome = desk.deliver(raw)
        kinds = [m.message["X-Ticketd-Kind"] for m in desk.new_mail() if _answers([m])]
        if "received" not in kinds:
            unanswered[name] = f"{outcome.status}: {outcome.reason}; sent {kinds}"

    with capsys.disabled():
        print(f"\nrobots: {len(robots) - len(answered_robots)} of {len(robots)} got no automatic answer "
              f"({len(CORPUS_ROBOTS) - len(KNOWN_MISSES)} from the corpus, {len(ROBOT_FIXTURES)} fixtures; "
              f"{len(KNOWN_MISSES)} corpus robots with no readable sign left out: {', '.join(KNOWN_MISSES)})")
        print(f"people: {len(humans) - len(unanswered)} of {len(humans)} got their acknowledgment")
    assert answered_robots == {}, {n: (answered_robots[n], outcomes[n]) for n in answered_robots}
    assert unanswered == {}
    assert len(robots) == 52 and len(humans) == 33
    assert all(o.startswith("dropped") for o in outcomes.values()), outcomes  # no robot opened a ticket


def test_person_without_from_is_kept_with_a_reason_not_taken_for_a_bounce(desk: Desk) -> None:
    """redmine's mail with no From: and the words "unknown user": it used to end as a bounce. Now it is kept as
    received (the row and its raw bytes), nothing is sent (there is no address to send to), and the reason an
    operator reads in `ticketd inbound list` says why."""
    from sqlmodel import Session, select

    from ticketd.storage.models import Inbound

    raw = (DATA / "corpus/redmine/ticket_by_empty_user.eml").read_bytes()
    outcome = desk.deliver(raw)
    assert outcome.status == "dropped"
    assert outcome.reason is not None and outcome.reason.startswith("no_sender: no usable From address")
    assert "bounce" not in outcome.reason
    assert desk.new_mail() == []
    with Session(desk.site.engine) as session:
        row = session.exec(select(Inbound)).one()
        assert row.id is not None
        assert (row.status, load_raw(session, row.id)) == ("dropped", raw)
