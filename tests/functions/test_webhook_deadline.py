"""The webhook answers within its deadline when storage is slow, and keeps what it queues.

Graph counts a reply after 2.9 s as slow and drops every notification to an endpoint with 15 %
slow replies.  Storage here is Azurite behind a TCP relay that holds each request's bytes for
a while before passing them on (a brownout: connections accepted, answers late), or a listener
that never answers at all.  The services' table and queue clients are rebuilt against them with
the app's own builders, so with its retry policy and timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sync import webhook
from tests.functions.helpers import drain, notification, register, use_storage
from tests.support.relay import endpoint_port, relay, through

DEADLINE = 0.5
HOLD = 1.5  # seconds the slow relay holds each request


@contextlib.asynccontextmanager
async def storage_behind(services: Any, connection: str, hold: float) -> AsyncIterator[None]:
    """The services' table and queue clients rebuilt to reach Azurite through relays."""
    async with (
        relay(endpoint_port(connection, "Table"), hold) as tables,
        relay(endpoint_port(connection, "Queue"), hold) as queues,
    ):
        restore = use_storage(services, through(connection, Table=tables.port, Queue=queues.port))
        try:
            yield
        finally:
            leftovers = list(webhook._LATE)  # this test's own
            for late in leftovers:
                late.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            await restore()


async def _notify(services: Any) -> tuple[webhook.Reply, float]:
    body = json.dumps({"value": [notification("sub-1", "secret-1")]}).encode()
    started = time.monotonic()
    reply = await webhook.handle(
        services, query={}, headers={"content-type": "application/json"}, body=body
    )
    return reply, time.monotonic() - started


@pytest.fixture
def deadline(services: Any) -> Any:
    settings = services.settings
    app = settings.app.model_copy(update={"webhook_deadline_seconds": DEADLINE})
    services.settings = dataclasses.replace(settings, app=app)
    yield services
    services.settings = settings


async def test_slow_storage_gets_a_503_in_time_and_the_intake_still_queues_the_job(
    deadline: Any, azurite_connection: str
) -> None:
    services = deadline
    await register(services, "ann@example.com", "sub-1", "secret-1")
    late_before = webhook.STATS.late
    async with storage_behind(services, azurite_connection, HOLD):
        reply, took = await _notify(services)
        assert reply.status == 503 and took < DEADLINE + 0.4  # not the 1.5 s and more
        assert webhook.STATS.late == late_before + 1
        pending = list(webhook._LATE)
        assert len(pending) == 1
        finished = await asyncio.wait_for(pending[0], 30)  # the intake went on
        assert finished.status == 202
    # What it queued is kept: one job for the stream; Graph's retry finds it pending.
    jobs = await drain(services)
    assert [(j.mailbox, str(j.stream)) for j in jobs] == [("ann@example.com", "sent")]
    await services.queue.send(jobs[0])  # back on the queue, not yet run
    again, _ = await _notify(services)
    assert again.status == 202
    assert len(await drain(services)) == 1  # coalesced: no second job


async def test_storage_that_never_answers_gets_a_503_in_time(
    deadline: Any, azurite_connection: str
) -> None:
    services = deadline
    await register(services, "bob@example.com", "sub-1", "secret-1")
    async with storage_behind(services, azurite_connection, -1):
        reply, took = await _notify(services)
        assert reply.status == 503 and took < DEADLINE + 0.4
        assert json.loads(reply.body) == {"error": "temporarily unable to accept notifications"}


async def test_a_fast_intake_is_answered_as_before(deadline: Any) -> None:
    services = deadline
    await register(services, "cy@example.com", "sub-1", "secret-1")
    late_before = webhook.STATS.late
    reply, _ = await _notify(services)
    assert reply.status == 202 and webhook.STATS.late == late_before
    assert len(await drain(services)) == 1


async def test_past_the_cap_of_waiting_intakes_requests_get_a_503_at_once(
    deadline: Any, azurite_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long brownout does not pile up intakes: past ``MAX_LATE`` still waiting, a request
    is answered 503 without touching storage."""
    services = deadline
    await register(services, "dee@example.com", "sub-1", "secret-1")
    monkeypatch.setattr(webhook, "MAX_LATE", 1)
    async with storage_behind(services, azurite_connection, -1):
        first, took = await _notify(services)
        assert first.status == 503 and took >= DEADLINE  # waited for storage, then answered
        assert len(webhook._LATE) == 1
        second, took = await _notify(services)
        assert second.status == 503 and took < DEADLINE / 2  # answered at once
        assert len(webhook._LATE) == 1  # nothing more started


async def test_a_request_that_goes_away_still_has_its_intake_finished(
    deadline: Any, azurite_connection: str
) -> None:
    """Graph hanging up (or the host cancelling the request) does not cancel the intake."""
    services = deadline
    await register(services, "eve@example.com", "sub-1", "secret-1")
    async with storage_behind(services, azurite_connection, HOLD):
        request = asyncio.create_task(_notify(services))
        await asyncio.sleep(0.1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        pending = list(webhook._LATE)
        assert len(pending) == 1
        assert (await asyncio.wait_for(pending[0], 30)).status == 202
    jobs = await drain(services)
    assert [(j.mailbox, str(j.stream)) for j in jobs] == [("eve@example.com", "sent")]


async def test_a_marker_insert_whose_reply_is_lost_still_queues_its_job(
    services: Any, azurite_connection: str
) -> None:
    """Storage did the insert and the connection dropped before its answer: the webhook still
    queues the job at once (202), rather than a 503 whose retry would coalesce into a marker
    with no job behind it until the sweeper's re-send."""
    await register(services, "ann@example.com", "sub-1", "secret-1")
    async with relay(endpoint_port(azurite_connection, "Table")) as tables:
        restore = use_storage(services, through(azurite_connection, Table=tables.port))
        try:
            services.cache.subscriptions.remember_all(
                [await services.store.subscriptions.get("sub-1")], time.monotonic()
            )
            tables.lose_next_reply = True
            reply, _ = await _notify(services)
            assert not tables.lose_next_reply  # the fault happened
            assert reply.status == 202, reply.body
            assert json.loads(reply.body)["queued"] == 1
            (job,) = await drain(services)
            taken = await services.store.dirty.take("ann@example.com", "sent", job.marker_etag)
            assert taken is not None and not taken.remembered
        finally:
            await restore()
