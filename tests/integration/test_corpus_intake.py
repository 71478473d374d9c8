"""Every real-world message of the corpus through real IMAP and the pipeline: none is lost or crashes the run;
each ends as a ticket message, a recorded drop with its reason, or a quarantined row with its error."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from conftest import DATA, Mailbox, Site, decode
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration
CORPUS = DATA / "corpus"
NOT_MESSAGES = {"LICENSE", "LICENSE.txt", "MIT-LICENSE", "COPYING", "PROVENANCE.txt", "README.md", ".gitattributes"}
# Reply bodies without headers (used by the quote-stripping tests) and attachment files are not messages.
BODY_ONLY = {"zapier-email-reply-parser", "mail-parser-reply"}


def corpus_messages() -> list[Path]:
    files = []
    for path in sorted(CORPUS.rglob("*")):
        rel = path.relative_to(CORPUS)
        if not path.is_file() or path.name in NOT_MESSAGES or rel.parts[0] in BODY_ONLY:
            continue
        if "attachments" in rel.parts[:-1] and path.suffix in (".png", ".wav", ".pdf", ".jpg"):
            continue
        if path.stat().st_size == 0:  # an IMAP server cannot hold an empty message ("zero byte message")
            continue
        files.append(path)
    return files


KNOWN_TEXT = [  # decoded after the whole trip: IMAP → database → `tickets show --json`
    ("charsets/tr-iso-8859-9.eml", "Fatura ödemesi gecikti: Şubat ayı", "Şubat faturamı ödedim"),
    ("charsets/tr-windows-1254.eml", "Bağlantı sorunu: İnternet çok yavaş", "Modem ışıkları yanıp sönüyor"),
    ("corpus/rt/8859-15-message-series/msg1", "test äöüßÄÖÜß€", "test äöüßÄÖÜß€"),
    ("corpus/rt/russian-subject-no-content-type", "тест тест", "ТЕСТ"),
    ("corpus/rt/new-ticket-from-gb18030", "测试", "测试"),
    ("corpus/mikel-mail/multi_charset/japanese_iso_2022.eml", "まみむめも", "すみません。"),
]


def test_every_corpus_message_has_an_outcome(live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    files = [*corpus_messages(), DATA / "charsets" / "tr-iso-8859-9.eml", DATA / "charsets" / "tr-windows-1254.eml"]
    assert len(files) > 800
    client = mailbox.client()
    appended: list[Path] = []
    try:
        for path in files:
            client.append("INBOX", path.read_bytes())
            appended.append(path)
    finally:
        client.logout()

    proc = live_site.cli("run", "--once", timeout=600)
    assert proc.returncode == 0, decode(proc)
    rows = json.loads(live_site.cli("inbound", "list", "--json").stdout)
    assert len(rows) == len(appended)  # nothing lost, nothing doubled
    assert mailbox.count("INBOX") == 0

    table: dict[str, Counter[str]] = defaultdict(Counter)
    for path, row in zip(appended, rows, strict=True):
        folder = path.relative_to(DATA).parts[-2] if path.parent.name == "charsets" else \
            path.relative_to(CORPUS).parts[0]
        assert row["status"] in ("done", "dropped", "failed"), (path, row)
        if row["status"] in ("dropped", "failed"):
            assert row["reason"], (path, row)
        if row["status"] == "done":
            assert row["ticket"] is not None, (path, row)
        table[folder][row["status"]] += 1
    total = sum(table.values(), Counter())
    with capsys.disabled():  # the table is part of the evidence: shown in every run, CI's included
        print("\ncorpus folder                 done  dropped  failed")
        for folder, counts in sorted(table.items()):
            print(f"{folder:<28} {counts['done']:>5} {counts['dropped']:>8} {counts['failed']:>7}")
        print(f"{'all':<28} {total['done']:>5} {total['dropped']:>8} {total['failed']:>7}")
    failed = [(p.relative_to(DATA), r["reason"]) for p, r in zip(appended, rows, strict=True)
              if r["status"] == "failed"]
    assert failed == []
    assert table["sisimai-set-of-emails"]["dropped"] >= 590  # bounces and reports never become tickets

    by_path = {p.relative_to(DATA).as_posix(): r for p, r in zip(appended, rows, strict=True)}
    for rel, subject, phrase in KNOWN_TEXT:
        row = by_path[rel]
        assert row["status"] == "done", (rel, row)
        ticket = json.loads(live_site.cli("tickets", "show", str(row["ticket"]), "--json").stdout)
        message = next(m for m in ticket["messages"] if m["message_id"] == row["message_id"]) \
            if row["message_id"] else ticket["messages"][0]
        assert ticket["subject"] == subject, rel
        assert phrase in message["text"], (rel, message["text"][:200])
