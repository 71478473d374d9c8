"""The config's ``[[agents]]`` is the agent list for every command that handles mail, `ticketd deliver` included:
an agent removed from it is inactive at the next command, and the CLI cannot quietly contradict it."""

from __future__ import annotations

import json
import signal
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlmodel import Session, select

from conftest import Site, decode, start_daemon, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink
from ticketd.storage.models import Agent, Event

pytestmark = pytest.mark.integration

ALI = {"email": "ali@acme.example", "name": "Ali Veli", "role": "agent", "groups": ["network"]}
AYSE = {"email": "ayse@acme.example", "name": "Ayşe Demir", "role": "manager", "groups": ["network"]}


def customer_mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Jane <jane@example.org>", "support@acme.example"
    msg["Subject"], msg["Message-ID"] = subject, make_msgid(domain="example.org")
    msg.set_content("The printer on floor 3 is jammed again.")
    return msg.as_bytes()


def agents_in_db(site: Site) -> dict[str, bool]:
    with Session(site.engine) as session:
        return {a.email: a.active for a in session.exec(select(Agent))}


def told(sink: SmtpSink, start: int) -> list[str]:
    """Who got the new-ticket notification among the mail since ``start``."""
    return sorted(a for m in sink.received[start:] if m.message["X-Ticketd-Kind"] == "agent_new"
                  for a in m.envelope_to)


@pytest.fixture
def mta_site(site: Site, smtp_sink: SmtpSink) -> Site:
    """An install fed by an MTA pipe only: no IMAP, agents declared in the config, none added by hand."""
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.sections["agents"] = [ALI, AYSE]
    site.upgrade()
    return site


def test_deliver_knows_the_configs_agents(mta_site: Site, smtp_sink: SmtpSink) -> None:
    proc = mta_site.cli("deliver", input=customer_mail("Printer jammed"))
    assert proc.returncode == 0, decode(proc)
    assert agents_in_db(mta_site) == {"ali@acme.example": True, "ayse@acme.example": True}
    assert told(smtp_sink, 0) == ["ali@acme.example", "ayse@acme.example"]


def test_an_agent_removed_from_the_config_is_revoked(mta_site: Site, smtp_sink: SmtpSink) -> None:
    assert mta_site.cli("deliver", input=customer_mail("First")).returncode == 0
    mta_site.sections["agents"] = [AYSE]  # Ali left the company
    seen = len(smtp_sink.received)
    proc = mta_site.cli("deliver", input=customer_mail("Second"))
    assert proc.returncode == 0, decode(proc)
    assert agents_in_db(mta_site) == {"ali@acme.example": False, "ayse@acme.example": True}
    assert told(smtp_sink, seen) == ["ayse@acme.example"]
    with Session(mta_site.engine) as session:
        revoked = session.exec(select(Event).where(Event.what == "agent_deactivated")).all()
    assert [(e.old, e.actor) for e in revoked] == [("ali@acme.example", "config [[agents]]")]
    listed = json.loads(mta_site.cli("agents", "list", "--json").stdout)
    assert {a["email"]: a["active"] for a in listed} == {"ali@acme.example": False, "ayse@acme.example": True}


def test_the_cli_does_not_contradict_the_configs_list(mta_site: Site) -> None:
    add = mta_site.cli("agents", "add", "can@acme.example", "--name", "Can")
    _, err = decode(add)
    assert add.returncode == 2 and "agents are listed in [[agents]] of" in err and "add them there" in err, err
    deactivate = mta_site.cli("agents", "deactivate", "ali@acme.example")
    _, err = decode(deactivate)
    assert deactivate.returncode == 2 and "remove them from there" in err, err
    listed = json.loads(mta_site.cli("agents", "list", "--json").stdout)
    assert {a["email"]: a["active"] for a in listed} == {"ali@acme.example": True, "ayse@acme.example": True}


def test_without_agents_in_the_config_the_cli_keeps_the_list(site: Site) -> None:
    site.upgrade()
    assert site.cli("agents", "add", "can@acme.example", "--name", "Can").returncode == 0
    assert site.cli("deliver", input=customer_mail("Hello")).returncode == 0
    assert agents_in_db(site) == {"can@acme.example": True}


def test_the_running_daemon_applies_the_list_at_a_reload(mta_site: Site) -> None:
    """`ticketd run` syncs at start like every command; an edit of [[agents]] then takes effect at SIGHUP, not only
    at the next restart."""
    daemon = start_daemon(mta_site)
    try:
        assert daemon.stderr is not None
        for line in iter(daemon.stderr.readline, b""):  # SIGHUP is handled from this log line on, not before
            if b'"daemon.started"' in line:
                break
        else:
            pytest.fail(f"the daemon exited ({daemon.wait()}) before it started")
        assert agents_in_db(mta_site) == {"ali@acme.example": True, "ayse@acme.example": True}
        mta_site.sections["agents"] = [AYSE]
        mta_site.write()
        daemon.send_signal(signal.SIGHUP)
        wait_for("Ali revoked at the reload", lambda: agents_in_db(mta_site) == {
            "ali@acme.example": False, "ayse@acme.example": True}, daemon)
    finally:
        assert stop_daemon(daemon) == 0
