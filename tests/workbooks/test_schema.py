"""The schema module: every column the field maps use is declared, the declarations are checked
against the sandbox's metadata/types under each configurable alternative, and the checks
``doctor`` shows name the problem and the fix."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from devkit.sandbox.workbooks import SandboxConfig, running_sandbox
from sync.core.checks import Check
from sync.core.email_linking import email_fields
from sync.core.graph_models import Message
from sync.core.mapping import activities as act
from sync.core.mapping import contacts
from sync.core.mapping.scope import scope_columns
from sync.core.state_models import MailboxPolicy
from sync.workbooks import ClientConfig, WorkbooksClient, WorkbooksIdentity, WriteOp, records
from sync.workbooks.metadata import AssocMeta, FieldMeta, Metadata, TypeMeta, choose_link
from sync.workbooks.schema import (
    DECLARED,
    EMAILS,
    MEETINGS,
    PEOPLE,
    SALES_LEADS,
    TASKS,
    SchemaMismatch,
)
from sync.workbooks.tenant import read_metadata, resolve, tenant_schema, verify

from .conftest import ANN_KEY, FAST

# ----------------------------------------------------------------------------- declarations


def test_every_column_the_field_maps_use_is_declared() -> None:
    people = set(PEOPLE.names)
    assert set(contacts.READ_COLUMNS) <= people
    assert set(act.TASK_COLUMNS) <= set(TASKS.names)
    assert set(act.MEETING_COLUMNS) <= set(MEETINGS.names)
    assert "activity_type" in TASKS.names  # the create default
    for decl in (PEOPLE, TASKS, MEETINGS):
        assert {*scope_columns([]), records.REFERENCE} <= set(decl.names), decl.key
    # each canonical field a declaration carries is the one the field map puts in that column
    for col in PEOPLE.columns:
        if col.canonical:
            assert contacts.WORKBOOKS_COLUMNS[col.canonical] == col.name
    assert MEETINGS.column("location") is not None
    assert MEETINGS.column("location").canonical == "location"  # type: ignore[union-attr]


def test_every_email_column_written_is_declared() -> None:
    message = Message.model_validate(
        {"id": "m1", "subject": "Hi", "toRecipients": [{"emailAddress": {"address": "a@b.co"}}]}
    )
    written = email_fields(message, MailboxPolicy(), "body")
    assert set(written) <= set(EMAILS.names)


def test_unconfirmed_points_are_marked() -> None:
    inferred = {(d.key, c.name) for d in DECLARED for c in d.columns if c.inferred}
    assert {
        ("people", "employer_name"),
        ("people", "watched"),
        ("party_locations", "party[type]"),
        ("party_locations", "party[id]"),
        ("meetings", "location"),
    } <= inferred
    assert MEETINGS.class_inferred and EMAILS.class_inferred


# ----------------------------------------------------------------------------- the sandbox


@asynccontextmanager
async def on_tenant(
    sandbox_config: dict[str, Any] | None = None, **client_config: Any
) -> AsyncIterator[WorkbooksClient]:
    config = SandboxConfig(sim_controls=True, **(sandbox_config or {}))
    async with running_sandbox(config) as sb:
        identity = WorkbooksIdentity(sb.base_url, SecretStr(ANN_KEY))
        async with WorkbooksClient(identity, dataclasses.replace(FAST, **client_config)) as wb:
            yield wb


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_default_sandbox_meets_every_declaration_and_is_read_once() -> None:
    async with on_tenant() as wb:
        checks = by_name(await verify(wb))
        bad = {n: c.message for n, c in checks.items() if c.status != "ok"}
        # DRAFT is the only stored status the default picklist has: a warning, with the fix
        assert bad == {
            "workbooks.email_status": "emails are stored as DRAFT, the only stored status: a "
            "user could send one again from Workbooks"
        }
        assert checks["workbooks.email_status"].fix
        assert checks["workbooks.login"].as_dict() == {
            "name": "workbooks.login",
            "status": "ok",
            "message": "logged in as Ann Example",
            "fix": "",
        }
        assert checks["workbooks.time_zone"].message.startswith("the user's zone is Europe/London")
        wb.calls.clear()
        found = await tenant_schema(wb)
        assert wb.calls == {}  # cached per client
        assert found.link.kind == "link_type" and found.link.path == "email/email_links"
        assert found.link.verified and found.lead_email_fields == tuple(FAST.lead_email_fields)


async def test_metadata_costs_a_few_requests_once() -> None:
    async with on_tenant() as wb:
        await wb.ensure_login()
        await tenant_schema(wb)
        await tenant_schema(wb)
        # declared classes, then the email link class; two picklists (status, activity type);
        # the newest live and deleted People and Sales Leads (sync.workbooks.owners: an empty
        # tenant has no address to look up among Contact Details, so no fifth read)
        assert dict(wb.calls) == {
            "GET metadata/types": 2,
            "GET picklist_data/Private_PicklistEntry/value/value": 2,
            "GET crm/people": 2,
            "GET crm/sales_leads": 2,
        }


ALTERNATIVES = [
    (
        {"lead_email_fields": ["org_lead_party[main_location[email]]"]},
        {},
        "workbooks.lead_email_fields",
        "warn",
        "leads matched by org_lead_party[main_location[email]] only: "
        "person_lead_party[main_location[email]] does not exist",
    ),
    (
        {"lead_email_fields": ["person_lead_party[email]"]},
        {},
        "workbooks.lead_email_fields",
        "fail",
        "lead email fields: none of person_lead_party[main_location[email]], "
        "org_lead_party[main_location[email]] exist",
    ),
    (
        {"lead_email_fields": ["person_lead_party[email]"]},
        {"lead_email_fields": ("person_lead_party[email]",)},
        "workbooks.lead_email_fields",
        "ok",
        "leads matched by person_lead_party[email]",
    ),
    (
        {"watched_filterable": False},
        {},
        "workbooks.watched_filter",
        "warn",
        "watched records are not synced: `watched` is not filterable on this tenant",
    ),
    (
        {},
        {"watched_filter": False},
        "workbooks.watched_filter",
        "warn",
        "watched records are not synced: WORKBOOKS_WATCHED_FILTER is off",
    ),
    (
        {"party_columns": False},
        {},
        "workbooks.party_columns",
        "warn",
        "Contact Details owners are looked up by id",
    ),
    (
        {"meeting_location_field": None},
        {},
        "workbooks.meeting_location",
        "warn",
        "meeting location is not synced: activity/meetings has no 'location' column",
    ),
    (
        {"meeting_location_field": "venue"},
        {},
        "workbooks.meeting_location",
        "warn",
        "meeting location is not synced: activity/meetings has no 'location' column",
    ),
    (
        {"meeting_location_field": "venue"},
        {"meeting_location_field": "venue"},
        "workbooks.meeting_location",
        "ok",
        "meeting location is 'venue'",
    ),
    (
        {"email_status_values": ["DRAFT", "SEND", "SENT", "FILED"]},
        {},
        "workbooks.email_status",
        "ok",
        "emails are stored as FILED (never sent)",
    ),
    (
        {},
        {"email_status": "FILED"},
        "workbooks.email_status",
        "fail",
        "WORKBOOKS_EMAIL_STATUS=FILED is not in the tenant's list (DRAFT, SEND, SENT)",
    ),
    (
        {"email_link_strategy": "association"},
        {},
        "workbooks.email_link_strategy",
        "ok",
        "association: the email's linked_resource_types/linked_resource_ids arrays",
    ),
    (
        {"email_link_strategy": "render_with"},
        {},
        "workbooks.email_link_strategy",
        "warn",
        "render_with: render_with_resource_type/id when the email is created",
    ),
    (
        {"email_link_strategy": "none"},
        {},
        "workbooks.email_link_strategy",
        "fail",
        "email linking disabled: the tenant's metadata shows no link type",
    ),
    (
        {"email_link_strategy": "association"},
        {"email_link_strategy": "link_type"},
        "workbooks.email_link_strategy",
        "fail",
        "email linking disabled: WORKBOOKS_EMAIL_LINK_STRATEGY=link_type, but the tenant "
        "offers only: association, render_with",
    ),
    (
        {"email_link_path": "email/related_items"},
        {},
        "workbooks.email_link_strategy",
        "ok",
        "link_type: a link record at email/related_items",
    ),
    (
        {},
        {"task_activity_type": "Chore"},
        "workbooks.task_activity_type",
        "warn",
        "activity type 'Chore' is not in the tenant's list (To-do, Phone call, Email, Meeting)",
    ),
]


@pytest.mark.parametrize(("sandbox", "settings", "name", "status", "message"), ALTERNATIVES)
async def test_each_alternative_is_found_and_named(
    sandbox: dict[str, Any], settings: dict[str, Any], name: str, status: str, message: str
) -> None:
    async with on_tenant(sandbox, **settings) as wb:
        check = by_name(await verify(wb))[name]
        assert (check.status, check.message[: len(message)]) == (status, message), check
        if status != "ok":
            assert check.fix or status == "warn"


@pytest.mark.parametrize(
    ("sandbox", "settings", "fix"),
    [
        (
            {"lead_email_fields": ["person_lead_party[email]"]},
            {},
            "set WORKBOOKS_LEAD_EMAIL_FIELDS to one of: person_lead_party[email]",
        ),
        (
            {"meeting_location_field": "venue"},
            {},
            "set WORKBOOKS_MEETING_LOCATION_FIELD to one of: venue",
        ),
        ({}, {"task_activity_type": "Chore"}, "set WORKBOOKS_TASK_ACTIVITY_TYPE to one of: To-do"),
        (
            {"email_link_strategy": "render_with"},
            {"email_link_strategy": "association"},
            "set WORKBOOKS_EMAIL_LINK_STRATEGY to auto or one of: render_with",
        ),
    ],
)
async def test_fixes_list_what_the_tenant_offers(
    sandbox: dict[str, Any], settings: dict[str, Any], fix: str
) -> None:
    async with on_tenant(sandbox, **settings) as wb:
        fixes = [c.fix for c in await verify(wb) if c.status != "ok"]
        assert any(f.startswith(fix) for f in fixes), fixes


async def test_renamed_meeting_location_reads_and_writes_the_tenant_column() -> None:
    async with on_tenant({"meeting_location_field": "venue"}, meeting_location_field="venue") as wb:
        cols = await records.tenant_columns(wb, records.MEETINGS)
        assert "venue" in cols.select(act.MEETING_COLUMNS)
        assert "location" not in cols.select(act.MEETING_COLUMNS)
        row = act.event_to_workbooks(
            {"subject": "S", "location": "Room 4", "start": "2030-01-01T09:00:00Z"}, "UTC"
        )
        [result] = await records.write(wb, records.MEETINGS, [WriteOp.create(row)])
        assert result.ok, result.errors
        [back] = [
            r async for r in records.by_ids(wb, records.MEETINGS, [result.id or 0], ["location"])
        ]
        assert back["location"] == "Room 4"  # read back under the declared name


async def test_a_column_the_tenant_lacks_is_neither_read_nor_written() -> None:
    async with on_tenant({"meeting_location_field": None}) as wb:
        cols = await records.tenant_columns(wb, records.MEETINGS)
        assert "location" not in cols.select(act.MEETING_COLUMNS)
        assert cols.unsynced == {"location": "activity/meetings has no 'location' column"}
        assert "location is not synced: activity/meetings has no 'location' column" in cols.notes
        row = act.event_to_workbooks({"subject": "S", "location": "Room 4"}, "UTC")
        [created] = await records.write(wb, records.MEETINGS, [WriteOp.create(row)])
        assert created.ok, created.errors
        # an update whose only change the tenant cannot take is not sent, and succeeds as is
        only = WriteOp.update(created.id or 0, 0, {"location": "Room 5"})
        wb.calls.clear()
        [same] = await records.write(wb, records.MEETINGS, [only])
        assert same.ok and same.lock_version == 0 and wb.calls == {}
        with pytest.raises(Exception, match="not a declared column"):
            cols.row_out({"nonsense": 1}, create=False)


async def test_without_a_usable_strategy_the_email_check_fails_with_the_reason() -> None:
    async with on_tenant({"email_link_strategy": "none"}) as wb:
        found = await tenant_schema(wb)
        assert not found.link.enabled
        assert found.notes_for("emails") == [
            "email linking is disabled: the tenant's metadata shows no link type, no link "
            "association and no render_with_resource on the email"
        ]


# ----------------------------------------------------------------------------- pure resolution


def _field(name: str, **kw: Any) -> FieldMeta:
    return FieldMeta(name, **kw)


def _type(class_name: str, path: str, fields: list[str], assocs: list[AssocMeta] = ()) -> TypeMeta:  # type: ignore[assignment]
    return TypeMeta(class_name, path, {f: _field(f) for f in fields}, {a.name: a for a in assocs})


def test_related_columns_are_found_through_associations_when_not_listed() -> None:
    location = _type("Private::Crm::PartyLocation", "crm/party_locations", ["email", "town"])
    person = _type(
        "Private::Crm::Person",
        "crm/people",
        ["name"],
        [AssocMeta("main_location", "belongs_to", ("Private::Crm::PartyLocation",))],
    )
    lead = _type(
        "Private::Crm::SalesLead",
        "crm/sales_leads",
        ["org_lead_party[name]"],  # this type lists its org party's columns itself ...
        [
            AssocMeta("person_lead_party", "belongs_to", ("Private::Crm::Person",)),
            AssocMeta("org_lead_party", "belongs_to", ("Private::Crm::Organisation",)),
        ],
    )
    meta = Metadata()
    meta.add([location, person, lead])
    assert meta.find(person, "main_location[email]") == location.fields["email"]
    assert meta.find(person, "main_location[fax]") is None
    assert meta.find(lead, "person_lead_party[main_location[email]]") == location.fields["email"]
    # ... so a column of it that is not listed does not exist
    assert meta.find(lead, "org_lead_party[main_location[email]]") is None
    unloaded = _type("X", "x/y", [], [AssocMeta("party", "belongs_to", ("Private::Crm::Party",))])
    assert meta.find(unloaded, "party[type]") == "unknown"
    assert meta.missing_classes(unloaded, "party[type]") == {"Private::Crm::Party"}


def test_without_metadata_the_declarations_are_used_unverified() -> None:
    found = resolve(None, ClientConfig(), None, "HTTP 404")
    checks = by_name(found.checks)
    assert checks["workbooks.metadata"].status == "warn"
    assert "HTTP 404" in checks["workbooks.metadata"].message
    assert found.link.kind == "link_type" and found.link.path == "email/email_links"
    assert not found.link.verified and found.email_status == "DRAFT"
    assert found.lead_email_fields == ClientConfig().lead_email_fields
    forced = resolve(None, ClientConfig(email_link_strategy="association"))
    assert forced.link.kind == "association"
    off = resolve(None, ClientConfig(email_link_strategy="none"))
    assert not off.link.enabled


def test_a_required_column_missing_makes_the_type_unusable_with_a_named_fix() -> None:
    people = _type("Private::Crm::Person", "crm/people", ["name", "assigned_to"])
    meta = Metadata()
    meta.add([people])
    found = resolve(meta, ClientConfig())
    with pytest.raises(SchemaMismatch) as info:
        found.require("people")
    check = info.value.check
    assert check.status == "fail" and check.name == "workbooks.schema.people"
    assert "'main_location[email]' does not exist" in check.message
    assert "'created_through_reference' does not exist" in check.message
    assert "fix:" in str(info.value)
    with pytest.raises(SchemaMismatch, match="metadata/types has no Private::Activity::Task"):
        found.require("tasks")


async def test_a_restricted_picklist_refuses_an_unknown_task_type() -> None:
    async with on_tenant() as wb:
        meta = await read_metadata(wb)
    task = meta.by_class["Private::Activity::Task"]
    field = task.fields["activity_type"]
    assert field.picklist is not None
    strict = dataclasses.replace(field.picklist, unrestricted=False)
    fields = {**task.fields, "activity_type": dataclasses.replace(field, picklist=strict)}
    meta.by_class[task.class_name] = dataclasses.replace(task, fields=fields)
    values = {strict.picklist_id or 0: ["Call", "Chore"]}
    found = resolve(meta, ClientConfig(), values)
    with pytest.raises(SchemaMismatch, match="WORKBOOKS_TASK_ACTIVITY_TYPE to one of: Call, Chore"):
        found.require("tasks")
    assert resolve(meta, ClientConfig(task_activity_type="Chore"), values).require("tasks")


async def test_link_strategy_choice_follows_the_setting() -> None:
    async with on_tenant({"email_link_strategy": "association"}) as wb:
        meta = await read_metadata(wb)
    email = meta.by_class["Private::Email::Email"]
    assert choose_link(meta, email, "auto", "x")[0].kind == "association"
    assert choose_link(meta, email, "association", "x")[0].kind == "association"
    off, check = choose_link(meta, email, "none", "x")
    assert not off.enabled and check.status == "warn"
    assert choose_link(meta, None, "auto", "x")[1].status == "fail"
    assert SALES_LEADS.column("person_lead_party_id") is not None


async def test_a_refused_lead_lookup_leaves_people_matching_alone() -> None:
    """Without readable metadata the configured lead fields are used as they are; a tenant
    that refuses one of them refuses only the lead lookup, which is noted."""
    from devkit.sandbox.workbooks.control import seed
    from sync.workbooks import resolve_addresses, tenant

    org_only = {"lead_email_fields": ["org_lead_party[main_location[email]]"]}
    async with running_sandbox(SandboxConfig(sim_controls=True, **org_only)) as sb:
        identity = WorkbooksIdentity(sb.base_url, SecretStr(ANN_KEY))
        async with WorkbooksClient(identity, FAST) as wb:
            await wb.ensure_login()
            unverified = resolve(None, wb.config, None, "test: unreadable")
            tenant._CACHE[wb] = (time.monotonic(), unverified)  # as if the metadata were unreadable
            [pat] = seed(
                sb.state, "crm/people", [{"name": "Pat", "main_location[email]": "p@x.com"}]
            )
            found = await resolve_addresses(wb, ["p@x.com"])
            assert [(m.record_type, m.record_id) for m in found["p@x.com"]] == [
                ("Private::Crm::Person", pat["id"])
            ]
            [note] = unverified.notes_for("sales_leads")
            assert note.startswith("Sales Leads are not matched by address:")


async def test_an_unreachable_service_is_a_failing_login_check() -> None:
    from tests.support.local import free_port

    identity = WorkbooksIdentity(f"http://127.0.0.1:{free_port()}", SecretStr(ANN_KEY))
    async with WorkbooksClient(identity, FAST) as wb:
        [check] = await verify(wb)
    assert (check.name, check.status) == ("workbooks.login", "fail")
    assert check.message.startswith("Workbooks did not answer") and "127.0.0.1" in check.fix
