"""The configurable alternatives for each point no public source confirms (§8): how emails are
linked, where a dead session is sent, the not-found text; set through ``SandboxConfig``, the
CLI and ``POST /_sim/config``."""

from __future__ import annotations

from typing import Any

import pytest

from devkit.sandbox.workbooks.cli import config_from, main, parser
from devkit.sandbox.workbooks.config import NOT_FOUND_PRESETS, SandboxConfig
from devkit.sandbox.workbooks.control import seed

from .sandbox_support import batch, create, read_pairs, strict_sandbox

PERSON, CASE = "Private::Crm::Person", "Private::Crm::Case"


def live_links(sandbox: Any) -> list[tuple[int, str, int]]:
    table = sandbox.state.tables[sandbox.state.config.email_link_path]
    return sorted(
        (r["email_id"], r["resource_type"], r["resource_id"])
        for r in table.values()
        if not r.get("is_deleted")
    )


async def make_email(wire: Any, **extra: str) -> dict[str, Any]:
    _, body, _ = await wire.php(
        "email/emails.api", "PUT", create({"subject": "Hi", "status": "DRAFT", **extra})
    )
    assert body["success"] is True, body
    email: dict[str, Any] = body["affected_objects"][0]
    return email


# ---------------------------------------------------------------- email links


async def test_link_type_strategy_has_its_own_endpoint_at_a_configurable_path(http):
    async with strict_sandbox(http, email_link_path="email/related_items") as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
        email = await make_email(wire)
        link = {"email_id": str(email["id"]), "resource_type": PERSON, "resource_id": str(p["id"])}
        status, body, _ = await wire.php("email/related_items.api", "PUT", create(link))
        assert status == 200 and body["success"] is True, body
        assert (await wire.php("email/email_links.api", "PUT", create(link)))[0] == 404
        _, body, _ = await wire.php(
            "email/related_items.api",
            "GET",
            read_pairs(["email_id", "resource_id"], [("email_id", "eq", str(email["id"]))]),
        )
        assert [(r["email_id"], r["resource_id"]) for r in body["data"]] == [(email["id"], p["id"])]


async def test_association_strategy_writes_links_through_the_email(http):
    async with strict_sandbox(http, email_link_strategy="association") as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
        [c] = seed(sandbox.state, "crm/cases", [{"name": "Case"}])
        email = await make_email(
            wire,
            linked_resource_types=f"[{PERSON},{CASE}]",
            linked_resource_ids=f"[{p['id']},{c['id']}]",
        )
        assert email["linked_resource_types"] == f"[{PERSON},{CASE}]"
        assert live_links(sandbox) == [(email["id"], CASE, c["id"]), (email["id"], PERSON, p["id"])]
        # Writing the arrays again replaces the set, and counts as a change of the email.
        _, body, _ = await wire.php(
            "email/emails.api",
            "PUT",
            batch(
                (
                    "PUT",
                    email["id"],
                    email["lock_version"],
                    {"linked_resource_types": f"[{CASE}]", "linked_resource_ids": f"[{c['id']}]"},
                )
            ),
        )
        [changed] = body["affected_objects"]
        assert changed["lock_version"] == email["lock_version"] + 1
        assert changed["linked_resource_ids"] == f"[{c['id']}]"
        assert live_links(sandbox) == [(email["id"], CASE, c["id"])]
        _, body, _ = await wire.php(
            "email/emails.api",
            "GET",
            read_pairs(["linked_resource_types", "linked_resource_ids"]),
        )
        assert body["data"] == [
            {"linked_resource_types": f"[{CASE}]", "linked_resource_ids": f"[{c['id']}]"}
        ]
        assert (await wire.php("email/email_links.api", "GET", read_pairs()))[0] == 404


@pytest.mark.parametrize(
    ("types", "ids", "error"),
    [
        (f"[{PERSON}]", "[1,2]", {"linked_resource_ids": ["must have one id per type"]}),
        (
            "[Private::Crm::Nothing]",
            "[1]",
            {"linked_resource_types": ["is not included in the list"]},
        ),
        (f"{PERSON}", "1", {"linked_resource_ids": ["must be an array like [1,2]"]}),
    ],
)
async def test_association_strategy_refuses_bad_arrays(http, types, ids, error):
    async with strict_sandbox(http, email_link_strategy="association") as (sandbox, wire):
        _, body, _ = await wire.php(
            "email/emails.api",
            "PUT",
            create({"subject": "S", "linked_resource_types": types, "linked_resource_ids": ids}),
        )
        assert body["affected_object_information"][0]["errors"] == error
        assert sandbox.state.tables["email/emails"] == {} and live_links(sandbox) == []


@pytest.mark.parametrize(
    ("strategy", "links_first_record"),
    [("link_type", True), ("association", True), ("render_with", True), ("none", False)],
)
async def test_render_with_links_the_first_record_unless_there_is_no_mechanism(
    http, strategy, links_first_record
):
    async with strict_sandbox(http, email_link_strategy=strategy) as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
        email = await make_email(
            wire, render_with_resource_type=PERSON, render_with_resource_id=str(p["id"])
        )
        expected = [(email["id"], PERSON, p["id"])] if links_first_record else []
        assert live_links(sandbox) == expected
        if strategy in ("render_with", "none"):  # nothing else can link
            assert (await wire.php("email/email_links.api", "GET", read_pairs()))[0] == 404
            _, body, _ = await wire.php(
                "email/emails.api",
                "PUT",
                create({"subject": "S", "linked_resource_ids": f"[{p['id']}]"}),
            )
            assert body["affected_object_information"][0]["errors"] == {
                "linked_resource_ids": ["is not a recognised attribute"]
            }


async def test_a_draft_updated_to_send_is_sent(http):
    async with strict_sandbox(http, email_send_delay_seconds=0) as (_, wire):
        email = await make_email(wire)
        _, body, _ = await wire.php(
            "email/emails.api", "PUT", batch(("PUT", email["id"], 0, {"status": "SEND"}))
        )
        assert body["affected_objects"][0]["status"] == "SEND"
        _, body, _ = await wire.php("email/emails.api", "GET", read_pairs(["status"]))
        assert body["data"] == [{"status": "SENT"}]


# ---------------------------------------------------------------- sessions, not-found


@pytest.mark.parametrize("location", ["/login", "/", "/login.api", "same"])
async def test_dead_session_redirect_target(http, location):
    async with strict_sandbox(http, dead_session_location=location) as (sandbox, wire):
        sandbox.state.sessions.clear()
        status, _, resp = await wire.php("crm/people.api", "GET", read_pairs())
        assert status == 302
        if location == "same":  # what a throttling redirect looks like too (§8 q4)
            assert resp.headers["Location"].startswith("/crm/people.api?_dc=")
        else:
            assert resp.headers["Location"] == location


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sandbox", NOT_FOUND_PRESETS["sandbox"]),
        ("rails", "Couldn't find Private::Crm::Person with id={id}"),
        ("rails5", "Couldn't find Private::Crm::Person with 'id'={id}"),
        ("No {class_name} {id} here", "No Private::Crm::Person {id} here"),
    ],
)
async def test_not_found_text(http, text, expected):
    async with strict_sandbox(http, not_found_text=text) as (sandbox, wire):
        [p] = seed(sandbox.state, "crm/people", [{"name": "Ann"}])
        _, body, _ = await wire.php("crm/people.api", "PUT", batch(("DELETE", p["id"], 0, {})))
        assert body["success"] is True
        _, body, _ = await wire.php(
            "crm/people.api", "PUT", batch(("PUT", p["id"], 0, {"name": "Back"}))
        )
        assert body["affected_object_information"][0]["errors"] == {
            "id": [expected.replace("{id}", str(p["id"]))]
        }


# ---------------------------------------------------------------- control API and CLI


async def test_config_changes_at_run_time_through_the_control_api(http):
    async with strict_sandbox(http) as (sandbox, wire):
        base = f"{sandbox.base_url}/_sim/config"
        async with http.get(base) as resp:
            current = await resp.json()
        assert current["email_link_strategy"] == "link_type" and "users" not in current
        change = {"email_link_strategy": "none", "watched_filterable": False}
        async with http.post(base, json=change) as resp:
            assert (await resp.json())["config"]["watched_filterable"] is False
        assert (await wire.php("email/email_links.api", "GET", read_pairs()))[0] == 404
        _, body, _ = await wire.php(
            "crm/people.api", "GET", read_pairs(filters=[("watched", "true", "")])
        )
        assert body["success"] is False
        bad_changes: list[dict[str, Any]] = [{"users": []}, {"email_link_strategy": "pigeon"}]
        for bad in bad_changes:
            async with http.post(base, json=bad) as resp:
                assert resp.status == 400 and (await resp.json())["ok"] is False
        assert sandbox.state.config.email_link_strategy == "none"


def test_every_alternative_is_a_cli_flag():
    args = parser().parse_args(
        [
            "--attribute-checking",
            "always",
            "--email-link-strategy",
            "association",
            "--email-link-path",
            "email/links",
            "--email-statuses",
            "DRAFT,SEND,SENT,FILED",
            "--lead-email-fields",
            "org_lead_party[main_location[email]]",
            "--watched-filterable",
            "off",
            "--meeting-location-field",
            "",
            "--party-columns",
            "off",
            "--not-found-text",
            "rails",
            "--dead-session-location",
            "same",
            "--webhooks-allowed",
            "off",
        ]
    )
    config = config_from(args)
    assert config == SandboxConfig(
        sim_controls=True,
        attribute_checking="always",
        email_link_strategy="association",
        email_link_path="email/links",
        email_status_values=["DRAFT", "SEND", "SENT", "FILED"],
        lead_email_fields=["org_lead_party[main_location[email]]"],
        watched_filterable=False,
        meeting_location_field=None,
        party_columns=False,
        not_found_text=NOT_FOUND_PRESETS["rails"],
        dead_session_location="same",
        webhooks_allowed=False,
    )
    assert config_from(parser().parse_args([])) == SandboxConfig(sim_controls=True)


def test_cli_help_and_bad_values(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--email-link-strategy", "--lead-email-fields", "--dead-session-location"):
        assert flag in text
    with pytest.raises(SystemExit) as done:
        main(["--email-statuses", "DRAFT"])  # SEND and SENT are documented, never absent
    assert done.value.code == 2
    assert "email statuses must include" in capsys.readouterr().err
