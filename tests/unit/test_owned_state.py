"""State lives with its owner (the loaded configuration, the running daemon, one command's run), never in a module:
two of each in one process (two daemons, two tests, the configurations either side of a reload) share nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ticketd.daemon.config import parse_config
from ticketd.daemon.outgoing.outbox import smtp_client
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.metrics import Metrics
from ticketd.mailtemplates.render import render
from ticketd.rules.triage import compile_rules


def base(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    return {"helpdesk": {"address": "support@acme.example"}, "security": {"secret_file": str(tmp_path / "secret")},
            **sections}


# --- metrics ----------------------------------------------------------------------------------------------------

def test_two_metrics_do_not_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.processed("done", 0.2)
    first.outgoing.labels("sent").inc()
    assert first.registry.get_sample_value("ticketd_messages_total", {"status": "done"}) == 1.0
    assert first.registry.get_sample_value("ticketd_processing_seconds_count") == 1.0
    assert first.registry.get_sample_value("ticketd_outgoing_total", {"status": "sent"}) == 1.0
    assert second.registry.get_sample_value("ticketd_messages_total", {"status": "done"}) is None
    assert second.registry.get_sample_value("ticketd_processing_seconds_count") == 0.0
    assert second.registry.get_sample_value("ticketd_outgoing_total", {"status": "sent"}) is None


def test_each_mailbox_has_its_own_connected_series() -> None:
    """One gauge for every mailbox showed whichever thread wrote last: a dead mailbox looked alive."""
    metrics = Metrics()

    def connected(mailbox: str) -> float | None:
        return metrics.registry.get_sample_value("ticketd_imap_connected", {"mailbox": mailbox})

    metrics.mailbox_connected("complaints", False)
    metrics.mailbox_connected("support", True)  # written last, and the complaints series still says 0
    assert (connected("support"), connected("complaints")) == (1.0, 0.0)
    metrics.mailbox_gone("complaints")
    metrics.mailbox_gone("complaints")  # already gone: nothing to do
    assert (connected("support"), connected("complaints")) == (1.0, None)


# --- the configuration's own derived state ----------------------------------------------------------------------

def test_a_reload_reads_edited_templates_without_clearing_anything(tmp_path: Path) -> None:
    """The template environment belongs to the loaded configuration: SIGHUP loads a new one, so an edited
    template is read then, and the running configuration keeps reading none from disk per mail."""
    template = tmp_path / "templates" / "en" / "received.txt.j2"
    template.parent.mkdir(parents=True)
    template.write_text("Subject: Received (first wording)\n\nThanks.\n")
    data = base(tmp_path, helpdesk={"address": "support@acme.example", "templates_dir": str(tmp_path / "templates")})
    running = parse_config(data)
    assert running.templates is running.templates
    assert render(running.templates, "received", "en", {}).subject == "Received (first wording)"

    template.write_text("Subject: Received (second wording)\n\nThanks.\n")
    assert render(running.templates, "received", "en", {}).subject == "Received (first wording)"
    reloaded = parse_config(data)
    assert reloaded.templates is not running.templates
    assert render(reloaded.templates, "received", "en", {}).subject == "Received (second wording)"


def test_triage_rules_are_compiled_once_per_loaded_configuration(tmp_path: Path) -> None:
    """The pipeline asks per mail and gets the list its configuration compiled once; a reload's rules are
    compiled with the new configuration. Nothing is kept in rules.triage: the compiled list goes with its
    configuration."""
    data = base(tmp_path, rules=[{"name": "a", "set": {"priority": "high"}},
                                 {"name": "b", "set": {"type": "complaint"}}])
    running = parse_config(data)
    first = running.triage_rules
    assert [r.name for r in first] == ["a", "b"]
    assert running.triage_rules is first
    reloaded = parse_config(data | {"rules": [*data["rules"], {"name": "c", "set": {"priority": "low"}}]})
    assert [r.name for r in reloaded.triage_rules] == ["a", "b", "c"]
    assert running.triage_rules is first  # the running configuration keeps its own until replaced
    assert parse_config(data).triage_rules is not first
    assert compile_rules(r.rule() for r in running.rules)[0] is not compile_rules(r.rule() for r in running.rules)[0]


# --- the connections' shared state ------------------------------------------------------------------------------

def test_the_ehlo_name_is_looked_up_once_per_connections(tmp_path: Path) -> None:
    lookups: list[int] = []

    def lookup() -> str:
        lookups.append(1)
        return f"host{len(lookups)}.acme.example"

    config = parse_config(base(tmp_path, smtp={"host": "smtp.acme.example", "tls": "none"}))
    assert config.smtp is not None
    daemon = Connections(lookup)
    assert smtp_client(config.smtp, daemon).local_hostname == "host1.acme.example"
    assert smtp_client(config.smtp, daemon).local_hostname == "host1.acme.example"
    assert Connections(lookup).local_hostname() == "host2.acme.example"  # another daemon asks for itself
    assert len(lookups) == 2
