"""Runs one queued job: claim the stream, run its processor, record the run, release.

Every trigger ends here (notification, 2-hour push, 30-minute reconciliation, manual sync), so
they all share one path.  When a run claims, waits, reads again and releases is decided by the
stream lifecycle in ``sync.core.streams``; this module does the I/O.  Rules that keep the queue
healthy:

* a job whose stream is busy (another worker holds the lease) is re-sent with a delay rather
  than failed, so it is neither lost nor burned through the host's retry budget;
* ``RetryLater`` (throttling, outages) re-sends the job for the moment the server named, or,
  when it named none, after an exponential back-off with full jitter that grows with the job's
  ``attempt`` (``sync.core.backoff``), so streams that failed together come back spread out;
* ``ResyncRequired`` marks the cursor and queues a resync job;
* ``ReauthRequired`` is recorded and stops there: only an operator can fix credentials;
* anything else is recorded and re-raised, so the host retries with back-off and finally moves
  the message to the poison queue, where ``python -m sync status`` reports it.

One mailbox's failure never touches another's jobs: each job is one (mailbox, stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sync.core import schedule
from sync.core.backoff import Backoff
from sync.core.errors import InvalidRequest, ReauthRequired, ResyncRequired, RetryLater
from sync.core.jobs import Job, JobKind, Stream
from sync.core.schedule import Cadence
from sync.core.state_models import Cursor, JobStatus, Lease, Mailbox, RunRecord, utcnow
from sync.core.streams import (
    FOLLOW_UP_REASON,
    LeaseState,
    Marked,
    StreamRun,
    lease_owner,
    lease_state,
    renew_interval,
    stream_marker,
)
from sync.engine.clients import forget_schema
from sync.engine.health import record_outcome
from sync.engine.registry import RunContext, lookup
from sync.logs import RateLimitedLog, describe
from sync.runtime import Services
from sync.state.store import LeaseLost
from sync.telemetry import bind
from sync.workbooks.client import job_slots

log = logging.getLogger("sync.engine")
RETRIES = RateLimitedLog(log)  # one line per source per minute during a storm or an outage

OUTLOOK_STREAMS = (Stream.SENT, Stream.CONTACTS, Stream.EVENTS, Stream.TODO)
RECONCILE_STREAMS = (*OUTLOOK_STREAMS, Stream.PEOPLE)
MAX_DELAY_SECONDS = 6 * 24 * 3600  # queue visibility can be at most 7 days
LAST_ATTEMPT = 5  # host.json maxDequeueCount: after this attempt the host poisons the message
# A server-named wait is honoured and stretched by up to this fraction, so the streams one
# Retry-After stopped do not all return in the same second.
RETRY_AFTER_SPREAD = 0.1


def workbooks_share(services: Services) -> int:
    """Workbooks requests one stream job may have in flight: with the limit split, its share
    of the identity's limit (a mailbox runs at most one job per stream at a time, whichever
    instances run them), else the whole limit."""
    limit = services.settings.workbooks.max_concurrency
    if not services.settings.workbooks.split_concurrency:
        return limit
    return max(1, limit // len(RECONCILE_STREAMS))


def streams_for(kind: JobKind, mode: str | None = None) -> tuple[Stream, ...]:
    """Which streams a fan-out job covers."""
    if kind == JobKind.PUSH:
        return OUTLOOK_STREAMS
    if kind == JobKind.RENEW:
        return (Stream.SUBSCRIPTIONS,)
    if kind == JobKind.MANUAL and mode == "push":
        return OUTLOOK_STREAMS
    return RECONCILE_STREAMS


FAN_OUT_CONCURRENCY = 32  # queue sends in flight while a timer fans out
RENEW_SPREAD_SECONDS = 30 * 60  # renewals arrive spread over this long (48 h of margin)
# What each periodic kind of work queues, per stream.
CADENCE_JOBS: dict[Cadence, tuple[JobKind, tuple[Stream, ...]]] = {
    Cadence.RECONCILE: (JobKind.RECONCILE, RECONCILE_STREAMS),
    Cadence.PUSH: (JobKind.PUSH, OUTLOOK_STREAMS),
    Cadence.TODO_POLL: (JobKind.PUSH, (Stream.TODO,)),
}


@dataclass(frozen=True)
class Planned:
    """One job a fan-out sends, and when it should arrive."""

    job: Job
    at: datetime


async def fan_out(
    services: Services,
    cadence: Cadence,
    reason: str,
    window: tuple[datetime, datetime],
    *,
    now: datetime | None = None,
) -> int:
    """A timer tick: the jobs of the mailboxes due for ``cadence`` in ``window``
    (``sync.core.schedule``), each sent so that it arrives at its own instant.  Due-ness is
    worked out from the mailbox list alone; only a due mailbox's cursors are read, once, to
    leave out a stream that is busy or whose previous job has not run yet.  Returns jobs sent."""
    now = now or utcnow()
    mailboxes = await services.store.mailboxes.list(enabled_only=True)
    due = schedule.due(((m.id, m.policy) for m in mailboxes), cadence, *window)
    policies = {m.id: m.policy for m in mailboxes}
    kind, streams = CADENCE_JOBS[cadence]
    gate = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

    async def jobs_of(d: schedule.Due) -> list[Planned]:
        async with gate:
            cursors = await services.store.cursors.list_for_mailbox(d.mailbox)
        by_stream = {c.stream: c for c in cursors}
        interval = cadence.interval_seconds(policies[d.mailbox])
        out = []
        for stream in streams:
            cursor = by_stream.get(stream)
            busy = cursor is not None and lease_live(cursor, now)
            last = cursor.last_success_at if cursor is not None else None
            if schedule.hold_back(busy=busy, last_success=last, interval_seconds=interval, at=d.at):
                continue
            out.append(
                Planned(Job(mailbox=d.mailbox, stream=stream, kind=kind, reason=reason), d.at)
            )
        return out

    planned = [p for batch in await asyncio.gather(*(jobs_of(d) for d in due)) for p in batch]
    await _send_all(services, planned, now)
    held = len(due) * len(streams) - len(planned)
    log.info(
        "%s: %d mailbox(es) due, %d job(s) queued, %d held back",
        reason,
        len(due),
        len(planned),
        held,
    )
    return len(planned)


async def fan_out_renewals(services: Services, reason: str, *, now: datetime | None = None) -> int:
    """The renewal sweep: one job per enabled mailbox, arriving spread over
    ``RENEW_SPREAD_SECONDS`` by the mailbox's stable offset (renewals have 48 h of margin)."""
    now = now or utcnow()
    mailboxes = await services.store.mailboxes.list(enabled_only=True)
    planned = []
    for m in mailboxes:
        at = now + timedelta(seconds=schedule.offset_seconds(m.id, RENEW_SPREAD_SECONDS))
        for stream in streams_for(JobKind.RENEW):
            job = Job(mailbox=m.id, stream=stream, kind=JobKind.RENEW, reason=reason)
            planned.append(Planned(job, at))
    await _send_all(services, planned, now)
    log.info("%s: queued %d job(s)", reason, len(planned))
    return len(planned)


def lease_live(cursor: Cursor, now: datetime) -> bool:
    """Another worker runs the stream now (its lease has not expired)."""
    return lease_state(cursor.lease_owner, cursor.lease_until, "", now) is LeaseState.HELD


async def _send_all(services: Services, planned: list[Planned], now: datetime) -> None:
    """Send concurrently (bounded), each with the visibility delay that makes it arrive at
    its instant (whole seconds, rounded up: never early)."""
    gate = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

    async def one(p: Planned) -> None:
        delay = math.ceil((p.at - now).total_seconds())
        async with gate:
            await services.queue.send(
                p.job, delay_seconds=min(delay, MAX_DELAY_SECONDS) if delay > 0 else None
            )

    await asyncio.gather(*(one(p) for p in planned))


# What each manual mode runs per stream: a push is one-way like the 2-hour timer; a full sync
# is a two-way reconciliation; a resync re-reads both sides from scratch.
MANUAL_KINDS = {"push": JobKind.PUSH, "full": JobKind.MANUAL, "resync": JobKind.RESYNC}


async def request_manual(
    services: Services, mailbox: str, mode: str, args: dict[str, str] | None = None
) -> JobStatus:
    """Queue an operator-requested sync and create its progress record.  ``args`` travel
    with each stream's job (``restore_removed``: a resync brings back removed items)."""
    job = Job(
        mailbox=mailbox,
        stream=Stream.ALL,
        kind=JobKind.MANUAL,
        mode=mode,
        reason="manual",
        args=dict(args or {}),
    )
    status = JobStatus(job_id=job.job_id, mailbox=job.mailbox, kind=mode)
    await services.store.jobs.put(status)
    await services.queue.send(job)
    return status


async def _expand_manual(services: Services, job: Job) -> None:
    streams = streams_for(JobKind.MANUAL, job.mode)
    kind = MANUAL_KINDS.get(job.mode or "", JobKind.MANUAL)
    if job.mode == "resync":
        for stream in streams:
            await services.store.cursors.request_resync(job.mailbox, stream, "manual resync")
    await services.store.jobs.update(
        job.job_id,
        lambda s: s.model_copy(update={"state": "running", "streams_total": len(streams)}),
    )
    for stream in streams:
        await services.queue.send(
            job.model_copy(
                update={"stream": stream, "kind": kind, "enqueued_at": datetime.now(UTC)}
            )
        )


async def _progress(services: Services, job: Job, run: RunRecord) -> None:
    # Manual jobs carry their mode (a manual push runs as PUSH); timer jobs have none.
    manual = job.mode is not None or job.kind in (JobKind.MANUAL, JobKind.RESYNC)
    if not manual or await services.store.jobs.get(job.job_id) is None:
        return

    def bump(s: JobStatus) -> JobStatus:
        counts = dict(s.counts)
        for key, n in run.counts.items():
            counts[key] = counts.get(key, 0) + n
        done = s.streams_done + 1
        failed = s.state == "failed" or run.status == "failed"
        state = "failed" if failed else ("done" if done >= s.streams_total else "running")
        message = (
            s.message if not run.message else f"{s.message}\n{run.stream}: {run.message}".strip()
        )
        return s.model_copy(
            update={"streams_done": done, "counts": counts, "state": state, "message": message}
        )

    await services.store.jobs.update(job.job_id, bump)


def retry_backoff(services: Services) -> Backoff:
    app = services.settings.app
    return Backoff(app.retry_base_seconds, app.retry_cap_seconds, RETRY_AFTER_SPREAD)


def retry_delay(services: Services, exc: RetryLater, attempt: int) -> float:
    """Seconds until retry ``attempt`` of a job that ended in ``exc``: the server's time when
    it named one, else the back-off for that attempt."""
    after = (exc.retry_at - utcnow()).total_seconds() if exc.retry_at is not None else None
    return retry_backoff(services).delay(attempt, after)


async def _requeue(services: Services, job: Job, delay: float, reason: str) -> None:
    # Whole seconds (queue visibility), rounded up so a server-named wait is never cut short.
    seconds = int(min(max(math.ceil(delay), 1), MAX_DELAY_SECONDS))
    await services.queue.send(job.model_copy(update={"reason": reason}), delay_seconds=seconds)


def _not_before_follow_up(ctx: RunContext, delay: float) -> float:
    """A run that took a remembered marker is re-delivered no earlier than its follow-up read
    would have been (``sync.core.streams``: the memory's invariant)."""
    due = ctx.life.follow_up_in(time.monotonic()) if ctx.life is not None else None
    return delay if due is None else max(delay, due)


async def _follow_up(services: Services, job: Job, wait: float) -> None:
    """Queue the stream's follow-up read, invisible until ``wait`` has passed, and mark the
    stream so notifications until then coalesce into it (a burst queues one follow-up, not
    one per notification).  Nothing waits in this worker: its lease and slot are freed."""
    marker = stream_marker(job.stream)
    ttl = services.settings.app.dirty_marker_ttl_seconds
    placed = await services.store.dirty.place(job.mailbox, marker, ttl_seconds=ttl)
    marked = placed.outcome is Marked.QUEUE
    follow = Job(
        mailbox=job.mailbox,
        stream=job.stream,
        kind=JobKind.DIRTY,
        reason=FOLLOW_UP_REASON,
        marker_etag=placed.etag,
    )
    # Whole seconds, rounded up: the read must not come before the window has passed.
    seconds = int(min(math.ceil(wait), MAX_DELAY_SECONDS))
    try:
        await services.queue.send(follow, delay_seconds=seconds)
    except Exception:
        if marked:  # so the next notification queues a job of its own
            with contextlib.suppress(Exception):
                await services.store.dirty.clear(job.mailbox, marker)
        raise


async def _keep_lease(services: Services, lease: Lease) -> None:
    seconds = services.settings.app.lease_seconds
    while True:
        await asyncio.sleep(renew_interval(seconds))
        lease = await services.store.cursors.renew(lease, seconds)


async def _run_processor(ctx: RunContext, run: RunRecord) -> None:
    processor = lookup(ctx.job.stream, ctx.job.kind)
    if processor is None:
        run.status = "skipped"
        run.message = f"no processor for stream '{ctx.job.stream}' ({ctx.job.kind}) in this build"
        return
    await processor(ctx)
    # The mass-change brake stops a run before it writes; show that, not "ok".
    run.status = "stopped" if ctx.counts.get("brake_stopped") else "ok"


async def _handle_errors(services: Services, job: Job, run: RunRecord, ctx: RunContext) -> None:
    try:
        await _run_processor(ctx, run)
    except RetryLater as exc:
        attempt = job.attempt + 1
        delay = _not_before_follow_up(ctx, retry_delay(services, exc, attempt))
        run.status, run.message = "retry", f"retry {attempt} in {math.ceil(delay)} s: {exc}"
        RETRIES.warning(
            f"{exc.source or 'a service'} asks to retry later; jobs re-queued with back-off",
            f"{job.mailbox}/{job.stream}: {describe(exc)}; retry {attempt} in {math.ceil(delay)} s",
        )
        retry = job.model_copy(update={"attempt": attempt})
        await _requeue(services, retry, delay, f"retry: {exc}"[:200])
    except ResyncRequired as exc:
        run.status, run.message = "retry", f"resync required: {exc}"
        await services.store.cursors.request_resync(job.mailbox, job.stream, str(exc)[:500])
        await services.queue.send(
            job.model_copy(update={"kind": JobKind.RESYNC, "reason": "resync"}),
            delay_seconds=math.ceil(_not_before_follow_up(ctx, 0.0)),
        )
    except ReauthRequired as exc:
        run.status, run.message = "failed", f"credentials or permission problem: {exc}"
        run.errors.append(str(exc))
    except LeaseLost as exc:
        run.status, run.message = "stopped", str(exc)


async def _pass(
    services: Services, job: Job, run: RunRecord, ctx: RunContext, life: StreamRun
) -> None:
    """The run's pass, then the follow-up its lifecycle asks for (``sync.core.streams``: a
    notification the webhook answered from memory just after the run took the marker has no
    job of its own).  The follow-up is a queued job, so the lease and the trigger slot are
    released as soon as the pass ends."""
    await _handle_errors(services, job, run, ctx)
    # A stopped run (lost lease, mass-change brake) has no re-delivery of its own either.
    ended_well = run.status in ("ok", "stopped")
    wait = life.pass_ended(ok=ended_well, now=time.monotonic())
    if wait is not None:
        await _follow_up(services, job, wait)
        ctx.count("follow_up_queued")


async def _run_stream(services: Services, job: Job, mailbox: Mailbox, run: RunRecord) -> None:
    life = StreamRun(job.kind, services.settings.app.webhook_memo_seconds)
    lease = await services.store.cursors.claim(
        job.mailbox,
        job.stream,
        lease_owner(job.job_id, uuid.uuid4().hex[:8], job.kind),
        services.settings.app.lease_seconds,
    )
    if lease is None:
        run.status, run.message = "retry", "stream busy; job re-sent"
        await _requeue(services, job, life.refused(), "stream busy")
        return
    life.claimed()
    keeper = asyncio.create_task(_keep_lease(services, lease))
    ctx = RunContext(job=job, mailbox=mailbox, lease=lease, services=services, life=life)
    try:
        # A notification's job takes its stream's marker: the delta read that follows covers
        # every notification so far.  Other jobs (timers, manual runs, resyncs) leave the
        # marker to the job it stands for, which runs anyway; while it stands, notifications
        # coalesce into that job instead of queuing one more (and the run saves a read).
        if job.kind is JobKind.DIRTY:
            await ctx.clear_marker(first=True)
        try:
            with job_slots(workbooks_share(services)):
                await _pass(services, job, run, ctx, life)
        finally:
            run.counts = ctx.counts
            run.identity_counts = ctx.identity_counts
            if ctx.messages and not run.message:
                run.message = "; ".join(ctx.messages)[:2000]
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        # The run's last position (if it left one) is written with the release: a position
        # reached by a completed round is kept even when a later round failed.
        last = ctx.at_release
        if not await services.store.cursors.release(lease, last) and last is not None:
            run.status = "stopped"
            run.message = (
                "lease lost before the run's position was saved; the next run reads those "
                "changes again (their records exist, nothing is created twice)"
            )


async def run_job(services: Services, job: Job, *, dequeue_count: int = 1) -> RunRecord:
    """Process one job end to end; returns the recorded run.  Every log record written
    meanwhile carries the job's and the run's ids, mailbox, stream and kind."""
    run = RunRecord(
        mailbox=job.mailbox,
        stream=job.stream,
        job_id=job.job_id,
        kind=job.kind,
        reason=job.reason,
        run_id=uuid.uuid4().hex[:12],
    )
    fields = {"job_id": job.job_id, "run_id": run.run_id, "mailbox": job.mailbox}
    with bind(**fields, stream=str(job.stream), kind=str(job.kind)):
        return await _run_job(services, job, run, dequeue_count)


async def _run_job(services: Services, job: Job, run: RunRecord, dequeue_count: int) -> RunRecord:
    mailbox = await services.store.mailboxes.for_job(job.mailbox)
    if mailbox is None or not mailbox.enabled:
        run.status = "skipped"
        run.message = "mailbox not registered" if mailbox is None else "mailbox disabled"
    elif job.stream == Stream.ALL:
        await _expand_manual(services, job)
        run.status, run.message = "ok", "fanned out"
    else:
        try:
            await _run_stream(services, job, mailbox, run)
        except Exception as exc:
            run.status, run.message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            run.errors.append(run.message)
            if isinstance(exc, InvalidRequest) and exc.source == "workbooks":
                # Refused as malformed: the tenant may have changed under the schema this
                # process keeps for hours; the retry reads it again.
                forget_schema(services, mailbox.id)
            run.finished_at = utcnow()
            await _record(services, job, run)
            if dequeue_count >= LAST_ATTEMPT:
                await _progress(services, job, run)
            raise
    run.finished_at = utcnow()
    await _record(services, job, run)
    if run.status != "retry" and job.stream != Stream.ALL:
        await _progress(services, job, run)
    return run


async def _record(services: Services, job: Job, run: RunRecord) -> None:
    """The run's history row and its stream's health row, side by side: the job holds its
    trigger slot until both are written, and neither needs the other."""
    await asyncio.gather(services.store.runs.put(run), record_outcome(services, job, run))
