"""The sandbox's wire handling, driven by hand-built requests shaped like the public bindings
(PHP: everything in the POST body; VBA: filters in the query string; Pipedream: JSON)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import aiohttp
import pytest

from devkit.sandbox.workbooks import SandboxConfig, create_app, running_sandbox
from devkit.sandbox.workbooks.control import edit_as, seed, set_clock, set_watched
from devkit.sandbox.workbooks.params import WireParams
from devkit.sandbox.workbooks.store import ReadContext
from devkit.sandbox.workbooks.writes import PAUSE_EVERY, WriteContext, handle_write
from tests.support.local import serving

from .conftest import UA, Wire

STALE = "This record cannot be saved since it has already been updated elsewhere."


def create_pairs(*people: dict[str, str]) -> list[tuple[str, str]]:
    """A PHP-binding create batch: ``id eq 0`` working set, square columns, sorted names."""
    names = sorted({k for p in people for k in p})
    pairs = [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", "0")]
    for person in people:
        pairs += [("__method[]", "POST"), ("id[]", "0"), ("lock_version[]", "0")]
        pairs += [(f"{n}[]", person.get(n, ":no_value:")) for n in names]
    return pairs


async def test_php_style_create_returns_documented_shape(wire: Wire):
    status, body, _ = await wire.php(
        "crm/people.api",
        "PUT",
        create_pairs(
            {
                "name": "Ann One",
                "main_location[email]": "ann1@example.com",
                "created_through_reference": "OL:1",
            },
            {"name": "Bob Two"},
        ),
    )
    assert status == 200
    assert body["success"] is True and body["flash"] == "saved successfully"
    first, second = body["affected_objects"]
    assert first["object_ref"] == f"PERS-{first['id']}" and first["lock_version"] == 0
    assert first["main_location[email]"] == "ann1@example.com"
    assert first["created_through"] == "WireTest"  # from _application_name at login
    assert first["assigned_to"] == 2 and first["watched"] is False
    assert second["id"] == first["id"] + 1
    assert (
        body["affected_object_information"] == [{"success": True, "errors": [], "warnings": []}] * 2
    )


async def test_vba_style_filters_in_query_columns_in_body(wire: Wire, sandbox):
    [person] = seed(sandbox.state, "crm/people", [{"name": "Ann", "main_location[email]": "a@x"}])
    query = "&" + urlencode([("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", str(person["id"]))])
    status, body, _ = await wire.php(
        "crm/people.api",
        "PUT",
        [
            ("__method[]", "PUT"),
            ("id[]", str(person["id"])),
            ("lock_version[]", "0"),
            ("main_location[email][]", "new@x"),
            ("name[]", ":no_value:"),
        ],
        query=query,
    )
    assert status == 200 and body["success"], body
    [obj] = body["affected_objects"]
    assert obj["lock_version"] == 1 and obj["main_location[email]"] == "new@x"
    assert "name" not in obj  # only changed attributes come back
    row = sandbox.state.tables["crm/party_locations"][
        sandbox.state.tables["crm/people"][person["id"]]["main_location_id"]
    ]
    assert row["email"] == "new@x"  # nested write landed in the Contact Details row


async def test_json_body_read_and_flattened_nested_key(wire: Wire, sandbox):
    seed(
        sandbox.state,
        "crm/sales_leads",
        [{"person_lead_party[name]": "Lee", "org_lead_party[main_location[email]]": "o@l.com"}],
    )
    url = f"{sandbox.base_url}/crm/sales_leads.api"
    payload = {
        "_method": "GET",
        "client": "api",
        "_ff": ["org_lead_party[main_location][email]"],
        "_ft": ["eq"],
        "_fc": ["O@L.com"],
        "_select_columns": ["org_lead_party[main_location][email]", "person_lead_party_id"],
    }
    async with wire.http.post(
        url, json=payload, headers={"Cookie": f"Workbooks-Session={wire.cookie}"}
    ) as resp:
        body = await resp.json()
    assert body["data"] == [
        {
            "org_lead_party[main_location[email]]": "o@l.com",
            "person_lead_party_id": body["data"][0]["person_lead_party_id"],
        }
    ]


async def test_limit_is_ignored_without_start(wire: Wire, sandbox):
    seed(sandbox.state, "crm/organisations", [{"name": f"Org {i:03}"} for i in range(120)])
    _, body, _ = await wire.php("crm/organisations.api", "GET", [("_limit", "5")])
    assert len(body["data"]) == 100 and body["total"] == 120
    _, body, _ = await wire.php(
        "crm/organisations.api", "GET", [("_start", "115"), ("_limit", "10")]
    )
    assert [r["name"] for r in body["data"]] == [f"Org {i}" for i in range(115, 120)]


async def test_multi_key_sort_select_columns_and_skip_total(wire: Wire, sandbox):
    seed(
        sandbox.state,
        "crm/people",
        [
            {"name": "b", "person_job_title": "X"},
            {"name": "a", "person_job_title": "Y"},
            {"name": "c", "person_job_title": "X"},
        ],
    )
    _, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [
            ("_sort[]", "person_job_title"),
            ("_dir[]", "DESC"),
            ("_sort[]", "name"),
            ("_dir[]", "ASC"),
            ("_select_columns[]", "name"),
            ("_select_columns[]", "no_such"),
            ("_start", "0"),
            ("_limit", "2"),
            ("__skip_total_rows", "true"),
        ],
    )
    assert body["data"] == [{"name": "a", "no_such": None}, {"name": "b", "no_such": None}]
    assert body["total"] == 2


@pytest.mark.parametrize(
    ("field", "op", "crit", "expected"),
    [
        ("name", "eq", "ann,BOB", ["Ann", "Bob"]),
        ("name", "eq", "Smith\\, Jo", ["Smith, Jo"]),
        ("name", "xeq", "ann", ["Ann"]),
        ("name", "ne", "Ann", ["Bob", "Smith, Jo"]),
        ("name", "bg", "b", ["Bob"]),
        ("name", "nbg", "b", ["Ann", "Smith, Jo"]),
        ("name", "ct", "MIT", ["Smith, Jo"]),
        ("name", "nct", "o", ["Ann"]),
        ("person_job_title", "blank", "", ["Bob", "Smith, Jo"]),
        ("person_job_title", "not_blank", "", ["Ann"]),
        ("no_email_soliciting", "true", "", ["Bob"]),
        ("no_email_soliciting", "false", "", ["Ann", "Smith, Jo"]),
        ("no_email_soliciting", "eq", "1", ["Bob"]),
        ("id", "gt", "1", ["Bob", "Smith, Jo"]),
        ("id", "le", "2", ["Ann", "Bob"]),
        ("id", "between", "JSON([2,3])", ["Bob", "Smith, Jo"]),
        ("id", "not_between", "JSON([2,3])", ["Ann"]),
        ("created_at", "eq", "2024-11-26", ["Ann", "Bob"]),
        ("created_at", "le", "2024-11-26", ["Ann", "Bob"]),
        ("created_at", "gt", "2024-11-26", ["Smith, Jo"]),
        ("created_at", "ge", "2024-11-26T10:00:01Z", ["Bob", "Smith, Jo"]),
        ("created_at", "lt", "Tue Nov 26 10:00:01 UTC 2024", ["Ann"]),
        ("created_at", "eq", "1732615200", ["Ann"]),
        ("created_at", "today", "", ["Smith, Jo"]),
        ("created_at", "lt_today", "", ["Ann", "Bob"]),
        ("created_at", "between", "JSON([2024-11-26,2024-11-26])", ["Ann", "Bob"]),
    ],
)
async def test_filter_operators(wire: Wire, sandbox, field, op, crit, expected):
    state = sandbox.state
    set_clock(state, freeze="2024-11-26T10:00:00Z")
    seed(state, "crm/people", [{"name": "Ann", "person_job_title": "CEO"}])
    set_clock(state, advance_seconds=1)
    seed(state, "crm/people", [{"name": "Bob", "no_email_soliciting": True}])
    set_clock(state, advance_seconds=86400)
    seed(state, "crm/people", [{"name": "Smith, Jo"}])
    _, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [("_ff[]", field), ("_ft[]", op), ("_fc[]", crit), ("_select_columns[]", "name")],
    )
    assert [r["name"] for r in body["data"]] == expected


async def test_single_form_filter_json_and_fm_expressions(wire: Wire, sandbox):
    seed(sandbox.state, "crm/people", [{"name": n} for n in ("Ann", "Bob", "Cy", "Di")])

    async def names(pairs):
        _, body, _ = await wire.php(
            "crm/people.api", "GET", [*pairs, ("_select_columns[]", "name")]
        )
        return [r["name"] for r in body["data"]]

    assert await names([("_ff", "name"), ("_ft", "eq"), ("_fc", "Cy")]) == ["Cy"]
    assert await names([("_filter_json", '[["name","bg","a"],["id","lt","5"]]')]) == ["Ann"]
    f = [
        ("_ff[]", "name"),
        ("_ft[]", "eq"),
        ("_fc[]", "Ann"),
        ("_ff[]", "name"),
        ("_ft[]", "eq"),
        ("_fc[]", "Bob"),
        ("_ff[]", "id"),
        ("_ft[]", "le"),
        ("_fc[]", "1"),
    ]
    assert await names([*f, ("_fm[]", "or")]) == ["Ann", "Bob"]
    assert await names([*f, ("_fm", "(1 or 2) and not 3")]) == ["Bob"]
    assert await names([*f, ("_fm", "1 XOR 3")]) == []
    assert await names([*f, ("_fm", "!(1 OR 2)")]) == ["Cy", "Di"]
    status, body, _ = await wire.php("crm/people.api", "GET", [*f, ("_fm", "1 AND 4")])
    assert status == 406 and body["success"] is False


async def test_soft_deleted_rows_hidden_unless_is_deleted_filtered(wire: Wire, sandbox):
    a, b = seed(sandbox.state, "crm/people", [{"name": "Keep"}, {"name": "Gone"}])
    _, body, _ = await wire.php(
        "crm/people.api",
        "PUT",
        [
            ("_ff[]", "id"),
            ("_ft[]", "eq"),
            ("_fc[]", str(b["id"])),
            ("__method[]", "DELETE"),
            ("id[]", str(b["id"])),
            ("lock_version[]", "0"),
            ("name[]", ":no_value:"),
        ],
    )
    assert body["success"] and body["affected_objects"] == [{"id": b["id"], "lock_version": 0}]
    _, body, _ = await wire.php("crm/people.api", "GET", [("_select_columns[]", "name")])
    assert [r["name"] for r in body["data"]] == ["Keep"]
    _, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [
            ("_ff[]", "is_deleted"),
            ("_ft[]", "true"),
            ("_fc[]", ""),
            ("_ff[]", "is_deleted"),
            ("_ft[]", "false"),
            ("_fc[]", ""),
            ("_fm", "1 OR 2"),
            ("_select_columns[]", "name"),
            ("_select_columns[]", "is_deleted"),
        ],
    )
    assert body["data"] == [
        {"name": "Keep", "is_deleted": False},
        {"name": "Gone", "is_deleted": True},
    ]
    # a deleted record is "not found" for further writes
    _, body, _ = await wire.php(
        "crm/people.api",
        "PUT",
        [
            ("_ff[]", "id"),
            ("_ft[]", "eq"),
            ("_fc[]", str(b["id"])),
            ("__method[]", "PUT"),
            ("id[]", str(b["id"])),
            ("lock_version[]", "0"),
            ("name[]", "Back"),
        ],
    )
    assert body["success"] is False and "not be found" in body["failures"][0]
    assert a["id"] != b["id"]


async def test_datetime_output_formats(wire: Wire, sandbox):
    set_clock(sandbox.state, freeze="2025-09-07T13:21:15.750Z")
    seed(sandbox.state, "crm/people", [{"name": "Ann"}])
    _, body, _ = await wire.php("crm/people.api", "GET", [("_select_columns[]", "updated_at")])
    assert body["data"] == [{"updated_at": "Sun Sep 07 13:21:15 UTC 2025"}]
    _, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [("_select_columns[]", "updated_at"), ("_json_output_datetime_format", "%s")],
    )
    assert body["data"] == [{"updated_at": "1757251275"}]


async def test_non_square_and_malformed_arrays(wire: Wire):
    status, body, _ = await wire.php(
        "crm/people.api",
        "PUT",
        [
            ("_ff[]", "id"),
            ("_ft[]", "eq"),
            ("_fc[]", "0"),
            ("__method[]", "POST"),
            ("id[]", "0"),
            ("lock_version[]", "0"),
            ("__method[]", "POST"),
            ("id[]", "0"),
            ("lock_version[]", "0"),
            ("name[]", "Only one name"),
        ],
    )
    assert status == 200 and body["success"] is False
    assert "non-square" in body["failures"][0]
    status, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [("_ff[]", "name"), ("_ft[]", "eq"), ("_fc[]", "a"), ("_ff[]", "id")],
    )
    assert status == 406 and body["success"] is False
    status, body, _ = await wire.php(
        "crm/people.api", "GET", [("_ff[]", "name"), ("_ft[]", "nblank"), ("_fc[]", "")]
    )
    assert status == 406 and "nblank" in body["failures"][0]


async def test_batch_cap_is_enforced_and_configurable(wire: Wire, http):
    people = [{"name": f"P{i}"} for i in range(101)]
    _, body, _ = await wire.php("crm/people.api", "PUT", create_pairs(*people))
    assert body["success"] is False and "maximum 100" in body["failures"][0]
    async with running_sandbox(SandboxConfig(batch_cap=None)) as uncapped:
        w = Wire(http, uncapped.base_url)
        await w.login()
        _, body, _ = await w.php("crm/people.api", "PUT", create_pairs(*people))
        assert body["success"] and len(body["affected_objects"]) == 101


def update_pairs(*objs: tuple[int, int, str]) -> list[tuple[str, str]]:
    pairs = [("_fm", "or")]
    for record_id, _, _ in objs:
        pairs += [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", str(record_id))]
    for record_id, lock, name in objs:
        pairs += [
            ("__method[]", "PUT"),
            ("id[]", str(record_id)),
            ("lock_version[]", str(lock)),
            ("name[]", name),
        ]
    return pairs


async def test_all_or_nothing_unless_per_object_transactions(wire: Wire, sandbox):
    a, b = seed(sandbox.state, "crm/people", [{"name": "A"}, {"name": "B"}])
    edit_as(sandbox.state, "crm/people", b["id"], {"name": "B2"}, user_id=29199)
    pairs = update_pairs((a["id"], 0, "A-new"), (b["id"], 0, "B-new"))
    _, body, _ = await wire.php("crm/people.api", "PUT", pairs)
    assert body["success"] is False and body["failures"] == [STALE]
    assert body["affected_object_information"][1]["errors"] == {"lock_version": [STALE]}
    assert sandbox.state.tables["crm/people"][a["id"]]["name"] == "A"  # rolled back
    _, body, _ = await wire.php(
        "crm/people.api", "PUT", [*pairs, ("_per_object_transactions", "true")]
    )
    assert body["success"] is False
    assert [i["success"] for i in body["affected_object_information"]] == [True, False]
    assert sandbox.state.tables["crm/people"][a["id"]]["name"] == "A-new"  # committed


async def test_lock_version_bumps_only_on_real_change(wire: Wire, sandbox):
    [p] = seed(sandbox.state, "crm/people", [{"name": "Same"}])
    _, body, _ = await wire.php("crm/people.api", "PUT", update_pairs((p["id"], 0, "Same")))
    assert body["affected_objects"] == [{"id": p["id"], "lock_version": 0}]
    _, body, _ = await wire.php("crm/people.api", "PUT", update_pairs((p["id"], 0, "Diff")))
    assert body["affected_objects"][0]["lock_version"] == 1
    assert body["affected_objects"][0]["name"] == "Diff"


async def test_working_set_and_required_fields(wire: Wire, sandbox):
    a, b = seed(sandbox.state, "crm/people", [{"name": "A"}, {"name": "B"}])
    pairs = [
        ("_ff[]", "id"),
        ("_ft[]", "eq"),
        ("_fc[]", str(a["id"])),  # b not selected
        ("__method[]", "PUT"),
        ("id[]", str(b["id"])),
        ("lock_version[]", "0"),
        ("name[]", "B2"),
    ]
    _, body, _ = await wire.php("crm/people.api", "PUT", pairs)
    assert body["success"] is False and "not be found" in body["failures"][0]
    _, body, _ = await wire.php("crm/people.api", "PUT", create_pairs({"name": ""}))
    assert body["failures"] == ["Name: can't be blank"]


async def test_strict_attribute_checking(wire: Wire):
    pairs = [*create_pairs({"name": "X", "nmae": "typo"}), ("_strict_attribute_checking", "1")]
    _, body, _ = await wire.php("crm/people.api", "PUT", pairs)
    assert body["success"] is False
    assert body["affected_object_information"][0]["errors"] == {
        "nmae": ["is not a recognised attribute"]
    }


async def test_session_rules_token_logout_and_idle_expiry(wire: Wire, sandbox):
    token, wire.token = wire.token, "wrong"
    status, body, _ = await wire.php("crm/people.api", "PUT", create_pairs({"name": "X"}))
    assert status == 406 and body["success"] is False
    wire.token = token
    status, body, _ = await wire.php("crm/people.api", "PUT", create_pairs({"name": "X"}))
    assert status == 200 and body["success"]
    set_clock(sandbox.state, advance_seconds=8 * 3600 + 5)
    status, _, resp = await wire.php("crm/people.api", "GET", [])
    assert status == 302 and resp.headers["Location"] == "/login"
    await wire.login()
    async with wire.http.post(
        f"{sandbox.base_url}/logout",
        allow_redirects=False,
        headers={"Cookie": f"Workbooks-Session={wire.cookie}"},
    ) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/"
    status, _, _ = await wire.php("crm/people.api", "GET", [])
    assert status == 302


async def test_api_key_per_request_and_login_failures(http, sandbox):
    w = Wire(http, sandbox.base_url)
    status, body, _ = await w.php(
        "crm/people.api",
        "PUT",
        [*create_pairs({"name": "Keyed"}), ("api_key", "bob-api-key"), ("_api_version", "1")],
    )
    assert status == 200 and body["success"] and body["affected_objects"][0]["assigned_to"] == 3
    status, body, _ = await w.php("crm/people.api", "GET", [("api_key", "nope")])
    assert status == 401 and body["success"] is False
    async with http.post(
        f"{sandbox.base_url}/login.api",
        data=[("api_key", "nope"), ("client", "api"), ("api_version", "1")],
    ) as resp:
        assert resp.status == 401
        assert (await resp.json())["failure_reason"] == "unrecognised_name_or_password"
    async with (
        aiohttp.ClientSession() as bare,
        bare.post(
            f"{sandbox.base_url}/login.api",
            data=[("api_key", "ann-api-key")],
            skip_auto_headers=["User-Agent"],
        ) as resp,
    ):
        assert resp.status == 403
        assert (await resp.json())["failure_reason"] == "user_agent_required"


async def test_my_queues_only_without_fast_login(http, sandbox):
    w = Wire(http, sandbox.base_url)
    assert "my_queues" not in await w.login()
    body = await w.login(_fast_login="false")
    assert body["my_queues"]["Private::Crm::PersonQueue"] == 2
    _, body, _ = await w.php(
        "crm/person_queues.api",
        "GET",
        [("_ff[]", "queue_type"), ("_ft[]", "eq"), ("_fc[]", "Unassigned")],
    )
    assert [r["id"] for r in body["data"]] == [1]


async def test_unknown_path_and_wrong_verb(wire: Wire):
    status, _, _ = await wire.php("cases.api", "GET", [])
    assert status == 404
    status, _, _ = await wire.php("activity/activities.api", "PUT", create_pairs({"name": "x"}))
    assert status == 405


async def test_sim_controls_are_off_by_default(http):
    async with serving(create_app()) as base:
        async with http.post(f"{base}/_sim/reset") as resp:
            assert resp.status == 404
        async with http.get(f"{base}/_sim/state") as resp:
            assert resp.status == 404


async def test_sim_controls_over_http(http, sandbox):
    async with http.post(
        f"{sandbox.base_url}/_sim/seed",
        json={"endpoint": "crm/cases", "records": [{"name": "Broken"}]},
    ) as resp:
        created = (await resp.json())["created"]
    assert created[0]["object_ref"] == f"CASE-{created[0]['id']}"
    async with http.post(
        f"{sandbox.base_url}/_sim/edit",
        json={"endpoint": "crm/cases", "id": created[0]["id"], "changes": {"name": "Fixed"}},
    ) as r:
        assert (await r.json())["affected"]["lock_version"] == 1
    async with http.get(f"{sandbox.base_url}/_sim/state") as resp:
        dump = await resp.json()
    assert dump["tables"]["crm/cases"][0]["name"] == "Fixed"
    async with http.post(f"{sandbox.base_url}/_sim/reset") as resp:
        assert resp.status == 200
    assert sandbox.state.tables["crm/cases"] == {}


async def test_throttle_redirect_does_not_process(wire: Wire, sandbox):
    sandbox.state.faults.throttle_next = 1
    status, _, resp = await wire.php("crm/people.api", "PUT", create_pairs({"name": "X"}))
    assert status == 302 and resp.headers["Location"].startswith("/crm/people.api?_dc=")
    assert sandbox.state.tables["crm/people"] == {}
    status, body, _ = await wire.php("crm/people.api", "PUT", create_pairs({"name": "X"}))
    assert status == 200 and body["success"]
    sandbox.state.faults.throttle_every = 2
    statuses = [(await wire.php("crm/people.api", "GET", []))[0] for _ in range(4)]
    assert statuses.count(302) == 2


async def test_concurrency_cap_of_five_per_credential(wire: Wire, sandbox, http):
    state = sandbox.state
    state.in_flight["user:29198"] = 5  # five of Ann's requests are being processed
    status, _, resp = await wire.php("crm/people.api", "GET", [])
    assert status == 302 and resp.headers["Location"].startswith("/crm/people.api")
    bob = Wire(http, sandbox.base_url)
    await bob.login("bob-api-key")
    assert (await bob.php("crm/people.api", "GET", []))[0] == 200  # the cap is per credential
    state.in_flight["user:29198"] = 4
    assert (await wire.php("crm/people.api", "GET", []))[0] == 200
    state.in_flight["user:29198"] = 0
    state.faults.latency_ms = 200
    results = await asyncio.gather(*(wire.php("crm/people.api", "GET", []) for _ in range(8)))
    assert state.peak_in_flight <= 5
    assert sorted({r[0] for r in results}) in ([200], [200, 302])


async def test_activities_union_phone_calls_and_var_date_time(wire: Wire, sandbox):
    seed(
        sandbox.state,
        "activity/tasks",
        [{"name": "Call Ann", "activity_type": "Phone call", "due_date": "2024-12-01"}],
    )
    seed(
        sandbox.state,
        "activity/meetings",
        [{"name": "Lunch", "start": "2024-12-02T12:30:00Z", "finish": "2024-12-02T13:30:00Z"}],
    )
    _, body, _ = await wire.php(
        "activity/activities.api",
        "GET",
        [
            ("_select_columns[]", "type"),
            ("_select_columns[]", "activity_type"),
            ("_select_columns[]", "due"),
            ("_select_columns[]", "start"),
            ("_select_columns[]", "start_datetime"),
            ("_select_columns[]", "due_date"),
        ],
    )
    task, meeting = body["data"]
    assert task["type"] == "Private::Activity::Task" and task["activity_type"] == "Phone call"
    assert task["due"] == "2024-12-01,0,Europe/London" and task["due_date"] == " 1 Dec 2024"
    assert meeting["type"] == "Private::Activity::Meeting"
    assert meeting["start"] == "2024-12-02T12:30:00.000Z,1,Europe/London"
    assert meeting["start_datetime"] == "Mon Dec 02 12:30:00 UTC 2024"
    _, body, _ = await wire.php(
        "activity/activities.api",
        "GET",
        [
            ("_ff[]", "start"),
            ("_ft[]", "eq"),
            ("_fc[]", "2024-12-02"),
            ("_select_columns[]", "name"),
        ],
    )
    assert body["data"] == [{"name": "Lunch"}]


async def test_email_send_becomes_sent_and_render_with_links(wire: Wire, sandbox):
    set_clock(sandbox.state, freeze="2024-11-26T10:00:00Z")
    [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
    _, body, _ = await wire.php(
        "email/emails.api",
        "PUT",
        create_pairs(
            {
                "subject": "Hi",
                "status": "SEND",
                "render_with_resource_type": "Private::Crm::Person",
                "render_with_resource_id": str(p["id"]),
            }
        ),
    )
    email_id = body["affected_objects"][0]["id"]
    set_clock(sandbox.state, advance_seconds=5)
    _, body, _ = await wire.php("email/emails.api", "GET", [("_select_columns[]", "status")])
    assert body["data"] == [{"status": "SENT"}]
    _, body, _ = await wire.php(
        "email/email_links.api",
        "GET",
        [("_select_columns[]", "email_id"), ("_select_columns[]", "resource_id")],
    )
    assert body["data"] == [{"email_id": email_id, "resource_id": p["id"]}]


async def test_watched_is_per_user_and_filterable(wire: Wire, sandbox, http):
    a, _ = seed(sandbox.state, "crm/people", [{"name": "A"}, {"name": "B"}])
    set_watched(sandbox.state, 29198, "crm/people", a["id"])
    _, body, _ = await wire.php(
        "crm/people.api",
        "GET",
        [("_ff[]", "watched"), ("_ft[]", "true"), ("_fc[]", ""), ("_select_columns[]", "name")],
    )
    assert body["data"] == [{"name": "A"}]
    bob = Wire(http, sandbox.base_url)
    await bob.login("bob-api-key")
    _, body, _ = await bob.php(
        "crm/people.api", "GET", [("_ff[]", "watched"), ("_ft[]", "true"), ("_fc[]", "")]
    )
    assert body["data"] == []


async def test_user_agent_first_word_is_created_through_without_app_name(http, sandbox):
    w = Wire(http, sandbox.base_url)
    await w.login()
    _, body, _ = await w.php("crm/people.api", "PUT", create_pairs({"name": "X"}))
    assert body["affected_objects"][0]["created_through"] == UA.split("/")[0]


async def test_username_password_login_and_reconnect(http, sandbox):
    form = [("client", "api"), ("api_version", "1"), ("username", "ann@example.com")]
    async with http.post(f"{sandbox.base_url}/login.api", data=[*form, ("password", "bad")]) as r:
        assert r.status == 401
    async with http.post(
        f"{sandbox.base_url}/login.api", data=[*form, ("password", "password")]
    ) as r:
        first = await r.json()
    reconnect = [*form, ("session_id", first["session_id"]), ("logical_database_id", "13330")]
    async with http.post(f"{sandbox.base_url}/login.api", data=reconnect) as r:
        second = await r.json()
    assert r.status == 200 and second["session_id"] != first["session_id"]
    async with http.post(f"{sandbox.base_url}/login.api", data=[*form, ("client", "web")]) as r:
        assert r.status == 401  # client=api is mandatory (the last value wins)


async def test_method_alias_null_value_and_activity_links(wire: Wire, sandbox):
    [p] = seed(sandbox.state, "crm/people", [{"name": "A", "person_job_title": "CEO"}])
    [t] = seed(sandbox.state, "activity/tasks", [{"name": "Call"}])
    _, body, _ = await wire.php(
        "crm/people.api",
        "PUT",
        [
            ("_ff[]", "id"),
            ("_ft[]", "eq"),
            ("_fc[]", str(p["id"])),
            ("method[]", "PUT"),
            ("id[]", str(p["id"])),
            ("lock_version[]", "0"),
            ("person_job_title[]", ":null_value:"),
        ],
    )
    assert body["success"] and body["affected_objects"][0]["person_job_title"] is None
    _, body, _ = await wire.php(
        "activity/activity_links.api",
        "PUT",
        create_pairs(
            {
                "activity_id": str(t["id"]),
                "activity_type": "Private::Activity::Task",
                "resource_id": str(p["id"]),
                "resource_type": "Private::Crm::Person",
            }
        ),
    )
    assert body["success"] and body["affected_objects"][0]["resource_id"] == p["id"]


async def test_remaining_sim_control_routes(http, sandbox, wire: Wire):
    base, state = sandbox.base_url, sandbox.state
    [p] = seed(state, "crm/people", [{"name": "A"}])

    async def post(name, payload):
        async with http.post(f"{base}/_sim/{name}", json=payload) as resp:
            assert resp.status == 200
            return await resp.json()

    now = await post("clock", {"freeze": "2030-01-02T03:04:05Z"})
    assert now["now"].startswith("2030-01-02T03:04:05")
    await post("clock", {"advance_seconds": 60})
    assert state.clock.now().minute == 5
    assert (await wire.php("crm/people.api", "GET", []))[0] == 302  # idle for 4 years
    await wire.login()
    await post("watched", {"user_id": 29198, "endpoint": "crm/people", "id": p["id"]})
    _, body, _ = await wire.php("crm/people.api", "GET", [("_select_columns[]", "watched")])
    assert body["data"] == [{"watched": True}]
    await post("throttle", {"next": 1})
    assert (await wire.php("crm/people.api", "GET", []))[0] == 302
    await post("fail", {"statuses": [503]})
    assert (await wire.php("crm/people.api", "GET", []))[0] == 503
    await post("latency", {"ms": 5})
    assert state.faults.latency_ms == 5
    await post("force_conflict", {"count": 1})
    _, body, _ = await wire.php("crm/people.api", "PUT", update_pairs((p["id"], 0, "B")))
    assert body["failures"] == [STALE]
    assert (await post("expire_sessions", {}))["expired"] >= 1
    assert (await wire.php("crm/people.api", "GET", []))[0] == 302
    async with http.get(f"{base}/_sim/stats") as resp:
        assert (await resp.json())["throttled"] == 1


def test_long_write_batch_pauses_between_slices(sandbox):
    """A batch gives the event loop a turn every PAUSE_EVERY objects (requests that arrived
    meanwhile start their latency), and still answers for every object in order."""
    state = sandbox.state
    people = [{"name": f"P{i}"} for i in range(100)]
    wctx = WriteContext(ReadContext(state.config.users[0]), "WireTest", True, True)
    steps = handle_write(state, state.types["crm/people"], WireParams(create_pairs(*people)), wctx)
    pauses = 0
    while True:
        try:
            steps.send(None)
        except StopIteration as done:
            body = done.value
            break
        pauses += 1
    assert pauses == 100 // PAUSE_EVERY - 1
    assert [o["name"] for o in body["affected_objects"]] == [p["name"] for p in people]
