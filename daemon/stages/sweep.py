"""The timers of the complaint process, swept by a scheduler job: SLA deadlines, auto-closing and the action
items' reminders (``stages.actions``).

- First response overdue: managers get ``escalation``.
- Resolution overdue: the customer gets ``delayed`` ("handled as soon as possible") and managers get
  ``escalation``.
- Resolved with no answer for ``closing.auto_close_after``: closed, and the customer told.

Each firing is an event on the ticket and happens once: the breach time is written in the same transaction
as the mail it queues, so a crash or a second sweep cannot send it twice. ``pending`` tickets are skipped (their
clock stands still; leaving ``pending`` moves the deadlines). Instances sharing a PostgreSQL database sweep
at the same moments: each ticket is taken with ``FOR UPDATE SKIP LOCKED``, so one of them fires it, and the
others find it fired (or skip it while it is being fired).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from ticketd.daemon.config import Config
from ticketd.daemon.config.reports import ReportConfig, cron_trigger
from ticketd.daemon.outgoing import notify
from ticketd.daemon.service.privacy import purge_raw_mail
from ticketd.daemon.stages import actions, closing
from ticketd.daemon.stages.digest import send_digests
from ticketd.storage import batch
from ticketd.storage.db import session_scope
from ticketd.storage.models import SYSTEM_ACTOR, Ticket, utcnow

log = structlog.get_logger("ticketd.sweep")
RUNNING = ("new", "open")  # pending: the clock stands still
BATCH = 200


@dataclass
class SweepResult:
    first_response: int = 0
    resolution: int = 0
    auto_closed: int = 0
    action_reminders: int = 0
    stage: int = 0  # [process.<type>] stage targets missed

    @property
    def total(self) -> int:
        return self.first_response + self.resolution + self.auto_closed + self.action_reminders + self.stage


def sweep(engine: sa.Engine, config: Config, now: datetime | None = None) -> SweepResult:
    now = now or utcnow()
    result = SweepResult()
    with session_scope(engine) as session:
        for ticket in due(session, col(Ticket.first_response_due), col(Ticket.first_response_breached_at), now,
                          col(Ticket.first_response_at).is_(None)):
            breach(session, config, ticket, "first_response", ticket.first_response_due, now)
            result.first_response += 1
        for ticket in due(session, col(Ticket.resolution_due), col(Ticket.resolution_breached_at), now):
            breach(session, config, ticket, "resolution", ticket.resolution_due, now)
            notify.to_requester(session, config, ticket, "delayed", cause="timer")
            result.resolution += 1
        for ticket in due(session, col(Ticket.stage_due), col(Ticket.stage_breached_at), now):
            # a stage's target is the same kind of deadline: the managers are told once per stage entered
            breach(session, config, ticket, "stage", ticket.stage_due, now)
            result.stage += 1
        quiet_since = now - config.closing.auto_close_after
        stmt = (select(Ticket).where(Ticket.state == "resolved", col(Ticket.resolution_at) <= quiet_since).limit(BATCH)
                .with_for_update(skip_locked=True))
        for ticket in session.exec(stmt):
            closing.auto_close(session, config, ticket, now)
            result.auto_closed += 1
        result.action_reminders = actions.sweep_reminders(session, config, now)
    if result.total:
        log.info("sweep.fired", first_response=result.first_response, resolution=result.resolution,
                 auto_closed=result.auto_closed, action_reminders=result.action_reminders, stage=result.stage)
    return result


def due(session: Session, due_column: Mapped[datetime | None], breached_column: Mapped[datetime | None],
        now: datetime, *extra: sa.ColumnElement[bool]) -> list[Ticket]:
    stmt = (select(Ticket).where(col(Ticket.state).in_(RUNNING), due_column <= now,
                                 breached_column.is_(None), col(Ticket.merged_into_id).is_(None), *extra)
            .order_by(col(Ticket.id)).limit(BATCH).with_for_update(skip_locked=True))
    return list(session.exec(stmt))


def breach(session: Session, config: Config, ticket: Ticket, which: str, was_due: datetime | None,
           now: datetime) -> None:
    setattr(ticket, f"{which}_breached_at", now)
    late = describe(now - was_due) if was_due else "?"
    batch.event(session, ticket_id=ticket.id, actor=SYSTEM_ACTOR, what=f"sla:{which}-overdue",
                old=notify.local_time(config, was_due), new=f"{late} late" + (f" in {ticket.stage}"
                                                                              if which == "stage" else ""), at=now)
    managers = notify.managers(session)
    notify.to_agents(session, config, ticket, managers, "escalation", {
        "breach": which, "due": notify.local_time(config, was_due), "overdue": late, "stage": ticket.stage or ""},
        cause="timer")


def describe(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return " ".join(([f"{days} d"] if days else []) + ([f"{hours} h"] if hours else []) + [f"{minutes} min"])


class Timers:
    """The scheduler that runs ``sweep`` every ``sla.sweep_seconds`` in its own thread, and each
    ``[[reports]]`` entry on its cron schedule (in the helpdesk's time zone).

    Each job has its own transaction; what it queues is sent by the main loop, which ``wake`` interrupts
    (an IDLE wait would otherwise hold the mail until the next message arrives).
    """

    JOB = "sla-sweep"
    REPORT_JOB = "report:"
    DIGEST_JOB = "digest"
    RETENTION_JOB = "retention"
    RETENTION_EVERY_SECONDS = 3600  # raw mail older than N days: an hour late is on time

    def __init__(self, engine: sa.Engine, config: Config, wake: Callable[[], None]) -> None:
        self.engine, self.config, self.wake = engine, config, wake
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})

    def start(self) -> Timers:
        self.scheduler.add_job(self.run, "interval", seconds=self.config.sla.sweep_seconds, id=self.JOB,
                               next_run_time=datetime.now(UTC))
        self._add_reports(self.config)
        self._add_digest(self.config)
        self._add_retention(self.config)
        self.scheduler.start()
        return self

    def _add_retention(self, config: Config) -> None:
        if config.retention.raw_mail_days:
            self.scheduler.add_job(self.retention, "interval", seconds=self.RETENTION_EVERY_SECONDS,
                                   id=self.RETENTION_JOB, name="raw mail retention", next_run_time=datetime.now(UTC))

    def retention(self) -> None:
        try:
            purge_raw_mail(self.engine, self.config.retention.raw_mail_days, utcnow())
        except Exception as exc:  # the next hour tries again; raw mail kept an hour longer harms nobody
            log.exception("retention.failed", error=str(exc))

    def _add_digest(self, config: Config) -> None:
        if config.digest.schedule:
            self.scheduler.add_job(self.digest, cron_trigger(config.digest.schedule, config.tz), id=self.DIGEST_JOB,
                                   name="agents' digest")

    def digest(self) -> None:
        try:
            send_digests(self.engine, self.config, utcnow())
        except Exception as exc:  # the next morning tries again; the sweep and the loop go on
            log.exception("digest.failed", error=str(exc))
        self.wake()

    def _add_reports(self, config: Config) -> None:
        for report in config.reports:
            self.scheduler.add_job(self.report, cron_trigger(report.schedule, config.tz), args=[report],
                                   id=f"{self.REPORT_JOB}{report.name}", name=f"report {report.name}")

    def report(self, report: ReportConfig) -> None:
        from ticketd.daemon.reports.mail import send_report  # Babel and the report modules: only when one runs

        try:
            send_report(self.engine, self.config, report)
        except Exception as exc:  # send_report reports its own failures; this guards the scheduler's thread
            log.exception("report.job_failed", report=report.name, error=str(exc))
        self.wake()  # the report, or the admin's alert about it

    def run(self) -> None:
        try:
            result = sweep(self.engine, self.config)
        except Exception as exc:  # the next run tries again; the loop and the other timers go on
            log.exception("sweep.failed", error=str(exc))
            return
        if result.total:
            self.wake()

    def reconfigure(self, config: Config) -> None:
        old, self.config = self.config, config
        if old.sla.sweep_seconds != config.sla.sweep_seconds:
            self.scheduler.reschedule_job(self.JOB, trigger="interval", seconds=config.sla.sweep_seconds)
        if old.reports != config.reports or old.tz != config.tz:
            for job in self.scheduler.get_jobs():
                if job.id.startswith(self.REPORT_JOB):
                    job.remove()
            self._add_reports(config)
        if old.digest != config.digest or old.tz != config.tz:
            if self.scheduler.get_job(self.DIGEST_JOB) is not None:
                self.scheduler.remove_job(self.DIGEST_JOB)
            self._add_digest(config)
        if old.retention != config.retention:
            if self.scheduler.get_job(self.RETENTION_JOB) is not None:
                self.scheduler.remove_job(self.RETENTION_JOB)
            self._add_retention(config)

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)
