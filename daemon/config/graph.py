"""A Microsoft 365 mailbox read and written through the Microsoft Graph API instead of IMAP and SMTP.

A module of its own because it has rules of its own: an app registration's credential (a client secret or a
certificate, exactly one), the URLs of the two Microsoft services (overridable for a national cloud or a test),
and the mailbox's folders as Graph names them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from ticketd.daemon.config.fields import Email, PositiveInt, Section, existing_file, secure_url

CLIENT_SECRET_ENV = "TICKETD_GRAPH_CLIENT_SECRET"

# Graph's well-known folder names (mailFolder resource): usable in a URL where a folder id goes.
WELL_KNOWN_FOLDERS = frozenset({
    "archive", "clutter", "conflicts", "conversationhistory", "deleteditems", "drafts", "inbox", "junkemail",
    "localfailures", "msgfolderroot", "outbox", "recoverableitemsdeletions", "scheduled", "searchfolders",
    "sentitems", "serverfailures", "syncissues",
})

_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL)
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class GraphConfig(Section):
    """One mailbox at Microsoft 365, reached through Graph with an app's own (application) permissions.

    TOML keys, in a ``[[mailboxes]]`` entry's ``graph`` table (or wherever the caller embeds it):

    - ``tenant``: the directory, as its ID or a domain (``acme.onmicrosoft.com``);
    - ``client_id``: the app registration's application ID;
    - ``client_secret_file`` (a file holding a client secret) or ``certificate_file`` (a PEM file holding the
      certificate uploaded to the app registration and its unencrypted private key), exactly one; without either,
      the secret may come from ``TICKETD_GRAPH_CLIENT_SECRET``. ``certificate_thumbprint`` (SHA-1, hex) is
      computed from the certificate when left out;
    - ``mailbox``: the user or shared mailbox's address;
    - ``folder`` (``"Inbox"``): where new mail waits: a well-known name, a folder's display name (a path such as
      ``"Inbox/Support"`` for a child folder) or a folder id;
    - ``processed_folder`` (``"Processed"``): where each message goes once stored; created when missing;
    - ``authority_url`` (``https://login.microsoftonline.com``) and ``graph_url`` (``https://graph.microsoft.com``):
      a national cloud's endpoints; https only, except on loopback;
    - ``cafile``: the CA bundle to check those servers' certificates with (a TLS-inspecting proxy, a test);
    - ``poll_seconds`` (60): Graph has no IDLE, so new mail is looked for this often;
    - ``timeout_seconds`` (30): per HTTP request.

    The app needs the application permissions ``Mail.ReadWrite`` (read, move, create the folder) and ``Mail.Send``,
    best limited to this mailbox by an Exchange application access policy or RBAC for Applications.
    """

    tenant: str
    client_id: str
    client_secret_file: Path | None = None
    certificate_file: Path | None = None
    certificate_thumbprint: str | None = None
    mailbox: Email
    folder: str = "Inbox"
    processed_folder: str = "Processed"
    authority_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    cafile: Path | None = None
    poll_seconds: PositiveInt = 60
    timeout_seconds: PositiveInt = 30
    # Never TOML keys (refused below): read from the files named above, or the environment.
    client_secret: SecretStr | None = Field(default=None, exclude=True)
    private_key: SecretStr | None = Field(default=None, exclude=True)
    certificate: str | None = Field(default=None, exclude=True)

    @field_validator("client_secret", "private_key", "certificate", mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        raise ValueError("not accepted in the config file: use client_secret_file, certificate_file or "
                         f"{CLIENT_SECRET_ENV}")

    @field_validator("client_secret_file", "certificate_file", "cafile")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in ".-" for c in value):
            raise ValueError("must be a tenant ID or domain, like contoso.onmicrosoft.com")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be the app registration's application (client) ID")
        return value

    @field_validator("certificate_thumbprint")
    @classmethod
    def _thumbprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        bare = value.replace(":", "").replace(" ", "").upper()
        if not re.fullmatch(r"[0-9A-F]{40}", bare):
            raise ValueError("must be the certificate's SHA-1 thumbprint: 40 hexadecimal digits")
        return bare

    @field_validator("folder", "processed_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        parts = value.split("/")
        if not value or any(not p.strip() or any(ord(c) < 32 for c in p) for p in parts):
            raise ValueError('must be a folder name, a path like "Inbox/Support", or a folder id')
        return value

    @field_validator("authority_url", "graph_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not secure_url(value):
            raise ValueError("must be an https:// URL (http:// only on the loopback address)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credential(self) -> GraphConfig:
        if self.folder.casefold() == self.processed_folder.casefold():
            raise ValueError("processed_folder: must differ from folder (the folder is the queue of new mail)")
        if self.client_secret_file is not None and self.certificate_file is not None:
            raise ValueError("certificate_file: give client_secret_file or certificate_file, not both")
        if self.certificate_thumbprint is not None and self.certificate_file is None:
            raise ValueError("certificate_thumbprint: only with certificate_file")
        if self.certificate_file is not None:
            key, cert, thumbprint = read_certificate(self.certificate_file)
            object.__setattr__(self, "private_key", key)
            object.__setattr__(self, "certificate", cert)
            object.__setattr__(self, "certificate_thumbprint", self.certificate_thumbprint or thumbprint)
            return self
        if self.client_secret_file is not None:
            try:
                secret = self.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"client_secret_file: cannot read {self.client_secret_file}: {exc.strerror}") from None
        else:
            secret = os.environ.get(CLIENT_SECRET_ENV, "").strip()
            if not secret:
                raise ValueError("client_secret_file or certificate_file: one is required "
                                 f"(or set {CLIENT_SECRET_ENV})")
        if not secret:
            raise ValueError(f"client_secret_file: {self.client_secret_file} is empty")
        object.__setattr__(self, "client_secret", SecretStr(secret))
        return self

    @property
    def scope(self) -> str:
        """Graph wants ``/.default`` for the client-credentials grant: the app's granted permissions, all of them."""
        return f"{self.graph_url}/.default"


def read_certificate(path: Path) -> tuple[SecretStr, str, str]:
    """(private key PEM, certificate PEM, SHA-1 thumbprint): what msal signs its client assertion with.

    The certificate is read here, at start, so a wrong file is refused naming the key rather than at the
    first token request."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"certificate_file: cannot read {path}: {exc.strerror}") from None
    key, cert = _PEM_KEY.search(data), _PEM_CERT.search(data)
    if key is None:
        raise ValueError(f"certificate_file: {path} holds no PEM private key (put the key and the certificate in it)")
    if b"ENCRYPTED" in key.group(0).split(b"\n", 1)[0]:
        raise ValueError(f"certificate_file: the private key in {path} is encrypted; store it decrypted "
                         "(openssl pkey -in FILE) in a file only ticketd can read")
    if cert is None:
        raise ValueError(f"certificate_file: {path} holds no PEM certificate (put the key and the certificate in it)")
    from cryptography import x509  # msal's own dependency; loaded only by a certificate setup
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        certificate = x509.load_pem_x509_certificate(cert.group(0))
        private = serialization.load_pem_private_key(key.group(0), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"certificate_file: {path} does not parse: {exc}") from None
    if not isinstance(private, rsa.RSAPrivateKey):  # Entra signs in apps with RSA certificates only
        raise ValueError(f"certificate_file: the key in {path} is not an RSA key")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (private.public_key().public_bytes(serialization.Encoding.DER, public)
            != certificate.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise ValueError(f"certificate_file: the private key in {path} does not belong to its certificate")
    der = certificate.public_bytes(serialization.Encoding.DER)
    thumbprint = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    return SecretStr(key.group(0).decode("ascii")), cert.group(0).decode("ascii"), thumbprint
