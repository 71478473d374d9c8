"""`ticketd attachments`: the operator fetches a file that was too big to forward. Real mail goes in as an MTA and
the daemon put it there (`ticketd deliver`, `ticketd run --once`); what comes out is compared, byte for byte, with
the part that was sent, as the standard library decodes it independently of ticketd's parser."""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess
import zlib
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, TICKETD, Site, decode, mail_to, reply_to
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

ALI = "ali@acme.example"
CIGDEM = "cigdem.yilmaz@musteri.com.tr"
HANS = "hans.mueller@beispiel.de"
PHOTO_REPORT = DATA / "process" / "complaint-with-attachment.eml"
CONTRACT = "Sözleşme_İmzalı_Şubat.pdf"  # every Turkish letter that is not ASCII in one name: ö ş İ ı Ş


def png_image(width: int = 3, height: int = 2) -> bytes:
    """A real PNG (signature, IHDR, IDAT, IEND with their CRCs), so nothing treats it as a stray text part."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def pdf_document(size: int = 200_000) -> bytes:
    """A PDF with a binary stream: every byte value, NULs and CRLFs included, must survive base64 and the database;
    big enough that the table shows KiB."""
    noise = random.Random(2026).randbytes(size)
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Length " + str(size).encode() + b">>stream\r\n"
    return head + noise + b"\r\nendstream endobj\ntrailer<<>>\n%%EOF\n"


def contract_mail() -> bytes:
    """What a mail client sends: text and HTML with an inline screenshot, and a PDF whose non-ASCII name is
    encoded as RFC 2231 asks (filename*=utf-8''...), not as an encoded word."""
    msg = EmailMessage()
    msg["From"] = f"Çiğdem Yılmaz <{CIGDEM}>"
    msg["To"] = "Acme Support <support@acme.example>"
    msg["Subject"] = "İmzalı sözleşme ve ekran görüntüsü"
    msg["Date"] = "Mon, 07 Dec 2026 09:30:00 +0300"
    msg["Message-ID"] = "<sozlesme-7@musteri.com.tr>"
    msg.set_content("Merhaba,\n\nimzalı sözleşme ekte, hata ekranı aşağıda.\n\nÇiğdem\n")
    msg.add_alternative('<p>Merhaba,</p><p>hata ekranı: <img src="cid:ekran-1@musteri.com.tr"></p>',
                        subtype="html")
    msg.get_payload()[1].add_related(png_image(), "image", "png", cid="<ekran-1@musteri.com.tr>",
                                     filename="ekran.png", disposition="inline")
    msg.add_attachment(pdf_document(), "application", "pdf", filename=CONTRACT)
    raw = msg.as_bytes(policy=policy.SMTP)
    assert b"filename*=utf-8''S%C3%B6zle%C5%9Fme_%C4%B0mzal%C4%B1_%C5%9Eubat.pdf" in raw
    return raw


def sent_files(raw: bytes) -> dict[str, bytes]:
    """File name → the decoded bytes of each named part of a mail, as the standard library reads it."""
    msg = message_from_bytes(raw, policy=policy.default)
    return {part.get_filename(): part.get_payload(decode=True) for part in msg.walk() if part.get_filename()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ok(site: Site, *args: str, input: bytes | None = None) -> tuple[bytes, str]:
    proc = site.cli(*args, input=input)
    assert proc.returncode == 0, decode(proc)[1]
    return proc.stdout, proc.stderr.decode()


def listing(site: Site, number: int) -> list[dict[str, Any]]:
    out, _ = ok(site, "attachments", "list", str(number), "--json")
    return json.loads(out)


def refused(site: Site, *args: str, code: int = 2) -> str:
    """The one line a refusal prints: no traceback, no usage screen."""
    proc = site.cli(*args)
    out, err = decode(proc)
    assert (proc.returncode, out) == (code, ""), err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if not line.startswith("{")]  # JSON lines are the log
    return line


@pytest.fixture
def filed(site: Site) -> Site:
    """Two customers' mail stored by the MTA and processed by one pass of the daemon: #1 Hans's photo report,
    #2 Çiğdem's contract and screenshot."""
    site.upgrade()
    for raw in (PHOTO_REPORT.read_bytes(), contract_mail()):
        ok(site, "deliver", "--no-process", input=raw)
    ok(site, "run", "--once")
    return site


def test_list_table_in_the_helpdesk_zone(filed: Site) -> None:
    out, _ = ok(filed, "attachments", "list", "2")
    assert [line.split() for line in out.decode().splitlines()] == [
        ["ID", "TICKET", "DIR", "FROM", "DATE", "FILE", "TYPE", "SIZE", "INLINE"],
        ["2", "#2", "in", CIGDEM, "2026-12-07", "09:30", "ekran.png", "image/png", str(len(png_image())), "B",
         "inline"],
        ["3", "#2", "in", CIGDEM, "2026-12-07", "09:30", CONTRACT, "application/pdf", "195.4", "KiB"],
    ]
    out, _ = ok(filed, "attachments", "list", "#1")  # the number as subjects show it works too
    assert out.decode().splitlines()[1].split() == [
        "1", "#1", "in", HANS, "2026-12-04", "14:00", "photo-report.pdf", "application/pdf", "45", "B"]


def test_list_json(filed: Site) -> None:
    photo = sent_files(PHOTO_REPORT.read_bytes())["photo-report.pdf"]
    files = sent_files(contract_mail())
    assert listing(filed, 1) == [
        {"id": 1, "ticket": 1, "message_id": "<cable-9@beispiel.de>", "direction": "in", "from": HANS,
         "date": "2026-12-04T11:00:00+00:00", "filename": "photo-report.pdf", "content_type": "application/pdf",
         "size": len(photo), "sha256": sha(photo), "inline": False},
    ]
    assert listing(filed, 2) == [
        {"id": 2, "ticket": 2, "message_id": "<sozlesme-7@musteri.com.tr>", "direction": "in", "from": CIGDEM,
         "date": "2026-12-07T06:30:00+00:00", "filename": "ekran.png", "content_type": "image/png",
         "size": len(files["ekran.png"]), "sha256": sha(files["ekran.png"]), "inline": True},
        {"id": 3, "ticket": 2, "message_id": "<sozlesme-7@musteri.com.tr>", "direction": "in", "from": CIGDEM,
         "date": "2026-12-07T06:30:00+00:00", "filename": CONTRACT, "content_type": "application/pdf",
         "size": len(files[CONTRACT]), "sha256": sha(files[CONTRACT]), "inline": False},
    ]


def test_get_writes_exactly_what_was_sent(filed: Site, tmp_path: Path) -> None:
    sent = sent_files(PHOTO_REPORT.read_bytes()) | sent_files(contract_mail())
    for row in listing(filed, 1) + listing(filed, 2):
        target = tmp_path / f"saved-{row['id']}"
        out, err = ok(filed, "attachments", "get", str(row["id"]), "-o", str(target))
        assert out == b""
        assert sha(target.read_bytes()) == sha(sent[row["filename"]]) == row["sha256"]
        assert f"wrote {row['filename']} (" in err and f"{row['size']} bytes) to {target}" in err
    _, err = ok(filed, "attachments", "get", "3", "-o", str(tmp_path / "contract.pdf"))
    size = len(sent[CONTRACT])
    assert err.splitlines()[-1] == f"wrote {CONTRACT} (195.4 KiB, {size} bytes) to {tmp_path / 'contract.pdf'}"


def test_get_to_standard_output(filed: Site) -> None:
    out, err = ok(filed, "attachments", "get", "3", "-o", "-")
    assert sha(out) == sha(sent_files(contract_mail())[CONTRACT])
    assert "wrote" not in err  # the bytes are the output; a script piping them wants nothing else said


def test_get_to_a_terminal_needs_force(filed: Site) -> None:
    """200 KB of PDF on a terminal is garbage and can leave it in a strange state; `-o -` is meant for pipes."""
    controller, terminal = os.openpty()
    try:
        proc = subprocess.run([str(TICKETD), "attachments", "get", "3", "-o", "-"], stdout=terminal,
                              stderr=subprocess.PIPE, env={**os.environ, "TICKETD_CONFIG": str(filed.config_path)},
                              cwd=filed.dir, timeout=120, check=False)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines()[-1] == (
        "ticketd: standard output is a terminal; redirect it, or use --force to print the bytes anyway")


def test_get_does_not_overwrite_without_force(filed: Site, tmp_path: Path) -> None:
    target = tmp_path / "ekran.png"
    target.write_bytes(b"the operator's own file")
    assert refused(filed, "attachments", "get", "2", "-o", str(target)) == (
        f"ticketd: {target} exists; use --force to overwrite it")
    assert target.read_bytes() == b"the operator's own file"
    ok(filed, "attachments", "get", "2", "-o", str(target), "--force")
    assert target.read_bytes() == sent_files(contract_mail())["ekran.png"]


@pytest.fixture
def one_file(site: Site) -> Site:
    """Just attachment 1 (on #1): refusals need something to refuse, not a whole conversation."""
    site.upgrade()
    ok(site, "deliver", input=PHOTO_REPORT.read_bytes())
    return site


@pytest.mark.parametrize(("args", "expected"), [
    (["list", "9"], "ticketd: no ticket #9 (see `ticketd tickets list`)"),
    (["list", "abc"], "ticketd: ticket number must be a number like 1040, not 'abc'"),
    (["list", "99999999999999999999"], "ticketd: no ticket #99999999999999999999 (see `ticketd tickets list`)"),
    (["get", "2", "-o", "x.pdf"], "ticketd: no attachment 2 (see `ticketd attachments list N`)"),
    (["get", "three", "-o", "x.pdf"], "ticketd: attachment ID must be a number like 17, not 'three'"),
    (["get", "1.5", "-o", "x.pdf"], "ticketd: attachment ID must be a number like 17, not '1.5'"),
    (["get", "99999999999999999999", "-o", "x.pdf"],
     "ticketd: no attachment 99999999999999999999 (see `ticketd attachments list N`)"),
    (["get", "1", "-o", "missing/x.pdf"], "ticketd: cannot write missing/x.pdf: there is no directory missing"),
    (["get", "1", "-o", "."], "ticketd: . is a directory; give a file name"),
    (["get", "1"], "ticketd: give -o FILE (or -o - for standard output)"),
])
def test_bad_input_is_one_line_and_exit_2(one_file: Site, args: list[str], expected: str) -> None:
    assert refused(one_file, "attachments", *args) == expected
    assert not (one_file.dir / "x.pdf").exists()


def test_merged_tickets_files_are_listed_with_their_own_number(site: Site, smtp_sink: SmtpSink) -> None:
    """After Ali merges #1 into #2 by mail, #2 lists Hans's photo report as #1's; Ali's own file, relayed to the
    customer, is listed as going out."""
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    ok(site, "agents", "add", ALI, "--name", "Ali Veli")
    ok(site, "deliver", input=PHOTO_REPORT.read_bytes())
    ok(site, "deliver", input=contract_mail())
    first, second = (mail_to([m for m in smtp_sink.received if f"[ACME #{n}]" in m.message["Subject"]], ALI)
                     for n in (1, 2))
    ok(site, "deliver", input=reply_to(first, ALI, "Same matter as #2.", subject_suffix="[merge=#2]"))

    answer = message_from_bytes(reply_to(second, ALI, "The corrected contract is attached."),
                                 policy=policy.default)
    assert isinstance(answer, EmailMessage)
    corrected = pdf_document(5000)
    answer.add_attachment(corrected, "application", "pdf", filename="corrected.pdf")
    ok(site, "deliver", input=answer.as_bytes(policy=policy.SMTP))

    rows = listing(site, 2)
    assert [(r["ticket"], r["direction"], r["from"], r["filename"]) for r in rows] == [
        (1, "in", HANS, "photo-report.pdf"),
        (2, "in", CIGDEM, "ekran.png"),
        (2, "in", CIGDEM, CONTRACT),
        (2, "out", ALI, "corrected.pdf"),
    ]
    assert rows[3]["sha256"] == sha(corrected)
    assert [r["filename"] for r in listing(site, 1)] == ["photo-report.pdf"]  # not the other way round
    out, _ = ok(site, "attachments", "list", "2")
    assert [line.split()[:3] for line in out.decode().splitlines()[1:]] == [
        ["1", "#1", "in"], ["2", "#2", "in"], ["3", "#2", "in"], ["4", "#2", "out"]]


def test_a_ticket_without_files(site: Site) -> None:
    site.upgrade()
    ok(site, "deliver", input=(DATA / "unknown-sender.eml").read_bytes())
    out, _ = ok(site, "attachments", "list", "1")
    assert out.decode() == "ticket #1 has no attachments\n"
    assert listing(site, 1) == []
