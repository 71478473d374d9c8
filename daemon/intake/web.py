"""The complaint form on the web: ``[webform] listen``, served by ``ticketd run`` behind the site's reverse proxy.

A submission takes the mail's path. The form becomes an RFC 822 message (``webform.build_mail``) committed to
``inbound`` (channel ``web``) before the page answers, and the loop is woken: the customer then gets the same
``received`` mail and the ticket the same triage as for a mail. If the database cannot take it, the page says so
and keeps what was typed; nothing is half-stored (the submission's record and its mail commit together).

Abuse is met where it arrives: a signed form token that expires, a honeypot field a person never sees, a rate
limit per client address and per e-mail address (counted in the database, so it holds across restarts and
instances), limits per file, per request and on the number of files, and file names sanitised. With
``confirm_email`` the mail is stored ``held`` and the ticket opens only when the customer follows the link mailed
to the address they typed (a button on the page it opens, so a mail scanner fetching links confirms nothing).

The page is plain HTML in the customer's language (``?lang=``, else ``Accept-Language``), works without
JavaScript, and keeps each error next to its field (``aria-describedby``) with a summary on top.

Starlette serves it, on uvicorn in a thread of its own; storing, which blocks on the database, runs in a worker
thread. May import: ``daemon.outgoing``, ``daemon.intake.webform`` and every room before them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import tomllib
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from functools import partial
from importlib import resources
from typing import Any

import sqlalchemy as sa
import structlog
import uvicorn
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlmodel import Session, col, func, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ticketd.daemon.config import Config, WebformConfig
from ticketd.daemon.intake import webform
from ticketd.daemon.outgoing.outbox import OutgoingMail, queue_mail
from ticketd.mailtemplates.render import render
from ticketd.rules.commands import TYPES
from ticketd.storage import db
from ticketd.storage.inbound import store_inbound
from ticketd.storage.models import Inbound, WebSubmission, utcnow

log = structlog.get_logger()

MAILBOX = "web"  # the ``inbound.mailbox`` of a submission, unless ``[webform] mailbox`` names one
LANGUAGES = ("en", "tr")
HELD = "held"  # an inbound row waiting for its confirmation; the pipeline takes only ``new`` ones

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


class _BodyLimit:
    """Stops reading a request body past ``limit`` bytes, with or without a Content-Length (chunked)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: Callable[[], int]) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0
        limit = self.limit()

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        await self.app(scope, counted, send)


class _Site:
    """What every request reads: the configuration (swapped on a reload), the database, the pages."""

    def __init__(self, engine: sa.Engine, config: Config, wake: Callable[[], None]) -> None:
        self.engine, self.config, self.wake = engine, config, wake
        self.pages = Environment(loader=PackageLoader("ticketd.mailtemplates", "web"), autoescape=True,
                                 undefined=StrictUndefined)
        folder = resources.files("ticketd.mailtemplates") / "web"
        self.words = {lang: tomllib.loads((folder / f"{lang}.toml").read_text("utf-8")) for lang in LANGUAGES}

    @property
    def settings(self) -> WebformConfig:
        assert self.config.webform is not None
        return self.config.webform

    @property
    def secret(self) -> str:
        assert self.config.security.secret is not None
        return self.config.security.secret.get_secret_value()

    def limits(self) -> webform.Limits:
        # The files travel base64-encoded inside the stored mail, which must stay under the mail size limit.
        total = self.config.limits.max_message_bytes * 3 // 4 - 256 * 1024
        return webform.Limits(self.settings.max_files, min(self.settings.max_file_bytes, total), total)

    def request_limit(self) -> int:
        return self.config.limits.max_message_bytes

    def language(self, request: Request, chosen: str | None = None) -> str:
        if chosen in LANGUAGES:
            return str(chosen)
        asked = request.query_params.get("lang", "")
        if asked in LANGUAGES:
            return asked
        default = self.config.helpdesk.language if self.config.helpdesk.language in LANGUAGES else "en"
        return webform.negotiate_language(request.headers.get("accept-language", ""), LANGUAGES, default)

    def page(self, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.pages.get_template(name).render(lang=lang, t=self.words[lang], helpdesk=self.config.helpdesk.name,
                                                    **context)
        return HTMLResponse(html, status_code=status, headers=_SAFE_HEADERS)

    def form(self, lang: str, status: int = 200, values: dict[str, str] | None = None,
             errors: dict[str, str] | None = None, notice: str = "") -> HTMLResponse:
        t, limits = self.words[lang], self.limits()
        labels = {name: t[name] for name in ("name", "email", "company", "type", "category", "subject",
                                             "description", "attachments")}
        return self.page("form.html.j2", lang, status, token=webform.issue_token(self.secret, time.time()),
                         values=values or webform.Submission().values(),
                         errors=errors or {}, notice=notice, labels=labels, types=TYPES,
                         categories=self.config.categories.all(), other_lang="tr" if lang == "en" else "en",
                         action=f"?lang={lang}", max_text=webform.MAX_TEXT,
                         files_hint=t["attachments_hint"].format(count=limits.max_files,
                                                                 size=webform.size_text(limits.max_file_bytes)))

    def message(self, lang: str, heading: str, text: str, good: bool, status: int = 200, back: str = "./",
                button: dict[str, str] | None = None) -> HTMLResponse:
        t = self.words[lang]
        return self.page("message.html.j2", lang, status, heading=t[heading], text=text, good=good,
                         back=f"{back}?lang={lang}", button=button)


# A page of ours in nobody's frame, never sniffed into something else, no referrer leaking a confirmation link.
_SAFE_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Cache-Control": "no-store",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                            "frame-ancestors 'none'; base-uri 'none'"}


async def show_form(request: Request) -> Response:
    site: _Site = request.app.state.site
    return site.form(site.language(request))


async def submit(request: Request) -> Response:
    site: _Site = request.app.state.site
    lang = site.language(request)
    t = site.words[lang]
    limits = site.limits()
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        length = 0
    too_large = t["too_large"].format(size=webform.size_text(length), limit=webform.size_text(site.request_limit()))
    if length > site.request_limit():
        return site.form(lang, 413, notice=too_large)
    try:
        async with request.form(max_files=limits.max_files + 1, max_fields=40,
                                max_part_size=webform.MAX_TEXT * 4 + 1024) as form:
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            uploads = [webform.Upload(v.filename or "", await v.read()) for k, v in form.multi_items()
                       if k == "attachments" and isinstance(v, UploadFile)]
    except _TooLarge:
        limit = webform.size_text(site.request_limit())
        return site.form(lang, 413, notice=t["too_large"].format(size=f"> {limit}", limit=limit))
    except Exception as exc:  # a malformed body: too many parts, a broken multipart
        if "files" in str(exc).lower():
            return site.form(lang, 422, errors={"attachments": t["too_many_files"].format(limit=limits.max_files)})
        log.info("webform.bad_request", error=str(exc)[:200])
        return site.form(lang, 400, notice=t["expired"])
    lang = site.language(request, fields.get("lang"))
    t = site.words[lang]
    client = (request.client.host if request.client else "unknown")[:64]
    if fields.get("website"):  # the honeypot: a person never sees it, a bot fills in everything
        log.info("webform.honeypot", client=client)
        return site.message(lang, "done_title", t["done"].format(email=fields.get("email", "")[:320]), True)
    sub = webform.read_submission(fields, uploads, site.config.categories.all(), site.config.is_our_address, limits)
    try:
        nonce = webform.check_token(site.secret, fields.get("token", ""), time.time(),
                                    site.settings.token_hours * 3600)
    except webform.TokenError as exc:
        log.info("webform.token_refused", client=client, reason=str(exc))
        return site.form(lang, 400, values=sub.values(), notice=t["expired"])
    if sub.errors:
        errors = {name: t[key].format(**params) for name, (key, params) in sub.errors.items()}
        notice = t["files_again"] if sub.files and "attachments" not in sub.errors else ""
        return site.form(lang, 422, values=sub.values(), errors=errors, notice=notice)
    try:
        outcome = await run_in_threadpool(_store, site, sub, nonce, client, lang)
    except Exception as exc:  # the database or the disk: nothing stored; the visitor keeps what they typed
        log.error("webform.store_failed", error=str(exc)[:500], client=client)
        return site.form(lang, 503, values=sub.values(),
                         notice=t["unavailable"].format(address=site.config.helpdesk.address))
    if outcome == "rate_limited":
        log.info("webform.rate_limited", client=client)
        return site.form(lang, 429, values=sub.values(),
                         notice=t["rate_limited"].format(address=site.config.helpdesk.address))
    site.wake()
    if site.settings.confirm_email:
        return site.message(lang, "done_title", t["done_confirm"].format(email=sub.email,
                                                                         hours=site.settings.token_hours), True)
    return site.message(lang, "done_title", t["done"].format(email=sub.email), True)


def _store(site: _Site, sub: webform.Submission, nonce: str, client: str, lang: str) -> str:
    """One transaction: the submission's record, its mail, and (double opt-in) the confirmation mail."""
    config, settings = site.config, site.settings
    now = utcnow()
    try:
        with db.session_scope(site.engine) as session:
            if session.exec(select(WebSubmission.id).where(WebSubmission.nonce == nonce)).first() is not None:
                return "duplicate"  # the same page posted again: the first post stands
            since = now - timedelta(hours=1)
            for column, value in ((WebSubmission.client, client), (WebSubmission.email, sub.email)):
                recent = session.exec(select(func.count()).select_from(WebSubmission).where(
                    column == value, col(WebSubmission.at) > since)).one()
                if recent >= settings.rate_per_hour:
                    return "rate_limited"
            to = next((b.address for b in config.mailboxes if b.name == settings.mailbox and b.address),
                      config.helpdesk.address)
            raw = webform.build_mail(sub, to=to, nonce=nonce, client=client, language=lang, now=now,
                                     host=config.helpdesk.address.rpartition("@")[2])
            row = store_inbound(session, raw, settings.mailbox or MAILBOX, recipients=[to], channel="web")
            if settings.confirm_email:
                session.execute(sa.update(Inbound).where(col(Inbound.id) == row.id).values(status=HELD))
            record = WebSubmission(nonce=nonce, client=client, email=sub.email, inbound_id=row.id, language=lang,
                                   at=now)
            session.add(record)
            session.flush()
            if settings.confirm_email:
                assert record.id is not None
                _queue_confirmation(session, site, sub, record.id, nonce, lang)
    except sa.exc.IntegrityError:  # the same page posted twice at the same moment: the other post stored it
        return "duplicate"
    log.info("inbound.stored", inbound_id=row.id, mailbox=settings.mailbox or MAILBOX, channel="web", size=len(raw),
             held=settings.confirm_email)
    return "stored"


def _queue_confirmation(session: Session, site: _Site, sub: webform.Submission, submission_id: int, nonce: str,
                        lang: str) -> None:
    config, settings = site.config, site.settings
    link = f"{settings.public_url}/confirm/{webform.confirm_token(site.secret, submission_id, nonce)}"
    identity = config.identity(config.answering_mailbox(settings.mailbox, ()))
    context = {"helpdesk": identity.context(),
               "customer": {"name": sub.name}, "subject": sub.subject, "link": link, "hours": settings.token_hours}
    rendered = render(config.templates_for(identity), "web_confirm", lang, context)
    # cause "inbound": the storm caps hold, so a stranger's address typed into the form gets a few mails at most
    queue_mail(session, config, OutgoingMail(kind="web_confirm", to=[(sub.name, sub.email)],
                                             subject=rendered.subject, body=rendered.body, cause="inbound",
                                             language=rendered.language, mailbox=identity.mailbox))


def _held_submission(site: _Site, token: str) -> tuple[WebSubmission | None, bool]:
    """The submission a genuine confirmation token names, and whether the link still works (not expired)."""
    try:
        submission_id = webform.confirm_id(token)
    except webform.TokenError:
        return None, False
    with Session(site.engine) as session:
        record = session.get(WebSubmission, submission_id)
    if record is None or not webform.same_confirm_token(site.secret, token, submission_id, record.nonce):
        return None, False
    expired = record.confirmed_at is None and utcnow() - record.at > timedelta(hours=site.settings.token_hours)
    return record, not expired


async def confirmation(request: Request) -> Response:
    """GET shows the button (a mail scanner fetching the link confirms nothing); POST confirms."""
    site: _Site = request.app.state.site
    posted = request.method == "POST"
    try:
        record, valid = await run_in_threadpool(_held_submission, site, request.path_params["token"])
        if record is not None and valid and posted:
            await run_in_threadpool(_release, site, record)
    except Exception as exc:  # the database: the customer may simply try the link again
        log.error("webform.confirm_failed", error=str(exc)[:500])
        lang = site.language(request)
        text = site.words[lang]["unavailable"].format(address=site.config.helpdesk.address)
        return site.message(lang, "confirm_title", text, False, 503, back="../")
    lang = record.language if record is not None and record.language in LANGUAGES else site.language(request)
    t = site.words[lang]
    if record is None or not valid:
        return site.message(lang, "confirm_title", t["confirm_bad"], False, 404, back="../")
    if posted:
        site.wake()
    if posted or record.confirmed_at is not None:
        return site.message(lang, "confirm_title", t["confirmed"].format(email=record.email), True, back="../")
    return site.message(lang, "confirm_title", t["confirm"], True, back="../",
                        button={"action": "", "label": t["confirm_button"]})


def _release(site: _Site, record: WebSubmission) -> None:
    """The held mail becomes new: from here it is any mail's, and the pipeline opens the ticket."""
    with db.session_scope(site.engine) as session:
        done = session.execute(sa.update(WebSubmission).where(col(WebSubmission.id) == record.id,
                                                              col(WebSubmission.confirmed_at).is_(None))
                               .values(confirmed_at=utcnow()))
        if done.rowcount:  # type: ignore[attr-defined]  # an UPDATE's result has it
            session.execute(sa.update(Inbound).where(col(Inbound.id) == record.inbound_id,
                                                     col(Inbound.status) == HELD).values(status="new"))
            log.info("webform.confirmed", submission=record.id, inbound_id=record.inbound_id)


def make_app(site: _Site) -> Any:
    app = Starlette(routes=[Route("/", show_form, methods=["GET", "HEAD"]), Route("/", submit, methods=["POST"]),
                            Route("/confirm/{token}", confirmation, methods=["GET", "HEAD", "POST"])])
    app.state.site = site
    return _BodyLimit(app, site.request_limit)


class WebServer:
    """The form's listener, which ``ticketd run`` serves beside the other intakes."""

    def __init__(self, engine: sa.Engine, config: Config, wake: Callable[[], None]) -> None:
        assert config.webform is not None
        self.settings = config.webform
        self._site = _Site(engine, config, wake)
        host, _, port = self.settings.listen.rpartition(":")
        self._address = (host.strip("[]"), int(port))
        self._server = uvicorn.Server(uvicorn.Config(
            make_app(self._site), log_config=None, access_log=False, lifespan="off", server_header=False,
            proxy_headers=True, forwarded_allow_ips=list(self.settings.trusted_proxies), timeout_keep_alive=5,
            limit_concurrency=200, http="h11", loop="asyncio", ws="none"))
        self._thread: threading.Thread | None = None

    def start(self) -> WebServer:
        """Bound here, in the caller's thread: a port in use stops the start with the reason."""
        family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
        sock = socket.create_server(self._address, family=family, reuse_port=False)
        self._thread = threading.Thread(target=partial(self._serve, sock), name="webform", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info("webform.listening", listen=self.settings.listen)
        return self

    def _serve(self, sock: socket.socket) -> None:
        asyncio.run(self._server.serve(sockets=[sock]))

    def reconfigure(self, config: Config) -> None:
        self._site.config = config

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
