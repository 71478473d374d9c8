"""Hypothesis strategies for hostile address headers: which addr-specs a generated header really carries (in a
mailbox's addr-spec position) and which only appear as decoys (display names, encoded words, comments, broken
mailboxes). A parser may answer only the carried ones; decoys live under their own domain so they never collide."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from hypothesis import strategies as st

LOCAL = st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,10}[a-z0-9])?", fullmatch=True).filter(lambda s: ".." not in s)
NAME_TEXT = st.text(alphabet=st.sampled_from(list("abc XYZ.,;:@<>()\"'\\\r\n\t=?ŞöИ\u202e")), max_size=20)


@dataclass
class Header:
    text: str
    carried: set[str] = field(default_factory=set)
    decoys: set[str] = field(default_factory=set)


def _encoded(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


@st.composite
def element(draw: st.DrawFn, n: int) -> Header:
    """One list element: a real mailbox (bare, named, quoted name, comment, encoded name) or a decoy."""
    real = f"{draw(LOCAL)}@real{n}.example"
    decoy = f"{draw(LOCAL)}@decoy{n}.example"
    name = draw(NAME_TEXT)
    kind = draw(st.sampled_from(["bare", "named", "quoted", "comment", "encoded-name", "name-is-address",
                                 "quoted-address-name", "encoded-address", "comment-address", "unclosed", "crlf",
                                 "junk"]))
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "") + '"'
    if kind == "bare":
        return Header(real, {real})
    if kind == "named":
        safe = "".join(c for c in name if c.isalnum() or c == " ").strip() or "Name"
        return Header(f"{safe} <{real}>", {real})
    if kind == "quoted":
        return Header(f"{quoted} <{real}>", {real})
    if kind == "comment":
        return Header(f"{real} (a comment {decoy.replace('@', ' at ')})", {real})
    if kind == "encoded-name":
        return Header(f"{_encoded(name + ' ' + decoy)} <{real}>", {real}, {decoy})
    if kind == "name-is-address":  # CVE-2023-27043: neither is an address of the mail
        return Header(f"{decoy} <{draw(LOCAL)}@decoy{n}x.example>", set(), {decoy})
    if kind == "quoted-address-name":
        return Header(f'"{decoy}" <{real}>', {real}, {decoy})
    if kind == "encoded-address":
        return Header(_encoded(decoy), set(), {decoy})
    if kind == "comment-address":
        return Header(f"({decoy}) {real}", {real}, {decoy})
    if kind == "unclosed":
        return Header(f"{quoted} <{decoy}", set(), {decoy})
    if kind == "crlf":
        return Header(_encoded(f"{decoy}\r\nBcc: {decoy}"), set(), {decoy})
    return Header(draw(NAME_TEXT).replace("@", "") or "junk", set())


@st.composite
def address_header(draw: st.DrawFn, max_elements: int = 12) -> Header:
    """A list of elements, some in groups, joined by commas (sometimes doubled)."""
    out = Header("")
    parts = []
    for n in range(draw(st.integers(0, max_elements))):
        if draw(st.integers(0, 5)) == 0:
            members = [draw(element(n * 100 + i)) for i in range(draw(st.integers(0, 3)))]
            parts.append(f"team{n}: " + ", ".join(m.text for m in members) + ";")
            for m in members:
                out.carried |= m.carried
                out.decoys |= m.decoys
        else:
            one = draw(element(n))
            parts.append(one.text)
            out.carried |= one.carried
            out.decoys |= one.decoys
    out.text = draw(st.sampled_from([", ", ",", " , ", ",, "])).join(parts)
    out.text = " ".join(out.text.replace("\r", " ").replace("\n", " ").split()) if draw(st.booleans()) else \
        out.text.replace("\r\n", "\r\n ").replace("\n", " ").replace("\r", " ")  # folded or unfolded
    return out


def raw_mail(sender: Header, to: Header, cc: Header, message_id: str) -> bytes:
    """The mail as bytes; the headers' text may hold encoded words and non-ASCII (sent as UTF-8)."""
    lines = [f"From: {sender.text}", f"To: support@acme.example, {to.text}", f"Cc: {cc.text}",
             "Subject: hello", f"Message-ID: {message_id}", "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(lines) + "\r\n\r\nHello.\r\n").encode("utf-8")


REAL_KINDS = ["bare", "named", "quoted", "comment", "encoded-name", "quoted-address-name", "comment-address"]


@st.composite
def author(draw: st.DrawFn) -> Header:
    """A From that is mostly one real mailbox (so the mail goes on to a ticket), sometimes a hostile list."""
    if draw(st.integers(0, 3)) == 0:
        return draw(address_header(max_elements=2))
    while True:
        one = draw(element(draw(st.integers(500, 999))))
        if one.carried:
            return one
