"""The install README.md walks through ("Running it as a service"), done on this machine as the unit would run it.

Every command of the walkthrough is in ``WALKTHROUGH`` below, word for word as the README has it (a test checks
that), and each is run here with the machine's paths moved under a temporary root (/etc/ticketd is
ROOT/etc/ticketd, and so on). What differs, and why:

- The wheel is built with ``--no-build-isolation`` and installed with ``--no-deps --no-index``: the README's pip
  fetches setuptools and ticketd's dependencies from PyPI; here the fresh venv (Debian's own python3 -m venv, no
  --system-site-packages) reaches the dependencies through a .pth file naming this test run's site-packages, and
  imports ticketd itself only from the wheel (checked).
- ``ticketd init`` is also given ``--state-dir ROOT/var/lib/ticketd``, the temporary root's StateDirectory.
- The editor's step is done with tomlkit, on the keys ``init`` listed, pointing them at the test's Dovecot and SMTP
  server; ``systemctl enable --now`` is what systemd does with the unit's lines, read from the copied unit file: each
  LoadCredential= file copied into a credentials folder the service's user alone can read ($CREDENTIALS_DIRECTORY),
  StateDirectory=/CacheDirectory=/RuntimeDirectory= made for that user, the Environment= lines set, then
  ExecStartPre and ExecStart run as that user — a uid with no account, as DynamicUser= picks, that owns only those
  folders (setpriv, no new privileges, UMask=) — with a notify socket; ``systemctl status`` shows the daemon's last
  STATUS= from that socket. A missing credential file fails the start, as it does under systemd.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit

from conftest import DATA, Mailbox, stop_daemon
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")
WHEEL = "ticketd-0.1.0-py3-none-any.whl"

# The README's walkthrough, command by command (the README's own text must contain each line).
WALKTHROUGH = (
    "python3 -m venv /opt/ticketd",
    "/opt/ticketd/bin/pip wheel --no-deps -w /tmp/ticketd-dist .",
    f"/opt/ticketd/bin/pip install /tmp/ticketd-dist/{WHEEL}",
    "ln -s /opt/ticketd/bin/ticketd /usr/local/bin/ticketd",
    'ticketd init /etc/ticketd --address support@acme.example --name "Acme Support" --tag ACME',
    "editor /etc/ticketd/ticketd.toml",
    "printf '%s' 'the IMAP password' > /etc/ticketd/credentials/imap-password",
    "printf '%s' 'the SMTP password' > /etc/ticketd/credentials/smtp-password",
    "cp deploy/ticketd.service /etc/systemd/system/",
    "systemctl daemon-reload",
    "systemctl enable --now ticketd",
    "ticketd check",
    "systemctl status ticketd",
)


def test_the_readme_walks_through_these_commands() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running it as a service"):]
    section = section[:section.index("\n## ", 1)]
    missing = [command for command in WALKTHROUGH if command not in section]
    assert not missing, missing


def test_the_lines_the_readme_quotes_from_init_are_what_init_prints(tmp_path: Path) -> None:
    """The README shows the lines ``init`` asks to check, with their numbers in the example config."""
    readme = (REPO / "README.md").read_text()
    quoted = re.findall(r"^ +/etc/ticketd/ticketd\.toml:\d+: .+$", readme, re.MULTILINE)
    assert len(quoted) >= 5, quoted
    proc = subprocess.run([str(Path(sys.executable).with_name("ticketd")), "init", str(tmp_path / "etc" / "ticketd"),
                           "--address", "support@acme.example", "--name", "Acme Support", "--tag", "ACME",
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.replace(str(tmp_path / "etc" / "ticketd"), "/etc/ticketd")
    missing = [line.strip() for line in quoted if line.strip() not in printed]
    assert not missing, (missing, printed)


# --- the machine, under a temporary root ---------------------------------------------------------------------

def free_dynamic_uid() -> int:
    """A uid from the range DynamicUser= allocates from (61184-65519) that no account has."""
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    return next(uid for uid in range(61184, 65520) if uid not in taken)


@pytest.fixture
def root() -> Iterator[Path]:
    """A root the service's user can walk (pytest's tmp_path is root's alone), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ticketd-install-", dir="/tmp"))
    path.chmod(0o755)
    for folder in ("etc", "opt", "tmp", "usr/local/bin", "var/lib", "var/cache", "run/systemd"):
        (path / folder).mkdir(parents=True, mode=0o755)
        for parent in (path / folder, *(path / folder).parents):
            if parent == path:
                break
            parent.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def under(root: Path, argv: list[str]) -> list[str]:
    """The command with every absolute path moved under the temporary root."""
    return [str(root / arg.lstrip("/")) if arg.startswith("/") else arg for arg in argv]


def as_root(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """From an administrator's shell: umask 022, no service environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("TICKETD_CONFIG", "CREDENTIALS_DIRECTORY")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=cwd,
                          preexec_fn=lambda: os.umask(0o022))


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def unit_lines(unit: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(key + "=")]


class Service:
    """What systemd does for `systemctl start` of the unit, under the temporary root."""

    def __init__(self, root: Path, unit: Path) -> None:
        self.root, self.unit = root, unit
        self.uid = free_dynamic_uid()
        self.notify_path = root / "run" / "systemd" / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify_path.chmod(0o777)
        self.notify.settimeout(0.5)
        self.fields: list[str] = []
        self.credentials = root / "run" / "credentials" / "ticketd.service"
        self.log = root / "tmp" / "ticketd.log"

    def directories(self) -> dict[str, Path]:
        made = {}
        for key, base, variable in (("StateDirectory", "var/lib", "STATE_DIRECTORY"),
                                    ("CacheDirectory", "var/cache", "CACHE_DIRECTORY"),
                                    ("RuntimeDirectory", "run", "RUNTIME_DIRECTORY")):
            for name in unit_lines(self.unit, key):
                folder = self.root / base / name
                folder.mkdir(parents=True, exist_ok=True)
                os.chown(folder, self.uid, self.uid)
                folder.chmod(0o755 if key == "RuntimeDirectory" else 0o700)
                made[variable] = folder
        return made

    def load_credentials(self) -> None:
        self.credentials.mkdir(parents=True)
        for line in unit_lines(self.unit, "LoadCredential"):
            name, _, source = line.partition(":")
            copy = self.credentials / name
            shutil.copyfile(self.root / source.lstrip("/"), copy)  # a missing file fails the start, as in systemd
            os.chown(copy, self.uid, self.uid)
            copy.chmod(0o400)
        os.chown(self.credentials, self.uid, self.uid)
        self.credentials.chmod(0o500)

    def environment(self) -> dict[str, str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/",
               "USER": "ticketd", "LOGNAME": "ticketd", "LANG": "C.UTF-8",
               "CREDENTIALS_DIRECTORY": str(self.credentials), "NOTIFY_SOCKET": str(self.notify_path),
               "CONFIGURATION_DIRECTORY": str(self.root / "etc" / "ticketd"),
               "WATCHDOG_USEC": str(int(unit_lines(self.unit, "WatchdogSec")[0]) * 1_000_000)}
        env.update({variable: str(folder) for variable, folder in self.directories().items()})
        for line in unit_lines(self.unit, "Environment"):
            variable, _, value = line.partition("=")
            env[variable] = str(self.root / value.lstrip("/")) if value.startswith("/") else value
        return env

    def command(self, key: str) -> list[str]:
        umask = int(unit_lines(self.unit, "UMask")[0], 8)
        user = [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
        if unit_lines(self.unit, "NoNewPrivileges") == ["yes"]:
            user.append("--no-new-privs")
        return ["setpriv", *user, "sh", "-c", f'umask {umask:o}; exec "$@"', "sh",
                *under(self.root, shlex.split(unit_lines(self.unit, key)[0]))]

    def start(self) -> subprocess.Popen[bytes]:
        self.load_credentials()
        env = self.environment()
        pre = subprocess.run(self.command("ExecStartPre"), env=env, capture_output=True, text=True, timeout=120,
                             check=False)
        assert pre.returncode == 0, f"ExecStartPre failed ({pre.returncode}):\n{pre.stdout}\n{pre.stderr}"
        with self.log.open("ab") as log:
            return subprocess.Popen(self.command("ExecStart"), env=env, stdout=subprocess.DEVNULL, stderr=log)

    def wait_for(self, field: str, daemon: subprocess.Popen[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while field not in self.fields and time.monotonic() < deadline:
            try:
                self.fields.extend(self.notify.recv(4096).decode().split("\n"))
            except TimeoutError:
                if daemon.poll() is not None:
                    pytest.fail(f"the daemon exited ({daemon.returncode}):\n{self.log.read_text()}")
        if field not in self.fields:
            pytest.fail(f"no {field} from the daemon; got {self.fields}:\n{self.log.read_text()}")

    def status(self, expected: str, timeout: float = 30) -> str:
        """The line `systemctl status` shows as "Status:": the last STATUS= the service sent, read until it is
        ``expected`` or ``timeout`` passes. The daemon tells its status after a turn's work, a moment after the
        mail that work sent: what was read by then may be the status from before the mailbox was taken."""
        deadline = time.monotonic() + timeout
        while True:
            last = next((f.removeprefix("STATUS=") for f in reversed(self.fields) if f.startswith("STATUS=")), "")
            if last == expected or time.monotonic() >= deadline:
                return last
            with contextlib.suppress(TimeoutError):
                self.fields.extend(self.notify.recv(4096).decode().split("\n"))


# --- the walkthrough ------------------------------------------------------------------------------------------

def debian_python() -> Path:
    """Debian's python3 with its venv module and ensurepip (package python3-venv), of this run's Python version,
    so that the dependencies installed for this run can serve the venv."""
    reason = ""
    if not DEBIAN_PYTHON.exists():
        reason = f"{DEBIAN_PYTHON} is missing"
    else:
        probe = subprocess.run([str(DEBIAN_PYTHON), "-c", "import ensurepip, sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            reason = f"{DEBIAN_PYTHON} has no ensurepip (apt-get install python3-venv)"
        elif probe.stdout.strip() != str(sys.version_info[:2]):
            reason = f"{DEBIAN_PYTHON} is Python {probe.stdout.strip()}, this run {sys.version_info[:2]}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return DEBIAN_PYTHON


def copy_of_the_checkout(target: Path) -> Path:
    """The source tree without what a build leaves behind: a wheel built here never races `make install` or
    test_packaging over the checkout's own build/ folder."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "tests", ".*cache",
                                    ".hypothesis", "demo")
    shutil.copytree(REPO, target, ignore=ignore)
    return target


def test_install_as_the_readme_says_and_answer_a_mail(root: Path, mailbox: Mailbox, smtp_sink: SmtpSink,
                                                      tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the service's user is made with setpriv, which needs root (as `make test` runs in CI)")
    python = debian_python()
    commands = iter(WALKTHROUGH)

    # python3 -m venv /opt/ticketd
    argv = shlex.split(next(commands))
    ok(as_root([str(python), *under(root, argv[1:])]))
    venv = root / "opt" / "ticketd"
    site_packages = next((venv / "lib").glob("python3*/site-packages"))

    # /opt/ticketd/bin/pip wheel --no-deps -w /tmp/ticketd-dist .   (in the checkout)
    argv = shlex.split(next(commands))
    assert argv[-1] == "."
    source = copy_of_the_checkout(tmp_path / "checkout")
    build = ok(as_root([sys.executable, "-m", "pip", *under(root, argv[1:-1]), "--no-build-isolation", "."],
                       cwd=source))
    assert "Package would be ignored" not in build

    # /opt/ticketd/bin/pip install /tmp/ticketd-dist/ticketd-….whl
    argv = under(root, shlex.split(next(commands)))
    ok(as_root([*argv[:2], "--no-deps", "--no-index", "-q", *argv[2:]]))
    # The dependencies, from this run's site-packages; only now, or pip would find this run's ticketd installed there.
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site_packages / "ticketd-test-dependencies.pth").write_text("\n".join(deps) + "\n")
    where = ok(as_root([str(venv / "bin" / "python"), "-c", "import ticketd.daemon as d, ticketd.deploy as p; "
                        "print(d.__file__, p.__file__)"], cwd=tmp_path))
    assert all(path.startswith(str(site_packages)) for path in where.split()), where  # the wheel's, not this run's

    # ln -s /opt/ticketd/bin/ticketd /usr/local/bin/ticketd
    ok(as_root(under(root, shlex.split(next(commands)))))
    ticketd = root / "usr" / "local" / "bin" / "ticketd"

    # ticketd init /etc/ticketd --address support@acme.example --name "Acme Support" --tag ACME
    argv = under(root, shlex.split(next(commands)))
    argv[0] = str(ticketd)
    state = root / "var" / "lib" / "ticketd"
    said = ok(as_root([*argv, "--state-dir", str(state)]))
    print(f"\n$ ticketd init …\n{said}")
    etc = root / "etc" / "ticketd"
    config = etc / "ticketd.toml"
    for pattern in (rf"{config}\s+0644\s+the config", rf"{etc}/credentials/secret\s+0600\s+a new random secret",
                    rf"{etc}/credentials/imap-password\s+0600\s+empty: the IMAP password",
                    rf"{state}/ticketd.db is not made now", rf'{config}:\d+: \[imap\] host = "imap.acme.example"',
                    rf'{config}:\d+: \[imap\] username = "support@acme.example"'):
        assert re.search(pattern, said), pattern
    assert not state.exists()

    # editor /etc/ticketd/ticketd.toml: the [imap] and [smtp] lines init listed
    next(commands)
    doc = tomlkit.parse(config.read_text())
    doc["imap"].update(host=mailbox.server.host, port=mailbox.server.port, tls="none", username=mailbox.user,
                       poll_seconds=2)
    doc["smtp"].update(host=smtp_sink.host, port=smtp_sink.port, tls="none", username="")  # a relay without login
    config.write_text(tomlkit.dumps(doc))

    # printf '%s' '…' > /etc/ticketd/credentials/imap-password, and the SMTP one (left empty: no SMTP login here)
    argv = shlex.split(next(commands))
    ok(as_root(["sh", "-c", f"printf '%s' {shlex.quote(mailbox.password)} > {under(root, [argv[-1]])[0]}"]))
    next(commands)

    # cp deploy/ticketd.service /etc/systemd/system/ ; systemctl daemon-reload ; systemctl enable --now ticketd
    argv = shlex.split(next(commands))
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    ok(as_root(["cp", argv[1], *under(root, argv[2:])], cwd=REPO))
    unit = root / "etc" / "systemd" / "system" / "ticketd.service"
    next(commands)
    next(commands)
    service = Service(root, unit)
    daemon = service.start()
    try:
        service.wait_for("READY=1", daemon)
        database = state / "ticketd.db"
        owner = database.stat()
        assert (owner.st_uid, oct(owner.st_mode & 0o777)) == (service.uid, "0o600")  # ExecStartPre, as the service

        mailbox.append((DATA / "unknown-sender.eml").read_bytes())
        deadline = time.monotonic() + 60
        while not smtp_sink.received and time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.2)
        assert smtp_sink.received, f"no acknowledgment; daemon log:\n{service.log.read_text()}"
        ack = smtp_sink.received[0].message
        print(f"acknowledgment: To {ack['To']} | From {ack['From']} | Subject {ack['Subject']}")
        assert ack["To"].addresses[0].addr_spec == "jane@example.org"
        assert ack["From"].addresses[0].display_name == "Acme Support"
        assert ack["Subject"].startswith("[ACME #1] ")

        # ticketd check   (as root, from a shell: the credentials are read from /etc/ticketd/credentials)
        argv = under(root, shlex.split(next(commands)))
        check = as_root([str(ticketd), "--config", str(config), *argv[1:]])
        print(f"$ ticketd check\n{check.stdout}")
        assert check.returncode == 0, check.stdout + check.stderr
        for line in ("ok   config:", "ok   database: reachable, schema current",
                     f"ok   imap: {mailbox.user}@{mailbox.server.host}:{mailbox.server.port} (none): logged in",
                     f"ok   smtp: {smtp_sink.host}:{smtp_sink.port} (none): connected"):
            assert any(out.startswith(line) for out in check.stdout.splitlines()), line
        assert "WARN" not in check.stdout

        # The service's user reaches the secrets only through systemd's copy: without it, a clean refusal.
        env = {k: v for k, v in service.environment().items() if k != "CREDENTIALS_DIRECTORY"}
        alone = subprocess.run([*service.command("ExecStart")[:-1], "check"], env=env, capture_output=True,
                               text=True, timeout=120, check=False)
        assert alone.returncode == 2 and "Traceback" not in alone.stderr, alone.stderr
        assert f"imap.password_file: cannot read {etc}/credentials/imap-password: Permission denied" in alone.stderr

        # systemctl status ticketd
        next(commands)
        status = service.status("processing mail for support@acme.example")
        print(f"$ systemctl status ticketd\n   Status: \"{status}\"")
        assert status == "processing mail for support@acme.example"
    finally:
        code = stop_daemon(daemon)  # systemctl stop: SIGTERM
        service.notify.close()
    assert code == 0, service.log.read_text()
    leftovers = [p for p in state.rglob("*") if p.stat().st_uid != service.uid]
    assert not leftovers, leftovers  # root's `ticketd check` made nothing the service could not use
