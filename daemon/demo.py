"""`ticketd demo`: the whole flow on this machine, with nothing to set up.

A local SMTP sink stands in for the mail server; sample customer mails enter through the same path as
``ticketd deliver`` (an MTA pipe); every acknowledgment is printed and kept as an .eml file.
"""

from __future__ import annotations

import secrets
import tempfile
from email.utils import parseaddr
from importlib import resources
from pathlib import Path

import typer
from sqlmodel import Session, select

from ticketd.daemon import logs, outbox, pipeline
from ticketd.daemon.config import load_config
from ticketd.daemon.smtp_sink import ReceivedMail, SmtpSink
from ticketd.daemon.views import ticket_dict
from ticketd.storage import db
from ticketd.storage.directory import add_company, upsert_agent, upsert_customer
from ticketd.storage.inbound import store_inbound
from ticketd.storage.models import Ticket

CONFIG = """\
[helpdesk]
name = "Acme Support"
address = "support@acme.example"
tag = "ACME"
language = "en"
timezone = "Europe/Istanbul"

[database]
url = "sqlite:///ticketd.db"

[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"

[security]
secret_file = "secret"

[logging]
level = "warning"
"""


def _show(mail: ReceivedMail) -> None:
    msg = mail.message
    typer.echo(f"  To:         {msg['To']}")
    typer.echo(f"  Subject:    {msg['Subject']}")
    typer.echo(f"  In-Reply-To: {msg['In-Reply-To']}   Reply-To: {parseaddr(str(msg['Reply-To']))[1]}")
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    typer.echo("  | " + "\n  | ".join(text.rstrip().splitlines()))
    typer.echo("")


def run_demo(directory: Path | None) -> int:
    work = directory or Path(tempfile.mkdtemp(prefix="ticketd-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    sent_dir = work / "sent"
    with SmtpSink(store_dir=sent_dir) as sink:
        (work / "secret").write_text(secrets.token_urlsafe(32))
        (work / "ticketd.toml").write_text(CONFIG.format(port=sink.port))
        config = load_config(work / "ticketd.toml")
        logs.configure(config.logging.level, "console")
        engine = db.make_engine(config.database.url)
        db.upgrade(engine)
        with db.session_scope(engine) as session:
            company = add_company(session, "Müşteri A.Ş.", ["musteri.com.tr"])
            upsert_customer(session, "cigdem.yilmaz@musteri.com.tr", "Çiğdem Yılmaz", company, language="tr")
            upsert_agent(session, "ali@acme.example", "Ali Veli", "agent", ["network"])

        typer.echo(f"ticketd demo in {work}\n")
        samples = sorted(resources.files("ticketd.daemon").joinpath("demo_mail").iterdir(), key=lambda p: p.name)
        for sample in samples:
            raw = sample.read_bytes()
            with db.session_scope(engine) as session:
                row_id = store_inbound(session, raw, "demo").id
            outcome = pipeline.process_pending(engine, config, [row_id])[0]
            typer.echo(f"<- {sample.name}: {outcome.status}"
                       + (f", ticket #{outcome.ticket_number}" if outcome.ticket_number else "")
                       + (f" ({outcome.reason})" if outcome.reason else ""))
        before = len(sink.received)
        outbox.send_due(engine, config)
        typer.echo(f"\n-> {len(sink.received) - before} acknowledgment(s) delivered to the local SMTP server:\n")
        for mail in sink.received[before:]:
            _show(mail)

        # The first customer answers the acknowledgment: threaded onto the same ticket, no second ack.
        first_ack = sink.received[before].message
        reply = (f"From: cigdem.yilmaz@musteri.com.tr\r\nTo: {parseaddr(str(first_ack['Reply-To']))[1]}\r\n"
                 f"Subject: Re: {first_ack['Subject']}\r\nMessage-ID: <demo-5.cigdem@musteri.com.tr>\r\n"
                 f"In-Reply-To: {first_ack['Message-ID']}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                 "Modem seri numarası: AC-55-1042\r\n").encode()
        with db.session_scope(engine) as session:
            row_id = store_inbound(session, reply, "demo").id
        outcome = pipeline.process_pending(engine, config, [row_id])[0]
        outbox.send_due(engine, config)
        typer.echo(f"<- a reply to the first acknowledgment: {outcome.status}, added to ticket "
                   f"#{outcome.ticket_number}, new ticket: {outcome.new_ticket}\n")

        with Session(engine) as session:
            tickets = [ticket_dict(session, t) for t in session.exec(select(Ticket).order_by(Ticket.number))]
        typer.echo("tickets:")
        for t in tickets:
            typer.echo(f"  #{t['number']}  {t['state']:<5} {t['requester']:<32} {t['company'] or '-':<14} "
                       f"{t['subject']}")
        typer.echo(f"\nsent mail is in {sent_dir}; look around with:\n"
                   f"  ticketd --config {work / 'ticketd.toml'} tickets show 1")
    return 0
