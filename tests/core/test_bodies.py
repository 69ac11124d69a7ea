"""The one body reader every JSON route uses (``sync.core.bodies``): each hostile input gets the
4xx it deserves, with a message, and well-formed bodies come through unchanged."""

from __future__ import annotations

import codecs
import json
from typing import Any

import pytest

from sync.core.bodies import (
    MAX_INT_DIGITS,
    BodyError,
    BodyLimits,
    check_content_type,
    expect_object,
    no_unknown_fields,
    optional_str,
    positive_id,
    read_json,
)

LIMITS = BodyLimits(max_bytes=64 * 1024, max_depth=8, max_string_chars=1000)
JSON = "application/json"


def _status(body: bytes, content_type: str | None = JSON, limits: BodyLimits = LIMITS) -> int:
    with pytest.raises(BodyError) as caught:
        read_json(body, content_type, limits)
    assert str(caught.value), "every refusal says why"
    return caught.value.status


def test_well_formed_bodies_come_through() -> None:
    body = {"value": [{"id": "a", "n": 12, "x": -1.5, "ok": True, "none": None, "s": "é €"}]}
    assert read_json(json.dumps(body).encode(), JSON, LIMITS) == body
    assert read_json(json.dumps(body, ensure_ascii=False).encode(), JSON, LIMITS) == body
    assert read_json(b'{"n": 9223372036854775807}', JSON, LIMITS) == {"n": 2**63 - 1}
    assert read_json(b"  ", JSON, BodyLimits(max_bytes=10, allow_empty=True)) is None


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deep_nesting_is_a_400_not_a_recursion_error(depth: int) -> None:
    roomy = BodyLimits(max_bytes=1 << 20)  # the webhook's default size limit
    assert _status(b"[" * depth + b"]" * depth, limits=roomy) == 400
    assert _status(b'{"a":' * depth + b"1" + b"}" * depth, limits=roomy) == 400
    assert _status(b"[" * depth, limits=roomy) == 400  # unterminated as well


def test_depth_is_held_to_the_limit_below_what_the_parser_reaches() -> None:
    nested = b'{"a":' * 8 + b"1" + b"}" * 8
    assert read_json(nested, JSON, LIMITS) is not None  # 8 levels: the limit
    assert _status(b"[" + nested + b"]") == 400
    with pytest.raises(BodyError, match="nested deeper than 8"):
        read_json(b"[" * 20 + b"]" * 20, JSON, LIMITS)


@pytest.mark.parametrize(
    "number",
    [
        b"1" * 5_000,
        b"-" + b"1" * 5_000,
        b"1" * (MAX_INT_DIGITS + 1),
        b"1" * 5_000 + b".5",
        b"0." + b"1" * 5_000,
        b"1e999",
        b"-1e999",
    ],
)
def test_numbers_too_long_or_out_of_range_are_a_400(number: bytes) -> None:
    assert _status(b'{"subscriptionId": ' + number + b"}") == 400
    assert _status(b"[" + number + b"]") == 400
    assert _status(number) == 400


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(constant: bytes) -> None:
    assert _status(b'{"n": ' + constant + b"}") == 400


def test_duplicate_keys_are_ambiguous() -> None:
    with pytest.raises(BodyError, match="duplicate key") as caught:
        read_json(b'{"value": [], "value": [1]}', JSON, LIMITS)
    assert caught.value.status == 400
    assert _status(b'{"a": {"b": 1, "b": 1}}') == 400


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\xff"}',  # not UTF-8 at all
        b'{"a": "caf\xe9"}',  # Latin-1
        '{"a": 1}'.encode("utf-16"),  # UTF-16 with its BOM
        '{"a": 1}'.encode("utf-16-le"),
        codecs.BOM_UTF8 + b'{"a": 1}',  # a UTF-8 BOM
        b'{"a": "\\ud800"}',  # a lone surrogate: parses, then cannot be encoded
        b'{"\\udfff": 1}',
    ],
)
def test_bytes_that_are_not_clean_utf8_json_are_a_400(body: bytes) -> None:
    assert _status(body) == 400


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b"{not json", b"[1,]", b'{"a":1} x', b"'single'", b"\x00", b"null"],
)
def test_empty_and_malformed_bodies_are_a_400(body: bytes) -> None:
    assert _status(body) == 400


def test_malformed_says_a_json_object_is_expected() -> None:
    with pytest.raises(BodyError, match="must be a JSON object"):
        read_json(b"not json", JSON, LIMITS)


def test_size_is_checked_before_anything_is_parsed() -> None:
    big = b"[" * 70_000  # would be a recursion problem, but is refused for its size first
    assert _status(big) == 413
    assert _status(b" " * (LIMITS.max_bytes + 1)) == 413


def test_huge_strings_are_a_400() -> None:
    assert _status(json.dumps({"a": "x" * 1001}).encode()) == 400
    assert _status(json.dumps({"x" * 1001: 1}).encode()) == 400
    assert read_json(json.dumps({"a": "x" * 1000}).encode(), JSON, LIMITS) == {"a": "x" * 1000}


@pytest.mark.parametrize(
    ("content_type", "required", "status"),
    [
        ("text/plain", True, 415),
        (None, True, 415),
        ("application/json; charset=utf-8", True, None),
        ("APPLICATION/JSON", True, None),
        ("application/merge-patch+json", True, 415),
        (None, False, None),
        ("application/json", False, None),
        ("application/merge-patch+json", False, None),
        ("application/x-www-form-urlencoded", False, 415),
        ("text/html", False, 415),
    ],
)
def test_content_type(content_type: str | None, required: bool, status: int | None) -> None:
    if status is None:
        check_content_type(content_type, required=required)
        return
    with pytest.raises(BodyError) as caught:
        check_content_type(content_type, required=required)
    assert caught.value.status == status


def test_shape_helpers() -> None:
    with pytest.raises(BodyError, match="must be a JSON object"):
        expect_object([1])
    with pytest.raises(BodyError, match='unknown field "knd"'):
        no_unknown_fields({"knd": "push"}, ("kind",))
    no_unknown_fields({"kind": "push"}, ("kind",))
    assert optional_str({"a": "x"}, "a", 5) == "x"
    assert optional_str({"a": None}, "a", 5) is None
    assert optional_str({}, "a", 5) is None
    for wrong in (5, ["x"], {"x": 1}, True, "x" * 6):
        with pytest.raises(BodyError, match=r"'v\[0\]\.a' must be a string"):
            optional_str({"a": wrong}, "a", 5, "v[0].")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5), ("5", 5), (2**63 - 1, 2**63 - 1), ("9223372036854775807", 2**63 - 1)],
)
def test_positive_id_accepts(value: Any, expected: int) -> None:
    assert positive_id(value, "record_id") == expected


@pytest.mark.parametrize(
    "value", [0, -1, True, False, 3.0, 3.7, "x", "", "-5", "1" * 5000, 2**63, None, [1], "٣"]
)
def test_positive_id_refuses(value: Any) -> None:
    with pytest.raises(BodyError, match="'record_id' must be a positive integer"):
        positive_id(value, "record_id")
