"""Deterministic, realistic helpdesk mail for the end-to-end benchmark (tests/benchmarks/ingest.py).

``generate(n, seed)`` returns a directory of companies and customers (to import before the run) and ``n`` raw
messages: plain text and multipart/alternative HTML, some with small base64 PDF/PNG attachments, Turkish in
UTF-8 and in ISO-8859-9 (RFC 2047 encoded subjects and names), English, replies threaded by In-Reply-To and
References to earlier mails of the same run, from known customers, people of known companies' domains and
unknown senders. Every message is built by hand (no random MIME boundaries), so the same seed gives the same
bytes.
"""

from __future__ import annotations

import base64
import csv
import html
import quopri
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

SUPPORT = "support@acme.example"
CRLF = "\r\n"
TR_TZ = timezone(timedelta(hours=3))


@dataclass(frozen=True)
class Company:
    name: str
    domain: str
    contract_until: date | None
    in_csv: bool  # imported with its customers; else added with `ticketd companies add`


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    language: str  # "tr" | "en"
    company: Company | None
    known: bool  # a row of the customers CSV


@dataclass
class Mail:
    index: int
    message_id: str
    sender: Person
    subject: str
    text: str
    raw: bytes
    kind: str  # plain-utf8 | plain-latin5 | html | attachment | reply
    parent: str | None  # Message-ID this one answers
    references: tuple[str, ...]
    sent_at: datetime

    @property
    def expects_ack(self) -> bool:
        """A new ticket is acknowledged to its requester; a reply joining a ticket is not."""
        return self.parent is None


@dataclass
class World:
    companies: list[Company]
    people: list[Person]  # known customers, then people of company domains, then unknown senders

    def write_customers_csv(self, path: Path) -> int:
        known = [p for p in self.people if p.known]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["email", "name", "company", "language", "phone", "domains"])
            for i, p in enumerate(known):
                company = p.company.name if p.company else ""
                domains = p.company.domain if p.company and p.company.in_csv else ""
                writer.writerow([p.email, p.name, company, p.language, f"+90 212 555 {i % 10000:04d}", domains])
        return len(known)


# --- vocabulary -------------------------------------------------------------------------------------------

FIRST_TR = ["Ahmet", "Ayşe", "Çiğdem", "Şükrü", "Gülüş", "İsmail", "Öznur", "Ümit", "Ilgın", "Barış", "Ceren",
            "Doğan", "Ebru", "Fırat", "Gökhan", "Hülya", "Kübra", "Mehmet", "Nazlı", "Oğuz", "Pınar", "Rüya",
            "Selçuk", "Tuğba", "Yağmur", "Zeynep", "Emre", "Sevgi", "Çağlar", "Işıl"]
LAST_TR = ["Yılmaz", "Öztürk", "Şahin", "Çelik", "Doğan", "Kılıç", "Aydın", "Özdemir", "Arslan", "Güneş",
           "Yıldız", "Erdoğan", "Koç", "Kurt", "Özkan", "Şimşek", "Aksoy", "Tekin", "Karaca", "Uçar"]
FIRST_EN = ["John", "Emily", "Michael", "Sarah", "David", "Laura", "James", "Anna", "Robert", "Julia", "Peter",
            "Maria", "Thomas", "Helen", "Daniel", "Sophie"]
LAST_EN = ["Smith", "Miller", "Brown", "Taylor", "Wilson", "Clark", "Walker", "Young", "King", "Baker"]
ASCII = str.maketrans("çğıöşüÇĞİÖŞÜ", "cgiosuCGIOSU")

COMPANIES = [
    ("Öztürk İnşaat A.Ş.", "ozturk-insaat.com.tr"), ("Müşteri Lojistik Ltd. Şti.", "musteri-lojistik.com.tr"),
    ("Güneş Enerji Sistemleri", "gunes-enerji.com.tr"), ("Çağdaş Tekstil San.", "cagdastekstil.com.tr"),
    ("Işık Hastanesi", "isikhastanesi.com.tr"), ("Ege Gıda Pazarlama", "egegida.com.tr"),
    ("Northwind Traders", "northwind.example"), ("Contoso Istanbul", "contoso-ist.example"),
    ("Boğaziçi Danışmanlık", "bogazici-danismanlik.com.tr"), ("Anadolu Sigorta Acentesi", "anadolu-acente.com.tr"),
    ("Fabrikam Europe", "fabrikam.example"), ("Karadeniz Nakliyat", "karadeniznakliyat.com.tr"),
]
FREEMAIL = ["posta.example", "webmail.example", "mailbox.example", "ev-internet.example"]

SUBJECTS_TR = ["Modem sürekli bağlantı koparıyor", "Fatura ödemesi hakkında", "İnternet hızı çok düşük",
               "Şifre sıfırlama talebi", "Kurulum randevusu", "Kablo hasarı - acil", "Sözleşme yenileme",
               "E-fatura görüntülenemiyor", "Yazıcı ağda görünmüyor", "VPN bağlantı sorunu",
               "Çağrı merkezine ulaşılamıyor", "Öğleden sonra kesinti yaşadık", "Şubat ayı faturası hatalı",
               "Yeni şube için hat başvurusu", "Statik IP talebi", "Cihaz iadesi"]
SUBJECTS_EN = ["Modem keeps dropping the connection", "Question about our invoice", "Slow internet since Monday",
               "Password reset request", "Installation appointment", "Damaged cable - urgent",
               "Contract renewal", "Cannot open the e-invoice", "Printer not visible on the network",
               "VPN connection fails", "Outage this afternoon", "Wrong amount on the February invoice",
               "New line for our branch office", "Static IP request", "Returning the old device"]
SENTENCES_TR = [
    "Dün akşamdan beri modem bağlantısı her yarım saatte bir kopuyor.",
    "Işıklar yanıp sönüyor ve cihazı yeniden başlatmak da işe yaramıyor.",
    "Şubat ayı faturamı ödedim ama sistemde hâlâ borçlu görünüyorum.",
    "Lütfen kontrol edip bana dönüş yapar mısınız?",
    "Ofisimizde on iki kişi çalışıyor ve şu an hiçbirimiz internete erişemiyoruz.",
    "Teknik ekibin yarın öğleden önce gelmesi mümkün mü?",
    "Geçen hafta açtığım kayıtla ilgili henüz bir bilgi alamadım.",
    "Ekte ekran görüntüsünü ve son faturayı gönderiyorum.",
    "Çağrı merkezini üç kez aradım, her seferinde hat düştü.",
    "Sözleşmemiz ağustos ayında bitiyor, yenileme koşullarını öğrenmek istiyoruz.",
    "Hız testi sonuçları taahhüt edilen hızın yarısının altında çıkıyor.",
    "Bu sorun işimizi doğrudan etkiliyor, acil çözüm bekliyoruz.",
    "Şifremi unuttum; müşteri panelinde sıfırlama bağlantısı gelmiyor.",
    "Yeni şubemiz için ayrı bir hat ve statik IP adresi gerekiyor.",
    "Kablo, bahçedeki kazı çalışması sırasında hasar görmüş olabilir.",
]
SENTENCES_EN = [
    "Since yesterday evening the modem drops the connection every half hour.",
    "The lights keep blinking and restarting the device does not help.",
    "I paid the February invoice but the portal still shows an open balance.",
    "Could you please check and get back to me?",
    "Twelve people work in our office and none of us can reach the internet right now.",
    "Would it be possible for a technician to come tomorrow before noon?",
    "I have not heard anything about the request I opened last week.",
    "Please find the screenshot and the latest invoice attached.",
    "I called the call centre three times and the line dropped each time.",
    "Our contract ends in August and we would like to know the renewal terms.",
    "Speed tests show less than half of the promised bandwidth.",
    "This directly affects our business, we need a quick fix.",
    "I forgot my password and the reset link never arrives.",
    "Our new branch needs its own line and a static IP address.",
    "The cable may have been damaged by the digging work in the garden.",
]
REPLIES_TR = ["Sorun hâlâ devam ediyor, bu sabah yine bağlantı koptu.", "Bilgi için teşekkürler, bekliyorum.",
              "Teknisyen gelmedi, randevuyu teyit edebilir misiniz?", "İstediğiniz seri numarası: ZX-4471-Ğ."]
REPLIES_EN = ["The problem is still there, the connection dropped again this morning.",
              "Thanks for the update, I will wait.", "The technician did not come, can you confirm the slot?",
              "The serial number you asked for is ZX-4471-Q."]


# --- people -----------------------------------------------------------------------------------------------

def _person(rng: random.Random, domain: str, language: str, company: Company | None, known: bool,
            taken: set[str]) -> Person:
    first, last = (rng.choice(FIRST_TR), rng.choice(LAST_TR)) if language == "tr" else \
        (rng.choice(FIRST_EN), rng.choice(LAST_EN))
    local = f"{first}.{last}".translate(ASCII).lower()
    email = f"{local}@{domain}"
    n = 2
    while email in taken:
        email, n = f"{local}{n}@{domain}", n + 1
    taken.add(email)
    return Person(email, f"{first} {last}", language, company, known)


def make_world(rng: random.Random, known_customers: int = 240, domain_people: int = 120,
               unknown_people: int = 400) -> World:
    companies = []
    for i, (name, domain) in enumerate(COMPANIES):
        in_csv = i % 3 != 2  # every third company comes from `ticketd companies add`, without customers
        until = date(2027, 6, 30) if i % 4 else date(2025, 12, 31)  # some contracts have run out
        companies.append(Company(name, domain, until if not in_csv else None, in_csv))
    taken: set[str] = set()
    people = []
    csv_companies = [c for c in companies if c.in_csv]
    for i in range(known_customers):
        company = csv_companies[i % len(csv_companies)] if i % 6 else None  # some customers are individuals
        domain = company.domain if company else rng.choice(FREEMAIL)
        lang = "en" if domain.endswith(".example") and rng.random() < 0.7 else "tr"
        people.append(_person(rng, domain, lang, company, True, taken))
    for i in range(domain_people):  # not imported; recognised by their company's domain
        company = companies[i % len(companies)]
        lang = "en" if company.domain.endswith(".example") else "tr"
        people.append(_person(rng, company.domain, lang, company, False, taken))
    for _ in range(unknown_people):
        lang = "tr" if rng.random() < 0.6 else "en"
        people.append(_person(rng, rng.choice(FREEMAIL), lang, None, False, taken))
    return World(companies, people)


# --- encoding ---------------------------------------------------------------------------------------------

def _header(value: str, charset: str) -> str:
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        return Header(value, charset, maxlinelen=76).encode(linesep=CRLF)


def _address(person: Person, charset: str) -> str:
    return f"{_header(person.name, charset)} <{person.email}>"


def _body(text: str, charset: str, cte: str) -> tuple[str, bytes]:
    data = text.replace("\r\n", "\n").encode(charset)
    if cte == "quoted-printable":  # encoded on bare LF, or quopri would write every CR as =0D
        data = quopri.encodestring(data)
    elif cte == "base64":
        data = base64.encodebytes(data.replace(b"\n", b"\r\n"))
    return cte, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _part(content_type: str, charset: str, text: str, cte: str) -> bytes:
    cte, data = _body(text, charset, cte)
    head = f"Content-Type: {content_type}; charset={charset}{CRLF}Content-Transfer-Encoding: {cte}{CRLF}{CRLF}"
    return head.encode("ascii") + data


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"{CRLF}{CRLF}'.encode()]
    for part in parts:
        out.append(f"--{boundary}{CRLF}".encode() + part + CRLF.encode())
    out.append(f"--{boundary}--{CRLF}".encode())
    return b"".join(out)


def _attachment(rng: random.Random, language: str) -> bytes:
    if rng.random() < 0.55:
        name = rng.choice(["fatura_2026-02.pdf", "sözleşme ek-1.pdf", "hız_testi.pdf"] if language == "tr"
                          else ["invoice_2026-02.pdf", "contract annex 1.pdf", "speedtest.pdf"])
        data = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + \
            rng.randbytes(rng.randint(4_000, 60_000)) + b"\n%%EOF\n"
        ctype = "application/pdf"
    else:
        name = rng.choice(["ekran görüntüsü.png", "modem_ışıkları.png"] if language == "tr"
                          else ["screenshot.png", "modem lights.png"])
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(rng.randint(2_000, 40_000))
        ctype = "image/png"
    if name.isascii():
        disposition, ctype_name = f'attachment; filename="{name}"', f'; name="{name}"'
    else:  # RFC 2231, as current clients write it
        disposition, ctype_name = f"attachment; filename*=utf-8''{quote(name, safe='')}", ""
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = (f"Content-Type: {ctype}{ctype_name}{CRLF}Content-Disposition: {disposition}{CRLF}"
            f"Content-Transfer-Encoding: base64{CRLF}{CRLF}")
    return head.encode("ascii") + body


def _html(text: str, person: Person) -> str:
    paras = "".join(f"<p>{html.escape(p)}</p>\n" for p in text.split("\n\n") if p.strip())
    return ("<html><head><meta http-equiv=\"Content-Type\" content=\"text/html\"></head>\n"
            "<body style=\"font-family: Calibri, sans-serif; font-size: 11pt\">\n"
            f"{paras}<p style=\"color:#888888\">--<br>{html.escape(person.name)}"
            f"{'<br>' + html.escape(person.company.name) if person.company else ''}</p>\n</body></html>\n")


# --- messages ---------------------------------------------------------------------------------------------

def _text(rng: random.Random, person: Person, reply: bool) -> str:
    pool = SENTENCES_TR if person.language == "tr" else SENTENCES_EN
    opening = "Merhaba," if person.language == "tr" else "Hello,"
    lines = [rng.choice(REPLIES_TR if person.language == "tr" else REPLIES_EN)] if reply else []
    lines += rng.sample(pool, rng.randint(2 if reply else 3, 6 if reply else 10))
    paragraphs = [" ".join(lines[i:i + 3]) for i in range(0, len(lines), 3)]
    closing = "Teşekkürler, iyi çalışmalar." if person.language == "tr" else "Thanks and best regards,"
    sign = closing + "\n" + person.name + (f"\n{person.company.name}" if person.company else "")
    return opening + "\n\n" + "\n\n".join(paragraphs) + "\n\n" + sign + "\n"


def _quote(parent: Mail, language: str) -> str:
    who, when = f"{parent.sender.name} <{parent.sender.email}>", parent.sent_at.strftime("%d.%m.%Y %H:%M")
    intro = f"{when} tarihinde {who} şunu yazdı:" if language == "tr" else f"On {when}, {who} wrote:"
    return intro + "\n" + "\n".join("> " + line if line else ">" for line in parent.text.splitlines()) + "\n"


def build(index: int, rng: random.Random, sender: Person, parent: Mail | None, sent_at: datetime) -> Mail:
    latin5 = sender.language == "tr" and rng.random() < 0.4
    charset = "iso-8859-9" if latin5 else "utf-8"
    if parent is None:
        subject = rng.choice(SUBJECTS_TR if sender.language == "tr" else SUBJECTS_EN)
        if rng.random() < 0.3:
            subject += f" ({rng.randint(1000, 9999)})"
    else:
        prefix = rng.choice(["Ynt:", "YNT:", "Re:"] if sender.language == "tr" else ["Re:", "RE:"])
        subject = f"{prefix} {parent.subject}"
    text = _text(rng, sender, parent is not None)
    if parent is not None:
        text += "\n" + _quote(parent, sender.language)
    domain = sender.email.rsplit("@", 1)[1]
    message_id = f"<{rng.getrandbits(64):016x}.{index}@{domain}>"
    boundary = f"----=_Part_{index}_{rng.getrandbits(40):010x}"
    roll = rng.random()
    kind = "reply" if parent is not None else ("attachment" if roll < 0.15 else "html" if roll < 0.5 else
                                                "plain-latin5" if latin5 else "plain-utf8")
    plain_cte = rng.choice(["8bit", "quoted-printable"] + (["base64"] if charset == "utf-8" else []))
    if kind in ("plain-utf8", "plain-latin5") or (kind == "reply" and roll < 0.5):
        body = _part("text/plain", charset, text, plain_cte)
    else:
        alternative = _multipart("alternative", boundary + "_alt", [
            _part("text/plain", charset, text, plain_cte),
            _part("text/html", charset, _html(text, sender), "quoted-printable"),
        ])
        with_files = kind == "attachment" or (kind == "reply" and roll > 0.9)
        body = alternative if not with_files else _multipart(
            "mixed", boundary, [alternative] + [_attachment(rng, sender.language)
                                                for _ in range(1 if rng.random() < 0.7 else 2)])
    references = (*parent.references, parent.message_id)[-10:] if parent is not None else ()
    headers = [
        f"Return-Path: <{sender.email}>",
        f"Received: from mx.{domain} (mx.{domain} [192.0.2.{index % 250 + 1}]) by mx.acme.example with ESMTPS; "
        + format_datetime(sent_at),
        f"From: {_address(sender, charset)}",
        f"To: Acme Support <{SUPPORT}>",
        f"Subject: {_header(subject, charset)}",
        f"Date: {format_datetime(sent_at)}",
        f"Message-ID: {message_id}",
        *([f"In-Reply-To: {parent.message_id}", "References: " + f"{CRLF} ".join(references)]
          if parent is not None else []),
        "MIME-Version: 1.0",
        rng.choice(["User-Agent: Mozilla Thunderbird 128.3", "X-Mailer: Microsoft Outlook 16.0",
                    "X-Mailer: iPhone Mail (21F90)"]),
    ]
    raw = (CRLF.join(headers) + CRLF).encode("ascii") + body
    return Mail(index, message_id, sender, subject, text, raw, kind, parent.message_id if parent else None,
                references, sent_at)


def generate(n: int, seed: int = 1, reply_share: float = 0.2,
             colleague_share: float = 0.2) -> tuple[World, list[Mail]]:
    """``n`` messages in arrival order; replies only refer to earlier ones, and ``colleague_share`` of them come
    from a colleague of the requester (reply-all) instead of the requester."""
    rng = random.Random(seed)
    world = make_world(rng)
    known = [p for p in world.people if p.known]
    others = [p for p in world.people if not p.known]
    colleagues: dict[str, list[Person]] = {}
    for p in world.people:
        if p.company is not None:
            colleagues.setdefault(p.company.name, []).append(p)
    start = datetime(2026, 3, 2, 8, 30, tzinfo=TR_TZ)
    mails: list[Mail] = []
    for i in range(n):
        sent_at = start + timedelta(seconds=37 * i)
        parent = None
        if i >= 10 and rng.random() < reply_share:
            parent = mails[rng.randrange(max(0, i - 300), i)]  # conversations run over the last few hundred
        if parent is not None:
            sender = parent.sender  # the requester answers, or a colleague from the same company (reply-all)
            if sender.company is not None and rng.random() < colleague_share:
                sender = rng.choice(colleagues[sender.company.name])
        else:
            sender = rng.choice(known) if rng.random() < 0.5 else rng.choice(others)
        mails.append(build(i, rng, sender, parent, sent_at.astimezone(UTC) if rng.random() < 0.1 else sent_at))
    return world, mails
