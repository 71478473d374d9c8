"""The daemon's main loop: intake, pipeline, outbox, wait — until asked to stop.

Each step is independent: an IMAP outage does not stop the outbox, an SMTP outage does not stop intake, and
the loop reconnects with capped exponential backoff instead of dying.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from ticketd.daemon import outbox, pipeline, poller
from ticketd.daemon.config import Config

log = structlog.get_logger("ticketd.runner")

RECONNECT_MIN = 1.0
RECONNECT_MAX = 300.0


@dataclass
class RunSummary:
    stored: int = 0
    processed: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    errors: list[str] = field(default_factory=list)


def process_and_send(engine: sa.Engine, config: Config, summary: RunSummary,
                     should_stop: Callable[[], bool] = lambda: False) -> None:
    for outcome in pipeline.process_pending(engine, config, should_stop=should_stop):
        summary.processed[outcome.status] = summary.processed.get(outcome.status, 0) + 1
    try:
        summary.sent += outbox.send_due(engine, config)
    except Exception as exc:  # the outbox keeps its rows; log and go on with intake
        summary.errors.append(f"smtp: {exc}")
        log.exception("outbox.error", error=str(exc))


def run_once(engine: sa.Engine, config: Config) -> RunSummary:
    """Handle everything waiting: the inbox, stored rows not yet processed, and due outgoing mail."""
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
    return summary


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps so the current message is always finished."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self, *_: object) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> None:
        self._event.wait(seconds)

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)


def run_forever(engine: sa.Engine, config: Config, stop: StopFlag) -> None:
    log.info("daemon.started", imap=bool(config.imap), smtp=bool(config.smtp))
    delay = RECONNECT_MIN
    client: IMAPClient | None = None
    while not stop():
        summary = RunSummary()
        try:
            if config.imap is not None and client is None:
                client = poller.connect(config.imap)
                log.info("imap.connected", host=config.imap.host, folder=config.imap.folder)
            if client is not None and config.imap is not None:
                poller.poll_once(client, engine, config.imap, config.limits.max_message_bytes)
            delay = RECONNECT_MIN
        except (IMAPClientError, OSError) as exc:
            log.error("imap.error", error=str(exc), retry_in=round(delay, 1))
            if client is not None:
                poller.close(client)
                client = None
            process_and_send(engine, config, summary, stop)
            stop.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX)
            continue
        process_and_send(engine, config, summary, stop)
        if stop():
            break
        if client is not None and config.imap is not None:
            try:
                poller.wait_for_mail(client, config.imap, stop)
            except (IMAPClientError, OSError) as exc:
                log.warning("imap.wait_failed", error=str(exc))
                poller.close(client)
                client = None
        else:
            stop.sleep(config.imap.poll_seconds if config.imap else 5)
    if client is not None:
        poller.close(client)
    log.info("daemon.stopped")
