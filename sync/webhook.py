"""Webhook intake: the only code Graph talks to. Validates, verifies, enqueues, answers fast.

It never does sync work and never imports the Graph SDK: Graph flags an endpoint as slow above
2,900 ms and drops notifications once 15% are slow, so the path is a subscription lookup, one
conditional write that coalesces bursts, and (for the first notification of a burst) one queue
message.  Answers:

* ``?validationToken=`` -> 200 text/plain with the decoded token (400 if it is not plain text);
* notifications -> 202 once every valid item is queued (or already pending);
* 5xx only when state or the queue failed, or had not answered within
  ``webhook_deadline_seconds``, so Graph retries later;
* 4xx for bodies Graph would never send (``sync.core.bodies``: too large, not JSON, nested too
  deep, numbers too long, wrong shapes), with no state change.

Anyone can POST here, so what a request can cost is bounded (``sync.core.notifications``): its
subscriptions are looked up concurrently, at most ``MAX_LOOKUPS`` of them not already in memory,
and misses are remembered briefly.  Drops are logged once per request with counts, and that line
(like the 503 line of an outage) at most once a minute with a count of the rest (``sync.logs``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync.core.bodies import BodyError, read_json
from sync.core.jobs import Job, JobKind, Stream
from sync.core.notifications import (
    LIFECYCLE_EVENTS,
    LOOKUP_CONCURRENCY,
    MAX_LOOKUPS,
    NotificationItem,
    body_limits,
    check_validation_token,
    parse_collection,
    plan_lookups,
)
from sync.core.state_models import SubscriptionRecord
from sync.core.streams import (
    Intake,
    Marked,
    MarkerCheck,
    OwnMarker,
    lifecycle_marker,
    on_notification,
    stream_marker,
)
from sync.core.subscriptions import hash_client_state
from sync.logs import RateLimitedLog, expected_failure
from sync.runtime import Services

if TYPE_CHECKING:
    from sync.state.store import Placed

log = logging.getLogger("sync.webhook")
LOG = RateLimitedLog(log)
DROPPED = "webhook: notification items dropped"
UNAVAILABLE = "webhook: storage or queue unavailable, answering 503 so Graph retries"
LATE = "webhook: storage slower than the deadline, answering 503 so Graph retries"
BUSY = '{"error":"temporarily unable to accept notifications"}'
# Intakes still running after their request was answered 503 at the deadline: referenced
# here until they finish, so they are not collected half-way.  Past MAX_LATE of them storage
# is plainly struggling: new requests are answered 503 at once, without adding to its load
# (and without a pile of waiting intakes growing for as long as a brownout lasts).
_LATE: set[asyncio.Future[Reply]] = set()
MAX_LATE = 256


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
    dropped_unverified: int = 0  # over the per-request lookup budget
    dropped_malformed: int = 0
    rejected_requests: int = 0
    failures: int = 0
    late: int = 0  # answered 503 at the deadline while storage was still busy

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


STATS = IntakeStats()


@dataclass
class _Outcome:
    queued: int = 0
    coalesced: int = 0
    dropped: int = 0
    unknown: int = 0
    bad_secret: int = 0
    unverified: int = 0
    malformed: int = 0
    seen: set[tuple[str, str, str]] = field(default_factory=set)


async def _load_directory(services: Services) -> None:
    """Every subscription record into memory with one query, shared by concurrent requests.
    A failed load leaves the point reads to answer."""
    cache = services.cache
    if cache.subscription_load is not None:
        await asyncio.shield(cache.subscription_load)
        return
    cache.subscriptions.loading(time.monotonic())
    flight = cache.subscription_load = asyncio.get_running_loop().create_future()
    try:
        records = await services.store.subscriptions.list_all()
        cache.subscriptions.remember_all(records, time.monotonic())
    except Exception as exc:
        # Storage down: the point reads that follow fail the same way and the request's 503
        # line says so; anything else is worth its own line (once a minute).
        if not expected_failure(exc):
            LOG.failure(
                "webhook: could not load the subscriptions; looking them up one by one", exc
            )
    finally:
        cache.subscription_load = None
        flight.set_result(None)


async def _subscriptions(
    services: Services, sub_ids: Iterable[str]
) -> dict[str, SubscriptionRecord | None]:
    """Each distinct subscription of a request: its record, or None when there is none.  Ids
    over the lookup budget are left out (their items are dropped unverified).  When a lookup
    is needed and the directory is due (``SubscriptionCache.load_due``), every record is
    loaded at once first, which answers most of them."""
    cache = services.cache.subscriptions
    ids = list(sub_ids)
    plan = plan_lookups(ids, lambda sub_id: cache.lookup(sub_id, time.monotonic()))
    loading = services.cache.subscription_load is not None
    if plan.fetch and (loading or cache.load_due(time.monotonic())):
        await _load_directory(services)
        plan = plan_lookups(ids, lambda sub_id: cache.lookup(sub_id, time.monotonic()))
    found = dict(plan.known)
    if not plan.fetch:
        return found
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def one(sub_id: str) -> SubscriptionRecord | None:
        async with gate:
            record = await services.store.subscriptions.get(sub_id)
        cache.remember(sub_id, record, time.monotonic())
        return record

    # Every lookup finishes before the answer (no read outlives its request); the first
    # failure then makes the answer a 503.
    results = await asyncio.gather(*(one(s) for s in plan.fetch), return_exceptions=True)
    for sub_id, result in zip(plan.fetch, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        found[sub_id] = result
    return found


def _secret_ok(record: SubscriptionRecord, client_state: str) -> bool:
    # Compare digests in constant time: the stored value is a hash, never the secret.
    return hmac.compare_digest(hash_client_state(client_state), record.client_state_hash)


def _verified(
    records: Mapping[str, SubscriptionRecord | None], item: NotificationItem, out: _Outcome
) -> SubscriptionRecord | None:
    if item.subscription_id not in records:
        out.unverified += 1
        return None
    record = records[item.subscription_id]
    if record is None:
        out.unknown += 1
        return None
    if not item.client_state or not _secret_ok(record, item.client_state):
        out.bad_secret += 1
        return None
    return record


def _validation(query: Mapping[str, str], services: Services) -> Reply | None:
    token = query.get("validationToken")
    if token is None:
        return None
    try:
        echoed = check_validation_token(token, services.settings.app.webhook_max_token_chars)
    except BodyError as exc:
        STATS.rejected_requests += 1
        return Reply(exc.status, str(exc), "text/plain")
    return Reply(200, echoed, "text/plain")


def _parse(body: bytes, headers: Mapping[str, str], services: Services) -> list[NotificationItem]:
    limits = body_limits(services.settings.app.webhook_max_body_bytes)
    return parse_collection(read_json(body, headers.get("content-type"), limits))


async def _mark_and_send(
    services: Services,
    mailbox: str,
    marker: str,
    make_job: Callable[[str | None], Job],
    *,
    remember_for: float = 0.0,
    expect_live: bool = False,
    own: OwnMarker | None = None,
) -> Placed:
    """Set the 'job pending' marker and queue the job (built only then, with the marker's
    ETag so its run takes the marker in one request).  ``remember_for``: a live marker is
    flagged, dated that far ahead, so this instance may answer repeats from memory
    (``Marked``); ``expect_live`` and ``own``: the first look at the marker
    (``DirtyMarkers.place``)."""
    ttl = services.settings.app.dirty_marker_ttl_seconds
    placed = await services.store.dirty.place(
        mailbox,
        marker,
        ttl_seconds=ttl,
        remember_for=remember_for,
        expect_live=expect_live,
        own=own,
    )
    if placed.outcome is not Marked.QUEUE:
        return placed
    job = make_job(placed.etag)
    try:
        await services.queue.send(job)
    except Exception:
        # Undo the marker so the retry Graph makes after our 5xx can enqueue again.
        await services.store.dirty.clear(mailbox, marker)
        raise
    return placed


async def queue_stream(services: Services, mailbox: str, stream: Stream, reason: str) -> bool:
    """Queue one DIRTY job for a stream through its 'job pending' marker, cheaply under bursts
    (the cases are ``sync.core.streams.Intake``): True when a job was queued, False when one
    was already pending.

    * in a burst (this instance looked at the stream's marker less than
      ``webhook_memo_seconds`` ago: ``in_burst``), a stream whose marker this instance found
      live (a job queued, not started) and flagged less than that window ago is answered
      from memory, for no longer than the flag is dated for (the run that takes a flagged
      marker reads again once that date has passed, with a follow-up job if its own read
      comes earlier, so no change waits for the next timer);
    * concurrent requests for one stream share a single marker check (single flight), and a
      follower fails with the leader, so the caller's sender retries both if the leader could
      not persist.

    Graph notifications and Workbooks webhooks (``sync.engine.workbooks_webhooks``) both come
    through here.
    """
    stream_key = (mailbox, str(stream))
    memo, flights = services.cache.webhook_memo, services.cache.webhook_flights
    window = services.settings.app.webhook_memo_seconds
    intake = on_notification(
        repeat=False,
        remembered=memo.remembers(stream_key, time.monotonic(), window),
        in_flight=stream_key in flights,
    )
    if intake is Intake.REMEMBERED:
        return False
    if intake is Intake.IN_FLIGHT:
        await asyncio.shield(flights[stream_key])  # raises if the leader failed: answer 503
        return False
    flight = asyncio.get_running_loop().create_future()
    flights[stream_key] = flight
    asked = time.monotonic()  # the memory dates from before the marker was read
    remember = memo.in_burst(stream_key, asked, window)
    own = memo.own(stream_key)
    check = memo.first_check(stream_key, remember=remember)
    try:
        placed = await _mark_and_send(
            services,
            mailbox,
            stream_marker(stream),
            lambda etag: Job(
                mailbox=mailbox,
                stream=stream,
                kind=JobKind.DIRTY,
                reason=reason,
                marker_etag=etag,
            ),
            remember_for=window if remember else 0.0,
            expect_live=check is MarkerCheck.READ,
            own=own if check is MarkerCheck.OWN else None,
        )
    except BaseException as exc:
        memo.placed(stream_key, None)  # the version it knew may be spent
        flight.set_exception(exc)
        flight.exception()  # mark retrieved: followers may be none
        raise
    else:
        queued = placed.outcome is Marked.QUEUE
        flight.set_result(queued)
        memo.found(stream_key, live=not queued)
        if own is not None and placed.found is not None:
            memo.learned(still_there=placed.found)  # whichever look was made
        memo.placed(stream_key, placed.own if queued else None)
        # Only a flagged marker promises a read after its date: only then may repeats be
        # answered from memory, and only until that date.
        if placed.outcome is Marked.REMEMBERED:
            memo.saw_marker(stream_key, asked, placed.remember_for)
    finally:
        flights.pop(stream_key, None)
    return queued


async def _enqueue_dirty(services: Services, record: SubscriptionRecord, out: _Outcome) -> None:
    """Queue one job per dirty stream (``queue_stream``); within one request, repeats are
    counted once."""
    key = (record.mailbox, record.stream, "dirty")
    if key in out.seen:
        out.coalesced += 1
        return
    out.seen.add(key)
    if await queue_stream(services, record.mailbox, Stream(record.stream), "notification"):
        out.queued += 1
    else:
        out.coalesced += 1


async def _enqueue_lifecycle(
    services: Services, record: SubscriptionRecord, item: NotificationItem, out: _Outcome
) -> None:
    event = item.lifecycle_event or ""
    if event not in LIFECYCLE_EVENTS:
        out.malformed += 1
        return
    key = (record.subscription_id, event, "lifecycle")
    if key in out.seen:
        out.coalesced += 1
        return
    out.seen.add(key)
    placed = await _mark_and_send(
        services,
        record.mailbox,
        lifecycle_marker(record.subscription_id, event),
        lambda _etag: Job(
            mailbox=record.mailbox,
            stream=Stream(record.stream),
            kind=JobKind.LIFECYCLE,
            reason=f"lifecycle:{event}",
            subscription_id=record.subscription_id,
            lifecycle_event=event,
        ),
    )
    if placed.outcome is Marked.QUEUE:
        out.queued += 1
    else:
        out.coalesced += 1


def _summary(out: _Outcome) -> str:
    return f'{{"queued":{out.queued},"coalesced":{out.coalesced},"dropped":{out.dropped}}}'


def _count_drops(out: _Outcome, items: int) -> None:
    """One line per request with counts (and at most one a minute: ``LOG``)."""
    out.dropped = out.unknown + out.bad_secret + out.unverified + out.malformed
    STATS.dropped_unknown += out.unknown
    STATS.dropped_bad_secret += out.bad_secret
    STATS.dropped_unverified += out.unverified
    STATS.dropped_malformed += out.malformed
    if not out.dropped:
        return
    # A wrong clientState or a flood of ids is someone else's request: worth a warning.
    level = logging.WARNING if out.bad_secret or out.unverified else logging.INFO
    LOG.log(
        level,
        DROPPED,
        f"{out.dropped} of {items} in one request: {out.unknown} unknown subscription, "
        f"{out.bad_secret} wrong clientState, {out.unverified} not looked up (over "
        f"{MAX_LOOKUPS} unknown subscriptions), {out.malformed} not a lifecycle event",
    )


async def _process(
    services: Services, items: list[NotificationItem], *, lifecycle_only: bool
) -> Reply:
    out = _Outcome()
    STATS.received += len(items)
    try:
        records = await _subscriptions(services, (item.subscription_id for item in items))
        for item in items:
            record = _verified(records, item, out)
            if record is None:
                continue
            if item.lifecycle_event:
                await _enqueue_lifecycle(services, record, item, out)
            elif lifecycle_only:
                out.malformed += 1
            else:
                await _enqueue_dirty(services, record, out)
    except Exception as exc:
        STATS.failures += 1
        if expected_failure(exc):
            LOG.failure(UNAVAILABLE, exc)
        else:
            LOG.failure("webhook: could not persist notifications, answered 503", exc)
        return Reply(503, BUSY)
    STATS.queued += out.queued
    STATS.coalesced += out.coalesced
    _count_drops(out, len(items))
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
    except BodyError as exc:
        STATS.rejected_requests += 1
        return Reply(exc.status, json.dumps({"error": str(exc)}))
    return await _within_deadline(services, _process(services, items, lifecycle_only=lifecycle))


async def _within_deadline(services: Services, intake: Coroutine[Any, Any, Reply]) -> Reply:
    """The intake's reply, or 503 once ``webhook_deadline_seconds`` have passed.

    Graph waits 3 s for a reply, counts one after 2.9 s as slow, and drops every notification
    to an endpoint with 15 % slow replies: a storage service that accepts requests and then
    answers late (a brownout, or the SDK's own retries) would otherwise make the whole
    tenant's notifications late, then lost.  A 503 is not slow: Graph sends it again later.
    The intake is not cancelled (a marker set and its job not yet queued would hold the
    stream until the sweeper); it goes on, and a job it queues is kept, so the notification
    Graph sends again finds the stream's job pending."""
    deadline = services.settings.app.webhook_deadline_seconds
    if len(_LATE) >= MAX_LATE:
        intake.close()  # never started
        STATS.late += 1
        LOG.failure(LATE, TimeoutError(f"{len(_LATE)} earlier intakes still waiting"))
        return Reply(503, BUSY)
    work = asyncio.ensure_future(intake)
    try:
        # Neither the timeout nor this request's cancellation (Graph hung up) cancels it.
        await asyncio.wait({work}, timeout=deadline)
    finally:
        _keep(work)
    if work.done():
        return work.result()
    STATS.late += 1
    LOG.failure(LATE, TimeoutError(f"no reply from storage within {deadline:g} s"))
    return Reply(503, BUSY)


def _keep(work: asyncio.Future[Reply]) -> None:
    """Hold an unfinished intake until it finishes (the loop keeps only weak references)."""
    if not work.done():
        _LATE.add(work)
        work.add_done_callback(_LATE.discard)
