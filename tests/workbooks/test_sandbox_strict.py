"""Strict attribute checking (§1.5, §3.8): with ``_strict_attribute_checking`` set, every
attribute a request names must exist, in selects, every filter form, sorts and writes; reads
fail as real read failures do (HTTP 200, ``success: false``, a ``failures`` text ending in a
support reference), writes fail per object."""

from __future__ import annotations

import json
import re

import pytest

from devkit.sandbox.workbooks.control import seed

from .conftest import Wire
from .sandbox_support import batch, create, read_pairs, strict_sandbox

REFUSED = re.compile(r"^The attribute '(?P<name>[^']+)' given in (?P<where>\S+) is not recognised")
REFERENCE = re.compile(r"Reference: \d{6}-\d{7}-\d{5}$")


def refused(body: dict[str, object]) -> tuple[str, str]:
    """(attribute, where) of a strict read failure, after checking its whole shape."""
    assert body["success"] is False and "data" not in body, body
    failures = body["failures"]
    assert isinstance(failures, list) and len(failures) == 1
    assert REFERENCE.search(failures[0]), failures
    match = REFUSED.match(failures[0])
    assert match, failures
    return match["name"], match["where"]


@pytest.mark.parametrize(
    ("pairs", "name", "where"),
    [
        (read_pairs(["id", "main_location[emial]"]), "main_location[emial]", "_select_columns[]"),
        (read_pairs(["id", "no_such"]), "no_such", "_select_columns[]"),
        (read_pairs(filters=[("nmae", "eq", "Ann")]), "nmae", "_ff[]"),
        (read_pairs(filters=[("party[type]", "eq", "x")]), "party[type]", "_ff[]"),
        ([("_ff", "emial"), ("_ft", "eq"), ("_fc", "a@x")], "emial", "_ff[]"),
        ([("_filter_json", json.dumps([["person_nmae", "ct", "A"]]))], "person_nmae", "_ff[]"),
        (read_pairs(sorts=["last_name"]), "last_name", "_sort"),
        ([("_sort", "surname"), ("_dir", "ASC")], "surname", "_sort"),
    ],
)
async def test_read_naming_an_unknown_attribute_fails(http, pairs, name, where):
    async with strict_sandbox(http) as (sandbox, wire):
        seed(sandbox.state, "crm/people", [{"name": "Ann", "main_location[email]": "a@x"}])
        status, body, _ = await wire.php("crm/people.api", "GET", pairs)
        assert status == 200
        assert refused(body) == (name, where)


async def test_known_columns_pass_and_nested_ones_resolve(http):
    async with strict_sandbox(http) as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann", "main_location[email]": "a@x"}])
        columns = ["id", "name", "main_location[email]", "owner[login_name]", "watched"]
        _, body, _ = await wire.php(
            "crm/people.api",
            "GET",
            read_pairs(columns, [("main_location[email]", "eq", "A@X")], ["name"]),
        )
        assert body["success"] is True
        assert body["data"] == [
            {
                "id": p["id"],
                "name": "Ann",
                "main_location[email]": "a@x",
                "owner[login_name]": "ann@example.com",
                "watched": False,
            }
        ]


async def test_checking_follows_the_request_flag_like_the_real_service(wire: Wire, sandbox):
    """The fixture's session did not ask for strict checking: unknown names are not errors
    (a column reads as null, a write attribute is ignored); the flag on one request makes that
    request strict."""
    _, body, _ = await wire.php("crm/people.api", "GET", read_pairs(["id", "no_such"]))
    assert body["success"] is True
    _, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [*read_pairs(["id", "no_such"]), ("_strict_attribute_checking", "true")],
    )
    assert refused(body) == ("no_such", "_select_columns[]")
    _, body, _ = await wire.php("crm/people.api", "PUT", create({"name": "X", "nmae": "typo"}))
    assert body["success"] is True
    [stored] = sandbox.state.tables["crm/people"].values()
    assert "nmae" not in stored  # not recognised, so not kept


@pytest.mark.parametrize(
    ("mode", "flag", "expect_refusal"),
    [("always", "false", True), ("never", "true", False), ("flag", "true", True)],
)
async def test_configured_checking_modes(http, mode, flag, expect_refusal):
    async with strict_sandbox(http, attribute_checking=mode) as (sandbox, wire):
        pairs = [*read_pairs(["id", "no_such"]), ("_strict_attribute_checking", flag)]
        _, body, _ = await wire.php("crm/people.api", "GET", pairs)
        assert (body["success"] is False) is expect_refusal
        _, body, _ = await wire.php("crm/people.api", "PUT", create({"name": "X", "nmae": "y"}))
        assert (body["success"] is False) is expect_refusal
        if mode == "never":  # the lax sandbox of old keeps what it is sent
            [stored] = sandbox.state.tables["crm/people"].values()
            assert stored["nmae"] == "y"


async def test_write_naming_an_unknown_attribute_fails_per_object(http):
    async with strict_sandbox(http) as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
        _, body, _ = await wire.php(
            "crm/people.api",
            "PUT",
            batch(
                ("PUT", p["id"], 0, {"main_location[emial]": "a@x", "name": "Ann B"}),
                ("POST", 0, 0, {"name": "Bob"}),
            ),
        )
        assert body["success"] is False
        first, second = body["affected_object_information"]
        assert first == {
            "success": False,
            "errors": {"main_location[emial]": ["is not a recognised attribute"]},
            "warnings": [],
        }
        # Every object names every column (the square), so the other object fails too.
        assert second["errors"] == {"main_location[emial]": ["is not a recognised attribute"]}
        assert body["failures"][0] == "Main location[emial]: is not a recognised attribute"
        assert sandbox.state.tables["crm/people"][p["id"]]["name"] == "Ann"
        assert len(sandbox.state.tables["crm/people"]) == 1


async def test_write_with_an_unknown_working_set_filter_fails_whole(http):
    async with strict_sandbox(http) as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
        pairs = [
            ("_ff[]", "ident"),
            ("_ft[]", "eq"),
            ("_fc[]", str(p["id"])),
            *batch(("PUT", p["id"], 0, {"name": "Ann B"}))[4:],  # no id filter of its own
        ]
        status, body, _ = await wire.php("crm/people.api", "PUT", pairs)
        assert status == 200
        assert refused(body) == ("ident", "_ff[]")
        assert sandbox.state.tables["crm/people"][p["id"]]["name"] == "Ann"


async def test_strict_write_ignores_columns_that_are_not_writable(http):
    """Known but read-only columns (``object_ref``, ``main_location_id``) are not errors, and
    change nothing; ``render_with_*`` are create-only."""
    async with strict_sandbox(http) as (_, wire):
        _, body, _ = await wire.php(
            "crm/people.api",
            "PUT",
            create({"name": "Ann", "object_ref": "PERS-999", "main_location_id": "77"}),
        )
        assert body["success"] is True, body
        [created] = body["affected_objects"]
        assert created["object_ref"] == f"PERS-{created['id']}"
        assert created.get("main_location_id") is None
        _, body, _ = await wire.php(
            "email/emails.api",
            "PUT",
            create({"subject": "S", "status": "DRAFT", "render_with_template_name": "T"}),
        )
        [email] = body["affected_objects"]
        _, body, _ = await wire.php(
            "email/emails.api",
            "PUT",
            batch(("PUT", email["id"], 0, {"render_with_template_name": "Other"})),
        )
        assert body["success"] is True
        assert body["affected_objects"] == [{"id": email["id"], "lock_version": 0}]


async def test_not_filterable_field_is_refused_even_without_the_flag(wire: Wire, sandbox):
    _, body, _ = await wire.php(
        "email/emails.api", "GET", read_pairs(filters=[("rfc822", "ct", "x")])
    )
    assert body["success"] is False
    assert body["failures"][0].startswith(
        "The attribute 'rfc822' of Private::Email::Email cannot be used in a filter."
    )


@pytest.mark.parametrize(
    "endpoint", ["crm/person_queues", "activity/activities", "admin/picklist_entries"]
)
async def test_read_only_and_admin_endpoints_are_checked_too(http, endpoint):
    async with strict_sandbox(http) as (_, wire):
        _, body, _ = await wire.php(f"{endpoint}.api", "GET", read_pairs(["id", "nmae"]))
        assert refused(body) == ("nmae", "_select_columns[]")
        _, body, _ = await wire.php(f"{endpoint}.api", "GET", read_pairs(["id", "name"]))
        assert body["success"] is True
        assert body["data"] or endpoint == "activity/activities"  # queues, picklists: seeded


async def test_metadata_select_columns_are_checked(http):
    async with strict_sandbox(http) as (_, wire):
        _, body, _ = await wire.php("metadata/types.api", "GET", [("_select_columns[]", "feilds")])
        assert refused(body) == ("feilds", "_select_columns[]")
