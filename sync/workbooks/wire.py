"""Pure encoding of Workbooks requests and values (no I/O): filters with ``_fm``, the full-square
batch encoding, IN-lists and datetimes (workbooks-api.md §1.4, §2.2-2.5, §3.2-3.3)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FormPairs = list[tuple[str, str]]
DATETIME_FORMAT = "%a %b %d %H:%M:%S UTC %Y"
NO_VALUE, NULL_VALUE = ":no_value:", ":null_value:"


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class Cond:
    """One filter triple; ``value`` is sent as ``_fc[]`` (empty for value-less operators)."""

    field: str
    op: str
    value: str = ""


@dataclass(frozen=True)
class All:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Filter, ...]


Filter = Cond | All | Any_


def all_of(*parts: Filter | None) -> Filter | None:
    kept = tuple(p for p in parts if p is not None)
    return kept[0] if len(kept) == 1 else (All(kept) if kept else None)


def any_of(*parts: Filter | None) -> Filter | None:
    kept = tuple(p for p in parts if p is not None)
    return kept[0] if len(kept) == 1 else (Any_(kept) if kept else None)


def encode_filter(expr: Filter | None) -> FormPairs:
    """``_ff[]/_ft[]/_fc[]`` triples in order plus the ``_fm`` expression numbering them."""
    if expr is None:
        return []
    conds: list[Cond] = []
    fm = _render(expr, conds, top=True)
    pairs: FormPairs = []
    for cond in conds:
        pairs += [("_ff[]", cond.field), ("_ft[]", cond.op), ("_fc[]", cond.value)]
    return [*pairs, ("_fm", fm)]


def _render(expr: Filter, conds: list[Cond], *, top: bool = False) -> str:
    if isinstance(expr, Cond):
        conds.append(expr)
        return str(len(conds))
    word = " AND " if isinstance(expr, All) else " OR "
    text = word.join(_render(p, conds) for p in expr.parts)
    return text if top else f"({text})"


def in_list(values: Iterable[str]) -> str:
    """An ``eq`` IN-list: comma-separated, literal commas escaped as ``\\,``."""
    return ",".join(v.replace(",", "\\,") for v in values)


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------- batch writes


def wire_value(value: object) -> str:
    """Python value -> batch cell: None clears (``:null_value:``), booleans as 1/0."""
    if value is None:
        return NULL_VALUE
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return format_criterion(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def wire_key(name: str) -> str:
    """``org_lead_party[main_location[email]]`` -> ``org_lead_party[main_location][email]``."""
    head, _, rest = name.partition("[")
    if not rest:
        return name
    segments = rest.replace("]", "").split("[")
    return head + "".join(f"[{s}]" for s in segments)


def encode_square(rows: Sequence[tuple[str, int, int, dict[str, object]]]) -> FormPairs:
    """The full square: every object emits every attribute (missing -> ``:no_value:``).

    ``rows`` are (``__method``, id, lock_version, attributes).  Column order is alphabetical,
    as the bindings send it; each object's cells are emitted together, in request order.
    """
    names = sorted({name for *_, attrs in rows for name in attrs})
    columns = [(name, f"{wire_key(name)}[]") for name in names]
    pairs: FormPairs = []
    append = pairs.append
    for method, record_id, lock_version, attrs in rows:
        append(("__method[]", method))
        append(("id[]", str(record_id)))
        append(("lock_version[]", str(lock_version)))
        for name, key in columns:
            if name in attrs:
                value = attrs[name]
                append((key, value if type(value) is str else wire_value(value)))
            else:
                append((key, NO_VALUE))
    return pairs


def working_set(ids: Iterable[int]) -> FormPairs:
    """One ``id eq`` filter per object, combined with ``_fm=or`` (creates use ``id eq 0``)."""
    unique = list(dict.fromkeys(ids))
    pairs: FormPairs = []
    for record_id in unique:
        pairs += [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", str(record_id))]
    return [*pairs, ("_fm", "or")] if len(unique) > 1 else pairs


# ---------------------------------------------------------------- values


def parse_datetime(value: object) -> datetime | None:
    """A datetime as Workbooks outputs it (default format, epoch seconds or ISO), UTC."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        return datetime.strptime(text, DATETIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_criterion(value: datetime) -> str:
    """A datetime in explicit UTC ISO form (never a naive local time): filter criteria and
    batch cells alike."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
