"""Which Workbooks records are in a mailbox's sync scope, decided on the row itself (pure).

The changed-since read returns *every* changed record (so a record that left the scope is seen
leaving); the scope is then decided here from the row's columns: *My People* (assigned to one
of the user's queues, or watched) and the user's filter rules, evaluated with the same operator
meanings as the Workbooks API (workbooks-api.md §2.2; comparisons are case-insensitive, as the
service's are).  Activities use the same rules, and by default drop completed ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from sync.core.mapping.activities import is_completed
from sync.core.state_models import FilterRule

TRUE_WORDS = ("true", "t", "on", "1", "yes", "y")


def _s(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip().lower()


def is_deleted(row: Mapping[str, Any]) -> bool:
    """A row's ``is_deleted`` in whatever form the output gives it (JSON boolean, 1/0,
    "true"/"false"): one reading for every reader, so none takes "0" for deleted."""
    return _s(row.get("is_deleted")) in TRUE_WORDS


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _compare(left: str, right: str) -> int:
    a, b = _num(left), _num(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return (left > right) - (left < right)


def matches(row: Mapping[str, Any], rule: FilterRule) -> bool:
    """One rule against one row (unknown operators never match, so they narrow, not widen)."""
    value, want, op = _s(row.get(rule.field)), _s(rule.value), rule.op.lower()
    if op in ("eq", "xeq"):
        return value in [w.strip() for w in want.split(",")] if "," in want else value == want
    if op == "ne":
        return value != want
    if op in ("lt", "le", "gt", "ge"):
        c = _compare(value, want)
        return {"lt": c < 0, "le": c <= 0, "gt": c > 0, "ge": c >= 0}[op] and value != ""
    simple = {
        "bg": value.startswith(want),
        "nbg": not value.startswith(want),
        "ct": want in value,
        "nct": want not in value,
        "blank": value == "",
        "not_blank": value != "",
        "true": value in TRUE_WORDS,
        "false": value not in TRUE_WORDS,
    }
    return simple.get(op, False)


def rules_match(
    row: Mapping[str, Any], rules: Sequence[FilterRule], mode: Literal["and", "or"] = "and"
) -> bool:
    if not rules:
        return True
    results = (matches(row, rule) for rule in rules)
    return all(results) if mode == "and" else any(results)


def is_mine(row: Mapping[str, Any], queue_ids: Iterable[int]) -> bool:
    """Assigned to one of the user's queues, or watched by the user (§2.8)."""
    if _s(row.get("watched")) in TRUE_WORDS:
        return True
    assigned = _s(row.get("assigned_to"))
    return any(assigned == str(q) for q in queue_ids)


def person_in_scope(
    row: Mapping[str, Any],
    queue_ids: Iterable[int],
    rules: Sequence[FilterRule] = (),
    mode: Literal["and", "or"] = "and",
) -> bool:
    if is_deleted(row):
        return False
    return is_mine(row, queue_ids) and rules_match(row, rules, mode)


def activity_in_scope(
    row: Mapping[str, Any],
    queue_ids: Iterable[int],
    rules: Sequence[FilterRule] = (),
    mode: Literal["and", "or"] = "and",
    *,
    include_completed: bool = False,
    linked: bool = False,
) -> bool:
    """Activities: the same rules; completed ones are left out unless configured.

    A completed activity that is already linked stays in scope, so completing a task on either
    side syncs the completion instead of removing the task from Outlook."""
    if not person_in_scope(row, queue_ids, rules, mode):
        return False
    return include_completed or linked or not is_completed(row)


def scope_columns(rules: Sequence[FilterRule]) -> tuple[str, ...]:
    """Columns a read must select to decide the scope client-side."""
    return tuple(dict.fromkeys(["assigned_to", "watched", *(r.field for r in rules)]))
