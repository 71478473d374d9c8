"""Reduce a reply mail's plain-text body to the text its author just wrote.

Tickets are worked from ordinary mail clients, so every reply drags the whole thread along below (or around)
the new text. Storing that again and again bloats the ticket and repeats our own notifications back to us.

Why not the mail-parser-reply package (evaluated at 1.36): it strips every line before parsing, so indented
code or log output loses its indentation; its signature heuristics cut the message at closings such as
"Thanks," or "Tak", and at any line starting with "-" (dash lists vanish); it returns the quoted text when an
attribution line stands first (interleaved answers); and it knows no Turkish. The rules below are few, work
line by line on the original text and leave every kept line untouched.
"""

from __future__ import annotations

import re

# Attribution lines ("On <date>, <name> wrote:") per client language. Each needs a digit (the date), so prose
# that merely ends in "wrote:" stays; a header may be wrapped over up to three lines (see _attribution_len).
_ATTRIBUTION = re.compile(
    r"""^(?:
        On\s.*\d.*\bwrote\s?:                                   # en: Gmail, Apple Mail, Thunderbird
      | Am\s.*\d.*\bschrieb\b.*:                                # de
      | .*\d.*\b(?:tarihinde|saatinde)\b.*\byazdı\s?:           # tr: "... tarihinde X şunu yazdı:"
      | Op\s.*\d.*\bschreef\b.*:                                # nl
      | (?:Den\s|\w{2,4}\.?\s+\d|\d).*\bskrev\b.*:              # da, sv, no
      | .*\d.*\b(?:napisał(?:\(a\))?|nadesłał)\s?:              # pl
      | Le\s.*\d.*\ba\sécrit\s?:                                # fr
      | El\s.*\d.*\bescribió\s?:                                # es
      | Il\s.*\d.*\bha\sscritto\s?:                             # it
      | \d{4}年\d{1,2}月\d{1,2}日.*<[^<>]+>\s?[:：]              # ja (Gmail)
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

# Lines that open a quoted original or forward; everything from them on is history.
_SEPARATOR = re.compile(
    r"""^\s*(?:
        -{2,}\s*(?:original\s+message|originalnachricht|ursprüngliche\s+nachricht|özgün\s+ileti
          |oorspronkelijk\s+bericht|oprindelig\s+meddelelse|ursprungligt\s+meddelande|wiadomość\s+oryginalna
          |oryginalna\s+wiadomość|message\s+d'origine|mensaje\s+original|messaggio\s+originale
          |forwarded\s+message|weitergeleitete\s+nachricht|yönlendirilen\s+ileti|iletilen\s+ileti
          |doorgestuurd\s+bericht|videresendt\s+meddelelse|vidarebefordrat\s+meddelande
          |message\s+transféré|mensaje\s+reenviado|messaggio\s+inoltrato)\s*-{2,}
      | (?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht)\s*:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

# Outlook's header block ("From:/Sent:/To:/Subject:") as the client writes it in each language; "*From:*" is
# what Outlook's HTML looks like after conversion to text, "De :" is French spacing.
_HEADER_FIELD = re.compile(
    r"""^[ \t]*\*?(?:
        (?P<sender>From|Von|Kimden|Van|Fra|Från|Od|De|Da|Expéditeur)
      | (?P<sent>Sent|Date|Gesendet|Datum|Gönderildi|Gönderilme\stari?hi|Tarih|Verzonden|Sendt|Dato|Skickat
          |Wysłano|Data|Envoyé|Enviado|Fecha|Inviato)
      | (?P<to>To|An|Kime|Aan|Til|Till|Do|À|Para|A)
      | (?P<cc>Cc|Bcc|Bilgi|Kopie|Kopi|Kopia|DW)
      | (?P<subject>Subject|Betreff|Konu|Onderwerp|Emne|Ämne|Temat|Objet|Asunto|Oggetto)
    )\s?:""",
    re.IGNORECASE | re.VERBOSE,
)

# Outlook's rule line above a header block (underscores, or dashes after HTML-to-text conversion).
_RULE = re.compile(r"^\s*(?:_{10,}|-{10,})\s*$")

# Quoted history; interleaved answers between quoted blocks are kept.
_QUOTED = re.compile(r"^[ \t]*>")

# Footers that mobile clients append; only dropped as the very last line, and only in this short form, so a
# sentence like "Sent from my desk, ..." stays.
_MOBILE_FOOTER = re.compile(
    r"""(?:
        Sent\sfrom\smy\s[\w .'’&-]{1,40}
      | Get\sOutlook\sfor\s\w+.{0,60}
      | Von\smeinem\s[\w .'’-]{1,40}\sgesendet
      | Gesendet\svon\smeinem\s[\w .'’-]{1,40}
      | [\w .'’-]{1,40}(?:dan|den|tan|ten)\sgönderildi
      | iOS\siçin\sOutlook'u\sedinin.{0,60}
      | Verzonden\svanaf\smijn\s[\w .'’-]{1,40}
      | Envoyé\sde\smon\s[\w .'’-]{1,40}
      | Enviado\sdesde\smi\s[\w .'’-]{1,40}
      | Sendt\sfra\smin\s[\w .'’-]{1,40}
      | Skickat\sfrån\smin\s[\w .'’-]{1,40}
      | Wysłan[eo]\sz\smojego\s[\w .'’-]{1,40}
      | Inviato\sda(?:l\smio)?\s[\w .'’-]{1,40}
    )""",
    re.IGNORECASE | re.VERBOSE,
)

_SIGNATURE_DELIMITERS = ("-- ", "--")
_MAX_HEADER_CHARS = 400


def _attribution_len(lines: list[str], i: int) -> int:
    """Lines taken by an attribution starting at line i, or 0.

    Clients wrap long attributions ("... <addr>" / "wrote:"), so up to three non-blank lines are joined. A match
    whose tail already matches on its own belongs to a later line; this keeps text above the header.
    """
    for size in (1, 2, 3):
        chunk = [line.strip() for line in lines[i : i + size]]
        if len(chunk) < size or not all(chunk) or any(_QUOTED.match(line) for line in chunk):
            return 0
        joined = " ".join(chunk)
        if len(joined) > _MAX_HEADER_CHARS:
            return 0
        if joined.endswith((":", "：")) and _ATTRIBUTION.match(joined):
            later = any(_ATTRIBUTION.match(" ".join(chunk[k:])) for k in range(1, size))
            return 0 if later else size
    return 0


def _outlook_block_len(lines: list[str], i: int) -> int:
    """Lines taken by an Outlook header block starting at line i, or 0.

    It must start with the sender field and show two more distinct fields before the next blank line, so a
    customer's own "From: Berlin" in prose is not mistaken for one.
    """
    first = _HEADER_FIELD.match(lines[i])
    if not first or first.lastgroup != "sender":
        return 0
    kinds: set[str | None] = set()
    end = i + 1
    while end < min(len(lines), i + 12) and lines[end].strip():
        field = _HEADER_FIELD.match(lines[end])
        if field:
            kinds.add(field.lastgroup)
        end += 1
    return end - i if len(kinds - {"sender"}) >= 2 else 0


def _header_len(lines: list[str], i: int) -> int:
    """Lines taken by whatever reply header starts at line i (0 if none)."""
    if _SEPARATOR.match(lines[i]):
        return 1
    if _RULE.match(lines[i]):
        j = i + 1
        while j < len(lines) and j <= i + 2 and not lines[j].strip():
            j += 1
        block = _outlook_block_len(lines, j) if j < len(lines) else 0
        return j - i + block if block else 0
    return _outlook_block_len(lines, i) or _attribution_len(lines, i)


def _new_text_lines(lines: list[str]) -> list[str | None]:
    """Unquoted lines up to the first reply header or signature; None stands for each dropped quote block.

    A header before any new text (an interleaved reply, or a client that puts the mail's own headers first) is
    skipped rather than cut at, or the answers below it would be lost.
    """
    kept: list[str | None] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _QUOTED.match(line):
            if not kept or kept[-1] is not None:
                kept.append(None)
            i += 1
            continue
        if line.rstrip("\r") in _SIGNATURE_DELIMITERS:
            break
        size = _header_len(lines, i)
        if size:
            if any(k is not None and k.strip() for k in kept):
                break
            i += size
            continue
        kept.append(line)
        i += 1
    return kept


def _join_around_quotes(kept: list[str | None]) -> list[str]:
    """Drop the quote markers; a blank line on both sides of a removed block collapses to one."""
    out: list[str] = []
    skip_blank = False
    for line in kept:
        if line is None:
            skip_blank = bool(out) and not out[-1].strip()
            continue
        if skip_blank and not line.strip():
            continue
        skip_blank = False
        out.append(line)
    return out


def strip_reply(text: str, keep_all_if_empty: bool = True) -> str:
    """The new text of a reply: quoted history, reply headers, signature and a mobile footer removed.

    Kept lines are returned verbatim (indentation, line endings inside); only blank lines at either end go. If
    nothing would be left, e.g. the mail is one big quote, the whole text is returned so nothing is lost —
    unless ``keep_all_if_empty`` is false: an agent's commands-only reply has no words for the customer.
    """
    out = _join_around_quotes(_new_text_lines(text.split("\n")))
    while out and not out[-1].strip():
        out.pop()
    if out and _MOBILE_FOOTER.fullmatch(out[-1].strip()):
        out.pop()
        while out and not out[-1].strip():
            out.pop()
    start = next((n for n, line in enumerate(out) if line.strip()), len(out))
    result = "\n".join(out[start:]).rstrip()
    return result if result or not keep_all_if_empty else text.rstrip()


_HTML_QUOTE_START = re.compile(
    r'<blockquote|class="?gmail_quote|id="?divRplyFwdMsg|id="?appendonsend|class="?moz-cite-prefix'
    r"|-----\s*Original Message\s*-----|<div[^>]+border-top:\s*solid",
    re.IGNORECASE,
)
_CID = re.compile(r"cid:([^\"'\s>)]+)", re.IGNORECASE)


def quoted_only_cids(html: str | None) -> set[str]:
    """Content-IDs of images the HTML shows only inside the quoted history: they belong to the older mail."""
    if not html:
        return set()
    start = _HTML_QUOTE_START.search(html)
    if start is None:
        return set()
    new_part, quoted = html[: start.start()], html[start.start():]
    return {c.lower() for c in _CID.findall(quoted)} - {c.lower() for c in _CID.findall(new_part)}
