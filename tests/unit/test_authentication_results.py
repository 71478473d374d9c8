"""Authentication-Results as the MTAs really write them, and as an attacker would: every verdict.

The agent is ali@acme.example. Each row names the authserv-id the desk trusts, the headers topmost first, and
whether they prove the mail came from acme.example. The real formats follow the projects' own output (OpenDKIM
and OpenDMARC's ``(2048-bit key; unprotected)`` and ``(p=reject dis=none)`` comments, Gmail's ``mx.google.com``
with ``header.i`` only, Exchange Online's id-less header with ``compauth``, Rspamd's tab-folded results, Amavis's
``(amavisd-new)`` comment after the id), as seen in mail archived by public projects.
"""

from __future__ import annotations

import pytest

from ticketd.parsers.message import parse_message
from ticketd.rules.auth import authentication_results_pass

OURS = "mx.acme.example"

# (name, trusted authserv-id, headers topmost first, authenticated?)
REAL: list[tuple[str, str, list[str], bool]] = [
    ("opendkim 2048-bit unprotected", OURS, [
        "mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=acme.example header.i=@acme.example "
        "header.a=rsa-sha256 header.s=default header.b=AbCdEfGh"], True),
    ("opendkim 1024-bit secure, quoted header.b", OURS, [
        'mx.acme.example;\tdkim=pass (1024-bit key; secure) header.d=acme.example header.i=@acme.example '
        'header.b="mj+deT/Q"'], True),
    ("opendkim pass plus dkim-atps", OURS, [
        "mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=acme.example header.i=@acme.example "
        "header.b=XyZ12345; dkim-atps=neutral"], True),
    ("opendkim failed signature", OURS, [
        'mx.acme.example; dkim=fail reason="signature verification failed" (2048-bit key; unprotected) '
        "header.d=acme.example header.i=@acme.example header.b=AbCdEfGh"], False),
    ("opendkim no key", OURS, [
        "mx.acme.example; dkim=permerror (no key for signature) header.d=acme.example header.i=@acme.example"],
     False),
    ("opendkim pass for a list's re-signature only", OURS, [
        "mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=lists.example.org "
        "header.i=@lists.example.org header.b=QwErTy12"], False),
    ("opendkim two signatures, ours second", OURS, [
        "mx.acme.example; dkim=pass (1024-bit key; unprotected) header.d=esp.example header.i=@esp.example "
        "header.b=AAAA1111; dkim=pass (2048-bit key; unprotected) header.d=acme.example header.i=@acme.example "
        "header.b=BBBB2222"], True),
    ("opendkim reason with a semicolon", OURS, [
        'mx.acme.example; dkim=pass reason="good; verified" header.d=acme.example header.b=AbCd'], True),
    ("opendmarc pass", OURS, ["mx.acme.example; dmarc=pass (p=reject dis=none) header.from=acme.example"], True),
    ("opendmarc fail", OURS, ["mx.acme.example; dmarc=fail (p=reject dis=reject) header.from=acme.example"], False),
    ("opendmarc none", OURS, ["mx.acme.example; dmarc=none (p=none dis=none) header.from=acme.example"], False),
    ("opendmarc above opendkim, both ours", OURS, [
        "mx.acme.example; dmarc=pass (p=quarantine dis=none) header.from=acme.example",
        "mx.acme.example; dkim=fail (2048-bit key; unprotected) header.d=acme.example header.b=AbCd"], True),
    ("gmail pass (dkim gives header.i only; dmarc decides)", "mx.google.com", [
        "mx.google.com;       dkim=pass header.i=@acme.example header.s=20230601 header.b=AbCd1234;       "
        "spf=pass (google.com: domain of ali@acme.example designates 209.85.220.41 as permitted sender) "
        "smtp.mailfrom=ali@acme.example;       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) "
        "header.from=acme.example"], True),
    ("gmail dmarc fail", "mx.google.com", [
        "mx.google.com;       dkim=neutral (body hash did not verify) header.i=@acme.example header.s=s1 "
        "header.b=AbCd;       spf=softfail (google.com: domain of transitioning ali@acme.example does not "
        "designate 198.51.100.7 as permitted sender) smtp.mailfrom=ali@acme.example;       "
        "dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=acme.example"], False),
    ("gmail spf pass alone", "mx.google.com", [
        "mx.google.com;       spf=pass (google.com: domain of ali@acme.example designates 209.85.220.41 as "
        "permitted sender) smtp.mailfrom=ali@acme.example"], False),
    ("microsoft 365 pass: no authserv-id, so nobody's", "protection.outlook.com", [
        "spf=pass (sender IP is 40.107.22.1) smtp.mailfrom=acme.example; dkim=pass (signature was verified) "
        "header.d=acme.example;dmarc=pass action=none header.from=acme.example;compauth=pass reason=100"], False),
    ("microsoft 365 with the tenant's domain between results", "acme.onmicrosoft.com", [
        "spf=pass (sender IP is 40.107.22.1) smtp.mailfrom=acme.example; acme.onmicrosoft.com; dkim=pass "
        "(signature was verified) header.d=acme.example;acme.onmicrosoft.com; dmarc=pass action=none "
        "header.from=acme.example;compauth=pass reason=100"], False),
    ("rspamd pass", "mail.acme.example", [
        "mail.acme.example;\tdkim=pass header.d=acme.example header.s=dkim header.b=AbCd1234;\t"
        "dmarc=pass (policy=reject) header.from=acme.example;\tspf=pass (mail.acme.example: domain of "
        "ali@acme.example designates 192.0.2.1 as permitted sender) smtp.mailfrom=ali@acme.example"], True),
    ("rspamd dkim of a forwarder, dmarc fail", "mail.acme.example", [
        "mail.acme.example;\tdkim=pass header.d=forwarder.example header.s=s1 header.b=AbCd;\t"
        "dmarc=fail reason=\"No valid SPF, No valid DKIM\" header.from=acme.example (policy=reject);\t"
        "spf=fail (mail.acme.example: domain of ali@acme.example does not designate 203.0.113.9 as permitted "
        "sender) smtp.mailfrom=ali@acme.example"], False),
    ("amavis pass with a comment after the id", "mail.acme.example", [
        "mail.acme.example (amavisd-new); dkim=pass (4096-bit key)\theader.d=acme.example"], True),
    ("amavis pass on its own signature", "mail.acme.example", [
        'mail.acme.example (amavisd-new); dkim=pass        reason="pass (just generated, assumed good)"        '
        "header.d=acme.example"], True),
    ("amavis softfail", "mail.acme.example", [
        "mail.acme.example (amavisd-new); dkim=softfail\t(fail, message has been altered) header.i=@acme.example"],
     False),
    ("a comment before the authserv-id", OURS, [
        "(received by the front MX) mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=acme.example"],
     True),
    ("an internal relay's header above ours", OURS, [
        "relay.internal.acme.example; none",
        "mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=acme.example header.b=AbCd"], True),
    ("authserv-id with a version", OURS, ["mx.acme.example 1; dmarc=pass header.from=acme.example"], True),
    ("upper case everywhere", OURS, ["MX.ACME.EXAMPLE; DKIM=PASS header.d=ACME.EXAMPLE"], True),
    ("a subdomain's signature is not the agent's domain", OURS, [
        "mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=news.acme.example"], False),
]

ATTACKS: list[tuple[str, str, list[str], bool]] = [
    ("spf comment quoting a dkim pass", OURS, [
        "mx.acme.example; spf=pass (sender dkim=pass header.d=acme.example) smtp.mailfrom=eve@evil.example"], False),
    ("spf comment quoting a sender address that carries a dkim pass", OURS, [
        'mx.acme.example; spf=pass (mx.acme.example: domain of "dkim=pass header.d=acme.example x"@evil.example '
        'designates 203.0.113.5 as permitted sender) smtp.mailfrom="dkim=pass header.d=acme.example x"@evil.example'],
     False),
    ("quoted local part carrying a dkim pass", OURS, [
        'mx.acme.example; spf=pass smtp.mailfrom="dkim=pass header.d=acme.example"@evil.example'], False),
    ("header.d in a comment, the real one elsewhere", OURS, [
        "mx.acme.example; dkim=pass (header.d=acme.example) header.d=evil.example"], False),
    ("a forged trusted header below ours", OURS, [
        "mx.acme.example; dkim=none (no signatures found); dmarc=fail header.from=acme.example",
        "mx.acme.example; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example"], False),
    ("a passing header with another id above ours", OURS, [
        "evil.example; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example",
        "mx.acme.example; dkim=none (no signatures found)"], False),
    ("wrong authserv-id only", OURS, ["mx.evil.example; dkim=pass header.d=acme.example"], False),
    ("authserv-id look-alike", OURS, ["mx.acme.example.evil.example; dkim=pass header.d=acme.example"], False),
    ("header.d look-alike suffix", OURS, ["mx.acme.example; dkim=pass header.d=acme.example.evil.example"], False),
    ("header.d look-alike prefix with a dash", OURS, ["mx.acme.example; dkim=pass header.d=evil-acme.example"],
     False),
    ("header.d look-alike without a separator", OURS, ["mx.acme.example; dkim=pass header.d=evilacme.example"],
     False),
    ("dkim pass naming header.from", OURS, ["mx.acme.example; dkim=pass header.from=acme.example"], False),
    ("dmarc pass naming header.d", OURS, ["mx.acme.example; dmarc=pass header.d=acme.example"], False),
    ("malformed trusted header", OURS, ["mx.acme.example; dkim=pass header.d=acme.example; ;;; ==="], False),
    ("malformed header naming our id above a good one", OURS, [
        "mx.acme.example; dkim=pass header.d=",
        "mx.acme.example; dkim=pass header.d=acme.example"], False),
    ("no authserv-id at all", OURS, ["dkim=pass header.d=acme.example"], False),
    ("smtp auth as another user is not DKIM", OURS, ["mx.acme.example; auth=pass smtp.auth=ali@acme.example"],
     False),
]


@pytest.mark.parametrize(("name", "trusted", "headers", "expected"), REAL + ATTACKS,
                         ids=[row[0] for row in REAL + ATTACKS])
def test_verdict(name: str, trusted: str, headers: list[str], expected: bool) -> None:
    assert authentication_results_pass(tuple(headers), trusted, "acme.example") is expected


def test_the_table_is_as_wide_as_promised() -> None:
    """Must show 1: at least 20 real-format headers and 8 constructed attacks, with both verdicts present."""
    assert len(REAL) >= 20 and len(ATTACKS) >= 8
    assert {row[3] for row in REAL} == {True, False}


def test_headers_reach_the_rule_in_order_from_raw_mail() -> None:
    """Folded headers arrive unfolded and topmost first, so the forged one below ours is still below it."""
    raw = (b"Authentication-Results: mx.acme.example;\r\n\tdkim=none (no signatures found)\r\n"
           b"Authentication-Results: mx.acme.example; dkim=pass\r\n header.d=acme.example\r\n"
           b"From: ali@acme.example\r\nTo: support@acme.example\r\nSubject: x\r\n\r\nbody\r\n")
    mail = parse_message(raw)
    assert len(mail.authentication_results) == 2
    assert "none" in mail.authentication_results[0]
    assert authentication_results_pass(mail.authentication_results, OURS, "acme.example") is False
    assert authentication_results_pass(mail.authentication_results[1:], OURS, "acme.example") is True


def test_only_the_topmost_headers_are_read() -> None:
    """A forged agent mail may carry thousands of headers (each parse costs about a millisecond): our MTA's
    header is near the top, so below the first 50 nothing is read, whatever it says."""
    relay = "relay{}.internal.acme.example; spf=pass (mx.acme.example: helo) smtp.helo=relay.example"
    ours = "mx.acme.example; dkim=pass header.d=acme.example"
    near = (*(relay.format(i) for i in range(10)), ours)
    assert authentication_results_pass(near, OURS, "acme.example") is True
    far = (*(relay.format(i) for i in range(10_000)), ours)
    assert authentication_results_pass(far, OURS, "acme.example") is False
