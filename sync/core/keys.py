"""Encoding foreign ids and email addresses into Table Storage keys.

Table keys may not contain ``/ \\ # ?`` or control characters (U+0000-U+001F, U+007F-U+009F);
a ``/`` even makes Azurite answer 500.  Keys are limited to 1 KiB in Azure and 512 characters in
Azurite.  Graph immutable ids contain ``/`` and ``+``, email addresses may contain ``#`` or ``?``,
so every foreign value goes through ``encode_key`` before it becomes a PartitionKey or RowKey.

The encoding is readable (``%XX`` escapes only where needed, like URL encoding) so an admin
browsing the tables can still recognise an address, and it is reversible except for values so
long that they are truncated and suffixed with a SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import re

MAX_KEY_CHARS = 400  # below Azurite's 512 and Azure's 1 KiB, with room for composite keys
_FORBIDDEN = frozenset("/\\#?%")
_HASH_MARK = "~h~"
# A shortened key: exactly MAX_KEY_CHARS long, ending in the mark and a SHA-256 hex digest.  Only
# that shape is one; "~h~" elsewhere is a value's own text (an address may hold it).
_SHORTENED = re.compile(
    rf"(?s).{{{MAX_KEY_CHARS - len(_HASH_MARK) - 64}}}{re.escape(_HASH_MARK)}[0-9a-f]{{64}}"
)


def _bad(ch: str) -> bool:
    code = ord(ch)
    return ch in _FORBIDDEN or code <= 0x1F or 0x7F <= code <= 0x9F or ch == "'"


# Any character ``_bad`` escapes (below 256): most keys hold none and are returned as they are,
# without looking at each character in Python (keys are built for every row a job touches).
_ESCAPED = re.compile("[/\\\\#?%'\x00-\x1f\x7f-\x9f]")


def encode_key(value: str) -> str:
    """Make ``value`` safe as a PartitionKey/RowKey; same input, same key, always."""
    if value == "":
        raise ValueError("an empty string cannot be a key")
    if _ESCAPED.search(value) is None:
        out = value
    else:
        out = "".join(f"%{ord(ch):02X}" if _bad(ch) and ord(ch) < 256 else ch for ch in value)
    # A value that already looks like a shortened key is shortened too (its own digest), so it
    # cannot share the key of the long value it imitates.
    if len(out) > MAX_KEY_CHARS or _SHORTENED.fullmatch(out):
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        out = out[: MAX_KEY_CHARS - len(digest) - len(_HASH_MARK)] + _HASH_MARK + digest
    return out


def decode_key(key: str) -> str:
    """Inverse of ``encode_key`` for keys that were not shortened."""
    if _SHORTENED.fullmatch(key):
        raise ValueError("key was shortened with a digest and cannot be decoded")
    out: list[str] = []
    i = 0
    while i < len(key):
        if key[i] == "%" and i + 2 < len(key):
            out.append(chr(int(key[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def normalise_address(address: str) -> str:
    """Canonical form of an email address for matching and keys: trimmed, lower case,
    display name and angle brackets removed (``"Ann <Ann@X.com>"`` -> ``ann@x.com``)."""
    text = address.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    text = text.strip().strip("'\"").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.lower()


def address_key(address: str) -> str:
    """Key for an email address (normalised, then encoded)."""
    return encode_key(normalise_address(address))
