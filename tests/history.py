"""A realistic, repeatable ticket history written straight into a migrated database, for report tests and benchmarks.

Companies (two with contracts that ended during the history), about 200 customers (some private, without a
company), five agents, the three ticket types and a category tree, priorities, and deadlines from the real SLA
clock. Answers and resolutions come at random fractions of the time the deadline allowed, so most deadlines are
met and some are missed; tickets still open when the history ends, rejected and merged tickets, satisfaction
answers and the complaint fields are all present. The same seed always gives the same rows, to the second.

Rows go in through Core ``executemany`` (not the ORM) so 2,000 tickets take about a second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from ticketd.daemon.config import Config
from ticketd.rules.sla import Duration
from ticketd.rules.sla_clock import due_times
from ticketd.storage.models import Agent, Company, CompanyDomain, Customer, Ticket

# (name, domain, months before the history's end the contract ended: None runs on, SLA plan)
COMPANIES = (
    ("Müşteri A.Ş.", "musteri.com.tr", None, None),
    ("Anadolu Lojistik Ltd. Şti.", "anadolulojistik.com.tr", None, "gold"),
    ("Boğaziçi Yazılım", "bogazici-yazilim.com", None, None),
    ("Ege Tekstil A.Ş.", "egetekstil.com.tr", 5, None),
    ("Karadeniz Enerji", "karadenizenerji.com", None, "gold"),
    ("Marmara Gıda San.", "marmaragida.com.tr", None, None),
    ("Kapadokya Turizm", "kapadokyaturizm.com", 9, None),
    ("Acme Widgets Inc.", "acmewidgets.example", None, None),
)
FIRST_NAMES = ("Çiğdem", "Şener", "Ayşe", "Mehmet", "Gülşen", "Oğuz", "İlker", "Özge", "Ümit", "Barış", "Deniz",
               "Elif", "Fatih", "Hülya", "Kemal", "Leyla", "Murat", "Nihan", "Selin", "Tolga", "Jane", "John")
LAST_NAMES = ("Yılmaz", "Öztürk", "Demir", "Şahin", "Çelik", "Doğan", "Kılıç", "Aydın", "Güneş", "Koç", "Roe",
              "Smith")
ASCII = str.maketrans("çğıöşüÇĞİÖŞÜ", "cgiosuCGIOSU")
AGENTS = (("ali@acme.example", "Ali Veli", "agent", ["network"]),
          ("ayse@acme.example", "Ayşe Demir", "manager", ["network", "billing"]),
          ("can@acme.example", "Can Özkan", "agent", ["billing"]),
          ("derya@acme.example", "Derya Işık", "agent", ["field"]),
          ("emre@acme.example", "Emre Güler", "agent", ["network", "field"]))
TYPES = (("request", 60), ("complaint", 25), ("information", 15))
CATEGORIES = (("hardware/modem", 30), ("hardware/cable", 12), ("billing/invoice", 22), ("billing", 4),
              ("service/installation", 14), ("service/outage", 12), (None, 6))
GROUPS = {"hardware": "network", "billing": "billing", "service": "field"}
PRIORITIES = (("low", 15), ("normal", 60), ("high", 20), ("urgent", 5))
SOURCES = (("email", 80), ("web", 14), ("phone", 6))
SUBJECTS = {"hardware/modem": "Modem çalışmıyor", "hardware/cable": "Kablo hasarlı", "billing/invoice": "Fatura sorusu",
            "billing": "Ödeme hakkında", "service/installation": "Kurulum randevusu",
            "service/outage": "İnternet kesintisi", None: "Bilgi talebi"}
ROOT_CAUSES = ("Yazılım güncellemesi hatalı", "Saha ekibi gecikti", "Faturalama sistemi hatası", "Tedarikçi arızası")
ACTION_PLANS = ("Güncelleme geri alındı, süreç gözden geçirildi", "Ekip planlaması değiştirildi",
                "Fatura düzeltildi, kontrol adımı eklendi", "Tedarikçiyle SLA yeniden görüşüldü")


def _weighted(rng: random.Random, choices: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _first_month(end: date, months: int) -> date:
    index = end.year * 12 + end.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class World:
    """The people and companies the tickets refer to, with the facts a ticket needs about each."""

    customers: list[tuple[int, int | None]]  # (customer id, company id)
    weights: list[float]  # how often each customer writes: a few write a lot
    companies: dict[int, tuple[datetime | None, str | None]]  # company id -> (contract until, SLA plan)
    agents: list[int]


def _next_id(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()) + 1


def _people(conn: sa.Connection, rng: random.Random, end_at: datetime, now: datetime) -> World:
    companies, customers, agents = (m.__table__ for m in (Company, Customer, Agent))  # type: ignore[attr-defined]
    first_company, first_customer, first_agent = (_next_id(conn, t) for t in (companies, customers, agents))
    company_rows, domains, facts = [], [], {}
    for offset, (name, domain, ended, plan) in enumerate(COMPANIES):
        company_id = first_company + offset
        until = end_at - timedelta(days=30 * ended) if ended else end_at + timedelta(days=365)
        company_rows.append({"id": company_id, "name": name, "contract_until": until, "sla_plan": plan,
                             "created_at": now})
        domains.append({"domain": domain, "company_id": company_id})
        facts[company_id] = (until, plan)
    conn.execute(companies.insert(), company_rows)
    conn.execute(CompanyDomain.__table__.insert(), domains)  # type: ignore[attr-defined]
    customer_rows, people = [], []
    for offset in range(200):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company = rng.randrange(len(COMPANIES)) if rng.random() < 0.85 else None
        domain = COMPANIES[company][1] if company is not None else rng.choice(("gmail.com", "hotmail.com"))
        email = f"{first}.{last}{offset}@{domain}".translate(ASCII).lower()
        company_id = first_company + company if company is not None else None
        customer_rows.append({"id": first_customer + offset, "email": email, "name": f"{first} {last}",
                              "company_id": company_id, "language": rng.choice(("tr", "tr", "en")),
                              "blocked": False, "created_at": now})
        people.append((first_customer + offset, company_id))
    conn.execute(customers.insert(), customer_rows)
    conn.execute(agents.insert(), [{"id": first_agent + i, "email": e, "name": n, "role": r, "groups": g,
                                    "active": True, "away": False, "created_at": now}
                                   for i, (e, n, r, g) in enumerate(AGENTS)])
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(people))]
    return World(people, weights, facts, [first_agent + i for i in range(len(AGENTS))])


def _created_times(rng: random.Random, config: Config, n: int, first: date, end: date) -> list[datetime]:
    """Mostly weekday office hours, some evenings and weekends, as real mail arrives."""
    days = (end - first).days + 1
    out = []
    while len(out) < n:
        day = first + timedelta(days=rng.randrange(days))
        if day.weekday() >= 5 and rng.random() < 0.75:
            continue
        seconds = rng.randrange(8 * 3600, 19 * 3600) if rng.random() < 0.85 else rng.randrange(86400)
        local = datetime.combine(day, time(0), tzinfo=config.tz) + timedelta(seconds=seconds)
        out.append(local.astimezone(UTC))
    return sorted(out)


def _fraction(rng: random.Random, on_time: float) -> float:
    """Of the time the deadline allowed: below 1 is met, above 1 is late."""
    return rng.uniform(0.05, 0.98) if rng.random() < on_time else rng.uniform(1.05, 3.0)


def _after(config: Config, start: datetime, due: datetime, fraction: float) -> datetime:
    """``fraction`` of the business time from ``start`` to ``due``, so answers land in office hours as they do."""
    allowed = config.calendar.between(start, due).total_seconds()
    return config.calendar.add(start, Duration(seconds=max(60, round(allowed * fraction)))).replace(microsecond=0)


def _closing(rng: random.Random, row: dict[str, Any], end_at: datetime) -> None:
    """State, satisfaction and closing of a resolved ticket, consistent with how ticketd moves them."""
    resolved = row["resolution_at"]
    answer = rng.choices(("satisfied", "not-satisfied", None), weights=(55, 15, 30))[0]
    row["satisfaction"] = answer
    closed = resolved + timedelta(hours=rng.uniform(1, 24 * 7))
    if answer == "satisfied" and closed > end_at:
        answer = row["satisfaction"] = None  # the answer would close the ticket: it has not come yet
    if answer == "not-satisfied" and rng.random() < 0.4:
        row["state"] = "open"  # reopened by the answer; the resolution stays recorded
    elif closed <= end_at and (answer == "satisfied" or rng.random() < 0.8):
        row["state"], row["closed_at"] = "closed", closed.replace(microsecond=0)
    else:
        row["state"] = "resolved"


def _outcome(rng: random.Random, config: Config, row: dict[str, Any], end_at: datetime) -> None:
    created, fr_due, res_due = row["created_at"], row["first_response_due"], row["resolution_due"]
    answered = _after(config, created, fr_due, _fraction(rng, 0.82))
    stuck = rng.random() < 0.04
    resolved = None if stuck else max(_after(config, created, res_due, _fraction(rng, 0.75)),
                                      answered + timedelta(minutes=10))
    if stuck and rng.random() < 0.5:
        answered = None
    row["first_response_at"] = answered if answered and answered <= end_at else None
    if rng.random() < 0.03 and row["first_response_at"] is not None:
        row["state"], row["closed_at"] = "rejected", row["first_response_at"]
    elif resolved is not None and resolved <= end_at:
        row["resolution_at"], row["resolution"] = resolved, "Sorun giderildi."
        _closing(rng, row, end_at)
    else:
        row["state"] = "new" if row["assignee_id"] is None else rng.choice(("open", "open", "pending"))
    for kind in ("first_response", "resolution"):
        due, done = row[f"{kind}_due"], row[f"{kind}_at"]
        if (done or end_at) > due:
            row[f"{kind}_breached_at"] = due


def _ticket(rng: random.Random, config: Config, world: World, created: datetime, end_at: datetime) -> dict[str, Any]:
    customer_id, company_id = rng.choices(world.customers, weights=world.weights)[0]
    contract, plan = world.companies.get(company_id, (None, None)) if company_id else (None, None)
    kind, category, priority = _weighted(rng, TYPES), _weighted(rng, CATEGORIES), _weighted(rng, PRIORITIES)
    fr_due, res_due = due_times(config.sla_clock, plan, priority, created)
    complaint = kind == "complaint"
    row: dict[str, Any] = {
        "subject": SUBJECTS[category], "requester_id": customer_id, "company_id": company_id,
        "source": _weighted(rng, SOURCES), "type": kind, "category": category, "priority": priority,
        "group": GROUPS[category.split("/")[0]] if category else None,
        "assignee_id": rng.choice(world.agents) if rng.random() < 0.92 else None,
        "within_contract": None if company_id is None else bool(contract and contract >= created),
        "root_cause": rng.choice(ROOT_CAUSES) if complaint else None,
        "action_plan": rng.choice(ACTION_PLANS) if complaint else None,
        "cost": f"{rng.randrange(0, 5000, 50)} TL" if complaint else None,
        "first_response_due": fr_due, "resolution_due": res_due, "created_at": created,
        "resolution": None, "satisfaction": None, "resolution_at": None, "closed_at": None,
        "first_response_breached_at": None, "resolution_breached_at": None, "merged_into_id": None,
        "linked_to_id": None, "sla_paused_at": None, "sla_paused_seconds": 0,
    }
    _outcome(rng, config, row, end_at)
    stamps = [row[k] for k in ("created_at", "first_response_at", "resolution_at", "closed_at") if row[k]]
    row["updated_at"] = max(stamps)
    return row


def _merge_some(rng: random.Random, rows: list[dict[str, Any]]) -> None:
    """About one ticket in a hundred is a duplicate merged into the customer's earlier ticket."""
    last_by_customer: dict[int, dict[str, Any]] = {}
    for row in rows:
        earlier = last_by_customer.get(row["requester_id"])
        if earlier is not None and rng.random() < 0.012:
            row.update(merged_into_id=earlier["id"], state="closed", closed_at=row["created_at"] + timedelta(hours=1),
                       resolution_at=None, satisfaction=None, resolution=None)
        else:
            last_by_customer[row["requester_id"]] = row


def generate_history(engine: sa.Engine, config: Config, n: int = 2000, months: int = 14, seed: int = 7,
                     end: date = date(2026, 11, 30)) -> None:
    """``n`` tickets opened over the ``months`` calendar months that end with ``end`` (local dates)."""
    rng = random.Random(seed)
    first = _first_month(end, months)
    end_at = datetime.combine(end + timedelta(days=1), time(0), tzinfo=config.tz).astimezone(UTC)
    end_at -= timedelta(seconds=1)
    tickets = Ticket.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        world = _people(conn, rng, end_at, end_at)
        first_id = _next_id(conn, tickets)
        first_number = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(tickets.c.number), 0))).scalar_one())
        rows = [_ticket(rng, config, world, created, end_at)
                for created in _created_times(rng, config, n, first, end)]
        for offset, row in enumerate(rows):
            row.update(id=first_id + offset, number=first_number + offset + 1)
        _merge_some(rng, rows)
        conn.execute(tickets.insert(), rows)
