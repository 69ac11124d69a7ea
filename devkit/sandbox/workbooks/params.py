"""Request parameters as the official bindings send them (workbooks-api.md §1.3-1.5, §7.1).

Parameters come from the query string *and* the body (VBA puts filters in the query, PHP puts
everything in the body), in that order.  ``key[]`` repeats build ordered lists; flattened bracket
paths such as ``org_lead_party[main_location][email][]`` name the attribute
``org_lead_party[main_location[email]]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote_plus

_FLAT_BRACKETS = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")


@lru_cache(maxsize=4096)
def attribute_name(raw: str) -> tuple[str, bool]:
    """Return (attribute name, is_array) for one wire key."""
    is_array = raw.endswith("[]")
    key = raw[:-2] if is_array else raw
    match = _FLAT_BRACKETS.match(key)
    if not match:
        return key, is_array
    segments = re.findall(r"\[([^\[\]]*)\]", match.group(2))
    return nest(match.group(1), segments), is_array


def nest(head: str, segments: list[str]) -> str:
    """``nest('a', ['b', 'c'])`` -> ``'a[b[c]]'`` (the readable, documented form)."""
    if not segments:
        return head
    return f"{head}[{nest(segments[0], segments[1:])}]"


class WireParams:
    """Merged, ordered parameters of one request: scalars (last wins) and arrays (ordered)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        scalars: dict[str, str] = {}
        arrays: dict[str, list[str]] = {}
        for raw, value in pairs:
            name, is_array = attribute_name(raw)
            if is_array:
                values = arrays.get(name)
                if values is None:
                    arrays[name] = [value]
                else:
                    values.append(value)
            else:
                scalars[name] = value
        self.scalars = scalars
        self.arrays = arrays

    def get(self, name: str) -> str | None:
        """A scalar; falls back to the first element of ``name[]`` (``_fm[]=or`` is tolerated)."""
        if name in self.scalars:
            return self.scalars[name]
        values = self.arrays.get(name)
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        """An array; a lone scalar counts as a one-element array (the bracket-less filter form)."""
        if name in self.arrays:
            return self.arrays[name]
        if name in self.scalars:
            return [self.scalars[name]]
        return []

    def flag(self, name: str) -> bool | None:
        value = self.get(name)
        return None if value is None else parse_bool(value)


def parse_form(text: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` in order, blanks kept (``_fc[]=`` matters)."""
    keys: list[str] = []
    values: list[str] = []
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            keys.append(key)
            values.append(value)
    return list(zip(map(_unquote_key, keys), _unquote_all(values), strict=True))


@lru_cache(maxsize=4096)
def _unquote_key(text: str) -> str:
    """Keys repeat once per object in a batch: decode each spelling once."""
    return _unquote(text)


def _unquote_all(values: list[str]) -> list[str]:
    """``_unquote`` of every value, decoded in one pass when that is provably the same.

    Values are joined with a newline, used only when no raw value holds one; a value whose
    *decoded* form holds a newline changes the count, and then each value is decoded on its own.
    UTF-8 decoding with ``replace`` never lets an invalid byte sequence swallow the ASCII
    separator, so the joined decode splits into the same values.
    """
    joined = "\n".join(values)
    if "%" not in joined and "+" not in joined:
        return values
    if joined.count("\n") == len(values) - 1:  # no value holds a raw newline
        decoded = unquote_plus(joined).split("\n")
        if len(decoded) == len(values):
            return decoded
    return [_unquote(value) for value in values]


def _unquote(text: str) -> str:
    if "%" not in text and "+" not in text:
        return text
    return unquote_plus(text)


def json_pairs(text: str) -> list[tuple[str, str]]:
    """A JSON parameter body (Pipedream, VBA login) as wire pairs; lists become ``key[]``."""
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("a JSON parameter body must be an object")
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, list):
            pairs.extend((f"{key}[]", wire_text(item)) for item in value)
        else:
            pairs.append((key, wire_text(value)))
    return pairs


def wire_text(value: object) -> str:
    """A JSON scalar as the wire text a form would carry: None clears, booleans are 1/0."""
    if value is None:
        return ":null_value:"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


_TRUE = frozenset({"true", "t", "on", "1", "yes", "y"})


def parse_bool(value: str) -> bool:
    """Workbooks booleans: true/t/on/1/yes/y (any case) are true, anything else false."""
    return value.strip().lower() in _TRUE
