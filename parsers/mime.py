"""One raw mail read into a MIME tree once, with its big base64 bodies left in the raw bytes.

Why: the stdlib parser holds a part's body as a str, then as a list of its lines, then joined again, and
``get_payload(decode=True)`` splits and joins it once more: a 20 MB attachment cost about 170 MiB at its peak.
Here every run of base64 lines of at least ``BIG_RUN_BYTES`` is cut out of the bytes before the parser sees them
and replaced by a one-line token; a part whose body holds tokens is decoded from the raw bytes by offset, so the
attachment costs its raw run once more (joined) and its decoded bytes.

A run is cut wherever it is, not only where it is a whole base64 body: a text part of long unspaced lines, or an
armoured PGP block, can look the same. Every reader of a part's body therefore goes through ``decoded`` or
``restore``, which put the original bytes back; on any mail they give exactly what the stdlib gives for the
uncut mail (tests/unit/test_mime_cuts.py compares them over the corpus with every run cut).

One ``Mime`` is made per message and handed to each reader (body walk, bounce and abuse-report readers): no
reader parses the mail again and nothing is kept once the caller drops it.
"""

from __future__ import annotations

import binascii
import copy
import re
import secrets
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from typing import overload

# 64 KiB is ~850 lines of 76: most mails have none, a photo or a PDF has one.
BIG_RUN_BYTES = 64 * 1024
# Full lines of the base64 alphabet (RFC 2045 allows 76 characters; some senders write fewer), at a line start.
# Possessive: a greedy group keeps a backtracking mark per line it repeats, 74 MiB for a 20 MB run.
# A line may be as short as one character, so that a body's short last line ("AB==") ends its run and a whole
# body is one piece, decoded straight from the raw bytes without being joined first.
_BASE64_LINES = re.compile(rb"^(?:[A-Za-z0-9+/]{1,76}={0,2}\r?\n)++", re.MULTILINE)


@dataclass(frozen=True)
class Mime:
    """The mail's MIME tree (compat32, read only) and the runs cut out of it, by token."""

    raw: bytes
    cut: bytes  # what the parser read: ``raw`` with the runs replaced by tokens (``raw`` itself when none were)
    tree: Message | None  # None when the parser gave up (deep nesting): ``error`` says why
    runs: tuple[tuple[int, int], ...]  # (start, end) in ``raw`` of each cut run, numbered by position
    token: str  # "<token>-<n>" stands in for run n; random per mail, checked absent from the raw
    error: str | None = None

    def decoded(self, part: Message) -> bytes | None:
        """``part.get_payload(decode=True)`` of the uncut mail."""
        # As parsed: get_payload() replaces undecodable bytes, which must stay bytes here.
        payload = part._payload  # type: ignore[attr-defined]  # the stdlib's private attribute, undeclared in its stubs
        if not self.runs or not isinstance(payload, str) or self.token not in payload:
            return part.get_payload(decode=True)  # type: ignore[return-value]  # bytes, or None for a multipart
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        if cte == "base64":
            pieces = [piece for piece in self._pieces(payload) if len(piece)]
            try:
                if len(pieces) == 1:  # the usual case: the body is one run, decoded where it lies
                    return binascii.a2b_base64(pieces[0])  # ignores line breaks, as the stdlib's decoding does
                return binascii.a2b_base64(b"".join(pieces))
            except binascii.Error:  # bad padding: the stdlib's own repair, on the whole text
                pass
            text = b"".join(pieces).decode("ascii", "surrogateescape")
        else:
            text = self.restore_text(payload)
        clone = copy.copy(part)  # the same headers; the body set on the copy only
        clone.set_payload(text)
        return clone.get_payload(decode=True)  # type: ignore[return-value]  # bytes: the clone is not multipart

    def restore(self, data: bytes) -> bytes:
        """Bytes written from the cut tree (a part's ``as_bytes`` under compat32, which ends every body line
        with LF) with the cut runs put back, their line ends written the same way."""
        if not self.runs or self.token.encode() not in data:
            return data
        return self._token_re(bytes).sub(lambda m: self._run(int(m[1]), bool(m[2])).replace(b"\r\n", b"\n"),
                                         data)

    def restore_text(self, text: str) -> str:
        """A body read from the cut tree (``get_payload()``) with the cut runs put back."""
        if not self.runs or self.token not in text:
            return text
        return self._token_re(str).sub(lambda m: self._run(int(m[1]), bool(m[2])).decode("ascii"), text)

    def _pieces(self, payload: str) -> list[bytes | memoryview]:
        view = memoryview(self.raw)
        pieces: list[bytes | memoryview] = []
        at = 0
        for found in self._token_re(str).finditer(payload):
            pieces.append(payload[at:found.start()].encode("ascii", "surrogateescape"))
            start, end = self._span(int(found[1]), bool(found[2]))
            pieces.append(view[start:end])
            at = found.end()
        pieces.append(payload[at:].encode("ascii", "surrogateescape"))
        return pieces

    def _span(self, index: int, with_newline: bool) -> tuple[int, int]:
        start, end = self.runs[index]
        if not with_newline:  # the part's last line: its line break belongs to the boundary after it
            end -= 2 if self.raw[end - 2:end] == b"\r\n" else 1
        return start, end

    def _run(self, index: int, with_newline: bool) -> bytes:
        start, end = self._span(index, with_newline)
        return self.raw[start:end]

    @overload
    def _token_re(self, kind: type[bytes]) -> re.Pattern[bytes]: ...
    @overload
    def _token_re(self, kind: type[str]) -> re.Pattern[str]: ...
    def _token_re(self, kind: type[bytes] | type[str]) -> re.Pattern[bytes] | re.Pattern[str]:
        pattern = re.escape(self.token) + r"-(\d+)(\n)?"
        return re.compile(pattern.encode()) if kind is bytes else re.compile(pattern)


def read_mime(raw: bytes, big_run_bytes: int = BIG_RUN_BYTES) -> Mime:
    """Parse ``raw`` once. Never raises: when the stdlib parser does (it recurses per nesting level), the tree
    is None and ``error`` names the exception, so each reader can fall back on its own terms."""
    raw = bytes(raw)
    try:
        return _read(raw, big_run_bytes)
    except Exception as exc:
        return Mime(raw, raw, None, (), "", type(exc).__name__)


def _read(raw: bytes, big_run_bytes: int) -> Mime:
    runs: list[tuple[int, int]] = []
    token = _fresh_token(raw)
    slim: list[bytes | memoryview] = []
    view = memoryview(raw)
    at = 0
    for found in _BASE64_LINES.finditer(raw):
        if found.end() - found.start() < big_run_bytes:
            continue
        slim.append(view[at:found.start()])
        slim.append(f"{token}-{len(runs)}\n".encode())
        runs.append((found.start(), found.end()))
        at = found.end()
    if not runs:
        return Mime(raw, raw, message_from_bytes(raw, policy=compat32), (), token)
    slim.append(view[at:])
    cut = b"".join(slim)
    return Mime(raw, cut, message_from_bytes(cut, policy=compat32), tuple(runs), token)


def _fresh_token(raw: bytes) -> str:
    while True:  # a sender cannot guess it; the check makes a collision impossible rather than unlikely
        token = f"ticketd-cut-{secrets.token_hex(8)}"
        if token.encode() not in raw:
            return token
