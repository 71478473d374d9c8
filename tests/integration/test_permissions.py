"""Files ticketd creates are private (0600, folders 0700) whatever the caller's umask, and `ticketd check` warns
about a secret or database that others can read. The installed command, a real SQLite database."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import TICKETD, decode

pytestmark = pytest.mark.integration


def ticketd(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run as from a shell whose umask is the common 022, under which an unguarded file comes out 0644."""
    env = {k: v for k, v in os.environ.items() if k != "TICKETD_CONFIG"}
    if config is not None:
        env["TICKETD_CONFIG"] = str(config)
    return subprocess.run([str(TICKETD), *args], capture_output=True, env=env, timeout=120, check=False,
                          preexec_fn=lambda: os.umask(0o022))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def unit_credentials() -> set[str]:
    unit = (Path(__file__).parents[2] / "deploy" / "ticketd.service").read_text()
    return {line.split("=", 1)[1].split(":")[0] for line in unit.splitlines() if line.startswith("LoadCredential=")}


def test_init_and_reports_write_private_files(tmp_path: Path) -> None:
    home = tmp_path / "helpdesk"
    proc = ticketd("init", str(home), "--layout", "local")
    assert proc.returncode == 0, decode(proc)
    modes = {p.name: oct(mode(p)) for p in [home, *home.iterdir()]}
    assert modes == {"helpdesk": "0o700", "credentials": "0o700", "ticketd.toml": "0o600", "ticketd.db": "0o600",
                     **{n: "0o600" for n in ("ticketd.db-wal", "ticketd.db-shm") if (home / n).exists()}}
    assert {p.name: oct(mode(p)) for p in (home / "credentials").iterdir()} == dict.fromkeys(unit_credentials(),
                                                                                              "0o600")

    out = tmp_path / "out"
    proc = ticketd("report", "--xlsx", str(out / "r.xlsx"), "--csv", str(out / "csv"), config=home / "ticketd.toml")
    assert proc.returncode == 0, decode(proc)
    assert (oct(mode(out)), oct(mode(out / "r.xlsx")), oct(mode(out / "csv")), oct(mode(out / "csv" / "tickets.csv"))) \
        == ("0o700", "0o600", "0o700", "0o600")


def test_init_for_the_unit_lets_its_user_read_the_config_and_nothing_else(tmp_path: Path) -> None:
    """The system layout: the config readable by the service's user (DynamicUser), the secrets root's alone (systemd
    copies them for the service), every credential the unit loads present, and no database made by root."""
    etc, state = tmp_path / "etc" / "ticketd", tmp_path / "var" / "lib" / "ticketd"
    proc = ticketd("init", str(etc), "--state-dir", str(state), "--address", "help@firma.example")
    assert proc.returncode == 0, decode(proc)
    assert (oct(mode(tmp_path / "etc")), oct(mode(etc)), oct(mode(etc / "ticketd.toml")),
            oct(mode(etc / "credentials"))) == ("0o755", "0o755", "0o644", "0o700")
    assert {p.name: oct(mode(p)) for p in (etc / "credentials").iterdir()} == dict.fromkeys(unit_credentials(), "0o600")
    assert len((etc / "credentials" / "secret").read_text().strip()) >= 32
    assert not (tmp_path / "var").exists()  # the service makes its database, as its own user
    assert f'url = "sqlite:///{state}/ticketd.db"' in (etc / "ticketd.toml").read_text()


def test_check_warns_about_a_readable_secret_or_database(tmp_path: Path) -> None:
    home = tmp_path / "helpdesk"
    assert ticketd("init", str(home), "--layout", "local").returncode == 0
    config = home / "ticketd.toml"
    quiet, _ = decode(ticketd("check", config=config))
    assert "WARN" not in quiet, quiet

    secret = home / "credentials" / "secret"
    secret.chmod(0o644)
    (home / "ticketd.db").chmod(0o640)
    out, _ = decode(ticketd("check", config=config))
    warnings = [line for line in out.splitlines() if line.startswith("WARN permissions:")]
    assert warnings == [
        f"WARN permissions: secret file ([security] secret_file) {secret} is readable by everyone on this "
        f"machine (mode 644): chmod 600 {secret}",
        f"WARN permissions: database {home / 'ticketd.db'} is readable by its group (mode 640): "
        f"chmod 600 {home / 'ticketd.db'}",
        # SQLite gives its journal the database's mode when it creates it (here, on check's connection)
        f"WARN permissions: database journal {home / 'ticketd.db-wal'} is readable by its group (mode 640): "
        f"chmod 600 {home / 'ticketd.db-wal'}",
    ], out
