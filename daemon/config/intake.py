"""``[intake]``: the threads and IMAP connections intake may use, however many mailboxes there are.

The defaults serve a few mailboxes as well as hundreds on one server: one thread watches every IDLE connection and
``workers`` threads do the rest, a login never has more than ``connections_per_login`` connections open (several
folders of one account beyond that are polled in turn on one of them), and past ``idle_connections`` watched
mailboxes the least busy are polled every ``[imap] poll_seconds`` instead.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ticketd.daemon.config.fields import PositiveInt, Section

# RFC 2177: a client should end IDLE and issue it again at least every 29 minutes, or the server may log it out.
IDLE_RENEW_MAX = 29 * 60


class IntakeConfig(Section):
    # Threads that connect, fetch, store and move mail; they are needed only while there is mail or a look is due.
    workers: int = Field(default=4, ge=1, le=64, strict=True)
    # Connections one login may have open at once. Dovecot allows 10 per user and client address
    # (mail_max_userip_connections), Gmail 15 per account; the people's own mail clients need some of those too.
    connections_per_login: int = Field(default=5, ge=1, le=100, strict=True)
    # Mailboxes watched with IDLE at once (each holds a connection and, on Dovecot, a server process).
    idle_connections: PositiveInt = 500
    # How often IDLE is ended, the folder looked at and IDLE started again while the server has not yet announced
    # new mail on that connection: Dovecot announces mail only at its own check, every 30 s, on connections past
    # its inotify limit (fs.inotify.max_user_instances, 128 by default for all its sessions of one system user).
    idle_renew_seconds: int = Field(default=2, ge=1, le=IDLE_RENEW_MAX, strict=True)
    # The same once the server has announced new mail on the connection itself: then the look only catches mail
    # that landed between the last look and the start of IDLE, which no server announces.
    pushed_idle_renew_seconds: int = Field(default=10, ge=1, le=IDLE_RENEW_MAX, strict=True)

    @model_validator(mode="after")
    def _renewals(self) -> IntakeConfig:
        if self.pushed_idle_renew_seconds < self.idle_renew_seconds:
            raise ValueError("pushed_idle_renew_seconds: must be at least idle_renew_seconds (a connection that "
                             "announces mail needs looking at less often, not more)")
        return self
