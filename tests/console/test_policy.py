"""The mailbox policy as a form: fields from the model, values read back, clear messages."""

from __future__ import annotations

from typing import Any

from sync.console.policy import (
    Limits,
    admin_fields,
    changed_fields,
    changed_scope,
    form_value,
    load_limits,
    parse,
    rule_rows,
    save_limits,
    spec_for,
    validate,
)
from sync.console.web import Form
from sync.core.state_models import MailboxPolicy


def form(**values: str) -> Form:
    f = Form()
    for key, value in values.items():
        f.values[key.replace("__", "-")] = value
        f.lists[key.replace("__", "-")] = [value]
    return f


def test_every_policy_field_has_a_form_kind_from_its_type() -> None:
    kinds = {name: spec_for(name).kind for name in admin_fields()}
    assert kinds["email_policy"] == "choice" and spec_for("email_policy").choices == (
        "shared",
        "auto",
    )
    assert kinds["create_from_outlook"] == "bool"
    assert kinds["mass_change_share"] == "float" and spec_for("mass_change_share").maximum == 1
    assert kinds["calendar_future_days"] == "int" and spec_for("calendar_future_days").minimum == 1
    assert kinds["people_filters"] == "rules" and kinds["internal_domains"] == "lines"
    assert kinds["people_queues"] == "ints" and spec_for("people_queues").max_items == 50
    assert kinds["time_zone"] == "text" and spec_for("time_zone").optional
    assert "json" not in kinds.values()  # every field today has a proper control


def test_values_round_trip_through_the_form() -> None:
    policy = MailboxPolicy(
        internal_domains=["contoso.com", "fabrikam.com"],
        people_queues=[3, 4],
        time_zone="Europe/London",
    )
    shown = {
        n: form_value(spec_for(n), policy)
        for n in ("internal_domains", "people_queues", "time_zone", "people_filters")
    }
    assert shown == {
        "internal_domains": "contoso.com\nfabrikam.com",
        "people_queues": "3, 4",
        "time_zone": "Europe/London",
        "people_filters": [],
    }
    parsed = parse(
        form(
            internal_domains="@Fabrikam.com\n\n contoso.com ",
            people_queues="5,6 7",
            time_zone="",
            people_filters__0__field="employer_name",
            people_filters__0__op="ct",
            people_filters__0__value="Fab",
            people_filters__1__field="",
            people_filters__1__op="eq",
            people_filters__1__value="ignored",
        ),
        ["internal_domains", "people_queues", "time_zone", "people_filters", "create_from_outlook"],
    )
    new = validate(policy, parsed)
    assert new is not None, parsed.errors
    assert new.internal_domains == ["contoso.com", "fabrikam.com"]
    assert new.people_queues == [5, 6, 7] and new.time_zone is None
    assert [(r.field, r.op, r.value) for r in new.people_filters] == [
        ("employer_name", "ct", "Fab")
    ]
    assert new.create_from_outlook is False  # an unticked box is not sent by the browser
    assert changed_scope(changed_fields(policy, new))
    assert not changed_scope(["email_policy"])


def test_each_bad_value_gets_its_own_message() -> None:
    unreadable = parse(form(calendar_past_days="many"), ["calendar_past_days"])
    assert validate(MailboxPolicy(), unreadable) is None
    assert unreadable.errors == {"calendar_past_days": "enter a whole number"}
    names = ["mass_change_share", "time_zone", "email_policy"]
    parsed = parse(
        form(mass_change_share="2", time_zone="Mars/Olympus", email_policy="sometimes"), names
    )
    assert validate(MailboxPolicy(), parsed) is None
    assert parsed.errors == {
        "mass_change_share": "Input should be less than or equal to 1",
        "time_zone": "'Mars/Olympus' is not an IANA time zone, e.g. Europe/London",
        "email_policy": "Input should be 'shared' or 'auto'",
    }
    assert parsed.shown["mass_change_share"] == "2"  # put back into the form to fix
    bad_rule = parse(
        form(
            people_filters__0__field="x",
            people_filters__0__op="drop table",
            people_filters__0__value="",
        ),
        ["people_filters"],
    )
    assert validate(MailboxPolicy(), bad_rule) is None
    assert bad_rule.errors["people_filters"] == "rule 1: choose a test from the list"


def test_the_user_limit_on_people_filters() -> None:
    rules = {
        f"people_filters__{i}__{k}": v
        for i in range(3)
        for k, v in (("field", f"f{i}"), ("op", "eq"), ("value", "v"))
    }
    parsed = parse(form(**rules), ["people_filters"])
    assert validate(MailboxPolicy(), parsed, max_people_filters=2) is None
    assert "at most 2 people filters" in parsed.errors["people_filters"]
    assert (
        validate(MailboxPolicy(), parse(form(**rules), ["people_filters"]), max_people_filters=3)
        is not None
    )
    assert len(rule_rows([{"field": "a", "op": "eq", "value": ""}])) == 3  # the rule + 2 empty rows


def test_limits_name_the_fields_users_may_edit() -> None:
    assert set(Limits().editable()) >= {
        "email_policy",
        "category",
        "people_filters",
        "people_filter_mode",
    }
    assert Limits(groups=["people"]).editable() == ("people_filters", "people_filter_mode")
    assert Limits(groups=[]).editable() == ()


async def test_limits_are_stored_beside_the_registry_without_being_a_mailbox(services: Any) -> None:
    assert await load_limits(services) == Limits()
    await save_limits(services, Limits(groups=["email"], max_people_filters=3))
    assert await load_limits(services) == Limits(groups=["email"], max_people_filters=3)
    assert await services.store.mailboxes.list() == []
