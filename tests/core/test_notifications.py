"""The webhook's pure parts (``sync.core.notifications``): the shape Graph sends, the memory of
subscription lookups, and the per-request lookup budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.core.bodies import BodyError
from sync.core.notifications import (
    MAX_LOOKUPS,
    SubscriptionCache,
    parse_collection,
    plan_lookups,
)
from sync.core.state_models import SubscriptionRecord


def _record(sub_id: str) -> SubscriptionRecord:
    return SubscriptionRecord(
        subscription_id=sub_id,
        mailbox="ann@example.com",
        stream="sent",
        resource="/users/ann@example.com/mailFolders('sentitems')/messages",
        client_state_hash="h",
        expires_at=datetime.now(UTC) + timedelta(days=2),
    )


def _item(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "subscriptionId": "sub-1",
        "clientState": "secret",
        "changeType": "created",
        "resource": "Users/x/Messages/AAMk",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "AAMk"},
        "tenantId": "00000000-0000-0000-0000-000000000001",
    }
    base.update(fields)
    return base


def test_a_graph_collection_parses_and_unknown_fields_are_left_alone() -> None:
    items = parse_collection(
        {"value": [_item(), _item(subscriptionId="sub-2", lifecycleEvent="missed", newField=[1])]}
    )
    assert [(i.subscription_id, i.resource_id, i.lifecycle_event) for i in items] == [
        ("sub-1", "AAMk", None),
        ("sub-2", "AAMk", "missed"),
    ]
    assert (
        parse_collection({"value": [_item(clientState=None, resourceData=None)]})[0]
        == (parse_collection({"value": [_item(clientState="", resourceData={})]})[0])
    )


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ([], 400, "JSON object"),
        ({"value": {}}, 400, "'value' array"),
        ({"value": None}, 400, "'value' array"),
        ({"value": [_item()] * 1001}, 413, "more than 1000"),
        ({"value": [5]}, 400, "value[0] must be a JSON object"),
        ({"value": [_item(), []]}, 400, "value[1] must be a JSON object"),
        ({"value": [_item(subscriptionId=5)]}, 400, "'value[0].subscriptionId' must be a string"),
        ({"value": [_item(subscriptionId=True)]}, 400, "subscriptionId"),
        ({"value": [_item(subscriptionId=["a"])]}, 400, "subscriptionId"),
        ({"value": [_item(subscriptionId="x" * 129)]}, 400, "at most 128"),
        ({"value": [_item(subscriptionId=None)]}, 400, "'value[0].subscriptionId' is required"),
        ({"value": [_item(subscriptionId="")]}, 400, "is required"),
        ({"value": [_item(clientState=7)]}, 400, "clientState"),
        ({"value": [_item(changeType={})]}, 400, "changeType"),
        ({"value": [_item(lifecycleEvent=1)]}, 400, "lifecycleEvent"),
        ({"value": [_item(tenantId=1)]}, 400, "tenantId"),
        ({"value": [_item(resource="x" * 3000)]}, 400, "resource"),
        ({"value": [_item(resourceData="AAMk")]}, 400, "resourceData' must be a JSON object"),
        ({"value": [_item(resourceData={"id": 5})]}, 400, "'value[0].resourceData.id'"),
    ],
)
def test_bodies_graph_never_sends_are_refused(payload: Any, status: int, needle: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse_collection(payload)
    assert caught.value.status == status
    assert needle in str(caught.value)


def test_cache_remembers_records_and_misses_for_their_own_time() -> None:
    cache = SubscriptionCache(hit_seconds=30, miss_seconds=10, limit=100)
    record = _record("sub-1")
    cache.remember("sub-1", record, now=0)
    cache.remember("nope", None, now=0)
    assert cache.lookup("sub-1", 29.9) == (True, record)
    assert cache.lookup("nope", 9.9) == (True, None)
    assert cache.lookup("nope", 10.0) == (False, None)  # a miss is remembered briefly
    assert cache.lookup("sub-1", 30.0) == (False, None)
    assert cache.lookup("other", 0) == (False, None)
    # A subscription created after its miss was remembered replaces the miss.
    cache.remember("nope", _record("nope"), now=11)
    assert cache.lookup("nope", 12)[1] is not None


def test_cache_is_bounded_and_misses_never_push_out_records() -> None:
    cache = SubscriptionCache(limit=3)
    cache.remember("real", _record("real"), now=0)
    for i in range(1000):
        cache.remember(f"made-up-{i}", None, now=0)
    assert len(cache) == 4  # one record + the three newest misses
    assert cache.lookup("real", 1)[1] is not None
    assert cache.lookup("made-up-999", 1) == (True, None)
    assert cache.lookup("made-up-0", 1) == (False, None)  # the oldest went first
    for i in range(5):
        cache.remember(f"r{i}", _record(f"r{i}"), now=0)
    assert cache.lookup("real", 1) == (False, None)
    assert cache.lookup("r4", 1)[0]


def test_directory_load_is_due_once_per_period_and_fills_up_to_the_limit() -> None:
    cache = SubscriptionCache(hit_seconds=300, limit=3)
    assert cache.load_due(0.0)  # never loaded
    cache.loading(10.0)
    assert not cache.load_due(11.0, every=300)
    assert not cache.load_due(309.9, every=300)
    assert cache.load_due(310.0, every=300)  # its records have expired by then
    assert cache.remember_all([_record(f"s{i}") for i in range(5)], now=10.0) == 3
    assert [cache.lookup(f"s{i}", 11.0)[0] for i in range(5)] == [True] * 3 + [False] * 2
    cache.clear()
    assert cache.load_due(11.0) and len(cache) == 0


def test_plan_looks_up_each_distinct_id_once_within_the_budget() -> None:
    known = {"cached": _record("cached")}

    def remembered(sub_id: str) -> tuple[bool, SubscriptionRecord | None]:
        if sub_id == "missed":
            return True, None
        return (True, known[sub_id]) if sub_id in known else (False, None)

    ids = ["a", "cached", "a", "missed", "b", "c", "d", "b"]
    plan = plan_lookups(ids, remembered, budget=3)
    assert plan.fetch == ["a", "b", "c"]
    assert plan.known == {"cached": known["cached"], "missed": None}
    assert plan.skipped == {"d"}
    flood = plan_lookups((f"id{i}" for i in range(1000)), lambda _: (False, None))
    assert len(flood.fetch) == MAX_LOOKUPS and len(flood.skipped) == 1000 - MAX_LOOKUPS
