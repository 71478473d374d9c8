"""``[[mailboxes]]`` and the database password: what the daemon polls, and what start-up refuses, by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_config import base, problems

from ticketd.daemon.config import parse_config


def two_mailboxes(tmp_path: Path) -> dict[str, Any]:
    data = base(tmp_path)
    data["groups"] = [{"name": "complaints"}]
    data["mailboxes"] = [
        {"name": "support", "address": "support@acme.example"},
        {"name": "complaints", "address": "complaints@acme.example", "folder": "Complaints",
         "processed_folder": "Complaints/Done", "defaults": {"type": "complaint", "group": "complaints"}},
    ]
    return data


def test_each_mailbox_is_the_imap_server_with_its_folders_and_defaults(tmp_path: Path) -> None:
    config = parse_config(two_mailboxes(tmp_path))
    support, complaints = config.polled_mailboxes()
    assert (support.name, support.imap.folder, support.imap.processed_folder) == ("support", "INBOX", "Processed")
    assert (complaints.imap.folder, complaints.imap.processed_folder) == ("Complaints", "Complaints/Done")
    assert complaints.imap.host == "127.0.0.1" and complaints.imap.username == "support"
    assert config.mailbox_defaults("complaints") == {"type": "complaint", "group": "complaints"}
    assert config.mailbox_defaults("support") == {}
    assert config.our_addresses() == {"support@acme.example", "complaints@acme.example"}


def test_without_mailboxes_the_imap_section_is_the_one_mailbox(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path))
    (only,) = config.polled_mailboxes()
    assert only.name == "INBOX" and only.imap == config.imap  # the name rows were always recorded under


def test_a_mailbox_may_log_in_as_another_account(tmp_path: Path) -> None:
    data = two_mailboxes(tmp_path)
    (tmp_path / "complaints-password").write_text("pw2\n")
    data["mailboxes"][1].update(username="complaints", password_file=str(tmp_path / "complaints-password"))
    complaints = parse_config(data).polled_mailboxes()[1]
    assert complaints.imap.username == "complaints"
    assert complaints.imap.password is not None and complaints.imap.password.get_secret_value() == "pw2"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["mailboxes"][1].update(name="support"),
     "mailboxes.1.name: duplicate mailbox name 'support' (also mailboxes.0)"),
    (lambda d: d["mailboxes"][1].update(folder="INBOX"),
     "mailboxes.1.folder: 'INBOX' of the same login is mailbox 'support' already"),
    (lambda d: d["mailboxes"][1]["defaults"].update(group="complains"),
     "mailboxes.1.defaults.group: unknown group 'complains'; did you mean complaints?"),
    (lambda d: d["mailboxes"][1]["defaults"].update(type="grievance"),
     "mailboxes.1.defaults.type: must be 'request', 'complaint' or 'information'"),
    (lambda d: d["mailboxes"][1].update(username="complaints"),
     "mailboxes.1.password_file: required with its own username"),
    (lambda d: (d.pop("imap"), d["mailboxes"][0].pop("address")),
     "mailboxes.0.address: required without [imap]: mail delivered by `ticketd deliver`"),
])
def test_bad_mailboxes_are_refused_by_key(tmp_path: Path, change: Any, expected: str) -> None:
    data = two_mailboxes(tmp_path)
    change(data)
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_the_database_password_comes_from_a_file_or_the_environment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = base(tmp_path)
    data["database"] = {"url": "postgresql+psycopg://ticketd:hunter2@db.example/ticketd"}
    assert any(p.startswith("database.url: carries a password") for p in problems(data))
    (tmp_path / "db-password").write_text("s3cr@t/\n")
    data["database"] = {"url": "postgresql+psycopg://ticketd@db.example/ticketd",
                        "password_file": str(tmp_path / "db-password")}
    config = parse_config(data)
    assert config.database.connect_url == "postgresql+psycopg://ticketd:s3cr%40t%2F@db.example/ticketd"
    assert "s3cr" not in config.database.url
    monkeypatch.setenv("TICKETD_DATABASE_PASSWORD", "from-env")
    assert config.database.connect_url == "postgresql+psycopg://ticketd:from-env@db.example/ticketd"


def test_documented_mailboxes_block_loads_and_names_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's commented-out [[mailboxes]] entries load when uncommented, and its text names every key."""
    import tomllib

    from ticketd.daemon.config.mailboxes import MailboxConfig

    monkeypatch.setenv("TICKETD_SECRET", "x" * 32)
    text = (Path(__file__).parents[2] / "deploy" / "ticketd.toml.example").read_text()
    start = text.index("# Several mailboxes")
    block = text[start:text.index("\n\n", text.index("# [[mailboxes]]"))]
    for key in MailboxConfig.model_fields:
        assert key in block, key
    entries = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines()
                        if not line.startswith(("# Several", "# [imap] is", "# answered", "# server", "# [[rules]]")))
    data = tomllib.loads(text)
    data["mailboxes"] = tomllib.loads(entries[entries.index("[[mailboxes]]"):])["mailboxes"]
    for section, key in (("imap", "password_file"), ("smtp", "password_file"), ("security", "secret_file")):
        del data[section][key]
    config = parse_config(data)
    assert [box.name for box in config.polled_mailboxes()] == ["support", "complaints"]
    assert config.mailbox_defaults("complaints") == {"type": "complaint", "priority": "high"}
    assert config.identity("complaints").name == "Acme Complaints"


def test_without_imap_lmtp_knows_the_mailboxes_by_their_addresses(tmp_path: Path) -> None:
    data = two_mailboxes(tmp_path)
    data.pop("imap")
    data["lmtp"] = {"listen": "127.0.0.1:8024"}
    config = parse_config(data)
    assert config.polled_mailboxes() == []  # nothing to poll: the mail system delivers
    assert config.our_addresses() == {"support@acme.example", "complaints@acme.example"}
    del data["mailboxes"][0]["address"]
    assert "mailboxes.0.address: required without [imap]: LMTP knows a mailbox by its address" in problems(data)


def test_a_mailbox_with_an_address_is_an_identity(tmp_path: Path) -> None:
    data = two_mailboxes(tmp_path)
    (tmp_path / "sig.txt").write_text("Acme Şikayet Birimi\n0850 000 00 00\n", encoding="utf-8")
    (tmp_path / "complaints-templates").mkdir()
    (tmp_path / "smtp-pw").write_text("s3cret\n")
    data["mailboxes"][1].update({"address": "sikayet@acme-sikayet.example", "display_name": "Acme Şikayet",
                                 "reply_domain": "Reply.Acme-Sikayet.example.", "signature_file": "sig.txt",
                                 "templates_dir": "complaints-templates", "smtp_username": "sikayet",
                                 "smtp_password_file": "smtp-pw"})
    data["smtp"] = {"host": "127.0.0.1", "port": 2525, "tls": "none", "username": "support"}
    config = parse_config(_resolved(data, tmp_path))
    complaints = config.identity("complaints")
    assert (complaints.name, complaints.address) == ("Acme Şikayet", "sikayet@acme-sikayet.example")
    assert complaints.reply_base == "sikayet@reply.acme-sikayet.example"
    assert complaints.signature == "Acme Şikayet Birimi\n0850 000 00 00"
    assert complaints.templates_dirs == (tmp_path / "complaints-templates",)
    assert config.identity("support").name == config.helpdesk.name  # no display_name: the helpdesk's
    assert config.identity(None).address == config.helpdesk.address
    assert config.identity("gone-since").address == config.helpdesk.address  # removed from the config
    assert config.reply_bases() == (config.helpdesk.address, "sikayet@reply.acme-sikayet.example")
    assert config.is_our_address("sikayet+12.3.abc@reply.acme-sikayet.example")
    smtp = config.smtp_for("complaints")
    assert smtp.username == "sikayet" and smtp.password is not None and smtp.password.get_secret_value() == "s3cret"
    assert config.smtp_for("support") is config.smtp and config.smtp_for(None) is config.smtp
    assert config.answering_mailbox("INBOX", ["x@y.example", "SIKAYET@acme-sikayet.example"]) == "complaints"
    assert config.answering_mailbox("complaints", []) == "complaints"
    assert config.answering_mailbox("INBOX", ["x@y.example"]) is None


@pytest.mark.parametrize(("key", "value", "message"), [
    ("display_name", "Acme\nBcc: x@evil.example", "must be a name on one line"),
    ("reply_domain", "not a domain", "must be a domain"),
    ("reply_domain", "müşteri.example", "must be a domain"),
    ("signature_file", "missing.txt", "does not exist"),
])
def test_identity_keys_are_checked(tmp_path: Path, key: str, value: str, message: str) -> None:
    data = two_mailboxes(tmp_path)
    data["mailboxes"][1][key] = value
    found = problems(_resolved(data, tmp_path))
    assert any(p.startswith(f"mailboxes.1.{key}:") and message in p for p in found), found


def test_identity_keys_need_an_address(tmp_path: Path) -> None:
    data = two_mailboxes(tmp_path)
    del data["mailboxes"][1]["address"]
    data["mailboxes"][1]["display_name"] = "Acme Şikayet"
    assert "mailboxes.1.display_name: needs address (the identity it belongs to)" in problems(data)


def _resolved(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative file names as a config file in ``folder`` has them resolved."""
    from ticketd.daemon.config import _resolve_paths

    return _resolve_paths(data, folder)
