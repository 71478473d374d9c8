"""Assignment policies against a real, migrated database (SQLite and PostgreSQL), creating tickets the way the
pipeline does."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from ticketd.rules.assignment import pick_assignee
from ticketd.storage import db
from ticketd.storage.models import Agent, Customer, Ticket

ALI, AYSE, MURAT, SELIN = "ali@acme.example", "ayse@acme.example", "murat@acme.example", "selin@acme.example"


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    with db.session_scope(engine) as s:
        s.add(Customer(email="cigdem@musteri.com.tr", name="Çiğdem"))
        for email in (MURAT, AYSE, ALI):  # added out of order: the turn goes by address, not by id
            s.add(Agent(email=email, name=email.split("@")[0].title(), groups=["network"]))
        s.add(Agent(email=SELIN, name="Selin", groups=["finance"]))
    with Session(engine) as s:
        yield s


def agent(session: Session, email: str) -> Agent:
    return session.exec(select(Agent).where(Agent.email == email)).one()


def new_ticket(session: Session, group: str, policy: str, state: str = "open") -> Agent | None:
    """As the pipeline does it: pick, insert the ticket with the pick, flush so the next pick sees it."""
    picked = pick_assignee(session, group, policy)
    number = (session.exec(select(func.max(Ticket.number))).one() or 0) + 1
    requester = session.exec(select(Customer)).first()
    assert requester is not None and requester.id is not None
    session.add(Ticket(number=number, subject=f"#{number}", requester_id=requester.id, group=group,
                       assignee_id=picked.id if picked else None, state=state if picked else "new"))
    session.flush()
    return picked


def emails(picks: list[Agent | None]) -> list[str | None]:
    return [a.email if a else None for a in picks]


def test_round_robin_goes_round_in_address_order(session: Session) -> None:
    picks = emails([new_ticket(session, "network", "round-robin") for _ in range(30)])
    assert picks[:4] == [ALI, AYSE, MURAT, ALI]
    assert Counter(picks) == {ALI: 10, AYSE: 10, MURAT: 10}


def test_round_robin_skips_an_away_agent_and_continues_where_it_was(session: Session) -> None:
    assert emails([new_ticket(session, "network", "round-robin") for _ in range(2)]) == [ALI, AYSE]
    agent(session, AYSE).away = True  # the last assignee is away now: the turn moves on from her address
    session.flush()
    picks = emails([new_ticket(session, "network", "round-robin") for _ in range(30)])
    assert picks[:3] == [MURAT, ALI, MURAT]
    assert Counter(picks) == {ALI: 15, MURAT: 15}


def test_turn_is_read_from_the_newest_assigned_ticket_of_the_group(session: Session) -> None:
    new_ticket(session, "network", "round-robin")  # Ali
    new_ticket(session, "finance", "round-robin")  # another group's tickets do not move this turn
    new_ticket(session, "network", "manual")  # an unassigned ticket neither
    assert emails([new_ticket(session, "network", "round-robin")]) == [AYSE]


def test_least_open_gives_the_busy_agent_fewer(session: Session) -> None:
    murat = agent(session, MURAT)
    for n in range(6):  # taken by hand in another group: still on Murat's desk
        session.add(Ticket(number=900 + n, subject="by hand", requester_id=1, group="other", assignee_id=murat.id,
                           state="pending"))
    session.add(Ticket(number=990, subject="done", requester_id=1, group="network", assignee_id=murat.id,
                       state="closed"))  # closed tickets are no load
    session.flush()
    picks = emails([new_ticket(session, "network", "least-open") for _ in range(30)])
    counts = Counter(picks)
    assert counts[MURAT] < counts[ALI] and counts[MURAT] < counts[AYSE]
    assert counts == {ALI: 12, AYSE: 12, MURAT: 6}  # 6 + 6 = 12: the load ends level
    assert picks[:2] == [ALI, AYSE]  # ties go in turn order


def test_least_open_counts_new_open_and_pending_only(session: Session) -> None:
    ali = agent(session, ALI)
    for n, state in enumerate(("new", "open", "pending", "resolved", "closed")):
        session.add(Ticket(number=800 + n, subject="s", requester_id=1, group="x", assignee_id=ali.id, state=state))
    session.flush()
    picks = emails([new_ticket(session, "network", "least-open") for _ in range(7)])
    assert picks == [AYSE, MURAT] * 3 + [ALI]  # Ali's turn comes once the others carry three as well


def test_inactive_agents_are_skipped(session: Session) -> None:
    agent(session, ALI).active = False
    session.flush()
    picks = emails([new_ticket(session, policy="round-robin", group="network") for _ in range(4)])
    assert picks == [AYSE, MURAT, AYSE, MURAT]
    assert emails([new_ticket(session, "network", "least-open") for _ in range(4)]) == [AYSE, MURAT] * 2


def test_manual_and_nobody_eligible_give_no_one(session: Session) -> None:
    assert pick_assignee(session, "network", "manual") is None
    assert pick_assignee(session, "nobody-here", "round-robin") is None
    assert pick_assignee(session, "nobody-here", "least-open") is None
    agent(session, SELIN).away = True
    session.flush()
    assert pick_assignee(session, "finance", "round-robin") is None


def test_picking_changes_nothing(session: Session) -> None:
    new_ticket(session, "network", "round-robin")
    session.commit()
    for policy in ("round-robin", "least-open"):
        pick_assignee(session, "network", policy)
        assert not session.new and not session.dirty and not session.deleted


def test_unknown_policy_is_a_programming_error(session: Session) -> None:
    with pytest.raises(ValueError, match="unknown assignment policy 'random'"):
        pick_assignee(session, "network", "random")


def test_the_turn_follows_the_address_order_whatever_the_collation(engine: sa.Engine, backend: str) -> None:
    """A PostgreSQL database created under en_US.UTF-8 sorts "ali.veli@" after "alice@" (punctuation is ignored
    at first); the turn is taken in the addresses' own order all the same, so no one is skipped or picked twice."""
    if backend == "postgresql":  # the test cluster's databases collate as C: make this column collate as glibc's en_US
        with engine.begin() as conn:  # ICU's English, punctuation ignored at first ("ka-shifted"), as glibc does
            conn.exec_driver_sql("CREATE COLLATION en_shifted (provider = icu, locale = 'en-US-u-ka-shifted')")
            conn.exec_driver_sql('ALTER TABLE agent ALTER COLUMN email TYPE varchar(320) COLLATE en_shifted')
            order = conn.exec_driver_sql("SELECT e FROM unnest(ARRAY['ali.veli@', 'alice@']) AS e "
                                         "ORDER BY e COLLATE en_shifted").scalars().all()
            assert order == ["alice@", "ali.veli@"]  # the order that misled the turn
    dotted, plain = "ali.veli@acme.example", "alice@acme.example"
    with db.session_scope(engine) as s:
        s.add(Customer(email="cigdem@musteri.com.tr", name="Çiğdem"))
        s.add(Agent(email=plain, name="Alice", groups=["field"]))
        s.add(Agent(email=dotted, name="Ali Veli", groups=["field"]))
    with Session(engine) as s:
        assert emails([new_ticket(s, "field", "round-robin") for _ in range(4)]) == [dotted, plain] * 2
