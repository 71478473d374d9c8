"""Bytes → text by a mail's charset label, with the repairs real mail needs.

Labels in the wild are often wrong or unknown to Python: Outlook writes `ks_c_5601-1987`, Windows clients send
cp1252 smart quotes under an `iso-8859-1` label, Turkish clients send cp1254 under `iso-8859-9`, and some
labels are typos (`uft-8`) or placeholders (`x-unknown`). Every decode here returns text and, when it had to
guess or replace, a short note saying so; nothing here raises.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re

# Labels that Python does not know, or knows as a narrower set than the senders actually use.
_ALIASES: dict[str, str] = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "ksc_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "euc-cn": "gb18030",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "euc-jp": "euc_jis_2004",
    "iso-2022-jp": "iso2022_jp_ext",
    "unicode-1-1-utf-7": "utf-7",
    "x-utf-7": "utf-7",
    "utf7": "utf-7",
    "uft-8": "utf-8",
    "utf8": "utf-8",
    "utf-8?": "utf-8",
    "x-unicode20utf8": "utf-8",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
    "iso-646-us": "ascii",
    "646": "ascii",
}

# Windows code pages that fill the C1 range (0x80–0x9F) of the ISO label they are sent under.
_C1_SUPERSET: dict[str, str] = {
    "iso8859_1": "cp1252",
    "iso8859_15": "cp1252",
    "iso8859_9": "cp1254",
    "iso8859_2": "cp1250",
    "iso8859_5": "cp1251",
    "iso8859_7": "cp1253",
    "iso8859_8": "cp1255",
    "iso8859_13": "cp1257",
    "ascii": "cp1252",
}

# What an unknown or failing label is tried as, in order: most mail is UTF-8, and this helpdesk's other
# senders write Turkish or Western European Windows text.
_GUESSES = ("utf-8", "cp1254", "cp1252")

# Codecs whose ASCII-only bytes still need decoding (escape sequences, base64-like shifts, wide units).
_ASCII_OPAQUE = ("utf_7", "iso2022", "utf_16", "utf_32", "hz")
_C1 = re.compile(rb"[\x80-\x9f]")
# ISO-2022-JP designations: JIS X 0208 (1978, 1983), JIS X 0212, JIS X 0213, JIS X 0201 Roman and Katakana.
_ISO2022JP_ESCAPE = re.compile(rb"\x1b(?:\$[@B]|\$\([DOPQ]|\([IJ])")
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
# Codecs tried when the labelled one fails: the wider sets senders really used under that label.
_RELATIVES: dict[str, tuple[str, ...]] = {
    "iso2022_jp_ext": ("iso2022_jp_2", "iso2022_jp_3", "cp50220", "euc_jis_2004", "cp932"),
    "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2", "cp50220", "euc_jis_2004", "cp932"),
    "cp932": ("shift_jis_2004", "euc_jis_2004"),
    "euc_jis_2004": ("euc_jp", "cp932"),
    "cp949": ("johab",),
    "big5hkscs": ("cp950", "gb18030"),
    "gb18030": ("big5hkscs",),
    "koi8_r": ("koi8_u", "cp1251"),
    "cp1252": ("cp1254", "latin_1"),
    "cp1254": ("latin_1",),
    "cp1250": ("latin_1",),
    "cp1251": ("latin_1",),
}
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def codec_name(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when no codec fits it."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    key = key.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*tr
    key = _ALIASES.get(key, key)
    try:
        return codecs.lookup(key).name.replace("-", "_")
    except (LookupError, ValueError, TypeError):
        return None


def decode_bytes(data: bytes, label: str | None, *, where: str = "text") -> tuple[str, list[str]]:
    """Decode `data` as its label says when it can, else by guess; the list says what was guessed or lost.

    Why the C1 check: ISO-8859 labels have only control characters at 0x80–0x9F, which no real text
    contains, so such bytes are UTF-8 or the sender's Windows code page sent under the wrong name.
    """
    notes: list[str] = []
    shown = (label or "").strip()[:40]
    codec = codec_name(label)
    if label and codec is None:
        notes.append(f"{where}: unknown charset {shown!r}")
    if data.startswith(codecs.BOM_UTF8) and not (codec or "").startswith(("utf_16", "utf_32")):
        # The mark says UTF-8 whatever the label says, and it is not text: kept, it breaks the first word
        # ("\ufeffMerhaba") for every search, quote and command parser downstream.
        data = data[len(codecs.BOM_UTF8):]
        text = _try(data, "utf-8")
        if text is not None:
            if codec not in (None, "utf_8", "ascii"):
                notes.append(f"{where}: utf-8 byte-order mark under {shown!r}, decoded as utf-8")
            return text, notes
    # Before the 7-bit shortcut: ISO-2022-JP is all 7-bit bytes, and unlabelled or labelled us-ascii/latin-1/utf-8
    # (old Japanese mailers and gateways) it would otherwise be stored with its escape sequences as the text.
    if _ISO2022JP_ESCAPE.search(data) and not (codec or "").startswith(_ASCII_OPAQUE):
        for alt in ("iso2022_jp_ext", "cp50220", "iso2022_jp_2", "iso2022_jp_3"):
            text = _try(data, alt)
            if text is not None:
                notes.append(f"{where}: ISO-2022-JP escapes under {shown or 'no charset'!r}, decoded as {alt}")
                return text, notes
    if not data or (data.isascii() and not (codec or "").startswith(_ASCII_OPAQUE)):
        return data.decode("ascii"), notes
    if codec is None or codec == "ascii":
        return _guess(data, notes, where, f"8-bit bytes under {shown or 'no charset'!r}")
    if codec in _C1_SUPERSET and _C1.search(data):
        utf8 = _try(data, "utf-8")
        if utf8 is not None:
            notes.append(f"{where}: {shown} text is really utf-8")
            return utf8, notes
        text = _try(data, _C1_SUPERSET[codec])
        if text is not None:
            notes.append(f"{where}: {shown} with bytes 0x80-0x9F decoded as {_C1_SUPERSET[codec]}")
            return text, notes
    text = _try(data, codec)
    if text is not None:
        return text, notes
    if codec == "utf_8":
        if _has_utf8_sequence(data):
            notes.append(f"{where}: invalid utf-8, undecodable bytes replaced")
            return data.decode("utf-8", "replace"), notes
        # Not one valid multibyte sequence: a legacy code page under a UTF-8 label, not damaged UTF-8.
        return _guess(data, notes, where, "no valid utf-8 under a utf-8 label")
    for alt in ("utf-8", *_RELATIVES.get(codec, ())) if _has_utf8_sequence(data) else _RELATIVES.get(codec, ()):
        text = _try(data, alt, escapes_ok=False)
        if text is not None:
            notes.append(f"{where}: {shown} decoded as {alt}")
            return text, notes
    notes.append(f"{where}: bytes invalid for {shown}, undecodable bytes replaced")
    return _lossy(data, codec), notes


def _guess(data: bytes, notes: list[str], where: str, why: str) -> tuple[str, list[str]]:
    """Labels that say nothing useful: UTF-8 first (most mail), then the Turkish and Western code pages.

    Text that is nearly all high-half letters is not Turkish or Western (those are mostly ASCII letters):
    it is Cyrillic, and whichever of KOI8-R and windows-1251 yields more of Russian's commonest letters wins.
    """
    guesses: tuple[str, ...] = _GUESSES
    high = sum(1 for b in data if b >= 0xC0)
    if high >= 4 and high > 2 * sum(1 for b in data if 0x41 <= b <= 0x7A) and _try(data, "utf-8") is None:
        guesses = (max(("koi8_r", "cp1251"), key=lambda c: _russian_score(data, c)), *_GUESSES)
    for guess in guesses:
        text = _try(data, guess, escapes_ok=False)
        if text is not None:
            notes.append(f"{where}: {why}, decoded as {guess}")
            return text, notes
    notes.append(f"{where}: {why}, undecodable bytes replaced")
    return data.decode("utf-8", "replace"), notes


def _russian_score(data: bytes, codec: str) -> int:
    text = data.decode(codec, "replace").lower()
    return sum(text.count(c) for c in "оеаинтсрвл")


def _has_utf8_sequence(data: bytes) -> bool:
    return _UTF8_MULTIBYTE.search(data) is not None


def _try(data: bytes, codec: str, *, escapes_ok: bool = True) -> str | None:
    """Strict decode; also refuses results with lone surrogates, which break every UTF-8 sink downstream."""
    try:
        text = _iso2022jp_via_cp932(data) if codec == "cp50220" else data.decode(codec)
        if escapes_ok is False and "\x1b" in text:
            return None  # escape sequences left in: a stateful encoding read as a plain one
        text.encode("utf-8")
    except (UnicodeError, LookupError, ValueError, TypeError):
        return None
    return text


def _lossy(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec, "replace").encode("utf-8", "replace").decode("utf-8")
    except Exception:
        return data.decode("utf-8", "replace")


def decode_header_text(value: str, *, where: str = "header") -> tuple[str, list[str]]:
    """An RFC 2047 header value as text.

    Adjacent encoded words in one charset are joined before decoding, so a multibyte character split across
    two words (common with long UTF-8 and ISO-2022-JP subjects) comes out whole rather than as two U+FFFD.
    Hand-rolled rather than `decode_header` + `make_header` because those give up on the whole value for
    one unknown charset and turn raw 8-bit text between encoded words into backslash escapes.
    """
    notes: list[str] = []
    pieces: list[tuple[str, bytes | str]] = []  # (charset, bytes) for encoded words, ("", text) for plain
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        pos = match.end()
        if between and not (between.isspace() and pieces and pieces[-1][0]):
            pieces.append(("", between))
        charset, kind, payload = match.groups()
        data = _word_bytes(kind, payload)
        if data is None:
            notes.append(f"{where}: malformed encoded word kept as written")
            pieces.append(("", match.group(0)))
            continue
        charset = charset.split("*", 1)[0].lower()
        if pieces and pieces[-1][0] == charset and isinstance(pieces[-1][1], bytes):
            pieces[-1] = (charset, pieces[-1][1] + data)
        else:
            pieces.append((charset, data))
    if value[pos:]:
        pieces.append(("", value[pos:]))
    out: list[str] = []
    for charset, piece in pieces:
        if isinstance(piece, str):
            out.append(_unescape_8bit(piece, where, notes))
        else:
            text, more = decode_bytes(piece, charset, where=where)
            out.append(text)
            notes.extend(more)
    return "".join(out), notes


def _word_bytes(kind: str, payload: str) -> bytes | None:
    """The bytes one encoded word carries; None when its B or Q text is not decodable."""
    try:
        if kind in "bB":
            payload = payload.rstrip("=")
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        return quopri.decodestring(payload.replace("_", " ").encode("ascii", "surrogateescape"), header=False)
    except (ValueError, UnicodeError, binascii.Error):
        return None


def _unescape_8bit(value: str, where: str, notes: list[str]) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or an old client's local charset) as real text."""
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    data = value.encode("ascii", "surrogateescape")
    text, more = decode_bytes(data, None, where=where)
    if any(n.endswith("replaced") or "guess" in n for n in more):
        notes.extend(more)
    return text


def unescape_8bit(value: str) -> str:
    """Module-level form for callers that have no use for the notes."""
    return _unescape_8bit(value, "header", [])


def _iso2022jp_via_cp932(data: bytes) -> str:
    """ISO-2022-JP with the NEC and IBM extensions (①, ㈱, Roman numerals) that Python's codecs refuse.

    Japanese Windows mailers send these under the plain label; re-coding each JIS X 0208 pair to Shift_JIS
    lets cp932, which has the extensions, read them.
    """
    out = bytearray()
    mode: str | None = "ascii"
    i = 0
    while i < len(data):
        if data[i] == 0x1B:
            seq = data[i + 1:i + 3]
            mode = {b"$B": "jis", b"$@": "jis", b"(B": "ascii", b"(J": "ascii", b"(I": "kana"}.get(bytes(seq))
            if mode is None:
                raise UnicodeDecodeError("cp50220", data, i, i + 3, "unsupported escape sequence")
            i += 3
            continue
        byte = data[i]
        if byte >= 0x80:
            raise UnicodeDecodeError("cp50220", data, i, i + 1, "8-bit byte in a 7-bit encoding")
        if mode == "jis" and byte not in (0x0A, 0x0D, 0x20) and i + 1 < len(data):
            row, cell = byte, data[i + 1]
            lead = (row + 1) // 2 + (0x70 if row <= 0x5E else 0xB0)
            trail = cell + 0x1F + (cell >= 0x60) if row % 2 else cell + 0x7E
            out += bytes((lead, trail))
            i += 2
            continue
        out.append(byte + 0x80 if mode == "kana" and 0x21 <= byte <= 0x5F else byte)
        i += 1
    return out.decode("cp932")
