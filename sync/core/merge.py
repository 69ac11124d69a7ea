"""Three-way merge of canonical field dicts against the last synced snapshot (pure).

For each field, with ``base`` the value both sides agreed on at the last sync:

* both sides equal                  -> nothing to write;
* only Outlook moved away from base -> Outlook's value, written to Workbooks;
* only Workbooks moved              -> Workbooks' value, written to Outlook;
* both moved, to different values   -> a true conflict, settled by the mailbox policy:
  ``workbooks`` or ``outlook`` always win; ``latest`` takes the side modified later (ties and
  unknown times go to Workbooks, the system of record).  Every conflict is returned so the run
  log can record it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Side = Literal["workbooks", "outlook"]
ConflictPolicy = Literal["latest", "workbooks", "outlook"]


@dataclass(frozen=True)
class FieldConflict:
    """A field both sides changed to different values, and which side won."""

    field: str
    base: Any
    workbooks: Any
    outlook: Any
    winner: Side


@dataclass(frozen=True)
class MergeResult:
    merged: dict[str, Any]
    to_workbooks: frozenset[str]  # fields whose merged value Workbooks lacks
    to_outlook: frozenset[str]  # fields whose merged value Outlook lacks
    conflicts: tuple[FieldConflict, ...] = ()

    @property
    def unchanged(self) -> bool:
        return not self.to_workbooks and not self.to_outlook


def winner(
    policy: ConflictPolicy, workbooks_modified: datetime | None, outlook_modified: datetime | None
) -> Side:
    """Which side wins a true conflict under ``policy``."""
    if policy != "latest":
        return policy
    if workbooks_modified is None or outlook_modified is None:
        return "outlook" if workbooks_modified is None and outlook_modified else "workbooks"
    return "outlook" if outlook_modified > workbooks_modified else "workbooks"


def merge(
    base: Mapping[str, Any],
    workbooks: Mapping[str, Any],
    outlook: Mapping[str, Any],
    *,
    policy: ConflictPolicy = "latest",
    workbooks_modified: datetime | None = None,
    outlook_modified: datetime | None = None,
) -> MergeResult:
    """Merge field by field; see the module docstring for the rules."""
    merged: dict[str, Any] = {}
    to_wb: set[str] = set()
    to_ol: set[str] = set()
    conflicts: list[FieldConflict] = []
    for name in sorted({*workbooks, *outlook}):
        b, w, o = base.get(name), workbooks.get(name), outlook.get(name)
        if w == o:
            merged[name] = w
            continue
        if w == b:
            side: Side = "outlook"
        elif o == b:
            side = "workbooks"
        else:
            side = winner(policy, workbooks_modified, outlook_modified)
            conflicts.append(FieldConflict(name, b, w, o, side))
        merged[name] = o if side == "outlook" else w
        (to_wb if side == "outlook" else to_ol).add(name)
    return MergeResult(merged, frozenset(to_wb), frozenset(to_ol), tuple(conflicts))
