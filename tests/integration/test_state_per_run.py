"""What one run of ticketd holds stays with that run: the daemon's metrics with the daemon, the templates with the
loaded configuration (a reload swaps them together), the CLI's options with one invocation. Each test runs two of
something in one process and checks that the second sees nothing of the first."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from conftest import DATA, Mailbox, Site, client_mail
from ticketd.daemon import pipeline, runner
from ticketd.daemon.cli.main import app
from ticketd.daemon.config import Config
from ticketd.daemon.outgoing import outbox
from ticketd.daemon.outgoing.smtp_sink import SmtpSink, free_port
from ticketd.daemon.service.metrics import Metrics
from ticketd.storage import db
from ticketd.storage.inbound import store_inbound

pytestmark = pytest.mark.integration


class InProcessDaemon:
    """``ticketd run`` in a thread of the test: a reload is asked for as SIGHUP asks, and its metrics are at hand."""

    def __init__(self, site: Site) -> None:
        self.site, self.metrics, self.stop = site, Metrics(), runner.StopFlag()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(site.config(),), daemon=True)

    def _run(self, config: Config) -> None:
        try:
            runner.run_forever(self.site.engine, config, self.stop, reload_config=self.site.config,
                               metrics=self.metrics)
        except BaseException as exc:  # reported by ``until``
            self.error = exc

    def __enter__(self) -> InProcessDaemon:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the daemon did not stop"

    def until(self, what: str, done: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            if not self.thread.is_alive():
                pytest.fail(f"the daemon stopped ({self.error!r}) while waiting for {what}")
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}")

    def connected(self, mailbox: str) -> float | None:
        return self.metrics.registry.get_sample_value("ticketd_imap_connected", {"mailbox": mailbox})


def subjects_to(sink: SmtpSink, address: str) -> list[str]:
    return [str(m.message["Subject"]) for m in sink.received if address in m.envelope_to]


def test_two_mailboxes_report_apart_and_a_reload_swaps_the_templates(
        live_site: Site, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    """One mailbox logs in, the other is refused: each has its own series, and the refused one does not hide
    behind the other's 1. SIGHUP with an edited template and the broken mailbox removed: the next
    acknowledgment uses the new wording (nothing cleared by hand), and the removed mailbox's series is gone."""
    wrong = tmp_path / "complaints-password"
    wrong.write_text("not-the-password")
    live_site.sections["mailboxes"] = [
        {"name": "support", "folder": "INBOX", "processed_folder": "Processed"},
        {"name": "complaints", "folder": "Complaints", "processed_folder": "Complaints-Processed",
         "username": mailbox.user, "password_file": str(wrong)},
    ]
    own = tmp_path / "own-templates"
    for language in ("en", "tr"):
        (own / language).mkdir(parents=True)
        (own / language / "received.txt.j2").write_text("Subject: Received (first wording)\n\nThanks.\n")
    live_site.sections["helpdesk"]["templates_dir"] = str(own)

    with InProcessDaemon(live_site) as daemon:
        daemon.until("support connected and complaints refused",
                     lambda: (daemon.connected("support"), daemon.connected("complaints")) == (1.0, 0.0))
        mailbox.append(client_mail("jane@example.org", "Modem", "My modem is broken again, please help."))
        daemon.until("the first acknowledgment", lambda: bool(subjects_to(smtp_sink, "jane@example.org")))
        assert subjects_to(smtp_sink, "jane@example.org") == ["[ACME #1] Received (first wording)"]
        assert (daemon.connected("support"), daemon.connected("complaints")) == (1.0, 0.0)

        for language in ("en", "tr"):
            (own / language / "received.txt.j2").write_text("Subject: Received (second wording)\n\nThanks.\n")
        del live_site.sections["mailboxes"][1]
        daemon.stop.request_reload()
        daemon.until("the removed mailbox's series gone", lambda: daemon.connected("complaints") is None)
        mailbox.append(client_mail("joe@example.org", "Printer", "The printer in room four jams on every page."))
        daemon.until("the second acknowledgment", lambda: bool(subjects_to(smtp_sink, "joe@example.org")))
        assert subjects_to(smtp_sink, "joe@example.org") == ["[ACME #2] Received (second wording)"]
        daemon.until("support connected again", lambda: daemon.connected("support") == 1.0)


def test_a_second_daemon_in_the_same_process_counts_from_zero(live_site: Site, mailbox: Mailbox,
                                                              smtp_sink: SmtpSink) -> None:
    """The first daemon's endpoint closes when it stops, so the second serves the same port, with its own
    counts: nothing registered in a module outlives the daemon that registered it."""
    port = free_port()
    live_site.sections["metrics"] = {"listen": f"127.0.0.1:{port}"}

    def scrape() -> set[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return set(answer.read().decode().splitlines())
        except OSError:  # not listening yet
            return set()

    with InProcessDaemon(live_site) as first:
        mailbox.append((DATA / "unknown-sender.eml").read_bytes())
        first.until("the mail counted", lambda: 'ticketd_messages_total{status="done"} 1.0' in scrape())
    with InProcessDaemon(live_site) as second:
        second.until("the mailbox connected", lambda: 'ticketd_imap_connected{mailbox="INBOX"} 1.0' in scrape())
        assert not any(line.startswith("ticketd_messages_total") for line in scrape())
    assert first.metrics.registry.get_sample_value("ticketd_messages_total", {"status": "done"}) == 1.0


def test_processing_and_sending_count_into_the_callers_metrics(site: Site, smtp_sink: SmtpSink) -> None:
    """A caller's metrics get its own work only; a one-shot caller that passes none counts into a private set."""
    site.sections["smtp"] = {"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"}
    site.upgrade()
    config, engine = site.config(), site.engine
    with db.session_scope(engine) as session:
        mine = store_inbound(session, client_mail("jane@example.org", "Modem", "My modem is broken."), "test").id
        other = store_inbound(session, client_mail("joe@example.org", "Printer", "The printer jams."), "test").id
    metrics = Metrics()
    assert [o.status for o in pipeline.process_pending(engine, config, [mine], metrics=metrics)] == ["done"]
    assert outbox.send_due(engine, config, metrics=metrics) == 1
    assert [o.status for o in pipeline.process_pending(engine, config, [other])] == ["done"]
    assert outbox.send_due(engine, config) == 1
    assert metrics.registry.get_sample_value("ticketd_messages_total", {"status": "done"}) == 1.0
    assert metrics.registry.get_sample_value("ticketd_processing_seconds_count") == 1.0
    assert metrics.registry.get_sample_value("ticketd_outgoing_total", {"status": "sent"}) == 1.0


def test_the_cli_twice_in_one_process_with_different_configs(site: Site, tmp_path: Path) -> None:
    """``--config`` lives in the invocation's context: the next invocation in the same process reads its own
    option, or, given none, ``$TICKETD_CONFIG``; nothing of the previous one is left over."""
    other = site.clone(tmp_path / "other")
    site.sections["agents"] = [{"email": "ali@acme.example", "name": "Ali Veli"}]
    other.sections["agents"] = [{"email": "ayse@acme.example", "name": "Ayşe Demir"}]
    site.upgrade()
    other.upgrade()
    cli = CliRunner()

    def agents(*args: str, env: dict[str, str | None]) -> list[str]:
        result = cli.invoke(app, [*args, "agents", "list", "--json"], env=env)
        assert result.exit_code == 0, result.output
        return [agent["email"] for agent in json.loads(result.stdout)]

    no_env: dict[str, str | None] = {"TICKETD_CONFIG": None}
    assert agents("--config", str(site.write()), env=no_env) == ["ali@acme.example"]
    assert agents("--config", str(other.write()), env=no_env) == ["ayse@acme.example"]
    assert agents(env={"TICKETD_CONFIG": str(site.config_path)}) == ["ali@acme.example"]
    assert agents("-c", str(other.config_path), env={"TICKETD_CONFIG": str(site.config_path)}) == [
        "ayse@acme.example"]
    structlog.get_logger("ticketd").info("cli.done")  # the runs' captured output is closed: logging still works
