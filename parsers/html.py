"""HTML mail bodies → plain text an agent can read and the quote stripper can work on.

html2text is maintained and keeps the structure that matters in mail (paragraphs, lists, `>` quotes);
its Markdown decorations (emphasis, link targets, images) are switched off because tickets show plain
text. Should it ever fail on hostile markup, a tag stripper built on the stdlib parser takes over, so an
HTML-only mail never ends up with no text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import html2text

_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLOCK_TAGS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote"})


def _converter() -> html2text.HTML2Text:
    conv = html2text.HTML2Text()
    conv.body_width = 0  # no hard wrapping: stored text is re-flowed by whoever shows it
    conv.ignore_images = True
    conv.ignore_links = True  # keep the link text, drop the URL noise
    conv.ignore_emphasis = True
    conv.ignore_tables = True  # mail tables are layout, not data
    conv.unicode_snob = True  # real characters, not ASCII look-alikes
    conv.single_line_break = False
    return conv


def html_to_text(html: str) -> tuple[str, list[str]]:
    """Readable text for an HTML body, and a note when the fallback stripper had to do it."""
    if not html.strip():
        return "", []
    try:
        text = _converter().handle(html)
    except Exception as exc:  # html2text on hostile markup: keep the words, lose the layout
        return _tidy(_strip_tags(html)), [f"html: html2text failed ({type(exc).__name__}), tags stripped"]
    return _tidy(text), []


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\xa0", " ")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


class _TextOnly(HTMLParser):
    """Words outside script/style, with line breaks at block boundaries."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _strip_tags(html: str) -> str:
    parser = _TextOnly()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)
    return "".join(parser.parts)
