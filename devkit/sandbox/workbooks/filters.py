"""Read filters: ``_ff[]/_ft[]/_fc[]`` triples, operators and ``_fm`` (workbooks-api.md §2.2-2.3).

Pure functions over Python values; the store supplies each row's value of a field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from .params import WireParams, attribute_name, parse_bool
from .values import VarDateTime, parse_when


class FilterError(ValueError):
    """The request's filters cannot be understood (answered 406 [INF])."""


class AttributeFailure(ValueError):
    """A request names an attribute the type does not have (strict attribute checking), or
    filters on one that cannot be filtered: answered as an application failure, HTTP 200 with
    ``success: false`` and the text in ``failures`` (§1.7, the shape of a real read failure)."""


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    criterion: str


OPERATORS = frozenset(
    {
        "eq",
        "xeq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "bg",
        "nbg",
        "ct",
        "nct",
        "blank",
        "not_blank",
        "true",
        "false",
        "today",
        "lt_today",
        "le_today",
        "gt_today",
        "ge_today",
        "between",
        "not_between",
    }
)


def parse_filters(params: WireParams) -> list[Filter]:
    """All filters of a request, from the array form, the single form or ``_filter_json``."""
    fields, ops, crits = params.getlist("_ff"), params.getlist("_ft"), params.getlist("_fc")
    if not (len(fields) == len(ops) == len(crits)):
        raise FilterError(
            f"_ff[], _ft[] and _fc[] must have the same length "
            f"(got {len(fields)}, {len(ops)}, {len(crits)})"
        )
    triples = list(zip(fields, ops, crits, strict=True))
    raw_json = params.get("_filter_json")
    if raw_json:
        try:
            extra = json.loads(raw_json)
            triples += [(str(f), str(o), "" if c is None else str(c)) for f, o, c in extra]
        except (ValueError, TypeError) as exc:
            raise FilterError(f"_filter_json is not a list of [field, op, value]: {exc}") from None

    result = []
    for field, op, crit in triples:
        if op.lower() not in OPERATORS:
            raise FilterError(f"unknown filter operator {op!r}")
        result.append(Filter(attribute_name(field)[0], op.lower(), crit))
    return result


# ---------------------------------------------------------------- _fm expressions

_TOKEN = re.compile(r"\s*(\d+|AND\b|OR\b|XOR\b|NOT\b|!|\(|\))", re.IGNORECASE)
Matcher = Callable[[list[bool]], bool]


def compile_fm(fm: str | None, count: int) -> Matcher:
    """``and`` (default), ``or``, or an expression over 1-based filter numbers."""
    text = (fm or "and").strip()
    if text.lower() == "and":
        return all
    if text.lower() == "or":
        return lambda results: any(results) if results else True
    tokens = _tokenize(text)
    parser = _FmParser(tokens, count)
    matcher = parser.parse_or()
    if parser.pos != len(tokens):
        raise FilterError(f"unexpected {tokens[parser.pos]!r} in _fm")
    return matcher


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            if text[pos:].strip() == "":
                break
            raise FilterError(f"cannot parse _fm near {text[pos:]!r}")
        tokens.append(match.group(1).upper())
        pos = match.end()
    return tokens


class _FmParser:
    """Precedence [INF]: NOT binds tightest, then AND, then XOR, then OR."""

    def __init__(self, tokens: list[str], count: int) -> None:
        self.tokens, self.pos, self.count = tokens, 0, count

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _binary(
        self, word: str, lower: Callable[[], Matcher], join: Callable[[bool, bool], bool]
    ) -> Matcher:
        left = lower()
        while self._peek() == word:
            self.pos += 1
            right = lower()
            left = _combine(left, right, join)
        return left

    def parse_or(self) -> Matcher:
        return self._binary("OR", self.parse_xor, lambda a, b: a or b)

    def parse_xor(self) -> Matcher:
        return self._binary("XOR", self.parse_and, lambda a, b: a != b)

    def parse_and(self) -> Matcher:
        return self._binary("AND", self.parse_not, lambda a, b: a and b)

    def parse_not(self) -> Matcher:
        if self._peek() in ("NOT", "!"):
            self.pos += 1
            inner = self.parse_not()
            return lambda results: not inner(results)
        return self.parse_atom()

    def parse_atom(self) -> Matcher:
        token = self._peek()
        self.pos += 1
        if token == "(":
            inner = self.parse_or()
            if self._peek() != ")":
                raise FilterError("unbalanced parentheses in _fm")
            self.pos += 1
            return inner
        if token is not None and token.isdigit():
            index = int(token) - 1
            if not 0 <= index < self.count:
                raise FilterError(f"_fm refers to filter {token} but there are {self.count}")
            return lambda results: results[index]
        raise FilterError(f"unexpected {token!r} in _fm")


def _combine(left: Matcher, right: Matcher, join: Callable[[bool, bool], bool]) -> Matcher:
    return lambda results: join(left(results), right(results))


# ---------------------------------------------------------------- operators


def split_in_list(criterion: str) -> list[str]:
    """``a,b\\,c`` -> ``['a', 'b,c']``: commas separate IN values, ``\\,`` is a literal comma."""
    return [part.replace("\x00", ",") for part in criterion.replace("\\,", "\x00").split(",")]


class Predicate:
    """One compiled filter: ``test(value)`` says whether a row's field value passes."""

    def __init__(self, flt: Filter, today: date) -> None:
        self.flt, self.today = flt, today
        self.op = "eq" if flt.op == "xeq" else flt.op
        self._set = {v.strip().lower() for v in split_in_list(flt.criterion)}
        self._crit = flt.criterion.lower()
        self._numbers: list[float] | None = None
        self._spans: list[tuple[datetime, datetime]] | None = None

    def test(self, value: object) -> bool:
        op = self.op
        if op in ("blank", "not_blank"):
            blank = value is None or value == ""
            return blank if op == "blank" else not blank
        if op in ("true", "false"):
            truth = bool(value) and value not in ("0", "false")
            return truth if op == "true" else not truth
        if isinstance(value, VarDateTime):
            value = value.when
        if isinstance(value, bool):
            return self._bool(value)
        if isinstance(value, datetime):
            return self._datetime(value)
        if isinstance(value, int | float):
            return self._number(float(value))
        return self._string("" if value is None else str(value), value is None)

    def _bool(self, value: bool) -> bool:
        wanted = parse_bool(self.flt.criterion)
        if self.op == "eq":
            return value == wanted
        if self.op == "ne":
            return value != wanted
        return False

    def _string(self, value: str, is_null: bool) -> bool:
        text, crit, op = value.lower(), self._crit, self.op
        if op == "eq":
            return not is_null and text in self._set if crit else value == ""
        if op == "ne":
            return text not in self._set
        if op in ("bg", "nbg"):
            return text.startswith(crit) == (op == "bg")
        if op in ("ct", "nct"):
            return (crit in text) == (op == "ct")
        if is_null:
            return False
        return _ordered(op, text, crit, crit)

    def _number(self, value: float) -> bool:
        op = self.op
        if op in ("between", "not_between"):
            lo, hi = (float(x) for x in _json_pair(self.flt.criterion))
            return (lo <= value <= hi) == (op == "between")
        if self._numbers is None:
            try:
                self._numbers = [float(v) for v in split_in_list(self.flt.criterion) if v.strip()]
            except ValueError:
                self._numbers = []
        numbers = self._numbers
        if op == "eq":
            return value in numbers
        if op == "ne":
            return value not in numbers
        if not numbers:
            return False
        return _ordered(op, value, numbers[0], numbers[0])

    def _datetime(self, value: datetime) -> bool:
        op, day = self.op, value.date()
        if op.endswith("today"):
            return _ordered(
                {"today": "eq"}.get(op, op.removesuffix("_today")), day, self.today, self.today
            )
        if op in ("between", "not_between"):
            lo, hi = (_span(x) for x in _json_pair(self.flt.criterion))
            return (lo[0] <= value <= hi[1]) == (op == "between")
        if self._spans is None:
            self._spans = (
                [_span(v) for v in split_in_list(self.flt.criterion)]
                if op in ("eq", "ne")
                else [_span(self.flt.criterion)]
            )
        spans = self._spans
        if op == "eq":
            return any(lo <= value <= hi for lo, hi in spans)
        if op == "ne":
            return not any(lo <= value <= hi for lo, hi in spans)
        first, last = spans[0]
        return _ordered(op, value, first, last)


def _ordered(op: str, value: object, lo: object, hi: object) -> bool:
    """lt/le/gt/ge against a range: ``le`` includes the whole day of a date criterion."""
    checks: dict[str, Callable[[], bool]] = {
        "lt": lambda: value < lo,  # type: ignore[operator]
        "le": lambda: value <= hi,  # type: ignore[operator]
        "gt": lambda: value > hi,  # type: ignore[operator]
        "ge": lambda: value >= lo,  # type: ignore[operator]
        "eq": lambda: lo <= value <= hi,  # type: ignore[operator]
    }
    check = checks.get(op)
    return check() if check else False


def _json_pair(criterion: str) -> list[str]:
    """``JSON([a,b])`` -> ``['a', 'b']``; values may be unquoted (as the docs write them)."""
    match = re.fullmatch(r"\s*JSON\(\[(.*)\]\)\s*", criterion, re.IGNORECASE)
    if not match:
        raise FilterError(f"between needs JSON([low,high]), got {criterion!r}")
    parts = [p.strip().strip('"') for p in match.group(1).split(",")]
    if len(parts) != 2:
        raise FilterError(f"between needs two values, got {criterion!r}")
    return parts


def _span(text: str) -> tuple[datetime, datetime]:
    span = parse_when(text)
    if span is None:
        raise FilterError(f"not a date or datetime: {text!r}")
    return span
