"""Table keys: the escaping rule, character by character, whatever path computes it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sync.core.keys import MAX_KEY_CHARS, _bad, decode_key, encode_key


def _by_character(value: str) -> str:
    """The rule as written: every forbidden or control character below 256 as %XX."""
    return "".join(f"%{ord(ch):02X}" if _bad(ch) and ord(ch) < 256 else ch for ch in value)


@given(st.text(alphabet=st.characters(max_codepoint=400), min_size=1, max_size=60))
def test_encode_key_is_the_character_rule_and_round_trips(value: str) -> None:
    key = encode_key(value)
    assert key == _by_character(value)
    assert not any(_bad(ch) and ord(ch) < 256 and ch != "%" for ch in key)
    assert decode_key(key) == value


def test_the_digest_mark_is_only_a_mark_where_a_shortened_key_has_it() -> None:
    """An address may hold "~h~": it round-trips.  A value shaped like a shortened key gets a
    key of its own, not the key of the long value it imitates."""
    for value in ("~h~", "ann~h~x@example.com", "~h~" + "a" * 64):
        assert decode_key(encode_key(value)) == value
    long = "x" * (MAX_KEY_CHARS + 10)
    imitation = encode_key(long)
    assert encode_key(imitation) != imitation
    assert len(encode_key(imitation)) == MAX_KEY_CHARS


def test_plain_and_escaped_keys() -> None:
    assert encode_key("ann@example.com") == "ann@example.com"
    assert encode_key("a/b#c?d%e'f\\g\x01\x9f") == "a%2Fb%23c%3Fd%25e%27f%5Cg%01%9F"
    long = "x" * (MAX_KEY_CHARS + 10)
    assert len(encode_key(long)) == MAX_KEY_CHARS
