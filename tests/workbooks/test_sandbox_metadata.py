"""``metadata/types`` (§2.9, README "Metadata"): the documented shape for every type the sandbox
serves, and agreement with behaviour: a column the metadata lists is accepted by a strict read,
a filterable one by a filter, and the configured alternatives show in it."""

from __future__ import annotations

from typing import Any

import pytest

from devkit.sandbox.workbooks.metadata import METADATA_COLUMNS

from .sandbox_support import create, read_pairs, strict_sandbox

FIELD_KEYS = {
    "name",
    "title",
    "datatype",
    "default_value",
    "is_createable",
    "is_updateable",
    "is_filterable",
    "is_nullable",
    "required",
}
ASSOCIATION_KEYS = {
    "name",
    "title",
    "description",
    "datatype",
    "class_names",
    "foreign_key_name",
    "polymorphic",
    "through",
    "minimum_n",
    "maximum_n",
}
PICKLIST_KEYS = {
    "auto_create",
    "class_name",
    "display_field",
    "value_field",
    "name",
    "picklist_id",
    "path",
    "return_fields",
    "find_method",
    "unrestricted",
}
SERVED = {
    "crm/people": "Private::Crm::Person",
    "crm/organisations": "Private::Crm::Organisation",
    "crm/party_locations": "Private::Crm::PartyLocation",
    "crm/sales_leads": "Private::Crm::SalesLead",
    "crm/cases": "Private::Crm::Case",
    "crm/opportunities": "Private::Crm::Opportunity",
    "activity/tasks": "Private::Activity::Task",
    "activity/meetings": "Private::Activity::Meeting",
    "activity/activities": "Private::Activity::Activity",
    "activity/activity_links": "Private::Activity::ActivityLink",
    "notes": "Private::Note",
    "email/emails": "Private::Email::Email",
    "email/email_links": "Private::Email::EmailLink",
    "admin/picklists": "Private::Picklist",
    "admin/picklist_entries": "Private::PicklistEntry",
    "admin/triggers/webhook_subscriptions": "Private::Automation::WebhookSubscription",
    "crm/person_queues": "Private::Crm::PersonQueue",
    "crm/organisation_queues": "Private::Crm::OrganisationQueue",
    "crm/sales_lead_queues": "Private::Crm::SalesLeadQueue",
    "crm/case_queues": "Private::Crm::CaseQueue",
    "crm/opportunity_queues": "Private::Crm::OpportunityQueue",
    "activity/activity_queues": "Private::Activity::ActivityQueue",
}


async def metadata(wire: Any, *classes: str, columns: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    pairs = [("class_names[]", c) for c in classes] + [("_select_columns[]", c) for c in columns]
    status, body, _ = await wire.php("metadata/types.api", "GET", pairs)
    assert status == 200 and body["success"] is True, body
    assert body["total"] == len(body["data"])
    data: list[dict[str, Any]] = body["data"]
    return data


def fields_of(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in entry["fields"]}


def associations_of(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in entry["associations"]}


async def test_every_served_type_has_the_documented_shape(http):
    async with strict_sandbox(http) as (_, wire):
        data = await metadata(wire)
        assert {e["controller_path"]: e["class_name"] for e in data} == SERVED
        for entry in data:
            assert list(entry) == list(METADATA_COLUMNS)
            assert entry["human_class_name"] and entry["human_class_name_plural"]
            assert entry["instances_described_by"]
            assert all(set(a) == {"name", "permitted"} for a in entry["actions"])
            assert entry["fields"], entry["class_name"]
            for f in entry["fields"]:
                assert FIELD_KEYS <= set(f) <= FIELD_KEYS | {"picklist"}, f
                flags = ("is_createable", "is_updateable", "is_filterable", "is_nullable")
                assert all(isinstance(f[k], bool) for k in (*flags, "required"))
                if "picklist" in f:
                    assert set(f["picklist"]) == PICKLIST_KEYS
            for a in entry["associations"]:
                assert set(a) == ASSOCIATION_KEYS, a
                assert a["datatype"] in ("belongs_to", "has_one", "has_many")
                assert a["polymorphic"] or len(a["class_names"]) == 1
            names = fields_of(entry)
            assert names["id"]["is_createable"] is False and names["id"]["is_filterable"]


@pytest.mark.parametrize("endpoint", sorted(SERVED))
async def test_metadata_agrees_with_what_reads_accept(http, endpoint):
    """Every listed column can be selected and sorted on in one strict read; every filterable
    one can be filtered on; every other one is refused as a filter."""
    async with strict_sandbox(http) as (_, wire):
        [entry] = await metadata(wire, SERVED[endpoint])
        fields = fields_of(entry)
        _, body, _ = await wire.php(
            f"{endpoint}.api", "GET", read_pairs(list(fields), sorts=list(fields)[:3])
        )
        assert body["success"] is True, body
        for name, f in fields.items():
            op = "not_blank" if f["datatype"] != "boolean" else "true"
            _, body, _ = await wire.php(
                f"{endpoint}.api", "GET", read_pairs(filters=[(name, op, "")])
            )
            assert body["success"] is f["is_filterable"], (name, body)


async def test_class_names_and_select_columns_narrow_the_answer(http):
    async with strict_sandbox(http) as (_, wire):
        data = await metadata(
            wire,
            "Private::Crm::Person",
            "Private::Crm::Case",
            columns=("class_name", "controller_path"),
        )
        assert data == [
            {"class_name": "Private::Crm::Person", "controller_path": "crm/people"},
            {"class_name": "Private::Crm::Case", "controller_path": "crm/cases"},
        ]


async def test_person_fields_and_associations(http):
    async with strict_sandbox(http) as (_, wire):
        [person] = await metadata(wire, "Private::Crm::Person")
        fields, assocs = fields_of(person), associations_of(person)
        assert fields["name"]["required"] is True
        assert fields["main_location[email]"]["datatype"] == "string"
        assert fields["main_location[email]"]["is_updateable"] is True
        assert fields["object_ref"]["is_createable"] is False
        assert fields["watched"]["is_filterable"] is True
        assert assocs["main_location"] == {
            "name": "main_location",
            "title": "Main location",
            "description": assocs["main_location"]["description"],
            "datatype": "belongs_to",
            "class_names": ["Private::Crm::PartyLocation"],
            "foreign_key_name": "main_location_id",
            "polymorphic": False,
            "through": None,
            "minimum_n": 0,
            "maximum_n": 1,
        }
        assert assocs["party_locations"]["datatype"] == "has_many"


@pytest.mark.parametrize(
    ("statuses", "stored"),
    [(["DRAFT", "SEND", "SENT"], None), (["DRAFT", "SEND", "SENT", "FILED"], "FILED")],
)
async def test_email_status_picklist_in_metadata_entries_and_writes(http, statuses, stored):
    async with strict_sandbox(http, email_status_values=statuses) as (_, wire):
        [email] = await metadata(wire, "Private::Email::Email")
        status = fields_of(email)["status"]
        assert status["datatype"] == "picklist_data"
        picklist = status["picklist"]
        assert picklist["name"] == "Email Statuses" and picklist["unrestricted"] is False
        _, body, _ = await wire.php(
            "admin/picklist_entries.api",
            "GET",
            read_pairs(["value"], [("picklist_id", "eq", str(picklist["picklist_id"]))]),
        )
        assert [r["value"] for r in body["data"]] == statuses
        # The picklist's own path serves the same values (and the documented ``query``).
        path, pid = f"{picklist['path']}.api", str(picklist["picklist_id"])
        _, body, _ = await wire.php(path, "GET", [("picklist_id", pid)])
        assert body["data"] == [{"value": v} for v in statuses]
        _, body, _ = await wire.php(path, "GET", [("picklist_id", pid), ("query", "se")])
        assert body["data"] == [{"value": "SEND"}, {"value": "SENT"}]
        status_code, _, _ = await wire.php(
            "picklist_data/Private_Crm_Person/id/name.api", "GET", []
        )
        assert status_code == 404
        _, body, _ = await wire.php(
            "email/emails.api", "PUT", create({"subject": "S", "status": "FILED"})
        )
        if stored is None:
            assert body["success"] is False
            assert body["affected_object_information"][0]["errors"] == {
                "status": ["is not included in the list"]
            }
        else:
            assert body["affected_objects"][0]["status"] == stored


@pytest.mark.parametrize("filterable", [True, False])
async def test_watched_filterability_shows_and_is_enforced(http, filterable):
    async with strict_sandbox(http, watched_filterable=filterable) as (_, wire):
        [person] = await metadata(wire, "Private::Crm::Person")
        assert fields_of(person)["watched"]["is_filterable"] is filterable
        _, body, _ = await wire.php(
            "crm/people.api", "GET", read_pairs(filters=[("watched", "true", "")])
        )
        assert body["success"] is filterable
        if not filterable:
            assert (
                "'watched' of Private::Crm::Person cannot be used in a filter"
                in (body["failures"][0])
            )
        _, body, _ = await wire.php("crm/people.api", "GET", read_pairs(["watched"]))
        assert body["success"] is True  # still readable


@pytest.mark.parametrize(
    "lead_fields",
    [
        ["person_lead_party[main_location[email]]", "org_lead_party[main_location[email]]"],
        ["org_lead_party[main_location[email]]"],
        ["person_lead_party[email]"],
    ],
)
async def test_lead_email_fields_exist_only_as_configured(http, lead_fields):
    candidates = [
        "person_lead_party[main_location[email]]",
        "org_lead_party[main_location[email]]",
        "person_lead_party[email]",
    ]
    async with strict_sandbox(http, lead_email_fields=lead_fields) as (_, wire):
        [lead] = await metadata(wire, "Private::Crm::SalesLead")
        fields = fields_of(lead)
        assert [c for c in candidates if c in fields] == [c for c in candidates if c in lead_fields]
        for name in candidates:
            _, body, _ = await wire.php(
                "crm/sales_leads.api", "GET", read_pairs(filters=[(name, "eq", "a@x")])
            )
            assert body["success"] is (name in lead_fields), name
        assert "org_lead_party[main_location[town]]" in fields  # the rest of it stays


@pytest.mark.parametrize("location", ["location", "place", None])
async def test_meeting_location_field(http, location):
    async with strict_sandbox(http, meeting_location_field=location) as (_, wire):
        [meeting] = await metadata(wire, "Private::Activity::Meeting")
        names = set(fields_of(meeting))
        assert {"location", "place"} & names == ({location} if location else set())
        attrs = {"name": "M", "start": "2030-01-01T10:00:00Z"}
        if location:
            attrs[location] = "Room 1"
        _, body, _ = await wire.php("activity/meetings.api", "PUT", create(attrs))
        assert body["success"] is True
        _, body, _ = await wire.php(
            "activity/meetings.api", "PUT", create({"name": "M", "location": "Room 1"})
        )
        assert body["success"] is (location == "location")


@pytest.mark.parametrize("party_columns", [True, False])
async def test_contact_details_party_columns(http, party_columns):
    async with strict_sandbox(http, party_columns=party_columns) as (_, wire):
        [row] = await metadata(wire, "Private::Crm::PartyLocation")
        assert ("party[type]" in fields_of(row)) is party_columns
        assert ("party" in associations_of(row)) is party_columns
        _, body, _ = await wire.php(
            "crm/party_locations.api", "GET", read_pairs(["party_id", "party[type]"])
        )
        assert body["success"] is party_columns


@pytest.mark.parametrize(
    ("strategy", "link_type", "email_associations", "email_fields"),
    [
        ("link_type", True, {"render_with_resource", "email_links"}, set()),
        (
            "association",
            False,
            {"render_with_resource", "email_links", "linked_resources"},
            {"linked_resource_types", "linked_resource_ids"},
        ),
        ("render_with", False, {"render_with_resource"}, set()),
        ("none", False, set(), set()),
    ],
)
async def test_email_link_mechanism_shows_in_metadata(
    http, strategy, link_type, email_associations, email_fields
):
    async with strict_sandbox(http, email_link_strategy=strategy) as (_, wire):
        classes = {e["class_name"]: e for e in await metadata(wire)}
        assert ("Private::Email::EmailLink" in classes) is link_type
        email = classes["Private::Email::Email"]
        assocs = associations_of(email)
        own = {"owner", "created_by_user", "updated_by_user"}
        assert set(assocs) - own == email_associations
        if "linked_resources" in assocs:
            linked = assocs["linked_resources"]
            assert linked["polymorphic"] is True and linked["through"] == "email_links"
            assert "Private::Crm::Person" in linked["class_names"]
        assert {"linked_resource_types", "linked_resource_ids"} & set(
            fields_of(email)
        ) == email_fields


@pytest.mark.parametrize("allowed", [True, False])
async def test_webhook_permission_shows_in_actions(http, allowed):
    async with strict_sandbox(http, webhooks_allowed=allowed) as (_, wire):
        [subs] = await metadata(wire, "Private::Automation::WebhookSubscription")
        assert {a["name"]: a["permitted"] for a in subs["actions"]}["create"] is allowed
        assert {f["name"] for f in subs["fields"]} >= {
            "name",
            "description",
            "callback_url",
            "enabled",
            "trigger_id",
        }
