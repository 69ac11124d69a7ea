"""Scope decided on the row: My People and the user's filter rules, activities too."""

from __future__ import annotations

import pytest

from sync.core.mapping.scope import (
    activity_in_scope,
    is_deleted,
    matches,
    person_in_scope,
    rules_match,
    scope_columns,
)
from sync.core.state_models import STORED
from sync.core.state_models import FilterRule as R

ROW = {
    "assigned_to": 6,
    "watched": False,
    "employer_name": "Acme Ltd",
    "cf_score": "12",
    "lead_status": "",
    "activity_status": "New",
}


@pytest.mark.parametrize(
    ("rule", "ok"),
    [
        (R(field="employer_name", op="eq", value="acme ltd"), True),
        (R(field="employer_name", op="eq", value="Other,Acme Ltd"), True),
        (R(field="employer_name", op="ne", value="Acme Ltd"), False),
        (R(field="employer_name", op="ct", value="cme"), True),
        (R(field="employer_name", op="nct", value="cme"), False),
        (R(field="employer_name", op="bg", value="Ac"), True),
        (R(field="employer_name", op="nbg", value="Ac"), False),
        (R(field="cf_score", op="gt", value="9"), True),  # numeric, not text, comparison
        (R(field="cf_score", op="le", value="9"), False),
        (R(field="lead_status", op="blank"), True),
        (R(field="lead_status", op="not_blank"), False),
        (R(field="watched", op="false"), True),
        (R(field="watched", op="true"), False),
        # An operator the policy now refuses, in a policy stored before it did: matches nothing.
        (R.model_validate({"field": "employer_name", "op": "bogus"}, context=STORED), False),
    ],
)
def test_operators(rule: R, ok: bool) -> None:
    assert matches(ROW, rule) is ok


def test_and_or_modes() -> None:
    rules = [R(field="employer_name", value="Acme Ltd"), R(field="cf_score", value="1")]
    assert not rules_match(ROW, rules, "and")
    assert rules_match(ROW, rules, "or")
    assert rules_match(ROW, [], "and")


def test_my_people() -> None:
    assert person_in_scope(ROW, [6])
    assert not person_in_scope(ROW, [7])
    assert person_in_scope({**ROW, "watched": True}, [7])
    assert not person_in_scope({**ROW, "is_deleted": True}, [6])
    assert not person_in_scope(ROW, [6], [R(field="employer_name", value="Other")])


def test_activities_drop_completed_unless_linked_or_configured() -> None:
    done = {**ROW, "activity_status": "Complete"}
    assert activity_in_scope(ROW, [6])
    assert not activity_in_scope(done, [6])
    assert activity_in_scope(done, [6], include_completed=True)
    assert activity_in_scope(done, [6], linked=True)


def test_scope_columns() -> None:
    assert scope_columns([R(field="cf_score", value="1")]) == ("assigned_to", "watched", "cf_score")


@pytest.mark.parametrize(
    ("value", "deleted"),
    [
        *[(v, True) for v in (True, 1, "1", "true", "TRUE")],
        *[(v, False) for v in (False, 0, "0", "false", None, "")],
    ],
)
def test_is_deleted_reads_every_output_form_alike(value: object, deleted: bool) -> None:
    assert is_deleted({"is_deleted": value}) is deleted
    assert person_in_scope({"is_deleted": value, "watched": True}, []) is not deleted
