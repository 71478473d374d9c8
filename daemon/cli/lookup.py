"""Finding things from the command line: customers and their tickets, and tickets by any text they contain."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
import typer
from sqlmodel import Session, col, select

from ticketd.daemon.cli.admin import _local, _session, _table, customers, tickets
from ticketd.daemon.cli.common import EXIT_CONFIG, JsonOption, fail, get_config, print_json
from ticketd.daemon.cli.views import iso, ticket_dict
from ticketd.storage.db import fold
from ticketd.storage.models import Company, Customer, Event, Message, Ticket, utcnow


def customer_dict(session: Session, customer: Customer) -> dict[str, Any]:
    company = session.get(Company, customer.company_id) if customer.company_id else None
    count = session.exec(select(sa.func.count()).select_from(Ticket)
                         .where(Ticket.requester_id == customer.id)).one()
    return {"email": customer.email, "name": customer.name, "company": company.name if company else None,
            "language": customer.language, "phone": customer.phone, "blocked": customer.blocked,
            "tickets": count, "created_at": iso(customer.created_at)}


@customers.command("list")
def customers_list(
    ctx: typer.Context,
    company: Annotated[str | None, typer.Option(help="Only this company's customers.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Customers with their company and how many tickets they opened."""
    with _session(get_config(ctx)) as session:
        stmt = select(Customer).order_by(Customer.email)
        if company:
            found = session.exec(select(Company).where(sa.func.lower(Company.name) == fold(company))).first()
            if found is None:
                fail(f"--company: no company called {company!r} (see `ticketd companies list`)", 2)
            stmt = stmt.where(Customer.company_id == found.id)
        rows = [customer_dict(session, c) for c in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    _table([[r["email"], r["name"] or "-", r["company"] or "-", r["language"] or "-", str(r["tickets"]),
             "blocked" if r["blocked"] else ""] for r in rows],
           ["EMAIL", "NAME", "COMPANY", "LANGUAGE", "TICKETS", ""])


@customers.command("show")
def customers_show(ctx: typer.Context, email: str, as_json: JsonOption = False) -> None:
    """One customer and every ticket they opened, newest first."""
    config = get_config(ctx)
    with _session(config) as session:
        customer = session.exec(select(Customer).where(Customer.email == email.strip().lower())).first()
        if customer is None:
            fail(f"no customer {email} (see `ticketd customers list`)", EXIT_CONFIG)
        data = customer_dict(session, customer)
        data["ticket_list"] = [ticket_dict(session, t) for t in session.exec(
            select(Ticket).where(Ticket.requester_id == customer.id).order_by(col(Ticket.number).desc()))]
    if as_json:
        print_json(data)
        return
    typer.echo(f"{data['name'] or '-'} <{data['email']}>   company: {data['company'] or '-'}   "
               f"language: {data['language'] or '-'}   phone: {data['phone'] or '-'}"
               + ("   BLOCKED as spam" if data["blocked"] else ""))
    _table([[f"#{t['number']}", t["state"], t["type"], t["category"] or "-", _local(t["created_at"], config.tz),
             t["subject"][:60]] for t in data["ticket_list"]], ["NUMBER", "STATE", "TYPE", "CATEGORY", "CREATED",
                                                                "SUBJECT"])


@customers.command("unblock")
def customers_unblock(ctx: typer.Context, email: str) -> None:
    """Take a sender off the block list ([spam] put them there); their mail opens tickets again."""
    with _session(get_config(ctx)) as session, session.begin():
        customer = session.exec(select(Customer).where(Customer.email == email.strip().lower())).first()
        if customer is None:
            fail(f"no customer {email} (see `ticketd customers list`)", EXIT_CONFIG)
        if not customer.blocked:
            typer.echo(f"{customer.email} is not blocked")
            return
        customer.blocked = False
        session.add(Event(ticket_id=None, actor="ticketd customers unblock", what="sender_unblocked",
                          old=customer.email, at=utcnow()))
    typer.echo(f"{customer.email} is no longer blocked")


# Longer than any subject line or name anyone types; a 50,000-character argument reached the database and came
# back as a traceback full of SQL.
MAX_SEARCH = 200


def like_pattern(needle: str) -> str:
    """``%needle%`` with LIKE's own characters taken literally: "%" or "_" typed by a person must not match all."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@tickets.command("search")
def tickets_search(ctx: typer.Context, text: str, as_json: JsonOption = False) -> None:
    """Tickets whose number, subject, messages, customer address or name, or company contain TEXT."""
    needle = text.strip().lstrip("#")
    if not needle:
        fail("search text is empty", EXIT_CONFIG)
    if len(needle) > MAX_SEARCH:
        fail(f"search text is {len(needle)} characters long; at most {MAX_SEARCH}", EXIT_CONFIG)
    pattern = like_pattern(fold(needle))

    def like(column: Any) -> Any:
        return sa.func.lower(column).like(pattern, escape="\\")

    config = get_config(ctx)
    with _session(config) as session:
        in_messages = select(Message.ticket_id).where(like(Message.text))
        people = select(Customer.id).where(sa.or_(like(Customer.email), like(Customer.name)))
        firms = select(Company.id).where(like(Company.name))
        conditions = [like(Ticket.subject), col(Ticket.id).in_(in_messages),
                      col(Ticket.requester_id).in_(people), col(Ticket.company_id).in_(firms)]
        if needle.isascii() and needle.isdigit() and len(needle) <= 18:  # "²" is a digit to Python; 10**19 overflows
            conditions.append(Ticket.number == int(needle))
        stmt = select(Ticket).where(sa.or_(*conditions)).order_by(col(Ticket.number).desc())
        rows = [ticket_dict(session, t) for t in session.exec(stmt)]
    if as_json:
        print_json(rows)
        return
    _table([[f"#{r['number']}", r["state"], r["requester"], r["company"] or "-", _local(r["created_at"], config.tz),
             r["subject"][:60]] for r in rows], ["NUMBER", "STATE", "REQUESTER", "COMPANY", "CREATED", "SUBJECT"])
