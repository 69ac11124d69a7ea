"""Three-way merge: one-sided changes flow across, true conflicts follow the policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.core.merge import merge, winner

BASE = {"a": "1", "b": "1", "c": "1"}
EARLY, LATE = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)


def test_nothing_changed() -> None:
    r = merge(BASE, dict(BASE), dict(BASE))
    assert r.unchanged and r.merged == BASE and r.conflicts == ()


def test_disjoint_changes_merge_without_conflict() -> None:
    r = merge(BASE, {**BASE, "a": "wb"}, {**BASE, "b": "ol"})
    assert r.merged == {"a": "wb", "b": "ol", "c": "1"}
    assert r.to_outlook == {"a"} and r.to_workbooks == {"b"}
    assert r.conflicts == ()


def test_same_change_on_both_sides_is_not_a_conflict() -> None:
    r = merge(BASE, {**BASE, "a": "x"}, {**BASE, "a": "x"})
    assert r.unchanged and r.merged["a"] == "x"


@pytest.mark.parametrize(
    ("policy", "wb_time", "ol_time", "expected"),
    [
        ("latest", EARLY, LATE, "outlook"),
        ("latest", LATE, EARLY, "workbooks"),
        ("latest", LATE, LATE, "workbooks"),  # tie -> system of record
        ("latest", None, LATE, "outlook"),
        ("latest", None, None, "workbooks"),
        ("workbooks", EARLY, LATE, "workbooks"),
        ("outlook", LATE, EARLY, "outlook"),
    ],
)
def test_true_conflict_follows_policy(policy, wb_time, ol_time, expected) -> None:
    r = merge(
        BASE,
        {**BASE, "a": "wb", "c": "wb"},
        {**BASE, "a": "ol", "b": "ol"},
        policy=policy,
        workbooks_modified=wb_time,
        outlook_modified=ol_time,
    )
    assert winner(policy, wb_time, ol_time) == expected
    assert len(r.conflicts) == 1
    conflict = r.conflicts[0]
    assert (conflict.field, conflict.base, conflict.workbooks, conflict.outlook) == (
        "a",
        "1",
        "wb",
        "ol",
    )
    assert conflict.winner == expected
    assert r.merged["a"] == ("wb" if expected == "workbooks" else "ol")
    assert r.merged["b"] == "ol" and r.merged["c"] == "wb"
    if expected == "workbooks":
        assert r.to_outlook == {"a", "c"} and r.to_workbooks == {"b"}
    else:
        assert r.to_outlook == {"c"} and r.to_workbooks == {"a", "b"}


def test_missing_base_field_treated_as_conflict_when_sides_differ() -> None:
    r = merge({}, {"a": "wb"}, {"a": "ol"}, policy="workbooks")
    assert r.merged == {"a": "wb"} and r.to_outlook == {"a"}
    assert [c.field for c in r.conflicts] == ["a"]


def test_non_string_values() -> None:
    r = merge({"all_day": False}, {"all_day": True}, {"all_day": False})
    assert r.merged == {"all_day": True} and r.to_outlook == {"all_day"}
