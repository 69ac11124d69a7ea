"""Identity before creation: which existing record a newly shared Outlook item stands for.  Pure.

A duplicate record is the worst outcome the sync can produce, so a new shared item (no link,
no stamp, no record created from it) is first matched by its addresses against what Workbooks
already holds (People's main emails and Contact Details emails, as the email linker resolves
them).  ``choose`` decides from the candidates found:

* in the user's scope first: exactly one candidate there -> link to it; several -> ambiguous;
* none in scope: the whole database: exactly one -> link; several -> ambiguous;
* none at all -> a new record may be created (an item without addresses too).

An ambiguous item gets nothing: no link and no record, only a report naming the candidates.

``first_link`` merges an item and a record that were never paired (no snapshot to diff
against): Workbooks' values stand; Outlook fills the fields Workbooks lacks.  Address slots
(``slots``, e.g. a contact's three emails) are merged as one list: the record's addresses keep
their places, and the item's other addresses fill the empty ones, so neither side loses an
address while there is room.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Fields = Mapping[str, Any]


@dataclass(frozen=True)
class Candidate:
    """A record holding one of an item's addresses, as read for the match."""

    workbooks_id: int
    workbooks_type: str
    lock_version: int
    fields: Fields
    in_scope: bool
    address: str = ""  # the item's address that matched
    via: str = ""  # the Workbooks field it matched
    name: str = ""


class Verdict(StrEnum):
    CREATE = "create"  # nothing holds the item's addresses
    LINK = "link"  # exactly one record does (in scope first)
    AMBIGUOUS = "ambiguous"  # several do: link nothing, create nothing, report


@dataclass(frozen=True)
class Choice:
    verdict: Verdict
    candidate: Candidate | None = None  # the record to link to (LINK)
    candidates: tuple[Candidate, ...] = ()  # every distinct record found (for the report)


def addresses(fields: Fields, slots: Iterable[str]) -> list[str]:
    """The item's addresses in ``slots``, trimmed and lower-cased, without repeats."""
    out: list[str] = []
    for slot in slots:
        value = str(fields.get(slot) or "").strip().lower()
        if value and value not in out:
            out.append(value)
    return out


def distinct(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per record (the first address that found it)."""
    seen: dict[tuple[str, int], Candidate] = {}
    for c in candidates:
        seen.setdefault((c.workbooks_type, c.workbooks_id), c)
    return list(seen.values())


def choose(candidates: Sequence[Candidate]) -> Choice:
    """Link, report as ambiguous, or create: in the user's scope first, then everywhere."""
    found = tuple(distinct(candidates))
    mine = [c for c in found if c.in_scope]
    layer = mine or list(found)
    if not layer:
        return Choice(Verdict.CREATE)
    if len(layer) == 1:
        return Choice(Verdict.LINK, layer[0], found)
    return Choice(Verdict.AMBIGUOUS, None, found)


def _has(value: Any) -> bool:
    return value is not None and value != ""


def first_link(
    workbooks: Fields, outlook: Fields, slots: Sequence[str] = ()
) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """Merge a record and an item paired for the first time.

    Returns (merged fields, fields to write to Workbooks, fields to write to Outlook).
    Workbooks is only written where it had nothing, so a first link never overwrites a value
    someone typed in Workbooks.  Outlook is written wherever it differs from the result; an
    item with more addresses than ``slots`` beside the record's keeps only those that fit."""
    merged: dict[str, Any] = {}
    for name in dict.fromkeys([*workbooks, *outlook]):
        if name in slots:
            continue
        w = workbooks.get(name)
        merged[name] = w if _has(w) else outlook.get(name)
    if slots:
        merged.update(_merge_slots(workbooks, outlook, slots))
    to_workbooks = frozenset(n for n, v in merged.items() if _has(v) and not _has(workbooks.get(n)))
    to_outlook = frozenset(n for n, v in merged.items() if v != outlook.get(n))
    return merged, to_workbooks, to_outlook


def _merge_slots(workbooks: Fields, outlook: Fields, slots: Sequence[str]) -> dict[str, Any]:
    """The record's addresses stay in their slots; the item's others fill the empty ones."""
    taken = {str(workbooks.get(s) or "").strip().lower() for s in slots} - {""}
    spare = [
        v
        for v in (str(outlook.get(s) or "").strip() for s in slots)
        if v and v.lower() not in taken
    ]
    out: dict[str, Any] = {}
    for slot in slots:
        current = workbooks.get(slot)
        if _has(current):
            out[slot] = current
        elif spare:
            out[slot] = spare.pop(0)
        else:
            out[slot] = current if current is not None else outlook.get(slot)
    return out
