"""A private Postfix, from Debian's packages, for the tests: its own config directory, queue and log, on
loopback, routing the helpdesk's addresses to ticketd over LMTP the way deploy/postfix/ tells an operator to.

The system's Postfix (``/etc/postfix``) is never read, changed or started. The instance's SMTP server listens on
a free loopback port; mail for any other domain is discarded (bounce notices to made-up customers included), so
nothing leaves the machine. Retries are seconds apart instead of minutes: a deferred mail comes back while the
test waits. Postfix's master must start as root (it drops to ``postfix``), so these tests need root.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POSTFIX = "/usr/sbin/postfix"
_TIMEOUT = 30.0

# Only what the instance uses, none chrooted (the chroot would need copies of /etc files in the queue).
_MASTER = """\
{port}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_available() -> bool:
    return Path(POSTFIX).exists() and os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostfixServer:
    base_dir: Path
    port: int  # its SMTP server, where the tests submit mail

    @property
    def config_dir(self) -> Path:
        return self.base_dir / "etc"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "maillog"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=_TIMEOUT, check=False,
                              env={**os.environ, "MAIL_CONFIG": str(self.config_dir)})

    def postfix(self, *args: str) -> None:
        proc = self._run(POSTFIX, "-c", str(self.config_dir), *args)
        if proc.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}\n"
                               f"log tail:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:] if self.log_file.exists() else ""

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def send(self, mail_from: str, recipients: list[str], raw: bytes) -> dict[str, Any]:
        """Submit as a customer's MTA would; Postfix's own answer (it queues, then delivers over LMTP)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=_TIMEOUT) as client:
            return dict(client.sendmail(mail_from, recipients, raw))

    def queue(self) -> list[dict[str, Any]]:
        """``postqueue -j``: one object per queued mail, with each recipient's delay reason."""
        proc = self._run("/usr/sbin/postqueue", "-c", str(self.config_dir), "-j")
        if proc.returncode != 0:
            raise RuntimeError(f"postqueue -j exited {proc.returncode}: {proc.stderr}")
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        """What an operator runs once the destination is back: deliver the deferred mail now."""
        proc = self._run("/usr/sbin/postqueue", "-c", str(self.config_dir), "-f")
        if proc.returncode != 0:
            raise RuntimeError(f"postqueue -f exited {proc.returncode}: {proc.stderr}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.postfix("stop")
        pid_file = self.base_dir / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + _TIMEOUT
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_postfix(transport: str) -> PostfixServer:
    """An instance whose ``transport`` table is ``transport`` (deploy/postfix/transport's entries, pointed at the
    test's listener); the caller must ``stop()`` it."""
    base = Path(tempfile.mkdtemp(prefix="ticketd-postfix-"))
    os.chmod(base, 0o755)  # the queue's owner (postfix) must reach its directories
    server = PostfixServer(base, _free_port())
    etc = server.config_dir
    etc.mkdir()
    (etc / "transport").write_text(transport)
    (etc / "master.cf").write_text(_MASTER.format(port=f"127.0.0.1:{server.port}"))
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.ticketd-test.invalid
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = acme.example
transport_maps = texthash:{etc}/transport
recipient_delimiter = +
default_transport = discard:nothing leaves the test machine
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
maillog_file_prefixes = {base}
maillog_file = {base}/maillog
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_connect_timeout = 5s
""")
    (base / "queue").mkdir(mode=0o755)  # root's, as /var/spool/postfix; `check` makes what is inside
    data = base / "data"
    data.mkdir(mode=0o700)
    owner = pwd.getpwnam("postfix")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    try:
        server.postfix("check")  # creates the queue's directories with their owners
        server.postfix("start")
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1) as s:
                if s.recv(100).startswith(b"220"):
                    return server
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not greet on 127.0.0.1:{server.port}; log tail:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise
