"""IMAP intake of every mailbox with a fixed number of threads: one (``intake``) watches the IDLE connections and
keeps time, ``[intake] workers`` take the steps (``mailbox.Steps``: connect, store, move, back into IDLE).

Intake used to run a thread and a connection per mailbox. With hundreds of mailboxes that was hundreds of threads
each waking every second, and as many IDLE sessions on the server: Dovecot watches at most
``fs.inotify.max_user_instances`` sessions of one system user (128 by default, for all its clients together) and
tells the others of new mail only at its own check every 30 s. That, not the threads, was where the time went
(README "Many mailboxes"). Now the IDLE sockets sit in one selector, every IDLE is renewed with a look at the
folder on its own schedule (quickly until the server has shown it announces mail on that connection), a login
never has more than ``connections_per_login`` connections (folders beyond that are polled in turn on one), and
past ``idle_connections`` the least busy mailboxes are polled (``plan``).

The scheduler's thread is the only one to touch a mailbox's state between steps; a worker owns a mailbox
(``busy``) for one step and hands it back through a queue, waking the thread through a socket pair it selects on
with the IDLE sockets. Nothing is shared otherwise, so nothing is locked.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import queue
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from imapclient.exceptions import IMAPClientError

from ticketd.daemon.config import IntakeConfig
from ticketd.daemon.config.mailboxes import Mailbox
from ticketd.daemon.intake import imap as poller
from ticketd.daemon.intake import plan
from ticketd.daemon.intake.mailbox import RECONNECT_MIN, MailboxIntake, Steps
from ticketd.daemon.intake.plan import Login
from ticketd.daemon.service.connections import Connections
from ticketd.daemon.service.coordination import LOCK_RETRY_SECONDS, Coordinator
from ticketd.daemon.service.metrics import Metrics

log = structlog.get_logger("ticketd.intake")

FETCH, RENEW, CHORE = 0, 1, 2  # a worker takes the most urgent first: mail announced or due, renewals, the rest
PLAN_EVERY_SECONDS = 60.0  # which mailboxes are watched is looked at again this often
LOOKS_WRITTEN_EVERY_SECONDS = 60.0  # ``ticketd status``'s "last poll" is this fresh
TICK_SECONDS = 1.0  # the longest the thread sleeps: a stop is seen within it


@dataclass(eq=False)
class Job:
    """One step for a worker: ``boxes`` are its own until it ends; ``slot`` is a connection of that login counted
    for the step's time (a poll's)."""

    kind: str
    boxes: list[MailboxIntake]
    run: Callable[[], object]
    slot: Login | None = None
    result: object = None
    error: BaseException | None = field(default=None, repr=False)


class Workers:
    """A fixed number of daemon threads taking jobs from a queue. Not ``ThreadPoolExecutor``: its threads are
    joined when the interpreter exits, so a worker stuck on a dead server would hold up the daemon's exit."""

    def __init__(self, count: int, done: Callable[[Job], None]) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._done = done
        self._threads = [threading.Thread(target=self._work, name=f"intake-worker-{n}", daemon=True)
                         for n in range(count)]

    def start(self) -> Workers:
        for thread in self._threads:
            thread.start()
        return self

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.result = job.run()
            except BaseException as exc:
                job.error = exc
            self._done(job)


class Scheduler:
    def __init__(self, boxes: list[MailboxIntake], steps: Steps, settings: IntakeConfig) -> None:
        self.boxes, self.steps, self.settings = boxes, steps, settings
        self.stopping = steps.stopping
        self._by_name = {box.name: box for box in boxes}
        self._by_login: dict[Login, list[MailboxIntake]] = {}
        for box in boxes:
            self._by_login.setdefault(box.login, []).append(box)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._finished_jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._workers = Workers(settings.workers, self._job_done)
        self._timers: list[tuple[float, int, int, int, MailboxIntake]] = []  # (when, seq, turn, priority, box)
        self._ready: list[tuple[int, int, int, MailboxIntake]] = []  # (priority, seq, turn, box)
        self._seq = itertools.count()
        self._running = 0
        self._taking = False  # one lease asked for at a time: on PostgreSQL a full pool makes the asking wait
        self._connections: Counter[Login] = Counter()  # open, or being opened, per login
        self._next_plan = 0.0
        self._next_chores = 0.0
        self._chores_running = False
        self._looks_written = 0.0
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)

    def start(self) -> Scheduler:
        self._workers.start()
        self._thread.start()
        return self

    def stop(self, timeout: float) -> None:
        self._deadline = time.monotonic() + max(0.5, timeout - 0.5)
        self.stopping.set()
        self._wake()
        self._thread.join(timeout)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # its buffer full: it is awake anyway
            self._wake_w.send(b"\0")

    def _job_done(self, job: Job) -> None:
        """In the worker's thread: hand the job back."""
        self._finished_jobs.put(job)
        self._wake()

    # --- the thread --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            now = time.monotonic()
            self._plan(now)
            watched = sum(box.watched for box in self.boxes)
            log.info("intake.started", mailboxes=len(self.boxes), logins=len(self._by_login), watched=watched,
                     polled=len(self.boxes) - watched, workers=self.settings.workers)
            for box in self.boxes:
                self._at(box, now, CHORE)
            while not self.stopping.is_set():
                try:
                    self._turn()
                except Exception as exc:
                    log.error("intake.scheduler_error", error=repr(exc), exc_info=exc)
                    self.stopping.wait(RECONNECT_MIN)
            self._shutdown()
        finally:
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _turn(self) -> None:
        now = time.monotonic()
        timeout = TICK_SECONDS if not self._timers else min(TICK_SECONDS, max(0.0, self._timers[0][0] - now))
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
            else:
                self._heard(key.data)
        self._collect()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, seq, turn, priority, box = heapq.heappop(self._timers)
            if turn == box.turn and not box.busy:
                heapq.heappush(self._ready, (priority, seq, turn, box))
        if now >= self._next_plan:
            self._plan(now)
        self._dispatch(now)

    def _collect(self) -> None:
        while True:
            try:
                job = self._finished_jobs.get_nowait()
            except queue.Empty:
                return
            self._finished(job)

    def _heard(self, box: MailboxIntake) -> None:
        """An IDLE socket is readable: new mail, or a keepalive, or the end of the connection."""
        responses: list[tuple[object, ...]] = []
        with contextlib.suppress(IMAPClientError, OSError):  # the step finds out what is wrong, and reconnects
            responses = box.client.idle_check(timeout=0) if box.client is not None else []
        if folders := poller.folders_with_news(responses):
            self._news(box.login, folders)
        if responses and not poller.announces_new_mail(responses):
            return  # NOTIFY's news of other folders, "* OK Still here", flags, expunges
        self._unregister(box)
        box.announced = bool(responses)
        self._at(box, time.monotonic(), FETCH)

    def _news(self, login: Login, folders: set[str]) -> None:
        """NOTIFY told of mail in polled folders of a login: their turn is now (or right after the current one)."""
        for box in self._by_login[login]:
            if box.mailbox.imap.folder not in folders or (box.watched and box.can_idle) or box.lease is None:
                continue
            if box.busy:
                box.again = True
            else:
                self._at(box, time.monotonic(), FETCH)

    def _at(self, box: MailboxIntake, when: float, priority: int) -> None:
        """The mailbox's next step at ``when``; any earlier timer of it is void."""
        box.turn += 1
        heapq.heappush(self._timers, (when, next(self._seq), box.turn, priority, box))

    # --- handing out steps -------------------------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        if self._running < self.settings.workers and now >= self._next_chores and not self._chores_running:
            self._start(self._chores(now))  # first: under load the hand-over would wait for a quiet moment
        held_back = []
        while self._running < self.settings.workers and self._ready:
            entry = heapq.heappop(self._ready)
            box = entry[3]
            if entry[2] != box.turn or box.busy:
                continue
            if box.lease is None and self._taking:
                held_back.append(entry)
                break  # what is left is no more urgent: leases to take, or to give up
            job = self._job_for(box, now)
            if job is None:
                held_back.append(entry)
                continue
            self._start(job)
        for entry in held_back:
            heapq.heappush(self._ready, entry)

    def _job_for(self, box: MailboxIntake, now: float) -> Job | None:
        """The step the mailbox's state calls for, or None while its login has no connection to spare."""
        if box.lease is None:
            self._taking = True
            return Job("take", [box], functools.partial(self.steps.take, box))
        if box.give_up:
            return Job("release", [box], functools.partial(self.steps.release, box, True))
        if box.client is not None or (box.watched and box.can_idle):
            if box.client is None and not box.counted:
                if not self._spare(box.login):
                    return None
                box.counted = True
            pushed, box.announced = box.announced, False
            return Job("watch", [box], functools.partial(self.steps.watch, box, pushed))
        if not self._spare(box.login):
            return None
        group = [box, *(other for other in self._by_login[box.login]
                        if other is not box and self._due_soon(other, now))]
        for other in group[1:]:
            other.turn += 1  # taken along: its own timer is void
        return Job("poll", group, functools.partial(self.steps.poll, group), slot=box.login)

    def _due_soon(self, box: MailboxIntake, now: float) -> bool:
        """A polled mailbox that can go along in this round, rather than get a login of its own shortly after."""
        return (not box.busy and box.lease is not None and not box.give_up and box.client is None
                and not (box.watched and box.can_idle) and box.due <= now + box.mailbox.imap.poll_seconds / 2)

    def _spare(self, login: Login) -> bool:
        if self._connections[login] >= self.settings.connections_per_login:
            return False
        self._connections[login] += 1
        return True

    def _start(self, job: Job) -> None:
        for box in job.boxes:
            box.busy = True
            self._unregister(box)
        self._running += 1
        self._workers.submit(job)

    def _finished(self, job: Job) -> None:
        self._running -= 1
        now = time.monotonic()
        if job.slot is not None:
            self._connections[job.slot] -= 1
        if job.kind == "take":
            self._taking = False
        if job.error is not None:
            log.error("intake.step_failed", step=job.kind, mailboxes=[box.name for box in job.boxes],
                      error=repr(job.error), exc_info=job.error)
            for box in job.boxes:
                box.due = now + RECONNECT_MIN
        if job.kind == "chores":
            self._chores_done(job, now)
            return
        for box in job.boxes:
            box.busy = False
            if box.again:
                box.again, box.due = False, now
            if box.news:
                self._news(box.login, box.news)
                box.news = set()
            if box.notify and not box.can_notify:
                self._next_plan = now  # the server has no NOTIFY for it: another connection of the login may
            if box.counted and box.client is None:
                box.counted = False
                self._connections[box.login] -= 1
            if box.watched and not box.can_idle:
                self._next_plan = now  # the server has no IDLE: poll it, and let another be watched
            elif job.kind == "poll" and box.watched and box.state.error is None:
                box.due = now  # chosen to be watched while it was being polled: connect now, not at its next poll
            if self.stopping.is_set():
                continue
            if box.idling:
                self._register(box)
                self._at(box, box.idle_since + self.steps.renew_after(box), RENEW)
            else:
                self._at(box, box.due, FETCH if box.lease is not None else CHORE)

    def _register(self, box: MailboxIntake) -> None:
        assert box.client is not None
        sock = box.client.socket()
        try:
            self._selector.register(sock, selectors.EVENT_READ, box)
        except (KeyError, ValueError, OSError):  # not a usable socket any more: the step will find out
            box.announced = False
            self._at(box, time.monotonic(), FETCH)
            return
        box.socket = sock

    def _unregister(self, box: MailboxIntake) -> None:
        sock, box.socket = box.socket, None
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)

    # --- what is watched, hand-over and the last look ---------------------------------------------------------

    def _plan(self, now: float) -> None:
        mailboxes: list[Mailbox] = [box.mailbox for box in self.boxes]
        chosen = plan.watched(mailboxes, {box.name: box.busyness(now) for box in self.boxes},
                              per_login=self.settings.connections_per_login,
                              idle_total=self.settings.idle_connections,
                              can_idle=lambda mailbox: self._by_name[mailbox.name].can_idle,
                              now_watched=[box.name for box in self.boxes if box.watched])
        changed = 0
        for box in self.boxes:
            was, box.watched = box.watched, box.name in chosen
            if was == box.watched or box.busy or box.lease is None:
                continue
            changed += 1
            if box.idling:  # no longer watched: its step looks once more and logs out
                self._unregister(box)
                self._at(box, now, CHORE)
            elif box.watched and box.client is None:
                self._at(box, now, FETCH)
        for boxes in self._by_login.values():
            self._choose_notifier(boxes, now)
        if changed:
            log.info("intake.replanned", watched=len(chosen), polled=len(self.boxes) - len(chosen), changed=changed)
        self._next_plan = now + PLAN_EVERY_SECONDS

    def _choose_notifier(self, boxes: list[MailboxIntake], now: float) -> None:
        """One watched connection of a login that has polled folders tells of their mail too, by NOTIFY where the
        server has it: they are then fetched within a second, and polled every ``poll_seconds`` only in case."""
        polled = tuple(box.mailbox.imap.folder for box in boxes if not (box.watched and box.can_idle))
        notifier = next((box for box in boxes if box.watched and box.can_idle and box.can_notify), None)
        for box in boxes:
            wanted = polled if box is notifier else ()
            if box.notify == wanted:
                continue
            box.notify = wanted
            if box.idling and not box.busy:  # set it now rather than at the next renewal
                self._unregister(box)
                self._at(box, now, RENEW)

    def _chores(self, now: float) -> Job:
        self._chores_running = True
        held = [box.name for box in self.boxes if box.lease is not None and not box.give_up]
        looked: list[str] = []
        if now - self._looks_written >= LOOKS_WRITTEN_EVERY_SECONDS:
            looked = [box.name for box in self.boxes if box.looked_at > self._looks_written]
            self._looks_written = now
        return Job("chores", [], functools.partial(self.steps.chores, held, looked))

    def _chores_done(self, job: Job, now: float) -> None:
        self._chores_running = False
        self._next_chores = now + LOCK_RETRY_SECONDS
        for name in job.result if isinstance(job.result, list) else []:
            box = self._by_name[name]
            box.give_up = True
            if not box.busy and not self.stopping.is_set():
                self._unregister(box)
                self._at(box, now, CHORE)

    # --- stopping ----------------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Let running steps end, then log every connection out and release every lease, the workers in
        parallel, until the deadline: a step stuck on a dead server is left behind (its thread is a daemon)."""
        for box in self.boxes:
            self._unregister(box)
        self._wait_for_workers()
        for box in self.boxes:
            if not box.busy and (box.client is not None or box.lease is not None):
                box.busy = True
                self._running += 1
                self._workers.submit(Job("release", [box], functools.partial(self.steps.release, box)))
        self._wait_for_workers()
        self._workers.stop()

    def _wait_for_workers(self) -> None:
        while self._running and time.monotonic() < self._deadline:
            try:
                job = self._finished_jobs.get(timeout=max(0.01, min(0.5, self._deadline - time.monotonic())))
            except queue.Empty:
                continue
            self._finished(job)


class Intake:
    """IMAP intake as the daemon runs it: ``start`` with the mailboxes to poll, ``stop`` at the end or before a
    reload starts it again with the new ones. ``boxes`` are what ``systemctl status`` reports on. ``metrics`` and
    ``connections`` are the daemon's: its ``ticketd_imap_connected`` series is labelled with the mailbox's name, and
    reconnects reuse the daemon's OAuth2 token."""

    def __init__(self, engine: sa.Engine, coordinator: Coordinator, wake: Callable[[], None], metrics: Metrics,
                 connections: Connections) -> None:
        self.engine, self.coordinator, self.wake = engine, coordinator, wake
        self.metrics, self.connections = metrics, connections
        self.boxes: list[MailboxIntake] = []
        self._scheduler: Scheduler | None = None

    def start(self, mailboxes: list[Mailbox], max_bytes: int, settings: IntakeConfig) -> Intake:
        self.coordinator.mailbox_count = max(1, len(mailboxes))
        steps = Steps(self.engine, max_bytes, self.coordinator, self.wake, self.metrics, self.connections, settings,
                      threading.Event())
        self.boxes = [MailboxIntake(mailbox) for mailbox in mailboxes]
        self._scheduler = Scheduler(self.boxes, steps, settings).start() if self.boxes else None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._scheduler is not None:
            self._scheduler.stop(timeout)
            self._scheduler = None
