"""Webhook subscriptions and signed deliveries (§4.11): ``admin/triggers/webhook_subscriptions``
over the usual wire format, and at-least-once POSTs of new records to ``callback_url``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from devkit.sandbox.workbooks.control import seed, webhook_faults
from tests.support.local import free_port

from .sandbox_support import batch, create, read_pairs, receiver, strict_sandbox

SUBSCRIPTIONS = "admin/triggers/webhook_subscriptions.api"
FAST = {"webhook_backoff_seconds": 0.01, "webhook_backoff_max_seconds": 0.05}


async def subscribe(
    wire: Any, url: str, trigger_id: int = 1, enabled: str = "true"
) -> dict[str, Any]:
    status, body, _ = await wire.php(
        SUBSCRIPTIONS,
        "PUT",
        create(
            {
                "name": "Sync",
                "description": "new people",
                "callback_url": url,
                "enabled": enabled,
                "trigger_id": str(trigger_id),
            }
        ),
    )
    assert status == 200 and body["success"] is True, body
    created: dict[str, Any] = body["affected_objects"][0]
    return created


def verify(secret: str, raw: bytes, header: str) -> bool:
    """What a receiver does: constant-time compare of the HMAC-SHA256 of the raw body."""
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


# ---------------------------------------------------------------- subscriptions


async def test_subscription_create_list_update_delete(http):
    async with strict_sandbox(http) as (_, wire):
        sub = await subscribe(wire, "https://hooks.example.com/wb")
        assert len(sub["secret_key"]) == 64 and sub["enabled"] is True
        assert sub["trigger_id"] == 1 and sub["lock_version"] == 0
        _, body, _ = await wire.php(
            SUBSCRIPTIONS,
            "GET",
            read_pairs(["id", "name", "callback_url", "enabled", "trigger_id"]),
        )
        assert body["data"] == [
            {
                "id": sub["id"],
                "name": "Sync",
                "callback_url": "https://hooks.example.com/wb",
                "enabled": True,
                "trigger_id": 1,
            }
        ]
        _, body, _ = await wire.php(SUBSCRIPTIONS, "GET", read_pairs(["secret_key"]))
        assert body["success"] is False  # never readable after the create reply
        _, body, _ = await wire.php(
            SUBSCRIPTIONS, "PUT", batch(("PUT", sub["id"], 0, {"enabled": "false"}))
        )
        [updated] = body["affected_objects"]
        assert updated.keys() == {"id", "lock_version", "enabled", "updated_at"}
        assert (updated["lock_version"], updated["enabled"]) == (1, False)
        _, body, _ = await wire.php(SUBSCRIPTIONS, "PUT", batch(("DELETE", sub["id"], 1, {})))
        assert body["success"] is True
        _, body, _ = await wire.php(SUBSCRIPTIONS, "GET", read_pairs())
        assert body["data"] == []


@pytest.mark.parametrize(
    ("attrs", "errors"),
    [
        ({"trigger_id": "2"}, {"trigger_id": ["is not a valid trigger"]}),
        ({"callback_url": "ftp://x/y"}, {"callback_url": ["is not a valid URL"]}),
        ({"callback_url": ":null_value:"}, {"callback_url": ["can't be blank"]}),
    ],
)
async def test_subscription_validation(http, attrs, errors):
    async with strict_sandbox(http) as (sandbox, wire):
        values = {"name": "S", "callback_url": "https://h.example/x", "trigger_id": "1", **attrs}
        _, body, _ = await wire.php(SUBSCRIPTIONS, "PUT", create(values))
        assert body["affected_object_information"][0]["errors"] == errors
        assert sandbox.state.tables["admin/triggers/webhook_subscriptions"] == {}


async def test_a_key_not_allowed_to_manage_triggers(http):
    async with strict_sandbox(http, webhooks_allowed=False) as (sandbox, wire):
        for verb, pairs in (("GET", read_pairs()), ("PUT", create({"name": "S"}))):
            status, body, _ = await wire.php(SUBSCRIPTIONS, verb, pairs)
            assert status == 404 and body["success"] is False
            assert body["failures"][0].startswith("Access denied")
        assert sandbox.state.tables["admin/triggers/webhook_subscriptions"] == {}


# ---------------------------------------------------------------- deliveries


async def test_new_person_is_delivered_signed_and_keyed_by_resource(http):
    async with receiver() as hook, strict_sandbox(http) as (sandbox, wire):
        sub = await subscribe(wire, hook.url, trigger_id=1)
        await subscribe(wire, hook.url, trigger_id=7)  # cases: not fired by people
        _, body, _ = await wire.php(
            "crm/people.api",
            "PUT",
            create(
                {"name": "Ann", "main_location[email]": "ann@x.com"},
                {"name": "Bob", "main_location[email]": "bob@x.com"},
            ),
        )
        [received] = await hook.wait_for(1)
        assert received.headers["Content-Type"] == "application/json"
        assert verify(sub["secret_key"], received.body, received.headers["X-Workbooks-Signature"])
        assert not verify("wrong", received.body, received.headers["X-Workbooks-Signature"])
        payload = json.loads(received.body)
        assert [list(item) for item in payload] == [["person"], ["person"]]
        assert [p["person"]["id"] for p in payload] == [o["id"] for o in body["affected_objects"]]
        assert payload[0]["person"]["main_location[email]"] == "ann@x.com"
        [delivery] = sandbox.state.webhooks.deliveries
        assert delivery.state == "delivered" and delivery.subscription_id == sub["id"]


@pytest.mark.parametrize(
    ("endpoint", "trigger_id", "resource", "record"),
    [
        ("crm/sales_leads", 5, "sales_lead", {"person_lead_party[name]": "Lee"}),
        ("crm/cases", 7, "case", {"name": "Broken"}),
        ("activity/tasks", 9, "task", {"name": "Call"}),
        ("activity/meetings", 28, "meeting", {"name": "Meet"}),
        ("crm/organisations", 3, "organisation", {"name": "Acme"}),
        ("crm/party_locations", 9001, "party_location", {"party_id": "1", "email": "a@x"}),
    ],
)
async def test_each_trigger_fires_for_its_record_type(http, endpoint, trigger_id, resource, record):
    async with receiver() as hook, strict_sandbox(http) as (_, wire):
        await subscribe(wire, hook.url, trigger_id=trigger_id)
        await wire.php("crm/people.api", "PUT", create({"name": "Not this one"}))
        _, body, _ = await wire.php(f"{endpoint}.api", "PUT", create(record))
        assert body["success"] is True, body
        [received] = await hook.wait_for(1)
        [item] = json.loads(received.body)
        assert item[resource]["id"] == body["affected_objects"][0]["id"]


async def test_seeded_records_fire_and_updates_do_not(http):
    async with receiver() as hook, strict_sandbox(http) as (sandbox, wire):
        await subscribe(wire, hook.url)
        [p] = seed(sandbox.state, "crm/people", [{"name": "From the UI"}])
        await hook.wait_for(1)
        await wire.php("crm/people.api", "PUT", batch(("PUT", p["id"], 0, {"name": "Renamed"})))
        await sandbox.state.webhooks.idle()
        assert len(hook.received) == 1


async def test_disabled_deleted_and_rolled_back_fire_nothing(http):
    async with receiver() as hook, strict_sandbox(http) as (sandbox, wire):
        await subscribe(wire, hook.url, enabled="false")
        gone = await subscribe(wire, hook.url)
        await wire.php(SUBSCRIPTIONS, "PUT", batch(("DELETE", gone["id"], 0, {})))
        await wire.php("crm/people.api", "PUT", create({"name": "Ann"}))
        live = await subscribe(wire, hook.url)
        # All or nothing: one object fails, so the other is not created and not delivered.
        pairs = [*create({"name": "Bob"}, {"name": ""}), ("_per_object_transactions", "false")]
        _, body, _ = await wire.php("crm/people.api", "PUT", pairs)
        assert body["success"] is False
        await sandbox.state.webhooks.idle()
        assert hook.received == [] and sandbox.state.webhooks.deliveries == []
        await wire.php("crm/people.api", "PUT", create({"name": "Cy"}))
        [received] = await hook.wait_for(1)
        assert verify(live["secret_key"], received.body, received.headers["X-Workbooks-Signature"])


async def test_delivery_is_retried_with_back_off_until_accepted(http):
    async with (
        receiver(statuses=[500, 503, 404]) as hook,
        strict_sandbox(http, **FAST) as (
            sandbox,
            wire,
        ),
    ):
        await subscribe(wire, hook.url)
        await wire.php("crm/people.api", "PUT", create({"name": "Ann"}))
        received = await hook.wait_for(4)
        assert len({r.body for r in received}) == 1  # the same delivery each time
        await sandbox.state.webhooks.idle()
        [delivery] = sandbox.state.webhooks.deliveries
        assert [a.status for a in delivery.attempts] == [500, 503, 404, 200]
        assert delivery.state == "delivered"
        gaps = [
            (b.at - a.at).total_seconds()
            for a, b in zip(delivery.attempts, delivery.attempts[1:], strict=False)
        ]
        assert all(g >= 0.009 for g in gaps)  # waited between attempts


async def test_timeouts_and_refused_connections_are_retried_then_given_up(http):
    config = {**FAST, "webhook_timeout_seconds": 0.2, "webhook_max_attempts": 3}
    async with receiver(delay=1.0) as hook, strict_sandbox(http, **config) as (sandbox, wire):
        await subscribe(wire, hook.url)
        await subscribe(wire, f"http://127.0.0.1:{free_port()}/nothing-listens-here")
        await wire.php("crm/people.api", "PUT", create({"name": "Ann"}))
        await sandbox.state.webhooks.idle()
        slow, refused = sandbox.state.webhooks.deliveries
        assert [a.error for a in slow.attempts] == ["TimeoutError"] * 3
        assert slow.state == "failed" and len(hook.received) == 3
        assert [a.status for a in refused.attempts] == [None] * 3
        assert refused.state == "failed"


async def test_the_write_is_not_slowed_by_a_slow_receiver(http):
    async with receiver(delay=1.0) as hook, strict_sandbox(http) as (sandbox, wire):
        await subscribe(wire, hook.url)
        started = time.perf_counter()
        _, body, _ = await wire.php("crm/people.api", "PUT", create({"name": "Ann"}))
        assert body["success"] is True
        assert time.perf_counter() - started < 0.5
        await hook.wait_for(1)
        assert sandbox.state.webhooks.deliveries[0].state == "pending"  # still answering


async def test_duplicate_and_delay_faults(http):
    async with receiver() as hook, strict_sandbox(http) as (sandbox, wire):
        await subscribe(wire, hook.url)
        webhook_faults(sandbox.state, duplicate=True, delay_ms=200)
        started = time.perf_counter()
        await wire.php("crm/people.api", "PUT", create({"name": "Ann"}))
        first, second = await hook.wait_for(2)
        assert time.perf_counter() - started >= 0.2
        assert first.body == second.body
        assert first.headers["X-Workbooks-Signature"] == second.headers["X-Workbooks-Signature"]
        assert sandbox.state.webhooks.deliveries[0].copies == 2


async def test_reorder_fault_delivers_newest_first(http):
    async with receiver() as hook, strict_sandbox(http) as (sandbox, wire):
        await subscribe(wire, hook.url)
        async with http.post(
            f"{sandbox.base_url}/_sim/webhook_faults", json={"reorder_next": 3}
        ) as resp:
            assert resp.status == 200
        ids = []
        for name in ("A", "B", "C"):
            _, body, _ = await wire.php("crm/people.api", "PUT", create({"name": name}))
            ids.append(body["affected_objects"][0]["id"])
            await asyncio.sleep(0.05)
            if name != "C":
                assert hook.received == []  # held until the third
        received = await hook.wait_for(3)
        assert [json.loads(r.body)[0]["person"]["id"] for r in received] == ids[::-1]


async def test_deliveries_are_listed_by_the_control_api(http):
    async with (
        receiver(statuses=[500]) as hook,
        strict_sandbox(http, **FAST) as (
            sandbox,
            wire,
        ),
    ):
        sub = await subscribe(wire, hook.url)
        await wire.php("crm/people.api", "PUT", create({"name": "Ann"}))
        await hook.wait_for(2)
        await sandbox.state.webhooks.idle()
        async with http.get(f"{sandbox.base_url}/_sim/webhook_deliveries") as resp:
            [listed] = await resp.json()
        assert listed["subscription_id"] == sub["id"] and listed["trigger_id"] == 1
        assert listed["resource"] == "person" and listed["state"] == "delivered"
        assert [a["status"] for a in listed["attempts"]] == [500, 200]
        assert verify(sub["secret_key"], listed["body"].encode(), listed["signature"])
