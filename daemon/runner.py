"""The daemon's main loop: intake, pipeline, outbox, wait — until asked to stop.

Each step is independent: an IMAP outage does not stop the outbox, an SMTP outage does not stop intake, and
the loop reconnects with capped exponential backoff instead of dying.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from ticketd.daemon import metrics, notify, outbox, pipeline, poller, sweep, systemd
from ticketd.daemon.config import Config, ConfigError

log = structlog.get_logger("ticketd.runner")

RECONNECT_MIN = 1.0
RECONNECT_MAX = 300.0
INTAKE_CHUNK = 200  # messages taken from the inbox per turn of the loop
SMTP_PAUSE_SECONDS = 30.0  # after the SMTP server could not be reached (the outbox's first retry is as late)


@dataclass
class RunSummary:
    stored: int = 0
    processed: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SmtpGate:
    """After the SMTP server could not be reached, sending pauses for a while: trying again after every batch
    paid a full connect timeout each time, and the loop went minutes without pinging the watchdog."""

    closed_until: float = 0.0

    def is_open(self) -> bool:
        return time.monotonic() >= self.closed_until

    def close(self) -> None:
        self.closed_until = time.monotonic() + SMTP_PAUSE_SECONDS
        log.warning("outbox.smtp_unreachable", retry_in=SMTP_PAUSE_SECONDS)


def process_and_send(engine: sa.Engine, config: Config, summary: RunSummary,
                     should_stop: Callable[[], bool] = lambda: False, gate: SmtpGate | None = None,
                     heartbeat: Callable[[], None] = lambda: None) -> None:
    """Process stored mail batch by batch, sending each batch's mail as soon as its transaction commits."""
    gate = gate or SmtpGate()

    def send() -> None:
        heartbeat()
        if not gate.is_open():
            return
        try:
            summary.sent += outbox.send_due(engine, config, unreachable=gate.close)
        except Exception as exc:  # the outbox keeps its rows; log and go on with intake
            summary.errors.append(f"smtp: {exc}")
            log.exception("outbox.error", error=str(exc))
        heartbeat()

    for outcome in pipeline.process_pending(engine, config, should_stop=should_stop, after_batch=send):
        summary.processed[outcome.status] = summary.processed.get(outcome.status, 0) + 1
    send()  # retries that fell due while nothing new came in


def run_once(engine: sa.Engine, config: Config) -> RunSummary:
    """Handle everything waiting: the inbox, stored rows not yet processed, due timers, due outgoing mail."""
    summary = RunSummary()
    if config.imap is not None:
        try:
            client = poller.connect(config.imap)
        except (IMAPClientError, OSError) as exc:
            summary.errors.append(f"imap: {exc}")
            log.error("imap.connect_failed", host=config.imap.host, error=str(exc))
        else:
            try:
                summary.stored = poller.poll_once(client, engine, config.imap, config.limits.max_message_bytes).stored
            finally:
                poller.close(client)
    process_and_send(engine, config, summary)
    if sweep.sweep(engine, config).total:  # due timers, after the mail that may have answered them
        process_and_send(engine, config, summary)
    return summary


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps so the current message is always finished.

    SIGHUP only raises ``reload_requested``: the loop re-reads the config at its next turn.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.reload_requested = False
        self.work_waiting = threading.Event()  # a timer queued mail: stop waiting for IMAP and send it
        self.heartbeat: Callable[[], None] = lambda: None

    def set(self, *_: object) -> None:
        self._stop.set()

    def request_reload(self, *_: object) -> None:
        self.reload_requested = True

    def __call__(self) -> bool:
        return self._stop.is_set()

    def wants_attention(self) -> bool:
        return self._stop.is_set() or self.reload_requested or self.work_waiting.is_set()

    def wake(self) -> None:
        self.work_waiting.set()

    def sleep(self, seconds: float) -> None:
        """Sleep in one-second slices, telling the watchdog we are alive, until stopped or asked to reload."""
        deadline = time.monotonic() + seconds
        while not self.wants_attention() and time.monotonic() < deadline:
            self.heartbeat()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)
        signal.signal(signal.SIGHUP, self.request_reload)


def _reload(config: Config, reload_config: Callable[[], Config] | None) -> tuple[Config, str]:
    """A bad new config is rejected with its reasons and the running one kept.

    Also returns what `systemctl status` should keep showing: a rejected reload stays visible there until a good
    one replaces it, so an operator who missed the log line still learns the edit did not take.
    """
    if reload_config is None:
        return config, ""
    try:
        new = reload_config()
    except ConfigError as exc:
        log.error("config.reload_rejected", problems=exc.problems, detail="keeping the running configuration")
        problems = "; ".join(exc.problems)
        systemd.notify(f"STATUS=config reload rejected ({problems}); running on the previous configuration")
        return config, f" (config reload rejected: {problems})"
    notify.templates.cache_clear()
    log.info("config.reloaded", source=str(new.source))
    systemd.notify(f"STATUS=configuration reloaded from {new.source}")
    return new, ""


def run_forever(engine: sa.Engine, config: Config, stop: StopFlag,
                reload_config: Callable[[], Config] | None = None) -> None:
    log.info("daemon.started", imap=bool(config.imap), smtp=bool(config.smtp))
    if config.metrics.listen:
        metrics.serve(config.metrics.listen, engine)
        log.info("metrics.listening", listen=config.metrics.listen)
    stop.heartbeat = lambda: systemd.notify("WATCHDOG=1")
    timers = sweep.Timers(engine, config, stop.wake).start()
    try:
        _loop(engine, config, stop, reload_config, timers)
    finally:
        timers.stop()
    log.info("daemon.stopped")


def _loop(engine: sa.Engine, config: Config, stop: StopFlag, reload_config: Callable[[], Config] | None,
          timers: sweep.Timers) -> None:
    delay = RECONNECT_MIN
    client: IMAPClient | None = None
    smtp_gate = SmtpGate()
    ready = False
    status_note = ""
    while not stop():
        stop.work_waiting.clear()
        if stop.reload_requested:
            stop.reload_requested = False
            new, status_note = _reload(config, reload_config)
            if new.imap != config.imap and client is not None:
                poller.close(client)
                client = None
            config = new
            timers.reconfigure(config)
        summary = RunSummary()
        backlog = 0
        try:
            if config.imap is not None and client is None:
                client = poller.connect(config.imap)
                metrics.IMAP_CONNECTED.set(1)
                log.info("imap.connected", host=config.imap.host, folder=config.imap.folder)
            if client is not None and config.imap is not None:
                backlog = poller.poll_once(client, engine, config.imap, config.limits.max_message_bytes,
                                           limit=INTAKE_CHUNK).remaining
            delay = RECONNECT_MIN
        except (IMAPClientError, OSError) as exc:
            log.error("imap.error", error=str(exc), retry_in=round(delay, 1))
            metrics.IMAP_CONNECTED.set(0)
            systemd.notify(f"STATUS=IMAP unreachable ({exc}); retrying in {round(delay)} s", "WATCHDOG=1")
            if client is not None:
                poller.close(client)
                client = None
            process_and_send(engine, config, summary, stop, smtp_gate, stop.heartbeat)
            stop.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX)
            continue
        process_and_send(engine, config, summary, stop, smtp_gate, stop.heartbeat)
        systemd.notify(*(["READY=1"] if not ready else []), "WATCHDOG=1",
                       f"STATUS=processing mail for {config.helpdesk.address}{status_note}")
        ready = True
        if stop.wants_attention() or backlog:
            continue  # a backlog is taken in chunks: the first mails are answered while the rest wait
        if client is not None and config.imap is not None:
            try:
                poller.wait_for_mail(client, config.imap, stop.wants_attention, stop.heartbeat)
            except (IMAPClientError, OSError) as exc:
                log.warning("imap.wait_failed", error=str(exc))
                poller.close(client)
                client = None
        else:
            stop.sleep(config.imap.poll_seconds if config.imap else 5)
    systemd.notify("STOPPING=1", "STATUS=stopping")
    if client is not None:
        poller.close(client)
