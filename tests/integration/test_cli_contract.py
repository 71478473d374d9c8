"""The CLI as operators and scripts meet it: exit codes, messages naming keys, JSON shapes, set-up commands."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import TICKETD, Mailbox, Site, decode
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("imap", "port", 99999, "imap.port: must be an integer between 1 and 65535"),
    ("imap", "tls", "sometimes", "imap.tls: must be 'implicit', 'starttls' or 'none'"),
    ("smtp", "hostname", "x", "smtp.hostname: unknown key"),
    ("helpdesk", "address", None, "helpdesk.address: required key is missing"),
])
def test_config_errors_exit_2_and_name_the_key(site: Site, section: str, key: str, value: object,
                                                message: str) -> None:
    site.sections["imap"] = {"host": "127.0.0.1", "username": "u", "password": "p"}
    site.sections["smtp"] = {"host": "127.0.0.1"}
    if value is None:
        del site.sections[section][key]
    else:
        site.sections[section][key] = value
    for command in (["run", "--once"], ["check"], ["tickets", "list"]):
        proc = site.cli(*command)
        out, err = decode(proc)
        assert proc.returncode == 2, (command, out, err)
        assert message in err
        assert "Traceback" not in err


def test_check_reports_a_wrong_imap_password(site: Site, mailbox: Mailbox, smtp_sink: SmtpSink) -> None:
    site.sections["imap"] = mailbox.imap_section(password="wrong-password")
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    proc = site.cli("check")
    out, err = decode(proc)
    assert proc.returncode == 1, (out, err)
    assert f"FAIL imap: {mailbox.user}@127.0.0.1:{mailbox.server.port} (none): login refused" in out
    assert "ok   smtp" in out and "ok   database" in out
    assert "wrong-password" not in out + err  # secrets never printed


def test_check_names_an_empty_password_file_and_makes_no_database(site: Site, mailbox: Mailbox) -> None:
    """As `ticketd init` leaves it: the password file is there, empty. And before the service's first start there
    is no database: `check` says so rather than making one (as root, it would be root's)."""
    (site.dir / "imap-password").write_text("")
    site.sections["imap"] = {k: v for k, v in mailbox.imap_section(password_file="imap-password").items()
                             if k != "password"}
    site.sections["database"] = {"url": "sqlite:///state/ticketd.db"}
    out, _ = decode(site.cli("check"))
    assert (f"FAIL imap: {mailbox.user}@127.0.0.1:{mailbox.server.port} (none): login refused, check imap.username "
            f"and the password ({site.dir / 'imap-password'} is empty)") in out, out
    assert f"FAIL database: {site.dir / 'state' / 'ticketd.db'} does not exist yet: `ticketd db upgrade` makes it" \
        in out, out
    assert not (site.dir / "state").exists()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_check_passes_over_tls(site: Site, mailbox: Mailbox, smtp_sink: SmtpSink, tls: str) -> None:
    port = mailbox.server.port if tls == "starttls" else mailbox.server.tls_port
    site.sections["imap"] = mailbox.imap_section(tls=tls, port=port, cafile=mailbox.server.cafile)
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    proc = site.cli("check")
    out, _ = decode(proc)
    assert proc.returncode == 0, out
    assert f"ok   imap: {mailbox.user}@127.0.0.1:{port} ({tls}): logged in" in out
    assert "IDLE" in out and "MOVE" in out


def test_run_refuses_an_old_schema(site: Site) -> None:
    proc = site.cli("tickets", "list")
    assert proc.returncode == 2
    assert "ticketd db upgrade" in decode(proc)[1]
    assert site.cli("db", "upgrade").returncode == 0
    assert site.cli("tickets", "list", "--json").stdout.strip() == b"[]"


def test_init_writes_a_working_site(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TICKETD_CONFIG"}
    proc = subprocess.run([str(TICKETD), "init", str(tmp_path / "site"), "--layout", "local", "--address",
                           "help@firma.example", "--tag", "FIRMA"], capture_output=True, env=env, check=False)
    assert proc.returncode == 0, decode(proc)
    config = tmp_path / "site" / "ticketd.toml"
    assert (tmp_path / "site" / "credentials" / "secret").stat().st_mode & 0o077 == 0  # private
    assert 'address = "help@firma.example"' in config.read_text() and 'tag = "FIRMA"' in config.read_text()
    proc = subprocess.run([str(TICKETD), "--config", str(config), "tickets", "list", "--json"],
                          capture_output=True, env=env, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    again = subprocess.run([str(TICKETD), "init", str(tmp_path / "site")], capture_output=True, env=env, check=False)
    assert again.returncode == 2 and b"not overwriting" in again.stderr


def test_directory_commands(site: Site) -> None:
    site.upgrade()
    assert site.cli("companies", "add", "Öztürk İnşaat", "--domain", "ozturk-insaat.com.tr",
                    "--contract-until", "2027-06-30", "--sla-plan", "gold").returncode == 0
    assert site.cli("companies", "add", "X", "--contract-until", "30/06/2027").returncode == 2
    companies = json.loads(site.cli("companies", "list", "--json").stdout)
    assert companies == [{"name": "Öztürk İnşaat", "domains": ["ozturk-insaat.com.tr"],
                          "contract_until": "2027-06-30", "sla_plan": "gold"}]
    proc = site.cli("agents", "add", "ali@acme.example", "--name", "Ali Veli", "--role", "manager",
                    "--group", "network")
    assert proc.returncode == 0, decode(proc)
    assert site.cli("agents", "add", "bad-address", "--name", "X").returncode == 2
    bad_csv = site.dir / "bad.csv"
    bad_csv.write_text("email,name\nx@y.example,X\n")
    proc = site.cli("customers", "import", str(bad_csv))
    assert proc.returncode == 2 and b"missing column(s) company" in proc.stderr


def test_show_unknown_ticket_and_retry_usage(site: Site) -> None:
    site.upgrade()
    unknown = site.cli("tickets", "show", "999")  # a number the operator typed that names nothing: their input
    assert unknown.returncode == 2 and unknown.stderr == b"ticketd: no ticket #999 (see `ticketd tickets list`)\n"
    assert site.cli("inbound", "retry", "999").returncode == 2
    assert site.cli("inbound", "retry").returncode == 2
    assert site.cli("outbox", "retry").returncode == 2


def test_agents_from_the_config_win_over_the_cli(site: Site) -> None:
    from sqlmodel import Session, select

    from ticketd.storage.models import Agent

    site.upgrade()
    assert site.cli("agents", "add", "ali@acme.example", "--name", "Ali", "--role", "agent").returncode == 0
    site.write()
    with site.config_path.open("a") as fh:
        fh.write('\n[[agents]]\nemail = "ali@acme.example"\nname = "Ali Veli"\n'
                 'role = "manager"\ngroups = ["network"]\n')
    proc = subprocess.run([str(TICKETD), "--config", str(site.config_path), "tickets", "list"], capture_output=True,
                          check=False)
    assert proc.returncode == 0, decode(proc)
    with Session(site.engine) as session:
        agent = session.exec(select(Agent)).one()
    assert (agent.email, agent.name, agent.role, agent.groups) == ("ali@acme.example", "Ali Veli", "manager",
                                                                   ["network"])
