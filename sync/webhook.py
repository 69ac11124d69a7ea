"""Webhook intake: the only code Graph talks to. Validates, verifies, enqueues, answers fast.

It never does sync work and never imports the Graph SDK: Graph flags an endpoint as slow above
2,900 ms and drops notifications once 15% are slow, so the path is a subscription lookup, one
conditional write that coalesces bursts, and (for the first notification of a burst) one queue
message.  Answers:

* ``?validationToken=`` -> 200 text/plain with the decoded token (400 if it is not plain text);
* notifications -> 202 once every valid item is queued (or already pending);
* 5xx only when state or the queue failed, so Graph retries later;
* 4xx for bodies Graph would never send (wrong type, malformed, too large), with no state change.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sync.core.jobs import Job, JobKind, Stream
from sync.core.notifications import (
    LIFECYCLE_EVENTS,
    BadRequest,
    NotificationItem,
    check_content_type,
    check_validation_token,
    parse_collection,
)
from sync.core.state_models import SubscriptionRecord
from sync.core.streams import Intake, lifecycle_marker, on_notification, stream_marker
from sync.core.subscriptions import hash_client_state
from sync.runtime import Services

log = logging.getLogger("sync.webhook")

CACHE_SECONDS = 30.0  # subscription records change only on create/renew/delete


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str = "application/json"


@dataclass
class IntakeStats:
    """Per-process counters, reported by the status endpoint."""

    received: int = 0
    queued: int = 0
    coalesced: int = 0
    dropped_unknown: int = 0
    dropped_bad_secret: int = 0
    dropped_malformed: int = 0
    rejected_requests: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


STATS = IntakeStats()


@dataclass
class _Outcome:
    queued: int = 0
    coalesced: int = 0
    dropped: int = 0
    seen: set[tuple[str, str, str]] = field(default_factory=set)


async def _subscription(services: Services, sub_id: str) -> SubscriptionRecord | None:
    cache = services.cache.subscriptions
    hit = cache.get(sub_id)
    now = time.monotonic()
    if hit and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    record = await services.store.subscriptions.get(sub_id)
    if record is not None:
        if len(cache) > 10_000:
            cache.clear()
        cache[sub_id] = (now, record)
    else:
        cache.pop(sub_id, None)
    return record


def _secret_ok(record: SubscriptionRecord, client_state: str) -> bool:
    # Compare digests in constant time: the stored value is a hash, never the secret.
    return hmac.compare_digest(hash_client_state(client_state), record.client_state_hash)


async def _verified(services: Services, item: NotificationItem) -> SubscriptionRecord | None:
    record = await _subscription(services, item.subscription_id)
    if record is None:
        STATS.dropped_unknown += 1
        return None
    if not item.client_state or not _secret_ok(record, item.client_state):
        STATS.dropped_bad_secret += 1
        log.warning(
            "notification with wrong clientState dropped (subscription %s)", item.subscription_id
        )
        return None
    return record


def _validation(query: Mapping[str, str], services: Services) -> Reply | None:
    token = query.get("validationToken")
    if token is None:
        return None
    try:
        echoed = check_validation_token(token, services.settings.app.webhook_max_token_chars)
    except BadRequest as exc:
        STATS.rejected_requests += 1
        return Reply(exc.status, str(exc), "text/plain")
    return Reply(200, echoed, "text/plain")


def _parse(body: bytes, headers: Mapping[str, str], services: Services) -> list[NotificationItem]:
    check_content_type(headers.get("content-type"))
    return parse_collection(body, services.settings.app.webhook_max_body_bytes)


async def _mark_and_send(
    services: Services, mailbox: str, marker: str, make_job: Callable[[], Job]
) -> bool:
    """Set the 'job pending' marker and queue the job (built only then); True if queued,
    False if one was already pending."""
    ttl = services.settings.app.dirty_marker_ttl_seconds
    if not await services.store.dirty.mark(mailbox, marker, ttl_seconds=ttl):
        return False
    job = make_job()
    try:
        await services.queue.send(job)
    except Exception:
        # Undo the marker so the retry Graph makes after our 5xx can enqueue again.
        await services.store.dirty.clear(mailbox, marker)
        raise
    return True


async def _enqueue_dirty(services: Services, record: SubscriptionRecord, out: _Outcome) -> None:
    """Queue one job per dirty stream, cheaply under bursts (the cases are
    ``sync.core.streams.Intake``):

    * within one request, repeats are counted once;
    * a stream whose marker this instance saw live less than ``webhook_memo_seconds`` ago is
      answered from memory (the run that takes the marker re-reads the delta once that window
      has passed, so no change waits for the next timer);
    * concurrent requests for one stream share a single marker check (single flight), and a
      follower fails with the leader, so Graph retries both if the leader could not persist.
    """
    key = (record.mailbox, record.stream, "dirty")
    stream_key = (record.mailbox, record.stream)
    memo, flights = services.cache.webhook_memo, services.cache.webhook_flights
    window = services.settings.app.webhook_memo_seconds
    intake = on_notification(
        repeat=key in out.seen,
        remembered=memo.remembers(stream_key, time.monotonic(), window),
        in_flight=stream_key in flights,
    )
    out.seen.add(key)
    if intake is Intake.REPEAT or intake is Intake.REMEMBERED:
        out.coalesced += 1
        return
    if intake is Intake.IN_FLIGHT:
        await asyncio.shield(flights[stream_key])  # raises if the leader failed: answer 503
        out.coalesced += 1
        return
    flight = asyncio.get_running_loop().create_future()
    flights[stream_key] = flight
    try:
        queued = await _mark_and_send(
            services,
            record.mailbox,
            stream_marker(record.stream),
            lambda: Job(
                mailbox=record.mailbox,
                stream=Stream(record.stream),
                kind=JobKind.DIRTY,
                reason="notification",
            ),
        )
    except BaseException as exc:
        flight.set_exception(exc)
        flight.exception()  # mark retrieved: followers may be none
        raise
    else:
        flight.set_result(queued)
        memo.saw_marker(stream_key, time.monotonic())
    finally:
        flights.pop(stream_key, None)
    if queued:
        out.queued += 1
    else:
        out.coalesced += 1


async def _enqueue_lifecycle(
    services: Services, record: SubscriptionRecord, item: NotificationItem, out: _Outcome
) -> None:
    event = item.lifecycle_event or ""
    if event not in LIFECYCLE_EVENTS:
        out.dropped += 1
        STATS.dropped_malformed += 1
        return
    key = (record.subscription_id, event, "lifecycle")
    if key in out.seen:
        out.coalesced += 1
        return
    out.seen.add(key)
    queued = await _mark_and_send(
        services,
        record.mailbox,
        lifecycle_marker(record.subscription_id, event),
        lambda: Job(
            mailbox=record.mailbox,
            stream=Stream(record.stream),
            kind=JobKind.LIFECYCLE,
            reason=f"lifecycle:{event}",
            subscription_id=record.subscription_id,
            lifecycle_event=event,
        ),
    )
    if queued:
        out.queued += 1
    else:
        out.coalesced += 1


def _summary(out: _Outcome) -> str:
    return f'{{"queued":{out.queued},"coalesced":{out.coalesced},"dropped":{out.dropped}}}'


async def _process(
    services: Services, items: list[NotificationItem], *, lifecycle_only: bool
) -> Reply:
    out = _Outcome()
    try:
        for item in items:
            STATS.received += 1
            record = await _verified(services, item)
            if record is None:
                out.dropped += 1
                continue
            if item.lifecycle_event:
                await _enqueue_lifecycle(services, record, item, out)
            elif lifecycle_only:
                out.dropped += 1
                STATS.dropped_malformed += 1
            else:
                await _enqueue_dirty(services, record, out)
    except Exception:
        STATS.failures += 1
        log.exception("could not persist notifications; answering 503 so Graph retries")
        return Reply(503, '{"error":"temporarily unable to accept notifications"}')
    STATS.queued += out.queued
    STATS.coalesced += out.coalesced
    if out.dropped:
        log.info(
            "dropped %d notification item(s) (unknown subscription or bad clientState)", out.dropped
        )
    return Reply(202, _summary(out))


async def handle(
    services: Services,
    *,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    lifecycle: bool = False,
) -> Reply:
    """Entry point for both endpoints (``lifecycle=True`` for the lifecycle URL)."""
    validation = _validation(query, services)
    if validation is not None:
        return validation
    try:
        items = _parse(body, headers, services)
    except BadRequest as exc:
        STATS.rejected_requests += 1
        return Reply(exc.status, json.dumps({"error": str(exc)}))
    return await _process(services, items, lifecycle_only=lifecycle)
