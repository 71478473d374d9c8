"""Mail that lands while the daemon is moving the previous batch out is announced by the server then, not in the
IDLE that follows; the daemon must see it at once anyway instead of at the next poll minutes later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, Mailbox, Site
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

# The real daemon, with a second mail arriving between the SEARCH that found the first and the MOVE.
ARRIVES_DURING_MOVE = """
import sys
from pathlib import Path
from imapclient import IMAPClient
from ticketd.daemon.cli import main as cli
from ticketd.daemon.intake import imap as poller

config, host, port, user, password, late = sys.argv[1:7]
real_move, sent = poller.move_out, []
def move_out(client, uids, target):
    if not sent:
        other = IMAPClient(host, port=int(port), ssl=False)
        other.login(user, password)
        other.append("INBOX", Path(late).read_bytes())
        other.logout()
        sent.append(1)
        Path(config + ".late").touch()  # the test counts its time from here
    real_move(client, uids, target)
poller.move_out = move_out
sys.argv = ["ticketd", "--config", config, "run"]
cli.main()
"""


# The real daemon, with a mail arriving just after a poll found the inbox empty, before the look that precedes
# IDLE: Dovecot answers that SEARCH without it and announces it after the results ("* 1 EXISTS"), and IDLE
# will not announce it again.
ARRIVES_BEFORE_THE_LOOK = """
import sys
from pathlib import Path
from imapclient import IMAPClient
from ticketd.daemon.cli import main as cli
from ticketd.daemon.intake import imap as poller

config, host, port, user, password, late = sys.argv[1:7]
real_poll, sent = poller.poll_once, []
def poll_once(*args, **kwargs):
    result = real_poll(*args, **kwargs)
    if not sent and not result.stored:
        other = IMAPClient(host, port=int(port), ssl=False)
        other.login(user, password)
        other.append("INBOX", Path(late).read_bytes())
        other.logout()
        sent.append(1)
        Path(config + ".late").touch()  # the test counts its time from here
    return result
poller.poll_once = poll_once
sys.argv = ["ticketd", "--config", config, "run"]
cli.main()
"""


# IDLE's renewal looks at the folder too; these tests wait less than it, so only the look before IDLE can find
# the mail in time.
SLOW_RENEWAL = {"idle_renew_seconds": 60, "pushed_idle_renew_seconds": 60}


def wait_for_answers(daemon: subprocess.Popen[bytes], sink: SmtpSink, count: int, config: str,
                     within: float) -> None:
    """Wait until the late mail is in (the script marks it), then at most ``within`` seconds for ``count``
    answers: counted from the daemon's start, a slow start on a busy machine ate the time the test is about."""
    started = time.monotonic()
    late = Path(config + ".late")
    while not late.exists() and time.monotonic() - started < 120 and daemon.poll() is None:
        time.sleep(0.1)
    deadline = time.monotonic() + within
    while len(sink.received) < count and time.monotonic() < deadline and daemon.poll() is None:
        time.sleep(0.1)


def test_mail_arriving_between_the_poll_and_idle_is_seen_at_once(live_site: Site, mailbox: Mailbox,
                                                                 smtp_sink: SmtpSink) -> None:
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    live_site.sections["intake"] = SLOW_RENEWAL
    args = [str(live_site.write()), mailbox.server.host, str(mailbox.server.port), mailbox.user, mailbox.password,
            str(DATA / "iso-8859-9-body.eml")]
    daemon = subprocess.Popen([sys.executable, "-c", ARRIVES_BEFORE_THE_LOOK, *args], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_answers(daemon, smtp_sink, 1, args[0], 10)  # below IDLE's renewal (60 s) and Dovecot's check
        # (30 s or more): only the announcement can send it back
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
        assert [m.envelope_to[0] for m in smtp_sink.received] == ["sener@ozturk-insaat.com.tr"], err.decode()[-3000:]
        assert mailbox.count("INBOX") == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()


# The real daemon, with a mail arriving after the look that precedes IDLE found nothing and before IDLE starts:
# Dovecot tells an IDLE client of it only at its own check, some 50 s later.
_SETUP = "real_poll, sent = poller.poll_once, []"
ARRIVES_BEFORE_IDLE = ARRIVES_BEFORE_THE_LOOK.replace(_SETUP, _SETUP + """
real_announced = poller._announced
def _announced(client):
    found = real_announced(client)
    if not sent and not found:
        other = IMAPClient(host, port=int(port), ssl=False)
        other.login(user, password)
        other.append("INBOX", Path(late).read_bytes())
        other.logout()
        sent.append(1)
        Path(config + ".late").touch()  # the test counts its time from here
    return found
poller._announced = _announced""").replace("    if not sent and not result.stored:", "    if False:")


def test_mail_arriving_just_before_idle_is_seen_when_idle_is_renewed(live_site: Site, mailbox: Mailbox,
                                                                     smtp_sink: SmtpSink) -> None:
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    args = [str(live_site.write()), mailbox.server.host, str(mailbox.server.port), mailbox.user, mailbox.password,
            str(DATA / "iso-8859-9-body.eml")]
    daemon = subprocess.Popen([sys.executable, "-c", ARRIVES_BEFORE_IDLE, *args], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_answers(daemon, smtp_sink, 1, args[0], 20)  # past IDLE's renewal (2 s, or 10 s once the server
        # announced mail on the connection), before Dovecot's own check (30 s or more)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
        assert [m.envelope_to[0] for m in smtp_sink.received] == ["sener@ozturk-insaat.com.tr"], err.decode()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()


def test_mail_arriving_during_the_move_is_not_left_for_the_next_poll(live_site: Site, mailbox: Mailbox,
                                                                       smtp_sink: SmtpSink) -> None:
    live_site.sections["imap"].update(idle=True, poll_seconds=300)
    live_site.sections["intake"] = SLOW_RENEWAL
    mailbox.append((DATA / "unknown-sender.eml").read_bytes())
    args = [str(live_site.write()), mailbox.server.host, str(mailbox.server.port), mailbox.user, mailbox.password,
            str(DATA / "iso-8859-9-body.eml")]
    daemon = subprocess.Popen([sys.executable, "-c", ARRIVES_DURING_MOVE, *args], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_answers(daemon, smtp_sink, 2, args[0], 10)  # below IDLE's renewal (60 s) and Dovecot's check:
        # only a look before IDLE can find it
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
        assert sorted(m.envelope_to[0] for m in smtp_sink.received) == [
            "jane@example.org", "sener@ozturk-insaat.com.tr"], err.decode()[-3000:]
        assert mailbox.count("INBOX") == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
