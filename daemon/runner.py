"""The daemon's main loop: process what is stored, send, wait — until asked to stop.

Intake runs beside it (``daemon/intake/scheduler.py``: one thread watching every IDLE connection and a few workers),
and wakes it when mail is stored. Each part is independent: an IMAP outage does not stop the outbox, an SMTP outage
does not stop intake, and nothing dies of a server's error.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests
import sqlalchemy as sa
import structlog
from imapclient.exceptions import IMAPClientError

from ticketd.daemon import pipeline
from ticketd.daemon.config import Config, ConfigError
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.intake.graph import GraphIntake, poll_graph_once
from ticketd.daemon.intake.lmtp import LmtpServer
from ticketd.daemon.intake.mailbox import MailboxIntake
from ticketd.daemon.intake.scheduler import Intake
from ticketd.daemon.intake.web import WebServer
from ticketd.daemon.outgoing import outbox, webhooks
from ticketd.daemon.service import systemd
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.coordination import Coordinator
from ticketd.daemon.service.graph import GraphError
from ticketd.daemon.service.metrics import Metrics
from ticketd.daemon.stages import sweep
from ticketd.storage import db
from ticketd.storage.directory import sync_agents

log = structlog.get_logger("ticketd.runner")

IDLE_TURN_SECONDS = 5.0  # with nothing to do, a look for due retries this often (intake wakes the loop)
SHARED_TURN_SECONDS = 1.0  # on PostgreSQL other instances store mail too, and do not wake this one
DATABASE_RETRY_MIN, DATABASE_RETRY_MAX = 1.0, 30.0  # the database away: the loop's waits between tries
SMTP_PAUSE_SECONDS = 30.0  # after the SMTP server could not be reached (the outbox's first retry is as late)
STATUS_NAMES = 5  # mailboxes named in systemd's STATUS line; past that, counted


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
                     heartbeat: Callable[[], None] = lambda: None, metrics: Metrics | None = None,
                     connections: Connections | None = None) -> None:
    """Process stored mail batch by batch, sending each batch's mail as soon as its transaction commits."""
    gate = gate or SmtpGate()
    metrics, connections = metrics or Metrics(), connections or Connections()

    def send() -> None:
        heartbeat()
        if not gate.is_open():
            return
        try:
            summary.sent += outbox.send_due(engine, config, unreachable=gate.close, metrics=metrics,
                                            connections=connections)
        except Exception as exc:  # the outbox keeps its rows; log and go on with intake
            summary.errors.append(f"smtp: {exc}")
            log.exception("outbox.error", error=str(exc))
        heartbeat()

    for outcome in pipeline.process_pending(engine, config, should_stop=should_stop, after_batch=send,
                                            metrics=metrics):
        summary.processed[outcome.status] = summary.processed.get(outcome.status, 0) + 1
    send()  # retries that fell due while nothing new came in


def run_once(engine: sa.Engine, config: Config, coordinator: Coordinator | None = None) -> RunSummary:
    """Handle everything waiting: the inboxes (those no other instance is polling), stored rows not yet
    processed, due timers, due outgoing mail. IMAP and SMTP share one token for the pass."""
    summary = RunSummary()
    coordinator = coordinator or Coordinator(engine)
    connections = Connections()
    for box in config.polled_mailboxes():
        lease = coordinator.try_mailbox(box.name)
        if lease is None:
            log.info("mailbox.busy", mailbox=box.name, detail="another instance is polling it")
            continue
        try:
            client = poller.connect(box.imap, connections)
        except (IMAPClientError, OSError) as exc:
            summary.errors.append(f"imap: {exc}")
            log.error("imap.connect_failed", host=box.imap.host, mailbox=box.name, error=str(exc))
            lease.release()
            continue
        try:
            summary.stored += poller.poll_once(client, engine, box.imap, config.limits.max_message_bytes,
                                               mailbox=box.name).stored
        finally:
            poller.close(client)
            lease.release()
    for name, graph in config.graph_mailboxes().items():
        lease = coordinator.try_mailbox(name)
        if lease is None:
            log.info("mailbox.busy", mailbox=name, detail="another instance is polling it")
            continue
        try:
            summary.stored += poll_graph_once(connections.graph.client(graph), engine, graph,
                                              config.limits.max_message_bytes, name).stored
        except GraphError as exc:
            summary.errors.append(f"graph: {exc}")
            log.error("graph.error", mailbox=name, code=exc.code, error=exc.message)
        finally:
            lease.release()
    process_and_send(engine, config, summary, connections=connections)
    if sweep.sweep(engine, config).total:  # due timers, after the mail that may have answered them
        process_and_send(engine, config, summary, connections=connections)
    webhooks.fan_out(engine, config.webhooks)  # the events of the pass, out to [[webhooks]]
    with requests.Session() as http:
        webhooks.send_due(engine, config, http)
    return summary


@dataclass
class Watchdog:
    """WATCHDOG=1 at most about once a second, however often the loop's steps report in: well inside any
    WatchdogSec, without a datagram per step (a busy turn on PostgreSQL would send several a second)."""

    last: float = float("-inf")

    def ping(self) -> None:
        now = time.monotonic()
        if now - self.last >= 0.9:
            systemd.notify("WATCHDOG=1")
            self.last = now


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
            # Intake's wake ends the wait at once; a signal only sets a flag (no lock in a signal handler), seen
            # within the slice.
            self.work_waiting.wait(min(1.0, max(0.0, deadline - time.monotonic())))

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
    log.info("config.reloaded", source=str(new.source))
    systemd.notify(f"STATUS=configuration reloaded from {new.source}")
    return new, ""


def run_forever(engine: sa.Engine, config: Config, stop: StopFlag,
                reload_config: Callable[[], Config] | None = None,
                coordinator: Coordinator | None = None, metrics: Metrics | None = None,
                connections: Connections | None = None) -> None:
    """Run until stopped. The metrics and the connections' tokens live as long as this call, across reloads:
    a reload swaps the configuration (and with it the templates and triage rules built from it), not the
    counters a scraper follows nor a token still valid."""
    coordinator = coordinator or Coordinator(engine).start()
    metrics, connections = metrics or Metrics(), connections or Connections()
    log.info("daemon.started", imap=bool(config.imap), smtp=bool(config.smtp), instance=coordinator.id,
             mailboxes=[box.name for box in config.polled_mailboxes()] + list(config.graph_mailboxes()))
    stop_serving: Callable[[], None] | None = None
    if config.metrics.listen:
        stop_serving = metrics.serve(config.metrics.listen, engine)
        log.info("metrics.listening", listen=config.metrics.listen)
    stop.heartbeat = Watchdog().ping
    timers = sweep.Timers(engine, config, stop.wake).start()
    intakes = Intake(engine, coordinator, stop.wake, metrics, connections).start(
        config.polled_mailboxes(), config.limits.max_message_bytes, config.intake)
    graph_intakes = start_graph(engine, config, coordinator, stop.wake, metrics, connections)
    listener = start_listeners(engine, config, stop.wake)
    hooks = webhooks.WebhookSender(engine, config).start()  # events out, in a thread: a slow receiver waits alone
    try:
        _loop(engine, config, stop, reload_config, timers, intakes, listener, coordinator, metrics, connections,
              graph_intakes, hooks)
    finally:
        systemd.notify("STOPPING=1", "STATUS=stopping")
        for server in listener:  # first: the MTA is told to come back later rather than left hanging, the form
            # closed
            server.stop()
        intakes.stop()
        stop_graph(graph_intakes)
        connections.graph.close()
        timers.stop()
        hooks.stop()
        coordinator.stop()
        if stop_serving is not None:
            stop_serving()
    log.info("daemon.stopped")


def start_graph(engine: sa.Engine, config: Config, coordinator: Coordinator, wake: Callable[[], None],
                metrics: Metrics, connections: Connections) -> list[GraphIntake]:
    """A thread per Graph mailbox (Graph has no IDLE: each polls every ``poll_seconds``), its client shared
    with the sending of its mail. The coordinator shares out the IMAP and Graph mailboxes together."""
    boxes = config.graph_mailboxes()
    coordinator.mailbox_count = max(1, len(config.polled_mailboxes()) + len(boxes))
    return [GraphIntake(engine, name, graph, connections.graph.client(graph), config.limits.max_message_bytes,
                        coordinator, wake, metrics).start() for name, graph in boxes.items()]


def stop_graph(intakes: list[GraphIntake]) -> None:
    for running in intakes:
        running._stop.set()
    for running in intakes:
        running.stop()


def start_listeners(engine: sa.Engine, config: Config, wake: Callable[[], None]) -> list[LmtpServer | WebServer]:
    """The intakes others connect to: the mail system's (LMTP) and the customers' browsers (the web form)."""
    servers: list[LmtpServer | WebServer] = []
    if config.lmtp:
        servers.append(LmtpServer(engine, config, wake).start())
    if config.webform:
        servers.append(WebServer(engine, config, wake).start())
    return servers


def _loop(engine: sa.Engine, config: Config, stop: StopFlag, reload_config: Callable[[], Config] | None,
          timers: sweep.Timers, intakes: Intake, listener: list[LmtpServer | WebServer],
          coordinator: Coordinator, metrics: Metrics, connections: Connections,
          graph_intakes: list[GraphIntake] | None = None, hooks: webhooks.WebhookSender | None = None) -> None:
    """Process what is stored (by this instance's intake or another's), send, and wait to be woken.

    ``intakes`` is started again when a reload changes the mailboxes or ``[intake]``; ``listener`` (the LMTP server
    and the web form, when configured) is replaced in place when it changes their sections or the size limit. Other
    instances' intake does not wake this one; on PostgreSQL the loop therefore looks for work every
    ``SHARED_TURN_SECONDS``.
    """
    smtp_gate = SmtpGate()
    outage = Outage()
    ready = False
    status_note = ""
    shown = ""
    turn = SHARED_TURN_SECONDS if db.shared(engine) else IDLE_TURN_SECONDS
    while not stop():
        stop.work_waiting.clear()
        if stop.reload_requested:
            stop.reload_requested = False
            new, status_note = _reload(config, reload_config)
            if (new.polled_mailboxes() != config.polled_mailboxes() or new.limits != config.limits
                    or new.intake != config.intake):
                intakes.stop()
                for dropped in {b.name for b in config.polled_mailboxes()} - {b.name for b in new.polled_mailboxes()}:
                    metrics.mailbox_gone(dropped)
                intakes.start(new.polled_mailboxes(), new.limits.max_message_bytes, new.intake)
            if graph_intakes is not None and (new.graph_mailboxes() != config.graph_mailboxes()
                                              or new.limits != config.limits):
                stop_graph(graph_intakes)
                for dropped in set(config.graph_mailboxes()) - set(new.graph_mailboxes()):
                    metrics.mailbox_gone(dropped)
                connections.graph.keep_only(list(new.graph_mailboxes().values()))
                graph_intakes[:] = start_graph(engine, new, coordinator, stop.wake, metrics, connections)
            coordinator.mailbox_count = max(1, len(new.polled_mailboxes()) + len(new.graph_mailboxes()))
            if new.lmtp != config.lmtp or new.webform != config.webform or new.limits != config.limits:
                for server in listener:
                    server.stop()
                listener[:] = start_listeners(engine, new, stop.wake)
            for server in listener:
                server.reconfigure(new)
            connections.tokens.keep_only(new.oauth2)
            if new is not config and new.agents:  # the edited [[agents]] holds from now on, as for every command
                with db.session_scope(engine) as session:
                    sync_agents(session, [(a.email, a.name, a.role, a.groups) for a in new.agents])
            config = new
            timers.reconfigure(config)
            if hooks is not None:
                hooks.config = config
        summary = RunSummary()
        try:
            process_and_send(engine, config, summary, stop, smtp_gate, stop.heartbeat, metrics, connections)
            coordinator.seen(time.monotonic())
        except sa.exc.SQLAlchemyError as exc:  # what a mail does wrong is quarantined below; this is the database
            delay = outage.failed(exc)
            systemd.notify(*(["READY=1"] if not ready else []),
                           f"STATUS=database unavailable ({outage.error}); retrying in {delay:.0f} s")
            ready, shown = True, ""
            stop.sleep(delay)
            continue
        outage.over()
        status = f"{status_line(config, intakes.boxes, graph_intakes or [])}{status_note}"
        if not ready or status != shown:  # told once, not at every turn
            systemd.notify(*(["READY=1"] if not ready else []), f"STATUS={status}")
            ready, shown = True, status
        stop.heartbeat()
        if stop.wants_attention() or summary.processed:
            continue  # more may have come in meanwhile
        stop.sleep(turn)


class Outage:
    """The database away: the loop waits for it, longer each time (the stored mail stays new, the LMTP listener
    answers 451, IMAP mail stays in the inbox), and says once when it went and once when it is back."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.delay = DATABASE_RETRY_MIN
        self.error = ""

    def failed(self, exc: sa.exc.SQLAlchemyError) -> float:
        self.error = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        delay = self.delay
        if self.since is None:
            self.since = time.monotonic()
            log.error("database.unavailable", error=self.error, retry_in=delay)
        else:
            log.warning("database.still_unavailable", error=self.error, retry_in=delay,
                        down_seconds=round(time.monotonic() - self.since, 1))
        self.delay = min(self.delay * 2, DATABASE_RETRY_MAX)
        return delay

    def over(self) -> None:
        if self.since is not None:
            log.info("database.back", down_seconds=round(time.monotonic() - self.since, 1))
        self.since, self.delay, self.error = None, DATABASE_RETRY_MIN, ""


def status_line(config: Config, intakes: Sequence[MailboxIntake],
                graph_intakes: Sequence[GraphIntake] = ()) -> str:
    """What `systemctl status` shows: the mailboxes polled here, or why one is not. With many mailboxes, how many
    and the first few problems: systemd shows one line."""
    states = [(i.mailbox.name, i.state) for i in intakes] + [(g.name, g.state) for g in graph_intakes]
    problems = [f"{name}: {state.error}" for name, state in states if state.error]
    if problems:
        more = len(problems) - STATUS_NAMES
        return "; ".join(problems[:STATUS_NAMES]) + (f"; {more} more mailboxes with errors" if more > 0 else "")
    held = [name for name, state in states if state.held]
    if len(held) > STATUS_NAMES:
        polled = f" (polling {len(held)} of {len(states)} mailboxes)"
    else:
        polled = f" (polling {', '.join(held)})" if held and len(states) > 1 else ""
    waiting = "" if held or not states else " (another instance polls the mailboxes)"
    return f"processing mail for {config.helpdesk.address}{polled}{waiting}"
