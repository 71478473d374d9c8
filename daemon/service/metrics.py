"""Prometheus metrics, served only when `[metrics] listen` is set (off by default).

Counters and the latency histogram are updated where the work happens; the gauges that describe queues
(backlog, outbox depth and age) are read from the database at scrape time, so they are right even with
several processes writing.

A :class:`Metrics` owns its registry and is made by whoever runs the work (the daemon once, from start to stop,
across reloads) and handed down: two daemons or two tests in one process count apart, and a one-shot command
that is given none counts into a private one nobody scrapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select

from ticketd.storage.models import Inbound, Outbox

# Arrival to acknowledgment: LMTP answers in tens of milliseconds, IMAP IDLE in about half a second (Dovecot
# holds each notification 500 ms), polling in up to its interval. ``ticketd status`` counts into the same buckets.
ACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The counters of one running ticketd and the registry they are scraped from.

    ``imap_connected`` is one series per mailbox: each mailbox has its own thread and connection, and a single
    gauge would show whichever thread wrote last.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("ticketd_messages", "Inbound messages processed, by outcome", ["status"],
                                registry=self.registry)
        self.outgoing = Counter("ticketd_outgoing", "Outgoing mail attempts, by result", ["status"],
                                registry=self.registry)
        self.latency = Histogram("ticketd_processing_seconds", "Time to process one inbound message",
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.acknowledged = Histogram(
            "ticketd_acknowledgment_seconds",
            "From a new request's arrival (LMTP end of data, IMAP fetch, form POST) to its acknowledgment accepted "
            "by the SMTP server, by channel", ["channel"], registry=self.registry, buckets=ACK_BUCKETS)
        self.imap_connected = Gauge("ticketd_imap_connected", "1 while the mailbox's IMAP connection is up",
                                    ["mailbox"], registry=self.registry)

    def processed(self, status: str, seconds: float) -> None:
        self.latency.observe(seconds)
        self.messages.labels(status).inc()

    def mailbox_connected(self, mailbox: str, up: bool) -> None:
        self.imap_connected.labels(mailbox).set(1 if up else 0)

    def mailbox_gone(self, mailbox: str) -> None:
        """A mailbox no longer polled here (stopped, or dropped from the config) leaves no series behind."""
        with contextlib.suppress(KeyError):
            self.imap_connected.remove(mailbox)

    def serve(self, listen: str, engine: sa.Engine) -> Callable[[], None]:
        """Serve this registry, with the queue gauges read from ``engine``; returns what stops the server, so a
        daemon run again in the same process can listen on the same port."""
        host, _, port = listen.rpartition(":")
        queues = QueueCollector(engine)
        self.registry.register(queues)
        server, thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)
            self.registry.unregister(queues)

        return stop


class QueueCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with Session(self.engine) as session:
            backlog = session.exec(select(func.count()).select_from(Inbound).where(Inbound.status == "new")).one()
            failed = session.exec(select(func.count()).select_from(Inbound).where(Inbound.status == "failed")).one()
            waiting = session.exec(select(func.count(), func.min(Outbox.created_at)).where(
                col(Outbox.status).in_(["queued", "failed"]))).one()
        yield GaugeMetricFamily("ticketd_inbound_backlog", "Stored messages not processed yet", value=backlog)
        yield GaugeMetricFamily("ticketd_inbound_quarantined", "Messages that failed processing", value=failed)
        yield GaugeMetricFamily("ticketd_outbox_depth", "Outgoing mail waiting to be sent", value=waiting[0])
        oldest = waiting[1]
        age = (datetime.now(UTC) - oldest.replace(tzinfo=UTC)).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("ticketd_outbox_oldest_seconds", "Age of the oldest waiting outgoing mail",
                                value=max(age, 0.0))
