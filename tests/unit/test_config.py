"""Config validation: every problem names its key; secrets come from files or the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ticketd.daemon.config import ConfigError, load_config, parse_config


def base(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    return {
        "helpdesk": {"address": "support@acme.example", "tag": "ACME"},
        "security": {"secret_file": str(tmp_path / "secret")},
        "imap": {"host": "127.0.0.1", "port": 993, "username": "support", "password": "pw"},
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_valid_minimal_config_has_defaults(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path))
    assert config.helpdesk.address == "support@acme.example"
    assert config.imap is not None and config.imap.processed_folder == "Processed"
    assert config.security.secret is not None and config.security.secret.get_secret_value() == "s" * 32


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("imap", "port", 70000, "imap.port: must be an integer between 1 and 65535"),
    ("imap", "port", "993", "imap.port: must be an integer between 1 and 65535"),
    ("imap", "tls", "ssl", "imap.tls: must be 'implicit', 'starttls' or 'none'"),
    ("imap", "poll_seconds", 0, "imap.poll_seconds: must be a positive integer"),
    ("helpdesk", "address", "not-an-address", "helpdesk.address: must be an e-mail address"),
    ("helpdesk", "timezone", "Mars/Olympus", "helpdesk.timezone: unknown time zone 'Mars/Olympus'"),
    ("helpdesk", "tag", "AC ME", "helpdesk.tag: must be letters, digits"),
    ("database", "url", "mysql://x", "database.url: must start with sqlite:/// or postgresql"),
    ("imap", "colour", "blue", "imap.colour: unknown key"),
    ("security", "signed_address_days", 0, "security.signed_address_days: Input should be greater than or equal to 1"),
    ("security", "signed_address_days", 4000, "security.signed_address_days: Input should be less than or equal"),
])
def test_bad_value_names_the_key(tmp_path: Path, section: str, key: str, value: Any, expected: str) -> None:
    data = base(tmp_path)
    data.setdefault(section, {})[key] = value
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    data = base(tmp_path)
    del data["helpdesk"]["address"]
    del data["imap"]["host"]
    found = problems(data)
    assert "helpdesk.address: required key is missing" in found
    assert "imap.host: required key is missing" in found


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    data = base(tmp_path) | {"imapp": {"host": "x"}}
    assert "imapp: unknown key" in problems(data)


def test_missing_secret_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETD_SECRET", raising=False)
    data = base(tmp_path)
    data["security"] = {}
    assert any(p.startswith("security.secret_file: required") for p in problems(data))


def test_password_from_file_relative_to_config(tmp_path: Path) -> None:
    data = base(tmp_path)
    (tmp_path / "imap-password").write_text("from-file\n")
    lines = [
        '[helpdesk]\naddress = "support@acme.example"',
        '[security]\nsecret_file = "secret"',
        '[imap]\nhost = "localhost"\nusername = "u"\npassword_file = "imap-password"',
    ]
    (tmp_path / "ticketd.toml").write_text("\n".join(lines))
    config = load_config(tmp_path / "ticketd.toml")
    assert config.imap is not None and config.imap.password is not None
    assert config.imap.password.get_secret_value() == "from-file"
    assert "from-file" not in repr(config)  # never printed by accident
    assert data  # base() created the secret file the config points at


def test_password_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETD_IMAP_PASSWORD", "from-env")
    config = parse_config(base(tmp_path))
    assert config.imap is not None and config.imap.password is not None
    assert config.imap.password.get_secret_value() == "from-env"


def test_missing_password_file_is_named(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["imap"]["password_file"] = str(tmp_path / "nope")
    assert any(p.startswith("imap.password_file: file") for p in problems(data))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[helpdesk\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_sqlite_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s" * 32)
    (tmp_path / "ticketd.toml").write_text(
        '[helpdesk]\naddress = "a@b.example"\n[security]\nsecret_file = "secret"\n'
        '[database]\nurl = "sqlite:///data/t.db"\n')
    config = load_config(tmp_path / "ticketd.toml")
    assert config.database.url == f"sqlite:///{tmp_path}/data/t.db"


def test_credential_names_are_read_from_systemd_else_beside_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``credential:NAME``: $CREDENTIALS_DIRECTORY/NAME while systemd runs the service (LoadCredential=), else
    credentials/NAME beside the config, which the unit copies from: one line for the daemon and for `check`."""
    site, run = tmp_path / "etc", tmp_path / "run"
    for folder, value in ((site / "credentials", "from-etc"), (run, "from-systemd")):
        folder.mkdir(parents=True)
        (folder / "secret").write_text(f"{value}:" + "s" * 32)
        (folder / "imap-password").write_text(value)
        (folder / "box-password").write_text(f"{value}-box")
    (site / "ticketd.toml").write_text(
        '[helpdesk]\naddress = "support@acme.example"\n[security]\nsecret_file = "credential:secret"\n'
        '[imap]\nhost = "localhost"\nusername = "u"\npassword_file = "credential:imap-password"\n'
        '[[mailboxes]]\nname = "b"\nfolder = "B"\nusername = "b"\npassword_file = "credential:box-password"\n')
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("TICKETD_IMAP_PASSWORD", raising=False)
    monkeypatch.delenv("TICKETD_SECRET", raising=False)

    def secrets() -> tuple[str, str, str, str]:
        config = load_config(site / "ticketd.toml")
        assert config.imap is not None and config.imap.password is not None and config.security.secret is not None
        box = config.polled_mailboxes()[0].imap.password
        assert box is not None
        return (config.security.secret.get_secret_value().split(":")[0], config.imap.password.get_secret_value(),
                box.get_secret_value(), str(config.imap.password_file))

    assert secrets() == ("from-etc", "from-etc", "from-etc-box", str(site / "credentials" / "imap-password"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(run))
    assert secrets() == ("from-systemd", "from-systemd", "from-systemd-box", str(run / "imap-password"))

    (site / "ticketd.toml").write_text(
        '[helpdesk]\naddress = "support@acme.example"\n[security]\nsecret_file = "credential:../secret"\n')
    with pytest.raises(ConfigError) as info:
        load_config(site / "ticketd.toml")
    assert info.value.problems == [
        "security.secret_file: credential:../secret: must name a file, like credential:imap-password"]


def test_documented_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/ticketd.toml.example documents every key; it must stay loadable (secret files aside)."""
    import tomllib

    monkeypatch.setenv("TICKETD_SECRET", "x" * 32)
    example = Path(__file__).parents[2] / "deploy" / "ticketd.toml.example"
    data = tomllib.loads(example.read_text())
    for section, key in (("imap", "password_file"), ("smtp", "password_file"), ("security", "secret_file")):
        assert key in data[section]
        del data[section][key]  # points at /etc/ticketd on a real host
    config = parse_config(data)
    assert config.imap is not None and config.smtp is not None and config.helpdesk.tag == "ACME"


def test_metrics_listen_is_validated(tmp_path: Path) -> None:
    data = base(tmp_path) | {"metrics": {"listen": "localhost"}}
    assert any(p.startswith("metrics.listen: must be host:port") for p in problems(data))
    data["metrics"]["listen"] = "127.0.0.1:9187"
    assert parse_config(data).metrics.listen == "127.0.0.1:9187"


def test_documented_oauth2_block_is_complete_and_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's commented-out [oauth2] block names every key; uncommented it loads, either with the
    refresh-token keys or with token_command alone."""
    import os
    import tomllib

    from ticketd.daemon.config import OAuth2Config

    monkeypatch.setenv("TICKETD_SECRET", "x" * 32)
    monkeypatch.delenv("TICKETD_OAUTH2_REFRESH_TOKEN", raising=False)
    text = (Path(__file__).parents[2] / "deploy" / "ticketd.toml.example").read_text()
    block = text[text.index("# [oauth2]\n"):]
    lines = [line.removeprefix("#").removeprefix(" ") for line in block[:block.index("\n\n")].splitlines()]
    documented = tomllib.loads("\n".join(lines))["oauth2"]
    assert set(OAuth2Config.model_fields) - {"refresh_token", "client_secret"} == set(documented)
    assert 'or client_secret = "..." (discouraged)' in block  # the inline form, like password = "..."

    data = tomllib.loads(text)
    for section in ("imap", "smtp"):
        assert data[section]["auth"] == "password"
        data[section] = {**data[section], "auth": "xoauth2"}
        del data[section]["password_file"]
    del data["security"]["secret_file"]
    (tmp_path / "client-secret").write_text("cs")
    (tmp_path / "refresh-token").write_text("rt")
    refresh_flow = {k: v for k, v in documented.items() if k != "token_command"}
    refresh_flow.update(client_secret_file=str(tmp_path / "client-secret"),
                        refresh_token_file=str(tmp_path / "refresh-token"))
    config = parse_config({**data, "oauth2": refresh_flow})
    assert config.imap is not None and config.imap.oauth2 is config.oauth2 and config.oauth2 is not None
    assert config.oauth2.scopes == tuple(documented["scopes"])

    helper = tmp_path / "bin" / documented["token_command"].split()[0]
    helper.parent.mkdir()
    helper.write_text("#!/bin/sh\necho token\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    config = parse_config({**data, "oauth2": {"token_command": documented["token_command"]}})
    assert config.oauth2 is not None and config.oauth2.token_argv[0] == helper.name


def test_the_days_keys_have_defaults_and_are_checked(tmp_path: Path) -> None:
    """[limits] forward_attachments_bytes, [closing] reopen_within and [digest] schedule: defaults that work,
    and a clear line naming the key when one is wrong."""
    from datetime import timedelta

    config = parse_config(base(tmp_path))
    assert config.limits.forward_attachments_bytes == 10 * 1024 * 1024
    assert config.closing.reopen_within == timedelta(days=7)
    assert config.digest.schedule is None
    data = base(tmp_path) | {"limits": {"forward_attachments_bytes": 0}, "closing": {"reopen_within": "a week"},
                             "digest": {"schedule": "30 8 * * monday-friday"}}
    found = problems(data)
    assert "limits.forward_attachments_bytes: must be a positive integer" in found
    assert 'closing.reopen_within: must be a calendar duration like "5d" (days) or "12h" (hours)' in found
    assert any(p.startswith('digest.schedule: not a cron schedule like "30 8 * * 1-5"') for p in found)
    good = parse_config(base(tmp_path) | {"closing": {"reopen_within": "48h"},
                                          "digest": {"schedule": "30  8 * * 1-5"}})
    assert good.closing.reopen_within == timedelta(hours=48) and good.digest.schedule == "30 8 * * 1-5"


def test_the_example_config_documents_the_days_keys() -> None:
    text = (Path(__file__).parents[2] / "deploy" / "ticketd.toml.example").read_text()
    for key in ("forward_attachments_bytes = ", "reopen_within = ", "[digest]", '# schedule = "30 8 * * 1-5"'):
        assert key in text


@pytest.mark.parametrize(("listen", "expected"), [
    ("8024", "lmtp.listen: must be host:port (e.g. 127.0.0.1:8024) or unix:/absolute/path"),
    ("127.0.0.1:99999", "lmtp.listen: must be host:port (e.g. 127.0.0.1:8024) or unix:/absolute/path"),
    ("unix:run/lmtp.sock", "lmtp.listen: a unix socket must be an absolute path of at most 107 bytes"),
    ("unix:/" + "x" * 107, "lmtp.listen: a unix socket must be an absolute path of at most 107 bytes"),
])
def test_lmtp_listen_is_validated(tmp_path: Path, listen: str, expected: str) -> None:
    data = {**base(tmp_path), "lmtp": {"listen": listen}}
    assert any(p.startswith(expected) for p in problems(data)), problems(data)
    assert parse_config({**base(tmp_path), "lmtp": {"listen": "unix:/run/ticketd/lmtp.sock"}}).lmtp is not None
