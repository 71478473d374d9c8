"""Who wrote this mail: an agent, a known customer, someone from a known company, or a new contact."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ticketd.parsers.message import Address
from ticketd.storage import batch
from ticketd.storage.db import insert_shared
from ticketd.storage.models import Agent, Company, CompanyDomain, Customer


@dataclass(frozen=True)
class Sender:
    address: Address
    customer: Customer | None = None
    agent: Agent | None = None
    company: Company | None = None
    is_new: bool = False


def agents(session: Session) -> list[Agent]:
    """Every agent, read once per transaction: a batch of mail asks "is this an agent?" many times."""
    cached = session.info.get("ticketd.agents")
    if cached is None:
        cached = session.info["ticketd.agents"] = list(session.exec(select(Agent).order_by(col(Agent.id))))
    return cached


def agent_by_id(session: Session, agent_id: int) -> Agent | None:
    return next((a for a in agents(session) if a.id == agent_id), None)


def active_agent(session: Session, email: str) -> Agent | None:
    return next((a for a in agents(session) if a.active and a.email == email), None)


def find_company_by_domain(session: Session, email: str) -> Company | None:
    domain = email.rsplit("@", 1)[-1].lower()
    row = batch.held(session, CompanyDomain, domain)
    return batch.held(session, Company, row.company_id) if row else None


_CUSTOMER_BY_EMAIL = select(Customer).where(Customer.email == sa.bindparam("email"))  # built once, for every mail


def identify_sender(session: Session, address: Address) -> Sender:
    """The customer record for this address (created on first contact, under the company owning the domain).

    An agent writing to the support address is also a customer of that conversation; `agent` tells the
    command stage who may steer tickets.
    """
    agent = active_agent(session, address.email)
    customer = session.exec(_CUSTOMER_BY_EMAIL, params={"email": address.email}).first()
    if customer is not None:
        if not customer.name and address.name:
            customer.name = address.name
        company = batch.held(session, Company, customer.company_id) if customer.company_id else None
        return Sender(address, customer=customer, agent=agent, company=company)
    company = find_company_by_domain(session, address.email)
    values = Customer(email=address.email, name=address.name or None, company_id=company.id if company else None)
    table = Customer.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ without declaring it
    insert_shared(session.connection(), table,
                  {c.key: getattr(values, c.key) for c in table.columns if c.key != "id"}, "email")
    customer = session.exec(_CUSTOMER_BY_EMAIL, params={"email": address.email}).one()
    if customer.company_id != values.company_id:  # another instance added them a moment ago: theirs is the record
        company = batch.held(session, Company, customer.company_id) if customer.company_id else None
    return Sender(address, customer=customer, agent=agent, company=company, is_new=True)
