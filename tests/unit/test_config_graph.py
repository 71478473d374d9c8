"""A Graph mailbox's settings: one app credential, read at start and never shown; https only off loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from ticketd.daemon.config.graph import CLIENT_SECRET_ENV, GraphConfig


@pytest.fixture(autouse=True)
def _no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CLIENT_SECRET_ENV, raising=False)


def keys(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    values: dict[str, Any] = {"tenant": "acme.onmicrosoft.com", "client_id": "00000000-0000-0000-0000-00000000abcd",
                              "mailbox": "Support@Acme.example", "client_secret_file": str(secret)}
    return {k: v for k, v in {**values, **overrides}.items() if v is not None}


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        GraphConfig(**values)
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors())


def pem_pair(tmp_path: Path, name: str = "app.pem", key_matches: bool = True,
             encrypted: bool = False) -> tuple[Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ticketd")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    if not key_matches:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    protection = (serialization.BestAvailableEncryption(b"pw") if encrypted else serialization.NoEncryption())
    path = tmp_path / name
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protection)
                     + cert.public_bytes(serialization.Encoding.PEM))
    return path, cert


def test_a_client_secret_is_read_from_its_file_and_never_shown(tmp_path: Path) -> None:
    cfg = GraphConfig(**keys(tmp_path))
    assert cfg.client_secret is not None and cfg.client_secret.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.model_dump())
    assert (cfg.mailbox, cfg.folder, cfg.processed_folder) == ("support@acme.example", "Inbox", "Processed")
    assert (cfg.authority_url, cfg.graph_url) == ("https://login.microsoftonline.com", "https://graph.microsoft.com")
    assert (cfg.poll_seconds, cfg.timeout_seconds) == (60, 30)
    assert cfg.scope == "https://graph.microsoft.com/.default"


def test_or_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLIENT_SECRET_ENV, "from-env")
    cfg = GraphConfig(**keys(tmp_path, client_secret_file=None))
    assert cfg.client_secret is not None and cfg.client_secret.get_secret_value() == "from-env"


def test_exactly_one_credential(tmp_path: Path) -> None:
    certificate, _ = pem_pair(tmp_path)
    assert "not both" in refusal(keys(tmp_path, certificate_file=str(certificate)))
    assert "one is required" in refusal(keys(tmp_path, client_secret_file=None))
    assert "not accepted in the config file" in refusal(keys(tmp_path, client_secret="inline"))
    missing = str(tmp_path / "missing")
    assert "client_secret_file: Value error, file" in refusal(keys(tmp_path, client_secret_file=missing))
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in refusal(keys(tmp_path, client_secret_file=str(tmp_path / "empty")))


def test_a_certificate_gives_the_key_and_its_thumbprint(tmp_path: Path) -> None:
    path, cert = pem_pair(tmp_path)
    cfg = GraphConfig(**keys(tmp_path, client_secret_file=None, certificate_file=str(path)))
    der = cert.public_bytes(serialization.Encoding.DER)
    assert cfg.certificate_thumbprint == hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    assert cfg.private_key is not None and "PRIVATE KEY" in cfg.private_key.get_secret_value()
    assert cfg.client_secret is None
    assert "PRIVATE" not in repr(cfg) and "PRIVATE" not in str(cfg.model_dump())
    given = GraphConfig(**keys(tmp_path, client_secret_file=None, certificate_file=str(path),
                               certificate_thumbprint="ab:" * 19 + "cd"))
    assert given.certificate_thumbprint == "AB" * 19 + "CD"


@pytest.mark.parametrize(("kind", "said"), [
    ("wrong key", "does not belong to its certificate"),
    ("encrypted", "is encrypted"),
    ("no key", "holds no PEM private key"),
    ("no certificate", "holds no PEM certificate"),
])
def test_a_certificate_file_that_cannot_sign_is_refused_at_start(tmp_path: Path, kind: str, said: str) -> None:
    path, _ = pem_pair(tmp_path, key_matches=kind != "wrong key", encrypted=kind == "encrypted")
    data = path.read_bytes()
    if kind == "no key":
        path.write_bytes(data[data.index(b"-----BEGIN CERTIFICATE"):])
    if kind == "no certificate":
        path.write_bytes(data[:data.index(b"-----BEGIN CERTIFICATE")])
    assert said in refusal(keys(tmp_path, client_secret_file=None, certificate_file=str(path)))


def test_a_thumbprint_needs_a_certificate_and_forty_hex_digits(tmp_path: Path) -> None:
    assert "only with certificate_file" in refusal(keys(tmp_path, certificate_thumbprint="AB" * 20))
    path, _ = pem_pair(tmp_path)
    assert "40 hexadecimal digits" in refusal(keys(tmp_path, client_secret_file=None, certificate_file=str(path),
                                                   certificate_thumbprint="XYZ"))


@pytest.mark.parametrize(("url", "accepted"), [
    ("https://login.microsoftonline.us", True),
    ("https://graph.example.com:8443/", True),
    ("http://127.0.0.1:8080", True),
    ("http://localhost:9000", True),
    ("http://graph.microsoft.com", False),
    ("ftp://127.0.0.1", False),
    ("graph.microsoft.com", False),
])
def test_endpoints_are_https_except_on_loopback(tmp_path: Path, url: str, accepted: bool) -> None:
    for key in ("authority_url", "graph_url"):
        if accepted:
            assert getattr(GraphConfig(**keys(tmp_path, **{key: url})), key) == url.rstrip("/")
        else:
            assert f"{key}: Value error, must be an https:// URL" in refusal(keys(tmp_path, **{key: url}))


def test_tenant_mailbox_and_folders_are_checked(tmp_path: Path) -> None:
    assert GraphConfig(**keys(tmp_path, tenant="72f988bf-86f1-41af-91ab-2d7cd011db47")).tenant
    assert "tenant: Value error, must be a tenant ID or domain" in refusal(keys(tmp_path, tenant="acme/../x"))
    assert "mailbox: Value error, must be an e-mail address" in refusal(keys(tmp_path, mailbox="support"))
    assert "must differ from folder" in refusal(keys(tmp_path, folder="Support", processed_folder="support"))
    assert "folder: Value error" in refusal(keys(tmp_path, folder="Inbox//Support"))
    assert "poll_seconds: Value error" in refusal(keys(tmp_path, poll_seconds=0))
    assert "colour: Extra inputs are not permitted" in refusal(keys(tmp_path, colour="red"))
