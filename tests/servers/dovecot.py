"""A private, real Dovecot IMAP server for integration tests.

Mocks drift from what real servers do (capabilities, literals, IDLE timing), so integration
tests talk to an actual Dovecot whose whole config lives in a temporary directory and which
listens only on loopback.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from servers import real_clock_env

DOVECOT = "/usr/sbin/dovecot"
_DH_PEM = Path("/usr/share/dovecot/dh.pem")
_TIMEOUT = 10.0


def dovecot_available() -> bool:
    """Lets callers skip, or fail with a clear message, on machines without Dovecot."""
    return Path(DOVECOT).exists()


def _free_ports(n: int) -> list[int]:
    # All held open together so the kernel cannot hand out the same port twice.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _make_cert(cert: Path, key: Path) -> None:
    """Self-signed for localhost and 127.0.0.1 so clients can verify it with cafile=cert."""
    if shutil.which("openssl"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
        return
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    crt = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pkey.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
           .not_valid_after(now + dt.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName(san), critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(pkey, hashes.SHA256()))
    key.write_bytes(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))


def _children(pid: int) -> list[int]:
    """The master's processes (imap, imap-login, auth...), read from /proc before it is stopped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int, conf: Path) -> bool:
    """Ours and not a zombie: init may be slow to reap the daemonized master, and pids get reused."""
    try:
        return str(conf) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@dataclass
class DovecotServer:
    host: str
    port: int
    tls_port: int
    cafile: str
    base_dir: Path
    run_dir: Path = field(repr=False)

    @property
    def conf(self) -> Path:
        return self.base_dir / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "dovecot.log"

    @property
    def oauth2_conf(self) -> Path:
        return self.base_dir / "dovecot-oauth2.conf.ext"

    def add_user(self, username: str, password: str) -> None:
        """One passwd-file per user: Dovecot re-stats a passwd-file at most once a second and only
        notices mtime/size changes, but a file it has never read is read at once."""
        if not username or username.startswith(".") or any(c in username for c in "/:\n\0"):
            raise ValueError(f"unusable IMAP test username: {username!r}")
        if any(c in password for c in ":\n\0"):
            raise ValueError("passwd-file passwords cannot contain ':' or newlines")
        path = self.base_dir / "users" / username
        tmp = path.with_name(f".{username}.tmp")
        tmp.write_text(f"{username}:{{PLAIN}}{password}::::::\n")
        if not path.exists():
            tmp.replace(path)
            return
        # A changed password: force a new mtime, then outlast Dovecot's once-a-second stat gate.
        st = path.stat()
        os.utime(tmp, (st.st_atime, st.st_mtime + 1))
        tmp.replace(path)
        time.sleep(1.1)

    def start(self) -> None:
        # Dovecot daemonizes with our stdio inherited, so capturing into pipes would wait forever.
        with open(self.base_dir / "dovecot.stderr", "w+b") as err:
            rc = subprocess.run([DOVECOT, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, env=real_clock_env()).returncode
            err.seek(0)
            if rc:
                raise RuntimeError(f"dovecot exited {rc}: {err.read().decode(errors='replace')}")
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(1024).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
        self.stop()
        raise RuntimeError(f"dovecot did not greet on {self.host}:{self.port}; log tail:\n{tail}")

    def stop(self) -> None:
        """Signal the master pid directly: as quick as doveadm, and works even if its sockets are gone."""
        pid_file = self.run_dir / "master.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        children = _children(pid)
        if _alive(pid, self.conf):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline and _alive(pid, self.conf):
            time.sleep(0.02)
        if _alive(pid, self.conf):
            os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)  # Dovecot removes it itself, except after SIGKILL
        # The master asks its imap processes to quit and exits without waiting for them; on a loaded machine an
        # imap process in IDLE has been seen serving its client 15 s later. A stopped server drops every client.
        for child in children:
            with contextlib.suppress(OSError):  # gone already, or its pid reused by something not ours
                if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"dovecot"):  # "dovecot-<instance>/imap"
                    os.kill(child, signal.SIGKILL)

    def restart(self) -> None:
        """Same ports, config, users and mail: what a client sees when its server bounces."""
        self.stop()
        self.start()


def _oauth2_conf(introspection_url: str) -> str:
    """Dovecot 2.3's oauth2 passdb: each XOAUTH2/OAUTHBEARER token is POSTed (``token=...``) to the
    introspection endpoint, which must answer ``active: true`` and the user's name, as RFC 7662 servers do."""
    return f"""\
introspection_mode = post
introspection_url = {introspection_url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


def _passdbs(srv: DovecotServer, oauth2: bool) -> str:
    """Passwords always work (tests put mail in with them); with oauth2, bearer tokens work as well."""
    users = f"""\
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {srv.base_dir / "users"}/%u
"""
    if not oauth2:
        return users + "}\n"
    return users + f"""\
  mechanisms = plain login
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {srv.oauth2_conf}
}}
"""


def _config(srv: DovecotServer, mail_dir: Path, uid: int, gid: int, oauth2: bool = False) -> str:
    """Everything that would default to /var or /etc points into our own directories."""
    root = os.geteuid() == 0
    # Dovecot will not run its helper or login processes as root, and a non-root user cannot
    # switch uid; as root the auth process stays root to read users/ under a 0700 pytest tmp dir.
    me = pwd.getpwuid(os.geteuid()).pw_name
    internal, login, auth = ("dovecot", "dovenull", "root") if root else (me, me, me)
    group = "dovecot" if root else grp.getgrgid(os.getegid()).gr_name
    dh = f"ssl_dh = <{_DH_PEM}\n" if _DH_PEM.exists() else ""
    return f"""\
base_dir = {srv.run_dir}
state_dir = {srv.base_dir / "state"}
instance_name = ticketd-test-{srv.port}
protocols = imap
listen = 127.0.0.1
log_path = {srv.log_file}
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if oauth2 else ""}
# Tests probe bad passwords; the default 2 s failure delay only slows them down.
auth_failure_delay = 0
ssl = yes
ssl_cert = <{srv.cafile}
ssl_key = <{srv.base_dir / "key.pem"}
{dh}mail_location = maildir:{mail_dir}/%u
{_passdbs(srv, oauth2)}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_dir}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {srv.port}
  }}
  inet_listener imaps {{
    port = {srv.tls_port}
    ssl = yes
  }}
}}
service auth {{
  user = {auth}
}}
service anvil {{
  chroot =
  # Without this socket auth silently skips anvil's per-IP penalty, which after one failed
  # login would make every later login from 127.0.0.1 wait 2, 4, ... up to 15 s.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def start_dovecot(base_dir: Path, users: dict[str, str] | None = None,
                  oauth2_introspection_url: str | None = None) -> DovecotServer:
    """Start a fresh server configured in base_dir; the caller must stop() it.

    With ``oauth2_introspection_url`` the server also takes XOAUTH2/OAUTHBEARER logins, valid when that
    endpoint says the token is active for the user (see ``_oauth2_conf``); password logins keep working.
    """
    base_dir = Path(base_dir).resolve()
    for sub in ("state", "users"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    run_dir, mail_dir = base_dir / "run", base_dir / "mail"
    outside: list[Path] = []
    if len(str(run_dir)) > 60:
        # Unix socket paths are capped near 107 bytes and Dovecot nests its sockets below run_dir.
        run_dir = Path(tempfile.mkdtemp(prefix="dovecot-run-"))
        run_dir.chmod(0o755)  # what Dovecot insists on; saves a warning in the log
        outside.append(run_dir)
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        # Dovecot refuses mail access as root and pytest's tmp dirs are 0700, so as root the mail
        # lives outside base_dir (base_dir/mail links to it), owned by Debian's dovecot user.
        pw = pwd.getpwnam("dovecot")
        uid, gid = pw.pw_uid, pw.pw_gid
        real = Path(tempfile.mkdtemp(prefix="dovecot-mail-"))
        os.chown(real, uid, gid)
        outside.append(real)
        mail_dir.unlink(missing_ok=True)
        mail_dir.symlink_to(real, target_is_directory=True)
        mail_dir = real
    else:
        mail_dir.mkdir(exist_ok=True)
    _make_cert(base_dir / "cert.pem", base_dir / "key.pem")
    port, tls_port = _free_ports(2)
    srv = DovecotServer("127.0.0.1", port, tls_port, str(base_dir / "cert.pem"), base_dir, run_dir)
    for path in outside:  # removed when the server object is collected or the process exits
        weakref.finalize(srv, shutil.rmtree, path, True)
    for name, password in (users or {}).items():
        srv.add_user(name, password)
    if oauth2_introspection_url:
        srv.oauth2_conf.write_text(_oauth2_conf(oauth2_introspection_url))
    srv.conf.write_text(_config(srv, mail_dir, uid, gid, oauth2=bool(oauth2_introspection_url)))
    srv.start()
    return srv
