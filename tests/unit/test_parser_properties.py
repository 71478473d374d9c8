"""Property tests: no input, however hostile, makes the parsers raise or leak unsafe text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ticketd.parsers.message import ParsedMail, parse_message, sanitize_filename
from ticketd.parsers.subject import parse_subject

FAST = settings(max_examples=300, deadline=None)

_LABELS = st.sampled_from([
    "utf-8", "UTF-8", "us-ascii", "iso-8859-1", "iso-8859-9", "windows-1252", "windows-1254", "koi8-r",
    "gb2312", "GB18030", "iso-2022-jp", "shift_jis", "utf-7", "unicode-1-1-utf-7", "ks_c_5601-1987",
    "x-unknown", "bogus", "", "utf-16", "\"utf-8\"", "uft-8",
])
_TOKEN = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?="), max_size=12)
_BYTES = st.binary(max_size=200)


@st.composite
def encoded_word(draw: st.DrawFn) -> str:
    label = draw(_LABELS) or "x"
    kind = draw(st.sampled_from("BbQq"))
    return f"=?{label}?{kind}?{draw(_TOKEN)}?="


@st.composite
def header_ish_mail(draw: st.DrawFn) -> bytes:
    """A message with generated headers, MIME structure and random bytes where text should be."""
    boundary = draw(st.text(alphabet="abc-_=:'()+,./ ", min_size=0, max_size=10))
    words = draw(st.lists(st.one_of(encoded_word(), _TOKEN), max_size=5))
    lines = [
        b"From: " + " ".join(words).encode() + b" <" + draw(_BYTES)[:20] + b"@x>",
        b"Subject: " + " ".join(draw(st.lists(st.one_of(encoded_word(), _TOKEN), max_size=6))).encode()
        + draw(_BYTES)[:30],
        b"Date: " + draw(st.sampled_from([b"Mon, 1 Jan 2024 10:00:00 +0000", b"32 Foo 99999 25:61 +9999", b""])),
        b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"alternative", b"related", b""]))
        + b'; boundary="' + boundary.encode() + b'"',
    ]
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        ctype = draw(st.sampled_from([b"text/plain", b"text/html", b"image/png", b"message/rfc822", b"multipart/x"]))
        cte = draw(st.sampled_from([b"base64", b"quoted-printable", b"8bit", b"x-uuencode", b""]))
        odd_name = b'; filename="' + draw(_BYTES)[:10] + b'"'
        name = draw(st.sampled_from([b"", b"; filename*=UTF-8''%C5%9F%2F..", odd_name]))
        parts.append(
            b"--" + boundary.encode() + b"\r\nContent-Type: " + ctype + b"; charset=" + draw(_LABELS).encode()
            + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\nContent-Disposition: attachment" + name
            + b"\r\nContent-ID: <" + draw(_TOKEN).encode() + b">\r\n\r\n" + draw(_BYTES)
        )
    closing = [b"--" + boundary.encode() + b"--"] if draw(st.booleans()) else []
    return b"\r\n".join(lines) + b"\r\n\r\n" + b"\r\n".join([*parts, *closing])


def _check(mail: ParsedMail) -> None:
    assert isinstance(mail.subject, str) and isinstance(mail.text, str)
    assert mail.html is None or isinstance(mail.html, str)
    assert all(isinstance(n, str) for n in mail.decode_notes)
    for value in (mail.subject, mail.text, *(a.filename for a in mail.attachments)):
        value.encode("utf-8")
    assert "\n" not in mail.subject and "\r" not in mail.subject
    for att in mail.attachments:
        assert isinstance(att.payload, bytes)


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(parse_message(raw))


@FAST
@given(header_ish_mail())
def test_header_ish_structures_never_raise(raw: bytes) -> None:
    _check(parse_message(raw))


@FAST
@given(st.text(max_size=300))
def test_parse_subject_never_raises_and_title_is_one_line(subject: str) -> None:
    info = parse_subject(subject, "ACME")
    assert "\r" not in info.title and "\n" not in info.title
    assert info.title


@FAST
@given(st.one_of(st.none(), st.text(max_size=400)))
def test_sanitize_filename_is_safe(name: str | None) -> None:
    safe = sanitize_filename(name)
    assert not any(c in safe for c in "/\\\x00\r\n")
    assert safe not in ("", ".", "..")
    assert len(safe) <= 200


def test_hostile_nesting_is_kept_not_raised() -> None:
    raw = b"Subject: deep\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(3000)
    ) + b"Content-Type: text/plain\r\n\r\nhello\r\n"
    mail = parse_message(raw)
    assert mail.subject == "deep"
    assert mail.decode_notes and mail.attachments[0].filename == "undecodable-part-0.bin"
