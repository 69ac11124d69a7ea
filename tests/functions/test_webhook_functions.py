"""The Graph-facing HTTP functions, called through the azure-functions API with real
HttpRequest objects, against Azurite."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sync.blueprints import webhooks
from sync.core.jobs import JobKind
from tests.functions.helpers import drain, http, notification, register, user_function
from tests.support.storage_requests import record_storage_requests

NOTIFY = user_function(webhooks.graph_notifications)
LIFECYCLE = user_function(webhooks.graph_lifecycle)
URL = "http://localhost/api/graph/notifications"


async def test_validation_handshake_echoes_decoded_token(services: Any) -> None:
    token = (
        "Validation: Testing client application reachability for subscription Request-Id: 3b6a&x=1"
    )
    resp = await NOTIFY(
        http("POST", URL, params={"validationToken": token}, content_type="text/plain")
    )
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert resp.get_body().decode() == token
    resp = await LIFECYCLE(
        http("POST", URL, params={"validationToken": "abc"}, content_type="text/plain")
    )
    assert (resp.status_code, resp.get_body()) == (200, b"abc")


@pytest.mark.parametrize("token", ["bad\ntoken", "<script>\x00", "x" * 5000, ""])
async def test_validation_rejects_tokens_that_are_not_plain_text(services: Any, token: str) -> None:
    resp = await NOTIFY(
        http("POST", URL, params={"validationToken": token}, content_type="text/plain")
    )
    assert resp.status_code == 400
    assert await drain(services) == []


async def test_valid_notification_enqueues_one_dirty_job(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    resp = await NOTIFY(http("POST", URL, body={"value": [notification("sub-1", "secret-1")]}))
    assert resp.status_code == 202
    # On the wire the message is base64 JSON, as the Functions queue trigger requires.
    (raw,) = await services.queue._raw.peek_messages(max_messages=5)
    assert json.loads(base64.b64decode(raw.content, validate=True))["kind"] == "dirty"
    jobs = await drain(services)
    assert [(j.mailbox, j.stream.value, j.kind) for j in jobs] == [
        ("ann@example.com", "sent", JobKind.DIRTY)
    ]


async def test_triple_delivery_and_burst_coalesce_to_one_job(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {"value": [notification("sub-1", "secret-1", resource_id=f"m{i}") for i in range(5)]}
    for _ in range(3):
        resp = await NOTIFY(http("POST", URL, body=body))
        assert resp.status_code == 202
    assert len(await drain(services)) == 1
    # Once the worker has taken the marker and the instance's memory of it has lapsed, the
    # next notification queues again.
    await services.store.dirty.clear("ann@example.com", "sent")
    services.cache.webhook_memo.forget()
    await NOTIFY(http("POST", URL, body=body))
    assert len(await drain(services)) == 1


async def test_concurrent_deliveries_share_one_marker_check(services: Any) -> None:
    import asyncio

    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {"value": [notification("sub-1", "secret-1")]}
    replies = await asyncio.gather(*(NOTIFY(http("POST", URL, body=body)) for _ in range(20)))
    assert {r.status_code for r in replies} == {202}
    assert sum(json.loads(r.get_body())["queued"] for r in replies) == 1
    assert len(await drain(services)) == 1


async def test_memory_answers_repeats_without_touching_storage(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {"value": [notification("sub-1", "secret-1")]}
    await NOTIFY(http("POST", URL, body=body))  # queues the job: nothing remembered yet
    # A repeat finds the job still pending: coalesced, and the marker flagged for the run.
    reply = await NOTIFY(http("POST", URL, body=body))
    assert json.loads(reply.get_body())["coalesced"] == 1
    taken = await services.store.dirty.take("ann@example.com", "sent")
    assert taken is not None and taken.remembered
    # Even with the marker gone, a repeat inside the memory window is coalesced ...
    reply = await NOTIFY(http("POST", URL, body=body))
    assert json.loads(reply.get_body())["coalesced"] == 1
    assert not await services.store.dirty.is_marked("ann@example.com", "sent")
    # ... and with the memory off, it queues a job of its own.
    services.settings.app.webhook_memo_seconds = 0
    reply = await NOTIFY(http("POST", URL, body=body))
    assert json.loads(reply.get_body())["queued"] == 1
    assert len(await drain(services)) == 2


async def test_notifications_further_apart_than_the_window_never_flag_the_marker(
    services: Any,
) -> None:
    """An email every few seconds on a stream whose jobs wait (a backlog): each notification
    finds the job pending, but none comes inside the memory window of the one before, so
    nothing is answered from memory and the marker is not flagged; its run then needs no
    follow-up.  A second notification inside the window flags it as before."""
    import asyncio

    services.settings.app.webhook_memo_seconds = 0.3
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {"value": [notification("sub-1", "secret-1")]}
    reply = await NOTIFY(http("POST", URL, body=body))
    assert json.loads(reply.get_body())["queued"] == 1
    for _ in range(2):
        await asyncio.sleep(0.4)
        reply = await NOTIFY(http("POST", URL, body=body))
        assert json.loads(reply.get_body())["coalesced"] == 1
    taken = await services.store.dirty.take("ann@example.com", "sent")
    assert taken is not None and not taken.remembered
    # A burst: the second of two notifications inside the window flags the marker.
    await NOTIFY(http("POST", URL, body=body))
    await NOTIFY(http("POST", URL, body=body))
    taken = await services.store.dirty.take("ann@example.com", "sent")
    assert taken is not None and taken.remembered
    assert len(await drain(services)) == 2


async def test_a_job_that_starts_at_once_leaves_nothing_remembered(services: Any) -> None:
    """At a steady rate each notification finds the previous job already started: the webhook
    queues a job each time and answers nothing from memory, so no change waits for a
    follow-up window."""
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {"value": [notification("sub-1", "secret-1")]}
    for _ in range(3):
        reply = await NOTIFY(http("POST", URL, body=body))
        assert json.loads(reply.get_body())["queued"] == 1
        taken = await services.store.dirty.take("ann@example.com", "sent")  # the job starts
        assert taken is not None and not taken.remembered
    assert len(await drain(services)) == 3


Notify = Callable[[int], Awaitable[tuple[dict[str, int], list[str]]]]


async def counted_notifier(
    services: Any, monkeypatch: pytest.MonkeyPatch, n: int
) -> tuple[list[str], Notify]:
    """``n`` registered users and a ``notify(i)`` that posts one notification for user ``i``
    and returns the webhook's reply and the storage requests it cost ("METHOD status")."""
    users = [f"user{i}@example.com" for i in range(n)]
    for i, user in enumerate(users):
        await register(services, user, f"sub-{i}", f"secret-{i}")
    sent = record_storage_requests(monkeypatch)

    async def notify(i: int) -> tuple[dict[str, int], list[str]]:
        sent.clear()
        body = {"value": [notification(f"sub-{i}", f"secret-{i}")]}
        reply = await NOTIFY(http("POST", URL, body=body))
        assert reply.status_code == 202
        return json.loads(reply.get_body()), [f"{method} {status}" for method, status in sent]

    return users, notify


async def test_under_a_backlog_repeats_flag_the_marker_they_set_in_one_request(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs that wait (a backlog) leave their markers live: the first repeat of each stream
    then costs an insert that is refused, a read and the flag.  Once repeats keep finding
    their marker there, the instance flags the version it set without reading it: one
    request.  When jobs start at once again, it goes back to inserting first."""
    users, notify = await counted_notifier(services, monkeypatch, 6)

    costs = []
    for i in range(len(users)):
        first, _ = await notify(i)
        assert first["queued"] == 1
        repeat, requests = await notify(i)  # its job has not started
        assert repeat["coalesced"] == 1
        costs.append(requests)
    assert costs[0] == ["POST 409", "GET 200", "PUT 204"]
    assert costs[-1] == ["PUT 204"]
    for i in range(len(users)):  # every marker was flagged for its run, however it was
        taken = await services.store.dirty.take(users[i], "sent")
        assert taken is not None and taken.remembered
    memo = services.cache.webhook_memo
    assert memo.own_live_share > 1 / 3
    services.settings.app.webhook_memo_seconds = 0.001  # no answers from memory below
    # The backlog clears: jobs take their markers before the repeats come.
    for _ in range(3):
        for i in range(2):
            assert (await notify(i))[0]["queued"] == 1
            assert await services.store.dirty.take(users[i], "sent") is not None
    assert memo.own_live_share < 1 / 3
    _, requests = await notify(0)
    assert requests[0] == "POST 201"  # inserting first again
    assert len(await drain(services)) == len(users) + 7


async def test_under_a_backlog_repeats_between_bursts_read_the_marker_in_one_request(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream notified now and then (no burst: nothing is flagged) while its job waits: the
    first repeats insert first (refused) and read; once most repeats find the marker this
    instance set still there, they read first: one request.  When jobs start at once again,
    inserting first comes back."""
    services.settings.app.webhook_memo_seconds = 0.001  # every repeat comes after the window
    users, notify = await counted_notifier(services, monkeypatch, 6)

    costs = []
    for i in range(len(users)):
        first, _ = await notify(i)
        assert first["queued"] == 1
        await asyncio.sleep(0.002)
        repeat, requests = await notify(i)  # its job has not started
        assert repeat["coalesced"] == 1
        costs.append(requests)
    assert costs[0] == ["POST 409", "GET 200"]
    assert costs[-1] == ["GET 200"]
    for i in range(len(users)):  # each marker stands for its job, unflagged
        taken = await services.store.dirty.take(users[i], "sent")
        assert taken is not None and not taken.remembered
    memo = services.cache.webhook_memo
    assert memo.own_live_share > 1 / 2
    # The backlog clears: jobs take their markers before the repeats come.  A read that finds
    # no marker inserts one and the job is queued all the same.
    for _ in range(4):
        for i in range(2):
            reply, _ = await notify(i)
            assert reply["queued"] == 1
            assert await services.store.dirty.take(users[i], "sent") is not None
    assert memo.own_live_share < 1 / 2
    _, requests = await notify(0)
    assert requests[0] == "POST 201"  # inserting first again
    assert len(await drain(services)) == len(users) + 9


async def test_mailbox_comes_from_state_not_resource_path(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    item = notification("sub-1", "secret-1")
    item["resource"] = "Users/attacker@evil.example/Messages/x"
    await NOTIFY(http("POST", URL, body={"value": [item]}))
    assert [j.mailbox for j in await drain(services)] == ["ann@example.com"]


async def test_unknown_subscription_and_wrong_secret_are_dropped(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {
        "value": [
            notification("sub-unknown", "secret-1"),
            notification("sub-1", "wrong"),
            notification("sub-1", ""),
        ]
    }
    resp = await NOTIFY(http("POST", URL, body=body))
    assert resp.status_code == 202
    assert json.loads(resp.get_body()) == {"queued": 0, "coalesced": 0, "dropped": 3}
    assert await drain(services) == []
    assert not await services.store.dirty.is_marked("ann@example.com", "sent")


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"value": 3}', "application/json", 400),
        (b"[]", "application/json", 400),
        (b'{"value": []}', "text/plain", 415),
        (b'{"value": [' + b'{"subscriptionId":"x"},' * 70_000 + b"{}]}", "application/json", 413),
    ],
)
async def test_bad_requests_get_4xx_and_change_nothing(
    services: Any, body: bytes, content_type: str, status: int
) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    resp = await NOTIFY(http("POST", URL, body=body, content_type=content_type))
    assert resp.status_code == status
    assert "error" in json.loads(resp.get_body())
    assert await drain(services) == []
    assert not await services.store.dirty.is_marked("ann@example.com", "sent")


async def test_enqueue_failure_answers_5xx_and_leaves_no_marker(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    await services.queue._queue.delete_queue()  # the queue vanishes: sending fails
    try:
        resp = await NOTIFY(http("POST", URL, body={"value": [notification("sub-1", "secret-1")]}))
        assert resp.status_code == 503
        assert not await services.store.dirty.is_marked("ann@example.com", "sent")
    finally:
        await services.queue.ensure()
    # Graph's retry then succeeds.
    resp = await NOTIFY(http("POST", URL, body={"value": [notification("sub-1", "secret-1")]}))
    assert resp.status_code == 202
    assert len(await drain(services)) == 1


@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
async def test_lifecycle_events_are_verified_and_enqueued(services: Any, event: str) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1", stream="contacts")
    body = {
        "value": [
            notification("sub-1", "secret-1", event=event),
            notification("sub-1", "bad", event=event),
        ]
    }
    for _ in range(3):  # Graph may deliver the same lifecycle event more than once
        resp = await LIFECYCLE(http("POST", URL, body=body))
        assert resp.status_code == 202
    jobs = await drain(services)
    assert [(j.kind, j.lifecycle_event, j.subscription_id, j.stream.value) for j in jobs] == [
        (JobKind.LIFECYCLE, event, "sub-1", "contacts")
    ]


async def test_lifecycle_endpoint_drops_unknown_events(services: Any) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {
        "value": [
            notification("sub-1", "secret-1", event="somethingNew"),
            notification("sub-1", "secret-1"),
        ]
    }
    resp = await LIFECYCLE(http("POST", URL, body=body))
    assert json.loads(resp.get_body())["dropped"] == 2
    assert await drain(services) == []


# ------------------------------------------------------------------ what a flood can cost


class CountingLookups:
    """Wraps the store's subscription reads (the real ones still happen) to count them and
    the most in flight at once."""

    def __init__(self, services: Any) -> None:
        self.calls: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self._get = services.store.subscriptions.get
        services.store.subscriptions.get = self.get

    async def get(self, sub_id: str) -> Any:
        self.calls.append(sub_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._get(sub_id)
        finally:
            self.in_flight -= 1


def _flood(count: int, *, prefix: str = "made-up") -> dict[str, Any]:
    return {"value": [notification(f"{prefix}-{i}", "guess") for i in range(count)]}


@pytest.fixture
def webhook_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    from sync import webhook

    webhook.LOG.reset()
    caplog.set_level(logging.INFO, "sync.webhook")
    return caplog


async def test_unknown_id_flood_costs_a_bounded_number_of_lookups(
    services: Any, webhook_log: pytest.LogCaptureFixture
) -> None:
    from sync.core.notifications import LOOKUP_CONCURRENCY, MAX_LOOKUPS
    from sync.webhook import STATS

    lookups = CountingLookups(services)
    unverified_before = STATS.dropped_unverified
    resp = await NOTIFY(http("POST", URL, body=_flood(1000)))
    assert resp.status_code == 202
    assert json.loads(resp.get_body()) == {"queued": 0, "coalesced": 0, "dropped": 1000}
    assert len(lookups.calls) == MAX_LOOKUPS == len(set(lookups.calls))
    assert 1 < lookups.most_in_flight <= LOOKUP_CONCURRENCY  # concurrent, and bounded
    assert STATS.dropped_unverified - unverified_before == 1000 - MAX_LOOKUPS
    # One line for the request, with its counts, not one per item.
    (line,) = [r for r in webhook_log.records if r.name == "sync.webhook"]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert f"1000 of 1000 in one request: {MAX_LOOKUPS} unknown subscription" in message
    assert f"{1000 - MAX_LOOKUPS} not looked up (over {MAX_LOOKUPS}" in message
    # The same body again: the misses are remembered, so the budget reaches further ids.
    lookups.calls.clear()
    await NOTIFY(http("POST", URL, body=_flood(1000)))
    assert lookups.calls == [f"made-up-{i}" for i in range(MAX_LOOKUPS, 2 * MAX_LOOKUPS)]
    # A second flood within the minute adds no line: it is counted for the summary.
    assert len([r for r in webhook_log.records if r.name == "sync.webhook"]) == 1
    assert await drain(services) == []


async def test_a_known_subscription_is_verified_whatever_the_flood_around_it(
    services: Any,
) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    await NOTIFY(http("POST", URL, body={"value": [notification("sub-1", "secret-1")]}))
    assert len(await drain(services)) == 1
    await services.store.dirty.clear("ann@example.com", "sent")
    services.cache.webhook_memo.forget()
    lookups = CountingLookups(services)
    body = _flood(999)
    body["value"].append(notification("sub-1", "secret-1"))  # last, past the lookup budget
    resp = await NOTIFY(http("POST", URL, body=body))
    assert json.loads(resp.get_body())["queued"] == 1  # remembered: costs no lookup
    assert "sub-1" not in lookups.calls
    assert [j.mailbox for j in await drain(services)] == ["ann@example.com"]


async def test_wrong_client_states_make_one_line_per_request(
    services: Any, webhook_log: pytest.LogCaptureFixture
) -> None:
    await register(services, "ann@example.com", "sub-1", "secret-1")
    body = {"value": [notification("sub-1", f"guess-{i}") for i in range(100)]}
    resp = await NOTIFY(http("POST", URL, body=body))
    assert json.loads(resp.get_body())["dropped"] == 100
    lines = [r.getMessage() for r in webhook_log.records if r.name == "sync.webhook"]
    assert len(lines) == 1 and "100 wrong clientState" in lines[0]
    assert await drain(services) == []


async def test_a_subscription_created_after_a_miss_is_found_once_the_miss_expires(
    services: Any,
) -> None:
    from sync.core.notifications import SubscriptionCache

    services.cache.subscriptions = SubscriptionCache(miss_seconds=0.2)
    body = {"value": [notification("sub-late", "secret-1")]}
    assert json.loads((await NOTIFY(http("POST", URL, body=body))).get_body())["dropped"] == 1
    await register(services, "ann@example.com", "sub-late", "secret-1")
    # Within the miss's short memory it is still unknown ...
    assert json.loads((await NOTIFY(http("POST", URL, body=body))).get_body())["dropped"] == 1
    await asyncio.sleep(0.25)
    # ... and then found.
    assert json.loads((await NOTIFY(http("POST", URL, body=body))).get_body())["queued"] == 1
    assert len(await drain(services)) == 1


async def test_validation_echo_and_every_answer_say_nosniff(services: Any) -> None:
    echo = await NOTIFY(
        http("POST", URL, params={"validationToken": "<b>x</b>"}, content_type="text/plain")
    )
    assert echo.headers["X-Content-Type-Options"] == "nosniff"
    for resp in (
        await NOTIFY(http("POST", URL, body=b"{oops")),
        await LIFECYCLE(http("POST", URL, body={"value": []})),
    ):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_subscriptions_are_loaded_at_once_not_read_one_by_one(services: Any) -> None:
    """3,000 subscriptions (1,000 mailboxes) would otherwise cost a point read each whenever
    an instance starts: concurrent requests share one directory load, and a subscription
    created after it is still found by its own read."""
    for i in range(40):
        await register(services, f"user{i}@example.com", f"sub-{i}", f"secret-{i}")
    lookups = CountingLookups(services)
    loads = 0
    list_all = services.store.subscriptions.list_all

    async def counting_list_all() -> Any:
        nonlocal loads
        loads += 1
        return await list_all()

    services.store.subscriptions.list_all = counting_list_all
    bodies = [{"value": [notification(f"sub-{i}", f"secret-{i}")]} for i in range(40)]
    replies = await asyncio.gather(*(NOTIFY(http("POST", URL, body=b)) for b in bodies))
    assert [json.loads(r.get_body())["queued"] for r in replies] == [1] * 40
    assert loads == 1 and lookups.calls == []
    await register(services, "late@example.com", "sub-late", "secret-late")
    body = {"value": [notification("sub-late", "secret-late")]}
    assert json.loads((await NOTIFY(http("POST", URL, body=body))).get_body())["queued"] == 1
    assert loads == 1 and lookups.calls == ["sub-late"]
    jobs = await drain(services) + await drain(services)
    assert sorted(j.mailbox for j in jobs) == sorted(
        [f"user{i}@example.com" for i in range(40)] + ["late@example.com"]
    )
