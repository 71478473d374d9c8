"""Customers, companies and agents: the people ticketd knows, added from the CLI, CSV or the config."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel import Session, select

from ticketd.storage import batch
from ticketd.storage.models import Agent, Company, CompanyDomain, Customer


class DirectoryError(ValueError):
    pass


# The columns' sizes: PostgreSQL refuses a longer value (SQLite would store it), so it is refused here, by name.
MAX_EMAIL, MAX_DOMAIN, MAX_COMPANY_NAME = 320, 255, 200


def _email(value: str, where: str) -> str:
    value = (value or "").strip().lower()
    if value.count("@") != 1 or " " in value or value.startswith("@") or value.endswith("@"):
        raise DirectoryError(f"{where}: {value!r} is not an e-mail address")
    if len(value) > MAX_EMAIL:
        raise DirectoryError(f"{where}: {value[:40]!r}... is longer than {MAX_EMAIL} characters")
    return value


def _domain(value: str) -> str:
    value = value.strip().lower().lstrip("@")
    if not value or "." not in value or any(c in value for c in " /@"):
        raise DirectoryError(f"{value!r} is not a domain name")
    if len(value) > MAX_DOMAIN:
        raise DirectoryError(f"{value[:40]!r}... is longer than {MAX_DOMAIN} characters")
    return value


def add_company(session: Session, name: str, domains: Iterable[str] = (), contract_until: date | None = None,
                sla_plan: str | None = None) -> Company:
    """Create the company or update it; a domain already owned by another company is an error."""
    name = name.strip()
    if not name:
        raise DirectoryError("company name is empty")
    if len(name) > MAX_COMPANY_NAME:
        raise DirectoryError(f"company name {name[:40]!r}... is longer than {MAX_COMPANY_NAME} characters")
    company = session.exec(select(Company).where(Company.name == name)).first()
    if company is None:
        company = Company(name=name)
        session.add(company)
    if contract_until is not None:
        company.contract_until = datetime(contract_until.year, contract_until.month, contract_until.day,
                                          23, 59, 59, tzinfo=UTC)
    if sla_plan is not None:
        company.sla_plan = sla_plan
    session.flush()
    assert company.id is not None  # flushed
    for raw in domains:
        domain = _domain(raw)
        owner = session.get(CompanyDomain, domain)
        if owner is not None and owner.company_id != company.id:
            other = session.get(Company, owner.company_id)
            raise DirectoryError(f"domain {domain} already belongs to {other.name if other else owner.company_id}")
        if owner is None:
            session.add(CompanyDomain(domain=domain, company_id=company.id))
    session.flush()
    return company


def company_domains(session: Session, company: Company) -> list[str]:
    rows = session.exec(select(CompanyDomain.domain).where(CompanyDomain.company_id == company.id))
    return sorted(rows)


def upsert_customer(session: Session, email: str, name: str | None = None, company: Company | None = None,
                    language: str | None = None, phone: str | None = None) -> Customer:
    email = _email(email, "email")
    if language and language not in ("en", "tr"):
        raise DirectoryError(f"language {language!r}: must be en or tr")
    customer = session.exec(select(Customer).where(Customer.email == email)).first()
    if customer is None:
        customer = Customer(email=email)
        session.add(customer)
    customer.name = name or customer.name
    customer.company_id = company.id if company else customer.company_id
    customer.language = language or customer.language
    customer.phone = phone or customer.phone
    session.flush()
    return customer


@dataclass
class ImportResult:
    customers: int = 0
    companies: set[str] = field(default_factory=set)


def import_customers(session: Session, path: Path, on_row: Callable[[], None] = lambda: None) -> ImportResult:
    """Columns email,name,company[,language,phone,domains]; ``domains`` (space or ';' separated) go to the company.

    All-or-nothing: the caller's transaction holds every row, so a bad line imports nothing and names its line
    (``FILE:LINE: reason``, the form editors jump to). An address on two lines is refused with both numbers: which
    row should win is the operator's decision, not the file order's.
    """
    result = ImportResult()
    text = _utf8_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = {"email", "name", "company"} - set(reader.fieldnames or [])
        if missing:
            raise DirectoryError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
        first_seen: dict[str, int] = {}
        for row in reader:
            line_no = reader.line_num
            try:
                email = _email(row.get("email") or "", "email")
                if email in first_seen:
                    raise DirectoryError(f"{email} is on line {first_seen[email]} already; nothing imported")
                first_seen[email] = line_no
                company = None
                if (row.get("company") or "").strip():
                    domains = (row.get("domains") or "").replace(";", " ").split()
                    company = add_company(session, row["company"], domains)
                    result.companies.add(company.name)
                upsert_customer(session, email, (row.get("name") or "").strip() or None, company,
                                (row.get("language") or "").strip() or None, (row.get("phone") or "").strip() or None)
            except DirectoryError as exc:
                raise DirectoryError(f"{path.name}:{line_no}: {exc}") from None
            result.customers += 1
            on_row()
    except csv.Error as exc:  # a field over the reader's limit; line_num still counts the lines before it
        raise DirectoryError(f"{path.name}:{reader.line_num + 1}: not a CSV line: {exc}") from None
    return result


def _utf8_text(path: Path) -> str:
    """The file as text; a byte that is not UTF-8 (a Latin-1 export) is named by line, not by a traceback."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DirectoryError(f"{path.name}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); "
                             "save the file as UTF-8 and import it again") from None


def upsert_agent(session: Session, email: str, name: str, role: str = "agent",
                 groups: Iterable[str] = ()) -> Agent:
    email = _email(email, "agent")
    if role not in ("agent", "manager"):
        raise DirectoryError(f"role {role!r}: must be agent or manager")
    agent = session.exec(select(Agent).where(Agent.email == email)).first()
    if agent is None:
        agent = Agent(email=email, name=name)
        session.add(agent)
    agent.name, agent.role, agent.groups, agent.active = name, role, sorted(set(groups)), True
    session.flush()
    return agent


@dataclass
class AgentSync:
    saved: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)


def sync_agents(session: Session, declared: Iterable[tuple[str, str, str, Iterable[str]]]) -> AgentSync:
    """Make the agent table match a declared list (email, name, role, groups): the declared ones active with those
    details, every other agent inactive.

    The config's ``[[agents]]`` is the truth when it has any: deleting a line there must revoke that person's
    agent powers (commands, internal notes, assignment) at the next start of any command, or a colleague who
    left keeps them. Their rows stay, inactive, so tickets and reports still name them.
    """
    result = AgentSync()
    keep: set[str] = set()
    for email, name, role, groups in declared:
        agent = upsert_agent(session, email, name, role, groups)
        keep.add(agent.email)
        result.saved.append(agent.email)
    for agent in session.exec(select(Agent).where(Agent.active == True)):  # noqa: E712  (SQL, not Python)
        if agent.email not in keep:
            agent.active = False
            result.deactivated.append(agent.email)
            batch.event(session, ticket_id=None, actor="config [[agents]]", what="agent_deactivated",
                        old=agent.email, at=datetime.now(UTC))
    session.flush()
    return result

