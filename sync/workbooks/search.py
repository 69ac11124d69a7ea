"""Finding a record to attach an email to: by object reference (``CASE-123``) or by name,
across the five record types an email can be linked to (workbooks-api.md §2.9, §4.10).

Workbooks has a cross-type search (``searchables.api``, at most 100 rows, [EX] only: its row
shape is not documented), so this searches each type by name instead, with the documented
filter operator ``ct`` (contains, §2.2): one small page per type, sent together.  The user's
own API key makes the requests, so Workbooks shows them only what it lets them see.

A tenant that lacks a column searched here (strict attribute checking answers with a failure)
has that type left out and named in ``SearchResult.skipped``; throttling and outages fail the
whole search, as everywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sync.core.email_linking import (
    CASE,
    LEAD,
    OPPORTUNITY,
    ORGANISATION,
    PERSON,
    RecordRef,
    parse_reference,
)
from sync.core.errors import InvalidRequest, NotFound

from .client import WorkbooksClient
from .reads import Record, read_page, read_params
from .schema import ENDPOINT_OF_CLASS, LINK_TARGETS
from .wire import Cond, Filter, any_of

MIN_CHARS = 2  # "a" matches half of any CRM; ask for a little more
MAX_CHARS = 100
DEFAULT_LIMIT = 8  # per type: enough to pick from, small enough to read at a glance


@dataclass(frozen=True)
class SearchType:
    """How one record type is searched and shown: the columns searched with ``ct``, the
    columns whose first non-empty value names the record, and one detail column."""

    label: str
    searched: tuple[str, ...]
    titles: tuple[str, ...]
    detail: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        wanted = [*self.searched, *self.titles, "object_ref"]
        if self.detail:
            wanted.append(self.detail)
        return tuple(dict.fromkeys(wanted))


# [OBS] ``name`` and ``object_ref`` are on every record; a lead is named by its person or
# organisation; an opportunity by its ``description`` (workbooks-api.md §4).
SEARCH_TYPES: dict[str, SearchType] = {
    PERSON: SearchType("Person", ("name",), ("name",), "main_location[email]"),
    LEAD: SearchType(
        "Sales Lead",
        ("person_lead_party[name]", "org_lead_party[name]"),
        ("person_lead_party[name]", "org_lead_party[name]", "name"),
    ),
    ORGANISATION: SearchType("Organisation", ("name",), ("name",)),
    CASE: SearchType("Case", ("name",), ("name",)),
    OPPORTUNITY: SearchType("Opportunity", ("description",), ("description", "name")),
}


@dataclass(frozen=True)
class Found:
    """A record an email can be attached to."""

    ref: RecordRef
    kind: str  # "Person", "Case", ...
    name: str
    object_ref: str = ""  # e.g. "CASE-123"
    detail: str = ""  # e.g. a person's main email address


@dataclass(frozen=True)
class SearchResult:
    found: list[Found] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "Sales Lead: <why>"
    by_reference: bool = False  # the text was an object reference


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _found(record_type: str, row: Record) -> Found:
    spec = SEARCH_TYPES[record_type]
    name = next((_text(row.get(c)) for c in spec.titles if _text(row.get(c))), "")
    return Found(
        ref=RecordRef(record_type, int(row["id"])),
        kind=spec.label,
        name=name or f"{spec.label} {row['id']}",
        object_ref=_text(row.get("object_ref")),
        detail=_text(row.get(spec.detail)) if spec.detail else "",
    )


async def _read(
    client: WorkbooksClient, record_type: str, where: Filter | None, limit: int
) -> list[Found]:
    spec = SEARCH_TYPES[record_type]
    params = read_params(spec.columns, where, 0, limit, (("id", "DESC"),))
    rows = await read_page(client, ENDPOINT_OF_CLASS[record_type], params)
    return [_found(record_type, row) for row in rows if isinstance(row.get("id"), int)]


async def lookup(client: WorkbooksClient, ref: RecordRef) -> Found:
    """The record ``ref`` names; NotFound if it does not exist (or the user cannot see it)."""
    if ref.record_type not in SEARCH_TYPES:
        raise NotFound(f"{ref.record_type} is not a record an email can be attached to")
    rows = await _read(client, ref.record_type, Cond("id", "eq", str(ref.record_id)), 1)
    if not rows:
        raise NotFound(f"no {SEARCH_TYPES[ref.record_type].label} with id {ref.record_id}")
    return rows[0]


async def search(
    client: WorkbooksClient,
    text: str,
    *,
    types: Iterable[str] = LINK_TARGETS,
    limit: int = DEFAULT_LIMIT,
) -> SearchResult:
    """Records whose name contains ``text``; or, when ``text`` is an object reference such as
    ``CASE-123``, that one record.  Fewer than ``MIN_CHARS`` characters find nothing."""
    query = " ".join(text.split())[:MAX_CHARS]
    ref = parse_reference(query)
    if ref is not None:
        try:
            return SearchResult([await lookup(client, ref)], by_reference=True)
        except NotFound:
            return SearchResult([], by_reference=True)
    if len(query) < MIN_CHARS:
        return SearchResult()
    wanted: Sequence[str] = [t for t in types if t in SEARCH_TYPES]
    outcomes = await asyncio.gather(
        *(_search_type(client, t, query, limit) for t in wanted), return_exceptions=True
    )
    result = SearchResult()
    for record_type, outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, InvalidRequest):
            result.skipped.append(f"{SEARCH_TYPES[record_type].label}: {outcome}")
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            result.found.extend(outcome)
    return result


async def _search_type(
    client: WorkbooksClient, record_type: str, query: str, limit: int
) -> list[Found]:
    spec = SEARCH_TYPES[record_type]
    where = any_of(*(Cond(column, "ct", query) for column in spec.searched))
    return await _read(client, record_type, where, limit)
