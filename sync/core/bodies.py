"""Reading an untrusted JSON request body, without I/O: one function for every route.

Every HTTP route that reads JSON (the anonymous webhook and lifecycle routes, and the operator
routes behind a function key) reads its body with ``read_json`` and then checks its shape with
the helpers below.  Whatever arrives gets a 4xx with a message that says what is wrong, never a
500 and never a state change:

* 413: more bytes than the route accepts (checked before anything parses it);
* 415: a content type that is not JSON (the webhook insists on ``application/json``, which is
  what Graph sends; operator routes also take a request without a content type, but refuse a
  declared non-JSON one such as curl's default form encoding);
* 400: empty when a body is required; a byte-order mark; bytes that are not UTF-8; malformed
  JSON; ``NaN``/``Infinity`` (not JSON, though Python's ``json`` reads them); an object with the
  same key twice (parsers disagree on which one wins, so the request is ambiguous); an integer
  of more digits than a 64-bit id has, or a float written with too many characters (``int()`` of
  5,000 digits raises ``ValueError`` under Python's int max-str-digits limit); nesting deeper
  than the route's limit; a string with a lone surrogate (``"\\ud800"`` parses, then fails to
  encode on its way to storage); a string longer than the route's limit;
* 400 from the shape helpers: a missing field, a field of the wrong type, an unknown field.

Nesting: Python's ``json`` parses recursively and raises ``RecursionError`` on input nested a
thousand levels or so (the interpreter's recursion limit, checked by the C parser on every
level, so it never overflows the C stack).  That is caught and answered like any other
over-deep body; bodies that parse are then walked iteratively and held to ``max_depth``, which
is far below what the parser itself can reach.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

JSON_MEDIA_TYPE = "application/json"
MAX_INT_DIGITS = 19  # a signed 64-bit integer: every id and count we take is far below
MAX_FLOAT_CHARS = 40  # "-1.2345678901234567e-308" and friends, with room to spare


class BodyError(ValueError):
    """The body is not a request of ours; ``status`` is the 4xx to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BodyLimits:
    """What one route accepts."""

    max_bytes: int
    max_depth: int = 8  # levels of objects/arrays, the outermost one included
    max_string_chars: int = 4096
    require_json_type: bool = False  # True: Content-Type must be application/json (else 415)
    allow_empty: bool = False  # True: an empty body reads as None (the route has defaults)


def media_type(content_type: str | None) -> str:
    """``application/json`` from ``application/json; charset=utf-8``, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(media: str) -> bool:
    return media == JSON_MEDIA_TYPE or (
        media.startswith("application/") and media.endswith("+json")
    )


def check_content_type(content_type: str | None, *, required: bool) -> None:
    """415 unless the content type is JSON; with ``required=False`` a missing one is fine."""
    media = media_type(content_type)
    if not media and not required:
        return
    if required and media != JSON_MEDIA_TYPE:
        raise BodyError(415, f"the body must be sent as {JSON_MEDIA_TYPE}")
    if not is_json_media_type(media):
        raise BodyError(415, f"the body must be sent as {JSON_MEDIA_TYPE}, not {media[:100]}")


def read_json(body: bytes, content_type: str | None, limits: BodyLimits) -> Any:
    """The parsed body, or ``BodyError``; None for an empty body where that is allowed."""
    if len(body) > limits.max_bytes:
        raise BodyError(413, f"body larger than {limits.max_bytes} bytes")
    check_content_type(content_type, required=limits.require_json_type)
    if not body.strip():
        if limits.allow_empty:
            return None
        raise BodyError(400, "the body is empty; a JSON object is required")
    if body.startswith(codecs.BOM_UTF8):
        raise BodyError(400, "the body starts with a byte-order mark; send UTF-8 JSON without one")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = _decoder().decode(text)
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            f"the body must be a JSON object; it is not valid JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno})",
        ) from None
    except RecursionError:
        raise BodyError(400, f"JSON nested deeper than {limits.max_depth} levels") from None
    if value is None:
        # No route takes a bare null, and None is what an allowed empty body reads as.
        raise BodyError(400, "the body must be a JSON object, not null")
    _check_tree(value, limits, escapes="\\u" in text)
    return value


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(
        object_pairs_hook=_object,
        parse_int=_int,
        parse_float=_float,
        parse_constant=_constant,
    )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BodyError(400, f"duplicate key {_quote(key)} in a JSON object")
            seen.add(key)
    return obj


def _int(literal: str) -> int:
    # Checked before int() is called: int() of a 5,000-digit literal raises ValueError, and a
    # long one that stays under Python's limit still costs quadratic time.
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(400, f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_FLOAT_CHARS:
        raise BodyError(400, f"a number in the body is longer than {MAX_FLOAT_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise BodyError(400, "a number in the body is out of range")
    return value


def _constant(name: str) -> Any:
    raise BodyError(400, f"{name} is not a JSON value")


def _check_tree(value: Any, limits: BodyLimits, escapes: bool) -> None:
    """Depth, string length and well-formed Unicode, walked without recursion.  Only a
    ``\\u`` escape can make a lone surrogate (the bytes were strict UTF-8), so ``escapes``
    says whether strings need that check at all."""
    strings: list[str] = []
    stack: list[tuple[Any, int]] = []
    if type(value) is dict or type(value) is list:
        stack.append((value, 1))
    elif type(value) is str:
        strings.append(value)
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise BodyError(400, f"JSON nested deeper than {limits.max_depth} levels")
        if type(node) is dict:
            strings.extend(node)
            children: Any = node.values()
        else:
            children = node
        for child in children:
            kind = type(child)
            if kind is str:
                strings.append(child)
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
    if max(map(len, strings), default=0) > limits.max_string_chars:
        raise BodyError(
            400, f"a string in the body is longer than {limits.max_string_chars} characters"
        )
    if escapes:
        for text in strings:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise BodyError(400, "a string in the body is not valid Unicode") from None


def _quote(text: str) -> str:
    """A short, printable rendering of (untrusted) text for an error message."""
    return json.dumps(text[:60])


# ------------------------------------------------------------------------------ shapes


def expect_object(value: Any, where: str = "the body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(400, f"{where} must be a JSON object")
    return value


def no_unknown_fields(obj: Mapping[str, Any], known: Collection[str], where: str = "") -> None:
    """400 naming the first field the route does not take (a typo must not pass silently)."""
    for key in obj:
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise BodyError(400, f"unknown field {_quote(where + key)}; expected: {allowed}")


def optional_str(obj: Mapping[str, Any], key: str, max_chars: int, where: str = "") -> str | None:
    """The field as a string, None when absent or null; 400 for another type or a long one."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise BodyError(400, f"'{where}{key}' must be a string of at most {max_chars} characters")
    return value


def positive_id(value: Any, name: str) -> int:
    """A positive 64-bit id given as a JSON integer or a string of digits (not a bool, not a
    float: ``true`` and ``3.7`` are mistakes, not ids 1 and 3)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if type(value) is not int or not 0 < value < 2**63:
        raise BodyError(400, f"'{name}' must be a positive integer")
    return value
