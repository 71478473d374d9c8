"""The admin CLI that reports stand on: customers, agents, ticket search, and progress bars that show on a
terminal and stay out of scripts. The installed `ticketd` against a real SQLite database."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from typing import Any

import pytest

from conftest import DATA, TICKETD, Desk, decode, reply_to

pytestmark = pytest.mark.integration

ALI = "ali@acme.example"


def cli_json(desk: Desk, *args: str) -> Any:
    proc = desk.site.cli(*args, "--json")
    out, err = decode(proc)
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.fixture
def filled(desk: Desk) -> Desk:
    desk.deliver((DATA / "known-customer-rfc2047-subject.eml").read_bytes())  # Çiğdem, Müşteri A.Ş.
    desk.deliver((DATA / "unknown-sender.eml").read_bytes())  # Jane: "Question about my invoice"
    first = next(m for m in desk.new_mail() if m.envelope_to == [ALI] and "[ACME #1]" in m.message["Subject"])
    desk.deliver(reply_to(first, ALI, "The modem firmware needs an update."))
    return desk


def test_customers_list_and_show(filled: Desk) -> None:
    people = {c["email"]: c for c in cli_json(filled, "customers", "list")}
    assert people["cigdem.yilmaz@musteri.com.tr"]["company"] == "Müşteri A.Ş."
    assert people["cigdem.yilmaz@musteri.com.tr"]["tickets"] == 1 and people["jane@example.org"]["tickets"] == 1
    only = cli_json(filled, "customers", "list", "--company", "müşteri a.ş.")
    assert [c["email"] for c in only] == ["cigdem.yilmaz@musteri.com.tr"]
    shown = cli_json(filled, "customers", "show", "jane@example.org")
    assert [t["subject"] for t in shown["ticket_list"]] == ["Question about my invoice"]
    missing = filled.site.cli("customers", "show", "nobody@example.org")
    assert missing.returncode == 2 and "no customer nobody@example.org" in decode(missing)[1]
    text, _ = decode(filled.site.cli("customers", "show", "cigdem.yilmaz@musteri.com.tr"))
    assert "Çiğdem Yılmaz <cigdem.yilmaz@musteri.com.tr>" in text and "#1" in text


SEARCHES = [
    ("invoice", [2]),            # subject
    ("firmware", [1]),           # an agent's reply on the ticket
    ("jane@example", [2]),       # the customer's address
    ("Çiğdem", [1]),             # the customer's name
    ("ÇİĞDEM", [1]),             # in capitals: folded as Python folds, not as SQLite's ASCII-only lower()
    ("Müşteri A.Ş.", [1]),       # the company
    ("#2", [2]),                 # the number
    ("nothing like this", []),
]


def test_tickets_search(filled: Desk) -> None:
    found = {text: [t["number"] for t in cli_json(filled, "tickets", "search", text)] for text, _ in SEARCHES}
    assert found == dict(SEARCHES)


def test_agents_list_away_back_deactivate(desk: Desk) -> None:
    def status() -> dict[str, tuple[bool, bool]]:
        return {a["email"]: (a["active"], a["away"]) for a in cli_json(desk, "agents", "list")}

    assert status()[ALI] == (True, False)
    assert desk.site.cli("agents", "away", ALI).returncode == 0
    assert status()[ALI] == (True, True)
    assert desk.site.cli("agents", "back", ALI).returncode == 0
    assert status()[ALI] == (True, False)
    assert desk.site.cli("agents", "deactivate", ALI).returncode == 0
    assert status()[ALI] == (False, False)
    unknown = desk.site.cli("agents", "away", "nobody@acme.example")
    assert unknown.returncode == 2 and "no agent nobody@acme.example" in decode(unknown)[1]


@pytest.mark.parametrize(("args", "message"), [
    (("--company", "X", "--customer", "y@z"), "--company and --customer exclude each other"),
    (("--since", "2026-13-01"), "--since: '2026-13-01' is not a date"),
    (("--since", "2026-12-01", "--until", "2026-11-01"), "--since is after --until"),
    (("--company", "Nobody Inc"), "no company called 'Nobody Inc'"),
    (("--language", "de"), "--language: 'de' must be en or tr"),
])
def test_report_usage_errors_name_the_option(desk: Desk, tmp_path: Any, args: tuple[str, ...],
                                             message: str) -> None:
    proc = desk.site.cli("report", "--xlsx", str(tmp_path / "r.xlsx"), *args)
    assert proc.returncode == 2 and message in decode(proc)[1], decode(proc)
    assert not (tmp_path / "r.xlsx").exists()


def test_progress_bar_on_a_terminal_and_quiet_in_scripts(filled: Desk, tmp_path: Any) -> None:
    args = ["report", "--xlsx", str(tmp_path / "quiet.xlsx")]
    quiet = filled.site.cli(*args)
    out, err = decode(quiet)
    assert quiet.returncode == 0 and err == "", err  # a pipe: not a byte of progress
    assert out.startswith("2 tickets")

    primary, secondary = pty.openpty()  # standard error on a terminal, as for a person at a shell
    env = {**os.environ, "TICKETD_CONFIG": str(filled.site.config_path), "COLUMNS": "100"}
    proc = subprocess.run([str(TICKETD), "report", "--xlsx", str(tmp_path / "shown.xlsx")], stdout=subprocess.PIPE,
                          stderr=secondary, env=env, cwd=filled.site.dir, timeout=120, check=False)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.returncode == 0
    assert b"collecting tickets" in shown or b"writing the workbook" in shown, shown[:500]
    assert proc.stdout.decode().startswith("2 tickets")  # standard output unchanged
