"""A day at Acme, end to end: the real daemon (`ticketd run`, IMAP IDLE on a real Dovecot) under a clock the test
moves through one business day and into the next morning, on SQLite and on PostgreSQL, with three agents in two
groups, a manager and ten customers writing in Turkish and English. Every mail goes in as a mail client or a
customer would send it (appended to the support inbox) and every mail out is read from a real SMTP server.

Each step asserts what the people concerned received; at the end the test prints every mail each person
received, in order, as one transcript (run with ``-s`` to read it).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fakeclock import Clock, require_libfaketime

from conftest import TICKETD, Mailbox, Site, body_of, client_mail, reply_to, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import ReceivedMail, SmtpSink

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IST = ZoneInfo("Europe/Istanbul")
ALI, CAN, DENIZ, AYSE = "ali@acme.example", "can@acme.example", "deniz@acme.example", "ayse@acme.example"
CIGDEM, SELIN, ZEYNEP = "cigdem@musteri.com.tr", "selin@musteri.com.tr", "zeynep@ozturk.com.tr"
HAKAN, EMRE, BORA, KEMAL = "hakan@ornek.com.tr", "emre@kafe.com.tr", "bora@example.net", "kemal@example.com"
JANE, OLGA, PAUL = "jane@example.org", "olga@example.de", "paul@example.co.uk"
MURAT = "murat@ozturk.com.tr"  # Zeynep's manager, copied in by the agent
AGENTS = (ALI, CAN, DENIZ, AYSE)
CUSTOMERS = (CIGDEM, SELIN, ZEYNEP, HAKAN, EMRE, BORA, KEMAL, JANE, OLGA, PAUL)
NAMES = {ALI: "Ali Veli", CAN: "Can Öz", DENIZ: "Deniz Ak", AYSE: "Ayşe Demir", CIGDEM: "Çiğdem Yılmaz",
         SELIN: "Selin Kara", ZEYNEP: "Zeynep Arslan", HAKAN: "Hakan Şahin", EMRE: "Emre Koç", BORA: "Bora Tan",
         KEMAL: "Kemal Er", JANE: "Jane Roe", OLGA: "Olga Berg", PAUL: "Paul Smith", MURAT: "Murat Arslan"}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + secrets.token_bytes(3000)
PDF = b"%PDF-1.4\n" + secrets.token_bytes(40_000) + b"\n%%EOF\n"
CUSTOMERS_CSV = """email,name,company,language,phone,domains
cigdem@musteri.com.tr,Çiğdem Yılmaz,Müşteri A.Ş.,tr,,musteri.com.tr
selin@musteri.com.tr,Selin Kara,Müşteri A.Ş.,tr,,
zeynep@ozturk.com.tr,Zeynep Arslan,Öztürk İnşaat,tr,,ozturk.com.tr
"""


def at(hour: int, minute: int = 0, day: int = 9) -> datetime:
    """A moment of Wednesday 9 December 2026 (day 10: the next morning) in Istanbul."""
    return datetime(2026, 12, day, hour, minute, tzinfo=IST)


def kind(mail: ReceivedMail) -> str:
    return str(mail.message["X-Ticketd-Kind"])


def mail(sender: str, subject: str, text: str, *, to: str = "support@acme.example",
         files: tuple[tuple[str, str, bytes], ...] = (), image: bytes | None = None,
         charset: str = "utf-8") -> bytes:
    """A new mail as a customer's client writes it (a screenshot shown inline, files attached)."""
    if charset != "utf-8":  # an old client: its own charset, 8-bit body, RFC 2047 words in the header
        name, title = (Header(value, charset).encode() for value in (NAMES.get(sender, ""), subject))
        head = (f"From: {name} <{sender}>\r\nTo: {to}\r\nSubject: {title}\r\n"
                f"Message-ID: {make_msgid(domain='client.example')}\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
        return head.encode("ascii") + text.replace("\n", "\r\n").encode(charset)
    return client_mail(f"{NAMES.get(sender, '')} <{sender}>", subject, text, to=to, files=files, image=image)


def answer(to: ReceivedMail, sender: str, text: str, suffix: str = "", *, subject: str | None = None,
           files: tuple[tuple[str, str, bytes], ...] = ()) -> bytes:
    """A reply from a mail client: to the Reply-To, threaded, the original quoted; files attached if any."""
    raw = reply_to(to, f"{NAMES.get(sender, '')} <{sender}>", text, subject_suffix=suffix)
    if subject is not None:
        old = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject: "))
        raw = raw.replace(old, b"Subject: " + subject.encode(), 1)
    if not files:
        return raw
    msg = EmailMessage()
    head, _, _ = raw.partition(b"\r\n\r\n")
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(": ")
        if name.lower() not in ("mime-version", "content-type", "content-transfer-encoding"):
            msg[name] = value
    msg.set_content(text)
    for name, ctype, data in files:
        msg.add_attachment(data, *ctype.split("/"), filename=name)
    return msg.as_bytes()


@dataclass
class Day:
    """The helpdesk running, the test's hands on it: mail in, the clock, and what each person received."""

    site: Site
    mailbox: Mailbox
    sink: SmtpSink
    clock: Clock
    daemon: subprocess.Popen[bytes]
    log: Path
    inbound: int = 0
    marks: dict[str, int] = field(default_factory=dict)

    def at(self, moment: datetime) -> None:
        self.clock.set(moment)

    def send(self, raw: bytes) -> None:
        """Into the support inbox, and wait until ticketd has processed it and sent all it had to send."""
        self.inbound += 1
        self.mailbox.append(raw)
        message_id = next(line.split(b":", 1)[1].strip().decode() for line in raw.split(b"\r\n") + raw.split(b"\n")
                          if line.lower().startswith(b"message-id:"))
        self.wait(f"ticketd to process {message_id}", lambda: self.processed(message_id))
        self.settle()

    def processed(self, message_id: str) -> bool:
        with self.site.engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM inbound WHERE message_id = :m AND status != 'new'"),
                                {"m": message_id}).scalar_one() > 0

    def settle(self) -> None:
        """Nothing left to process, nothing due left unsent (mail scheduled for later may wait)."""
        now = self.clock.now().replace(tzinfo=None)

        def idle() -> bool:
            with self.site.engine.connect() as conn:
                waiting = conn.execute(sa.text("SELECT count(*) FROM inbound WHERE status = 'new'")).scalar_one()
                due = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE status IN ('queued', 'failed') "
                                           "AND next_attempt_at <= :now"), {"now": now}).scalar_one()
                sent = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE status = 'sent'")).scalar_one()
            return waiting == 0 and due == 0 and sent == len(self.sink.received)
        self.wait("ticketd to send what it queued", idle)

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 60) -> None:
        wait_for(what, done, self.daemon, timeout=timeout, log=self.log)

    def received(self, who: str) -> list[ReceivedMail]:
        return [m for m in self.sink.received if who in m.envelope_to]

    def new(self, who: str) -> list[ReceivedMail]:
        """What ``who`` received since the last call for them."""
        mails = self.received(who)
        seen, self.marks[who] = self.marks.get(who, 0), len(mails)
        return mails[seen:]

    def new_kinds(self, *people: str) -> dict[str, list[str]]:
        return {who: [kind(m) for m in self.new(who)] for who in people}

    def last(self, who: str, want: str, number: int | None = None) -> ReceivedMail:
        found = [m for m in self.received(who) if kind(m) == want
                 and (number is None or f"#{number}]" in str(m.message["Subject"]))]
        assert found, (who, want, number, [(kind(m), m.message["Subject"]) for m in self.received(who)])
        return found[-1]

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """An operator's command, on the day's clock like the daemon."""
        return self.site.cli(*args, env=self.clock.env())

    def ticket(self, number: int) -> dict[str, Any]:
        proc = self.cli("tickets", "show", str(number), "--json")
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    def number_of(self, mail: ReceivedMail) -> int:
        subject = str(mail.message["Subject"])
        return int(subject.split("#", 1)[1].split("]", 1)[0])

    def transcript(self) -> str:
        lines = ["", "=" * 100, "A day at Acme: every mail each person received, in order", "=" * 100]
        for who in (*CUSTOMERS, MURAT, *AGENTS):
            mails = self.received(who)
            lines.append(f"\n##### {NAMES[who]} <{who}>: {len(mails)} mails")
            for m in mails:
                sent = datetime.strptime(str(m.message["Date"]), "%a, %d %b %Y %H:%M:%S %z").astimezone(IST)
                files = [p.get_filename() for p in m.message.walk() if p.get_filename()]
                lines.append(f"\n--- {sent:%a %H:%M}  [{kind(m)}]  From: {m.message['From']}")
                lines.append(f"    Subject: {m.message['Subject']}")
                if m.message["Cc"]:
                    lines.append(f"    Cc: {m.message['Cc']}")
                if files:
                    lines.append(f"    Files: {', '.join(files)}")
                lines.extend("    | " + line for line in body_of(m).rstrip().splitlines())
        return "\n".join(lines)


@pytest.fixture
def acme(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> Any:
    require_libfaketime()
    site = live_site
    site.sections["helpdesk"]["templates_dir"] = str(tmp_path / "templates")
    (tmp_path / "templates" / "replies").mkdir(parents=True)
    (tmp_path / "templates" / "replies" / "modem-reset.txt.j2").write_text(
        "Modeminizi fabrika ayarlarına döndürmek için arkasındaki RESET düğmesine 10 saniye basılı tutun.\n",
        encoding="utf-8")
    site.sections["imap"].update(idle=True, poll_seconds=300)
    site.sections["sla"] = {"sweep_seconds": 1, "business_hours": {d: "09:00-18:00" for d in
                                                                    ("mon", "tue", "wed", "thu", "fri")}}
    site.sections["categories"] = {"tree": ["hardware/modem", "hardware/printer", "billing/invoice"]}
    site.sections["groups"] = [{"name": "network", "policy": "round-robin"},
                               {"name": "billing", "policy": "manual"}]
    site.sections["rules"] = [
        {"name": "complaints", "match": {"subject": "(?i)şikayet|şikâyet|complaint"},
         "set": {"type": "complaint", "priority": "high"}, "continue": True},
        {"name": "network", "match": {"body": "(?i)modem|internet|bağlantı|connection"},
         "set": {"category": "hardware/modem", "group": "network"}},
        {"name": "billing", "match": {"body": "(?i)fatura|invoice"},
         "set": {"category": "billing/invoice", "group": "billing"}},
    ]
    site.sections["digest"] = {"schedule": "30 8 * * 1-5"}
    site.write()
    for email, role, groups in ((ALI, "agent", ["network"]), (CAN, "agent", ["network", "billing"]),
                                (DENIZ, "agent", ["billing"]), (AYSE, "manager", [])):
        args = ["agents", "add", email, "--name", NAMES[email], "--role", role]
        assert site.cli(*args, *(a for g in groups for a in ("--group", g))).returncode == 0
    (tmp_path / "customers.csv").write_text(CUSTOMERS_CSV, encoding="utf-8")
    assert site.cli("customers", "import", str(tmp_path / "customers.csv")).returncode == 0

    clock = Clock(tmp_path / "faketime")
    clock.set(at(8, 55))
    log = tmp_path / "daemon.log"
    with log.open("wb") as err:
        daemon = subprocess.Popen([str(TICKETD), "--config", str(site.config_path), "run"],
                                  env=clock.env(), stdout=subprocess.DEVNULL, stderr=err)
    day = Day(site, mailbox, smtp_sink, clock, daemon, log)
    day.wait("the daemon to start", lambda: '"imap.connected"' in log.read_text() or "imap.idle" in log.read_text())
    try:
        yield day
    finally:
        print(day.transcript())
        assert stop_daemon(daemon) == 0, log.read_text()[-3000:]


def test_a_day_at_the_helpdesk(acme: Day) -> None:
    day = acme

    # 09:00 Çiğdem complains about her modem, with a screenshot; the rules route it to network, round-robin to Ali
    day.at(at(9, 0))
    day.send(mail(CIGDEM, "Şikayet: modem sürekli kopuyor", "Merhaba, modemimin bağlantısı sürekli kopuyor. "
                  "Ekran görüntüsü ekte.", image=PNG))
    assert day.new_kinds(CIGDEM, ALI) == {CIGDEM: ["received", "assigned"], ALI: ["agent_new"]}
    cigdem = day.number_of(day.last(CIGDEM, "received"))
    note = day.last(ALI, "agent_new", cigdem)
    [screenshot] = [p for p in note.message.walk() if p.get_filename() == "ekran.png"]
    assert screenshot.get_payload(decode=True) == PNG and screenshot.get_content_disposition() == "inline"
    assert day.last(CIGDEM, "received").message["Content-Language"] == "tr"

    # 09:05 Jane (a stranger) asks about her printer: nobody's group, so every agent hears; Ali takes it
    day.at(at(9, 5))
    day.send(mail(JANE, "Printer prints blank pages", "Hello, our printer only prints blank pages since today."))
    jane = day.number_of(day.last(JANE, "received"))
    assert day.new_kinds(JANE, ALI, CAN, DENIZ, AYSE) == {JANE: ["received"], ALI: ["agent_new"], CAN: ["agent_new"],
                                                          DENIZ: ["agent_new"], AYSE: ["agent_new"]}
    day.send(answer(day.last(ALI, "agent_new", jane), ALI, "", "[take]"))
    assert day.new_kinds(JANE, CAN, DENIZ) == {JANE: ["assigned"], CAN: [], DENIZ: []}

    # 09:10 a Turkish stranger, ISO-8859-9, about an invoice: answered in Turkish; billing is a manual group,
    # so both its agents hear of it, and Deniz takes it
    day.at(at(9, 10))
    day.send(mail(HAKAN, "Faturamda hata var", "Merhaba, bu ay faturam iki kat geldi. Yardımcı olur musunuz?",
                  charset="iso-8859-9"))
    received = day.last(HAKAN, "received")
    assert received.message["Subject"].endswith("Talebiniz alındı: Faturamda hata var")
    assert received.message["Content-Language"] == "tr" and "Sayın Hakan Şahin," in body_of(received)
    hakan = day.number_of(received)
    assert day.new_kinds(HAKAN, CAN, DENIZ, ALI) == {HAKAN: ["received"], CAN: ["agent_new"],
                                                     DENIZ: ["agent_new"], ALI: []}
    day.send(answer(day.last(DENIZ, "agent_new", hakan), DENIZ, "", "[take]"))
    assert day.new_kinds(HAKAN) == {HAKAN: ["assigned"]}
    assert "Deniz Ak adlı çalışanımıza atandı" in str(day.last(HAKAN, "assigned").message["Subject"])

    # 09:15 Ali answers Jane with the guide attached: the PDF reaches her
    day.at(at(9, 15))
    day.new(JANE)
    day.send(answer(day.last(ALI, "agent_new", jane), ALI, "The guide is attached; see page 4.",
                    files=(("kılavuz.pdf", "application/pdf", PDF),)))
    [relay] = day.new(JANE)
    [guide] = [p for p in relay.message.walk() if p.get_filename() == "kılavuz.pdf"]
    assert guide.get_payload(decode=True) == PDF and "Ali Veli via Acme Support" in str(relay.message["From"])

    # 09:20 Çiğdem's ticket goes back and forth between Ali and Can; she hears nothing until it settles
    day.at(at(9, 20))
    day.new(CIGDEM)
    day.send(answer(note, ALI, "Can, could you look at the line?", "[note; assign=can]"))
    can_note = day.last(CAN, "agent_new", cigdem)
    assert "Ali Veli handed [ACME" in body_of(can_note) and "could you look at the line" in body_of(can_note)
    day.send(answer(can_note, CAN, "Line is fine; back to you.", "[note; assign=ali]"))
    day.send(answer(note, ALI, "", "[assign=can]"))
    day.send(answer(day.last(CAN, "agent_new", cigdem), CAN, "", "[assign=ali]"))
    assert day.new(CIGDEM) == []  # back with Ali, whom she heard of: not a word about the shuffle
    assert [kind(m) for m in day.new(ALI)].count("agent_unassigned") == 0  # he handed it away himself
    resolving = ("Root-Cause: faulty modem power supply\nAction-Plan: replace the supply of the whole batch\n"
                 "Resolution: the power supply was replaced\n\nÇiğdem Hanım, adaptörü değiştirdik.")
    day.send(answer(note, ALI, resolving, "[resolve]"))
    [resolved] = day.new(CIGDEM)
    assert kind(resolved) == "resolved" and "adaptörü değiştirdik" in body_of(resolved)

    # 09:40 "teşekkürler": the ticket stays resolved, no dissatisfaction, Ali sees it
    day.at(at(9, 40))
    day.send(answer(resolved, CIGDEM, "Çok teşekkürler, artık çalışıyor!"))
    assert day.new_kinds(CIGDEM, AYSE) == {CIGDEM: [], AYSE: []}
    assert "Customer thanks you" in str(day.last(ALI, "agent_update", cigdem).message["Subject"])
    assert (day.ticket(cigdem)["state"], day.ticket(cigdem)["satisfaction"]) == ("resolved", None)

    # 10:00 Selin's internet is slow (network, next in turn: Can); Can resolves; at 10:30 "hâlâ çalışmıyor"
    day.at(at(10, 0))
    day.send(mail(SELIN, "İnternet çok yavaş", "İnternet bağlantımız sabahtan beri çok yavaş."))
    selin = day.number_of(day.last(SELIN, "received"))
    assert day.ticket(selin)["assignee"] == CAN
    day.send(answer(day.last(CAN, "agent_new", selin), CAN, "Hattınızı yeniledik.", "[resolve]"))
    day.at(at(10, 30))
    day.new(SELIN)
    day.send(answer(day.last(SELIN, "resolved"), SELIN, "Maalesef hâlâ çalışmıyor."))
    assert day.new_kinds(SELIN) == {SELIN: ["reopened"]}
    assert "Customer not satisfied" in str(day.last(AYSE, "agent_reopened", selin).message["Subject"])
    assert (day.ticket(selin)["state"], day.ticket(selin)["satisfaction"]) == ("open", "not-satisfied")

    # 10:45 Bora phones Can; Can opens the ticket from his own address: triaged (modem → network), assigned,
    # acknowledged
    day.at(at(10, 45))
    day.send(mail(CAN, "list", ""))
    own = parseaddr(str(day.last(CAN, "agent_list").message["Reply-To"]))[1]
    day.send(mail(CAN, f"Modem ışıkları yanmıyor [customer={BORA}; source=phone]",
                  "Bora Bey aradı: modemin ışıkları hiç yanmıyor.", to=own))
    bora = day.number_of(day.last(BORA, "received"))
    phone = day.ticket(bora)
    assert (phone["source"], phone["category"], phone["group"]) == ("phone", "hardware/modem", "network")
    assert [kind(m) for m in day.received(BORA)] == ["received", "assigned"]
    assert day.last(phone["assignee"], "agent_new", bora)

    # 11:00 Emre and Olga report the same outage; Olga's ticket is merged into Emre's; neither sees the other
    day.at(at(11, 0))
    day.send(mail(EMRE, "İnternet yok", "Kafede internet bağlantısı tamamen gitti."))
    day.send(mail(OLGA, "No internet", "Our office connection is down since 10:50."))
    emre, olga = day.number_of(day.last(EMRE, "received")), day.number_of(day.last(OLGA, "received"))
    olga_agent = day.ticket(olga)["assignee"]
    day.send(answer(day.last(olga_agent, "agent_new", olga), olga_agent, "Same outage as Emre's.",
                    f"[note; merge=#{emre}]"))
    emre_agent = day.ticket(emre)["assignee"]
    day.send(answer(day.last(emre_agent, "agent_new", emre), emre_agent, "Emre Bey, arıza giderildi."))
    day.send(answer(day.last(OLGA, "received"), OLGA, "Any news? We cannot work."))
    olga_update = day.last(emre_agent, "agent_update", olga)
    assert f"(merged into [ACME #{emre}])" in body_of(olga_update)
    day.send(answer(olga_update, emre_agent, "Olga, the outage is fixed; please restart your router."))
    assert [kind(m) for m in day.received(OLGA)][-1] == "agent-reply"
    for who, other in ((EMRE, OLGA), (OLGA, EMRE)):
        for m in day.received(who):
            assert other.encode() not in m.raw and NAMES[other].split()[0].encode() not in m.raw, (who, m.raw[:300])

    # 11:30 Zeynep asks; Deniz copies her manager in and sends a canned reply; a note asks Ali with @ali
    day.at(at(11, 30))
    day.send(mail(ZEYNEP, "Modem kurulumu", "Yeni modemi nasıl kuracağız? Fatura adresimiz de değişti."))
    zeynep = day.number_of(day.last(ZEYNEP, "received"))
    zeynep_agent = day.ticket(zeynep)["assignee"]
    day.send(answer(day.last(zeynep_agent, "agent_new", zeynep), zeynep_agent, "Zeynep Hanım, adımlar aşağıda.",
                    f"[cc={MURAT}; reply=modem-reset]"))
    relay = day.received(ZEYNEP)[-1]
    assert MURAT in relay.envelope_to and "RESET düğmesine 10 saniye" in body_of(relay)
    day.send(answer(day.last(zeynep_agent, "agent_new", zeynep), zeynep_agent,
                    "@deniz fatura adresini sen günceller misin?", "[note]"))
    assert "fatura adresini sen günceller misin?" in body_of(day.last(DENIZ, "agent_mention", zeynep))

    # 12:00 Paul writes; Ali answers from Jane's notification but types Paul's tag: refused, both named
    day.at(at(12, 0))
    day.send(mail(PAUL, "Invoice copy", "Could you send me a copy of my November invoice?"))
    paul = day.number_of(day.last(PAUL, "received"))
    before = (day.ticket(jane)["priority"], day.ticket(paul)["priority"])
    wrong = answer(day.last(ALI, "agent_new", jane), ALI, "Urgent one.",
                   subject=f"Re: [ACME #{paul}] Invoice copy [priority=urgent]")
    day.send(wrong)
    refusal = day.last(ALI, "command_result")
    assert f"reply address of [ACME #{jane}] but its subject names [ACME #{paul}]" in " ".join(
        body_of(refusal).split())
    assert (day.ticket(jane)["priority"], day.ticket(paul)["priority"]) == before

    # 13:00 Paul's invoice copy waits in billing (manual: nobody has it); Deniz sees it is about his line and
    # hands it to network, whose round-robin picks the next agent and tells him; Paul hears the name
    day.at(at(13, 0))
    assert day.ticket(paul)["assignee"] is None
    day.send(answer(day.last(DENIZ, "agent_new", paul), DENIZ, "Line question, for network.",
                    "[note; assign=network]"))
    network_agent = day.ticket(paul)["assignee"]
    assert network_agent in (ALI, CAN)
    assert "Deniz Ak handed" in body_of(day.last(network_agent, "agent_new", paul))
    assert NAMES[network_agent] in str(day.last(PAUL, "assigned").message["Subject"])

    # 14:00 Kemal's first mail looks like spam; Ali marks it; Kemal's next mail is dropped; Ali reopens (unblocks)
    day.at(at(14, 0))
    day.send(mail(KEMAL, "Kazanmak için tıklayın", "Merhaba, bu bağlantıya tıklayın; internet paketimi "
                  "yükseltmek istiyorum."))
    kemal = day.number_of(day.last(KEMAL, "received"))
    kemal_agent = day.ticket(kemal)["assignee"] or ALI
    kemal_note = day.last(kemal_agent, "agent_new", kemal)
    day.send(answer(kemal_note, kemal_agent, "", "[spam]"))
    day.send(answer(day.last(KEMAL, "received"), KEMAL, "Neden cevap yok?"))
    assert day.ticket(kemal)["state"] == "closed" and len(day.ticket(kemal)["messages"]) == 1  # dropped
    day.send(answer(kemal_note, kemal_agent, "Kemal Bey, yanlışlıkla spam işaretlenmiş, özür dileriz.", "[reopen]"))
    assert ("sender_unblocked", None) in [(e["what"], e["new"]) for e in day.ticket(kemal)["events"]]
    day.send(answer(day.last(KEMAL, "received"), KEMAL, "Tamam, paket yükseltmesi için ne yapmalıyım?"))
    assert len(day.ticket(kemal)["messages"]) == 3

    # 15:00 Deniz leaves: his open ticket goes back to billing (manual: its agents are told); Hakan's next mail
    # reaches them, not Deniz
    day.at(at(15, 0))
    day.new_kinds(CAN, DENIZ)
    proc = day.cli("agents", "deactivate", DENIZ, "--reassign")
    assert proc.returncode == 0, proc.stderr
    assert f"#{hakan} -> group billing" in proc.stdout.decode()
    day.settle()
    assert day.ticket(hakan)["assignee"] is None
    assert "Handed to your group" in str(day.last(CAN, "agent_new", hakan).message["Subject"])
    day.send(answer(day.last(HAKAN, "received"), HAKAN, "Faturam düzeltildi mi?"))
    assert day.new_kinds(CAN, DENIZ, HAKAN) == {CAN: ["agent_new", "agent_update"], DENIZ: [], HAKAN: []}

    # 16:00 Ali asks for his list
    day.at(at(16, 0))
    day.send(mail(ALI, "list", ""))
    listing = day.last(ALI, "agent_list")
    assert f"[ACME #{jane}] Printer prints blank pages" in body_of(listing)

    # 08:30 the next morning: the digest for every agent at work
    day.at(at(8, 29, day=10))
    time.sleep(1.5)
    day.new_kinds(*AGENTS)
    day.at(at(8, 30, day=10))
    day.wait("the morning digest", lambda: all(any(kind(m) == "agent_list" and "morning" in str(m.message["Subject"])
                                                   for m in day.received(a)) for a in (ALI, CAN, AYSE)))
    day.settle()
    assert not any(kind(m) == "agent_list" for m in day.new(DENIZ))

    # The day in figures: at least 60 mails in and out, nothing held back, nothing failed
    total = day.inbound + len(day.sink.received)
    assert total >= 60, total
    outbox = json.loads(day.cli("outbox", "list", "--json").stdout)
    assert not [o for o in outbox if o["status"] in ("suppressed", "failed", "dead")]
    inbound = json.loads(day.cli("inbound", "list", "--json").stdout)
    assert not [i for i in inbound if i["status"] == "failed"]
    print(f"\n{day.inbound} mails in, {len(day.sink.received)} mails out")
