"""Rich text <-> plain text, so bodies compare equal after a round trip.

Workbooks ``description`` is HTML; Outlook bodies are HTML (events) or text (To Do).  The
canonical value is plain text.  ``html_to_text(text_to_html(t)) == t`` for every canonical
``t``, which is what keeps an unchanged body from being written back and forth.
"""

from __future__ import annotations

import html
import re

_DROP = re.compile(r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_BREAK = re.compile(r"<br\s*/?>", re.I)
_BLOCK_END = re.compile(r"</(p|div|li|tr|h[1-6])\s*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLANKS = re.compile(r"\n{3,}")


def clean(text: str | None) -> str:
    """Canonical plain text: LF line ends, no trailing spaces per line, trimmed."""
    if not text:
        return ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ").split("\n")
    return _BLANKS.sub("\n\n", "\n".join(line.rstrip() for line in lines)).strip()


def looks_like_html(text: str) -> bool:
    return bool(re.search(r"<(html|body|p|div|br|span|b|i|a|ul|ol|li|table)\b", text, re.I))


def html_to_text(markup: str | None) -> str:
    """HTML -> canonical plain text (line breaks kept, markup dropped, entities decoded)."""
    if not markup:
        return ""
    if not looks_like_html(markup):
        return clean(html.unescape(markup))
    body = _COMMENT.sub("", _DROP.sub("", markup))
    body = body.replace("\r\n", "\n").replace("\n", " ")
    body = _BREAK.sub("\n", body)
    body = _BLOCK_END.sub("\n", body)
    return clean(html.unescape(_TAG.sub("", body)))


def text_to_html(text: str | None) -> str:
    """Canonical plain text -> minimal HTML that ``html_to_text`` turns back into ``text``."""
    if not text:
        return ""
    return "<br/>".join(html.escape(line, quote=False) for line in clean(text).split("\n"))
