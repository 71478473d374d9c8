"""`ticketd demo`: the whole flow on this machine, with nothing to set up.

A local SMTP sink stands in for the mail server; sample customer mails enter through the same path as
``ticketd deliver`` (an MTA pipe); every acknowledgment is printed and kept as an .eml file.
"""

from __future__ import annotations

import secrets
import tempfile
from email.message import EmailMessage
from email.utils import parseaddr
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import sqlalchemy as sa
import typer
from sqlmodel import Session, col, select

from ticketd.daemon import pipeline
from ticketd.daemon.cli.views import ticket_detail, ticket_dict
from ticketd.daemon.config import Config, load_config
from ticketd.daemon.intake.web import WebServer
from ticketd.daemon.outgoing import outbox
from ticketd.daemon.outgoing.smtp_sink import ReceivedMail, SmtpSink, free_port
from ticketd.daemon.service import logs
from ticketd.storage import db
from ticketd.storage.directory import add_company, upsert_agent, upsert_customer
from ticketd.storage.inbound import store_inbound
from ticketd.storage.models import Inbound, Ticket

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

[webform]
listen = "127.0.0.1:{web_port}"
mailbox = "complaints"

# Another address, another identity: its tickets' mail comes from it, with its name and reply addresses.
[[mailboxes]]
name = "complaints"
address = "sikayet@acme-sikayet.example"
display_name = "Acme Şikayet"
defaults = {{ type = "complaint" }}

[logging]
level = "warning"

[categories]
tree = ["hardware/modem", "hardware/cable", "billing/invoice"]

[[groups]]
name = "network"
policy = "round-robin"

[[rules]]
name = "modem"
match = {{ body = "(?i)modem" }}
set = {{ category = "hardware/modem", priority = "high", group = "network" }}

[[rules]]
name = "invoices"
match = {{ subject = "(?i)invoice|fatura" }}
set = {{ category = "billing/invoice" }}
"""


def _body(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    return body.get_content() if body is not None else ""


def _files(mail: ReceivedMail) -> str:
    """The files a received mail carries, as its reader's client shows them: name, and inline or attached."""
    found = [f"{part.get_filename()} ({part.get_content_disposition() or 'attachment'})"
             for part in mail.message.walk() if part.get_filename()]
    return ", ".join(found)


def _list_sent(mails: list[ReceivedMail]) -> None:
    """One line per mail that reached the SMTP server: to whom, its subject, its files."""
    for mail in mails:
        files = f"   [files: {_files(mail)}]" if _files(mail) else ""
        sender = parseaddr(str(mail.message["From"]))[1]
        other = f"   (from {mail.message['From']})" if sender != "support@acme.example" else ""
        typer.echo(f"   -> {mail.envelope_to[0]}: {mail.message['Subject']}{files}{other}")
    typer.echo("")


def _show(mail: ReceivedMail) -> None:
    msg = mail.message
    typer.echo(f"  From:       {msg['From']}")
    typer.echo(f"  To:         {msg['To']}")
    typer.echo(f"  Subject:    {msg['Subject']}")
    typer.echo(f"  In-Reply-To: {msg['In-Reply-To']}   Reply-To: {parseaddr(str(msg['Reply-To']))[1]}")
    if _files(mail):
        typer.echo(f"  Files:      {_files(mail)}")
    typer.echo("  | " + "\n  | ".join(_body(mail).rstrip().splitlines()))
    typer.echo("")


def click(mail: ReceivedMail, sender: str, answer: str) -> bytes:
    """The mail a mail client writes for one of the resolved mail's mailto: links."""
    link = next(line.split("mailto:", 1)[1].strip() for line in _body(mail).splitlines()
                if "mailto:" in line and unquote(line).rstrip().endswith(f"[{answer}]"))
    address, _, query = link.partition("?subject=")
    return (f"From: {sender}\r\nTo: {address}\r\nSubject: {unquote(query)}\r\n"
            f"Message-ID: <{secrets.token_hex(6)}@demo>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n\r\n").encode()


def run_demo(directory: Path | None) -> int:
    work = directory or Path(tempfile.mkdtemp(prefix="ticketd-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    sent_dir = work / "sent"
    with SmtpSink(store_dir=sent_dir) as sink:
        (work / "secret").write_text(secrets.token_urlsafe(32))
        (work / "ticketd.toml").write_text(CONFIG.format(port=sink.port, web_port=free_port()))
        config = load_config(work / "ticketd.toml")
        logs.configure("error", "console")
        engine = db.make_engine(config.database.connect_url)
        db.upgrade(engine)
        with db.session_scope(engine) as session:
            company = add_company(session, "Müşteri A.Ş.", ["musteri.com.tr"])
            upsert_customer(session, "cigdem.yilmaz@musteri.com.tr", "Çiğdem Yılmaz", company, language="tr")
            upsert_agent(session, "ali@acme.example", "Ali Veli", "agent", ["network"])

        typer.echo(f"ticketd demo in {work}\n")
        samples = sorted(resources.files("ticketd.daemon.cli").joinpath("demo_mail").iterdir(), key=lambda p: p.name)
        for sample in samples:
            raw = sample.read_bytes()
            with db.session_scope(engine) as session:
                row_id = store_inbound(session, raw, "demo", channel="cli").id
            assert row_id is not None  # flushed when stored
            outcome = pipeline.process_pending(engine, config, [row_id])[0]
            typer.echo(f"<- {sample.name}: {outcome.status}"
                       + (f", ticket #{outcome.ticket_number}" if outcome.ticket_number else "")
                       + (f" ({outcome.reason})" if outcome.reason else ""))
        before = len(sink.received)
        outbox.send_due(engine, config)
        typer.echo(f"\n-> {len(sink.received) - before} mails delivered to the local SMTP server; "
                   "the acknowledgments:\n")
        for mail in sink.received[before:]:
            if mail.message["Auto-Submitted"] and "ali@" not in mail.envelope_to[0]:
                _show(mail)

        def deliver(raw: bytes, label: str) -> None:
            with db.session_scope(engine) as session:
                row_id = store_inbound(session, raw, "demo", channel="cli").id
            assert row_id is not None  # flushed when stored
            outcome = pipeline.process_pending(engine, config, [row_id])[0]
            mark = len(sink.received)
            outbox.send_due(engine, config)
            typer.echo(f"<- {label}: {outcome.status}"
                       + (f", ticket #{outcome.ticket_number}" if outcome.ticket_number else "")
                       + (f" ({outcome.reason})" if outcome.reason else ""))
            _list_sent(sink.received[mark:])

        def answer(to: ReceivedMail, sender: str, subject_suffix: str, text: str,
                   attach: tuple[str, bytes] | None = None) -> bytes:
            msg = to.message
            quoted = "\n".join("> " + line for line in _body(to).splitlines())
            reply = EmailMessage()
            reply["From"], reply["To"] = sender, parseaddr(str(msg["Reply-To"]))[1]
            reply["Subject"] = f"Re: {msg['Subject']} {subject_suffix}".rstrip()
            reply["Message-ID"], reply["In-Reply-To"] = f"<{secrets.token_hex(6)}@demo>", msg["Message-ID"]
            reply.set_content(f"{text}\n\nOn Mon, 23 Nov 2026 at 10:05, Acme Support wrote:\n{quoted}\n")
            if attach is not None:
                reply.add_attachment(attach[1], "application", "pdf", filename=attach[0])
            return reply.as_bytes()

        def last_to(address: str, tag: str = "[ACME #1]") -> ReceivedMail:
            return next(m for m in reversed(sink.received)
                        if address in m.envelope_to and tag in str(m.message["Subject"]))

        typer.echo("== the rules made ticket #1 a high-priority modem request; round-robin gave it to Ali, "
                   "whose notification carries the customer's screenshot ==\n")
        notification = last_to("ali@acme.example")
        typer.echo(f"   Ali's notification: {notification.message['Subject']}   [files: {_files(notification)}]\n")
        typer.echo("== Ali answers from his mail client, the setup guide attached ==\n")
        ali = "Ali Veli <ali@acme.example>"
        guide = b"%PDF-1.4\n% Modem kurulum kilavuzu\n%%EOF\n"
        deliver(answer(notification, ali, "", "Merhaba Çiğdem Hanım,\nModemi 30 saniye kapatıp açar mısınız? "
                       "Kılavuz ekte.\n\nAli", attach=("kılavuz.pdf", guide)), "Ali's reply")
        relay = next(m for m in reversed(sink.received) if " via " in str(m.message["From"]))
        typer.echo("   what the customer got (the quoted notification stripped):")
        _show(relay)
        deliver(answer(relay, "cigdem.yilmaz@musteri.com.tr", "", "Denedim, şimdi çalışıyor. Teşekkürler!"),
                "the customer's answer")
        deliver(answer(last_to("ali@acme.example"), ali, "[status=resolved]",
                       "Root-Cause: modem firmware hung\nResolution: power cycle\nTime: 25m\n"
                       "Cost: 150 TRY; a new power adapter"), "Ali resolves it (with his time and a cost)")
        resolved = last_to("cigdem.yilmaz@musteri.com.tr")
        typer.echo("   the resolved mail asks the customer (one-click answers):")
        _show(resolved)
        deliver(answer(resolved, "cigdem.yilmaz@musteri.com.tr", "", "Çok teşekkürler, artık çalışıyor!"),
                "the customer says thank you (read as thanks: the ticket stays resolved, Ali sees it)")
        deliver(click(resolved, "cigdem.yilmaz@musteri.com.tr", "satisfied"), "the customer clicks 'satisfied'")
        deliver(answer(last_to("ali@acme.example", "[ACME #2]"), ali, "[priority=urgent]", "Raising this.")
                .replace(b"[ACME #2]", b"[ACME #3]"), "Ali's command on #2's reply address, with #3's tag")
        deliver(answer(last_to("ali@acme.example"), "Ali Veli <ali@acme.example>", "[priority=hgh]", "x")
                .replace(b"To: support+", b"To: nobody+"), "a forged command (not the signed address)")

        typer.echo("== a customer uses the complaint form on the web (the page in Turkish, a PDF attached; "
                   "answered as the complaints mailbox) ==\n")
        _web_form(engine, config, sink)

        with Session(engine) as session:
            tickets = [ticket_dict(session, t) for t in session.exec(select(Ticket).order_by(col(Ticket.number)))]
            first = ticket_detail(session, session.exec(select(Ticket).where(Ticket.number == 1)).one())
        typer.echo("tickets:")
        for t in tickets:
            typer.echo(f"  #{t['number']}  {t['state']:<8} {t['priority']:<6} {t['assignee'] or '-':<17} "
                       f"{t['requester']:<30} {t['subject']}")
        typer.echo(f"\n#1's ledger: {first['time_minutes']} min worked, cost {first['cost']}")  # the totals text
        typer.echo(f"\nsent mail is in {sent_dir}; look around with:\n"
                   f"  ticketd --config {work / 'ticketd.toml'} tickets show 1")
    return 0


def _web_form(engine: sa.Engine, config: Config, sink: SmtpSink) -> None:
    """The form served as ``ticketd run`` serves it, posted as a browser posts it; the mail it becomes is
    processed like any other."""
    import requests  # here: only the demo's form step needs an HTTP client

    assert config.webform is not None
    server = WebServer(engine, config, lambda: None).start()
    try:
        url = f"http://{config.webform.listen}/"
        page = requests.get(url, headers={"Accept-Language": "tr-TR,tr;q=0.9"}, timeout=10).text
        token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
        title = page.split("<h1>", 1)[1].split("</h1>", 1)[0]
        typer.echo(f"   GET {url} -> the page \"{title}\" (Accept-Language: tr)")
        fields = {"token": token, "lang": "tr", "name": "Deniz Arslan", "email": "deniz.arslan@example.com.tr",
                  "company": "Arslan Gıda", "type": "complaint", "category": "billing/invoice",
                  "subject": "Fatura iki kez kesildi", "description": "Kasım faturası iki kez tahsil edildi.",
                  "website": ""}
        posted = requests.post(f"{url}?lang=tr", data=fields, timeout=30,
                               files=[("attachments", ("dekont.pdf", b"%PDF-1.4\n% dekont\n%%EOF\n",
                                                       "application/pdf"))])
        answer = posted.text.split('id="result">', 1)[1].split("<", 1)[0]
        typer.echo(f"   POST -> {posted.status_code}: {answer}")
    finally:
        server.stop()
    with Session(engine) as session:
        row_id = session.exec(select(Inbound.id).where(Inbound.channel == "web")).one()
    assert row_id is not None
    outcome = pipeline.process_pending(engine, config, [row_id])[0]
    mark = len(sink.received)
    outbox.send_due(engine, config)
    with Session(engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == outcome.ticket_number)).one()
        typer.echo(f"<- the form: {outcome.status}, ticket #{ticket.number} (source {ticket.source}, type "
                   f"{ticket.type}, category {ticket.category})")
    _list_sent(sink.received[mark:])
