"""Prometheus metrics, served only when `[metrics] listen` is set (off by default).

Counters and the latency histogram are updated where the work happens; the gauges that describe queues
(backlog, outbox depth and age) are read from the database at scrape time, so they are right even with
several processes writing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import Session, func, select

from ticketd.storage.models import Inbound, Outbox

REGISTRY = CollectorRegistry()
MESSAGES = Counter("ticketd_messages", "Inbound messages processed, by outcome", ["status"], registry=REGISTRY)
OUTGOING = Counter("ticketd_outgoing", "Outgoing mail attempts, by result", ["status"], registry=REGISTRY)
LATENCY = Histogram("ticketd_processing_seconds", "Time to process one inbound message", registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IMAP_CONNECTED = Gauge("ticketd_imap_connected", "1 while the IMAP connection is up", registry=REGISTRY)


class QueueCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with Session(self.engine) as session:
            backlog = session.exec(select(func.count()).select_from(Inbound).where(Inbound.status == "new")).one()
            failed = session.exec(select(func.count()).select_from(Inbound).where(Inbound.status == "failed")).one()
            waiting = session.exec(select(func.count(), func.min(Outbox.created_at)).where(
                Outbox.status.in_(["queued", "failed"]))).one()
        yield GaugeMetricFamily("ticketd_inbound_backlog", "Stored messages not processed yet", value=backlog)
        yield GaugeMetricFamily("ticketd_inbound_quarantined", "Messages that failed processing", value=failed)
        yield GaugeMetricFamily("ticketd_outbox_depth", "Outgoing mail waiting to be sent", value=waiting[0])
        oldest = waiting[1]
        age = (datetime.now(UTC) - oldest.replace(tzinfo=UTC)).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("ticketd_outbox_oldest_seconds", "Age of the oldest waiting outgoing mail",
                                value=max(age, 0.0))


def serve(listen: str, engine: sa.Engine) -> None:
    host, _, port = listen.rpartition(":")
    REGISTRY.register(QueueCollector(engine))
    start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)
