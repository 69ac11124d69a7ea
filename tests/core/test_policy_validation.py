"""The policy model refuses unknown keys and filter operators with a clear message (before, both
were accepted and ignored), while policies already stored keep loading; a policy change is
merged into the current policy and validated as a whole."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sync.core.mapping.scope import matches
from sync.core.onboarding import problems
from sync.core.state_models import (
    FILTER_OPERATORS,
    STORED,
    FilterRule,
    Mailbox,
    MailboxPolicy,
    merge_policy,
)


def _error(payload: object) -> str:
    with pytest.raises(ValidationError) as caught:
        MailboxPolicy.model_validate(payload)
    return problems(caught.value)


def test_an_unknown_policy_key_is_refused_naming_it_and_the_known_ones() -> None:
    message = _error({"email_polcy": "auto"})
    assert "unknown policy key(s) email_polcy" in message
    assert "email_policy" in message.split("known keys are", 1)[1]


def test_an_unknown_filter_operator_or_key_is_refused() -> None:
    message = _error({"people_filters": [{"field": "name", "op": "today", "value": ""}]})
    assert "people_filters.0.op" in message and "unknown filter operator 'today'" in message
    assert "not_blank" in message
    message = _error({"activity_filters": [{"field": "name", "operator": "eq"}]})
    assert "unknown filter key(s) operator" in message


def test_every_accepted_operator_is_one_the_scope_decides_on() -> None:
    """An operator the model accepts must mean something in ``scope.matches``: each is either
    true or false for some row, never false for every row."""
    for op in FILTER_OPERATORS:
        rule = FilterRule(field="f", op=op, value="b")
        rows = [{"f": v} for v in ("", "a", "b", "c", "true", "0")]
        assert any(matches(row, rule) for row in rows), op
    assert FilterRule(field="f", op=" NE ").op == "ne"


def test_stored_policies_with_old_keys_or_operators_still_load() -> None:
    """A registry row written when both were accepted must not stop the registry loading."""
    stored = Mailbox(
        id="ann@example.com", workbooks_url="https://secure.workbooks.com", api_key_ref="env:K"
    ).model_dump(mode="json")
    stored["policy"]["retired_setting"] = True
    stored["policy"]["people_filters"] = [{"field": "name", "op": "between", "value": "[1,2]"}]
    loaded = Mailbox.model_validate(stored, context=STORED)
    assert loaded.policy.people_filters[0].op == "between"  # still matches nothing, as before
    with pytest.raises(ValidationError):
        Mailbox.model_validate(stored)


def test_a_change_is_merged_into_the_current_policy() -> None:
    current = MailboxPolicy(email_policy="auto", blocklist=["spam.example"], time_zone="UTC")
    merged = merge_policy(current, {"blocklist": ["x.example"], "time_zone": None})
    assert merged.email_policy == "auto"  # kept
    assert merged.blocklist == ["x.example"]  # replaced
    assert merged.time_zone is None  # back to the default
    with pytest.raises(ValidationError) as caught:
        merge_policy(current, {"colour": "red"})
    assert "unknown policy key(s) colour" in problems(caught.value)
    with pytest.raises(ValidationError):
        merge_policy(current, {"mass_change_share": 3})
    with pytest.raises(ValueError, match="JSON object"):
        merge_policy(current, ["email_policy"])
