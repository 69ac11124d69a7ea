"""Timers, the queue worker and the admin API through the azure-functions API."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from sync.blueprints import admin, timers, worker
from sync.core import schedule
from sync.core.jobs import Job, JobKind, Stream, encode_job
from sync.core.schedule import Cadence
from sync.core.state_models import Mailbox, MailboxPolicy
from sync.engine import registry, runner
from sync.engine.registry import RunContext
from tests.functions.helpers import drain, http, user_function
from tests.support.clock import next_tick, seconds, timers_at


async def _add(
    services: Any, mailbox: str, enabled: bool = True, policy: MailboxPolicy | None = None
) -> None:
    await services.store.mailboxes.put(
        Mailbox(
            id=mailbox,
            workbooks_url="https://secure.workbooks.com",
            api_key_ref="env:K",
            enabled=enabled,
            policy=policy or MailboxPolicy(),
        )
    )


def _msg(job: Job, dequeue_count: int = 1) -> QueueMessage:
    return QueueMessage(
        id="m1",
        body=base64.b64decode(encode_job(job)),
        dequeue_count=dequeue_count,
        pop_receipt="p",
    )


async def test_reconcile_timer_queues_a_due_mailbox_at_its_instant(services: Any) -> None:
    await _add(services, "ann@example.com")
    await _add(services, "off@example.com", enabled=False)
    at = next_tick("ann@example.com", Cadence.RECONCILE)
    assert next_tick("off@example.com", Cadence.RECONCILE, after=at - seconds(1)) != at
    with timers_at(at):
        await user_function(timers.reconcile_timer)(TimerRequest(past_due=True))
    jobs = await drain(services)
    assert sorted((j.mailbox, j.stream.value, j.kind) for j in jobs) == [
        ("ann@example.com", s, JobKind.RECONCILE)
        for s in ("contacts", "events", "people", "sent", "todo")
    ]
    # Half an interval later the mailbox is not due: the tick queues nothing.
    with timers_at(at + seconds(15 * 60)):
        await user_function(timers.reconcile_timer)(TimerRequest(past_due=False))
    assert await drain(services) == []


async def test_a_tick_sends_each_job_to_arrive_at_its_own_instant(services: Any) -> None:
    # A mailbox due 2 to 3 seconds into its minute (any other second works the same).
    name = next(
        f"user{i}@example.com"
        for i in range(1000)
        if schedule.offset_seconds(f"user{i}@example.com", 1800) % 60 in (2, 3)
    )
    await _add(services, name)
    at = next_tick(name, Cadence.RECONCILE)
    with timers_at(at - seconds(at.second)):  # the tick at the top of that minute
        await user_function(timers.reconcile_timer)(TimerRequest(past_due=False))
    assert await drain(services) == []  # queued, invisible until its instant
    assert await services.queue.depth() == 5
    await asyncio.sleep(at.second + 1.5)
    assert len(await drain(services)) == 5


async def test_push_timer_pushes_only_when_no_reconcile_does_it(services: Any) -> None:
    policy = MailboxPolicy(reconcile_interval_minutes=240, push_interval_minutes=60)
    await _add(services, "ann@example.com", policy=policy)
    alone = next_tick("ann@example.com", Cadence.PUSH, policy)
    with timers_at(alone):
        await user_function(timers.push_timer)(TimerRequest(past_due=False))
    pairs = sorted((j.stream.value, j.kind) for j in await drain(services))
    assert pairs == [(s, JobKind.PUSH) for s in ("contacts", "events", "sent", "todo")]
    both = next_tick("ann@example.com", Cadence.RECONCILE, policy)
    assert schedule.is_due_at("ann@example.com", 3600, both)  # a push is due then too
    with timers_at(both):
        await user_function(timers.push_timer)(TimerRequest(past_due=False))
    assert await drain(services) == []  # the reconcile tick does it


async def test_renew_and_todo_timers(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    await _add(services, "ann@example.com")
    monkeypatch.setattr(runner, "RENEW_SPREAD_SECONDS", 1)  # arrive at once
    await user_function(timers.renew_timer)(TimerRequest(past_due=False))
    with timers_at(next_tick("ann@example.com", Cadence.TODO_POLL)):
        await user_function(timers.todo_poll_timer)(TimerRequest(past_due=False))
    got = sorted((j.stream.value, j.kind.value) for j in await drain(services))
    assert got == [("subscriptions", "renew"), ("todo", "push")]


async def test_a_busy_or_backlogged_stream_is_not_sent_another_run(services: Any) -> None:
    await _add(services, "ann@example.com")
    at = next_tick("ann@example.com", Cadence.RECONCILE)
    store = services.store.cursors
    # contacts: a worker runs it now; events: its previous job has not run yet (last success
    # between one and two intervals ago); todo: stuck for over two intervals (sent again)
    assert await store.claim("ann@example.com", "contacts", "someone", 300, now=at) is not None

    def succeeded(minutes: int) -> Any:
        return lambda c: c.model_copy(update={"last_success_at": at - seconds(minutes * 60)})

    await store.update("ann@example.com", "events", succeeded(45))
    await store.update("ann@example.com", "todo", succeeded(75))
    await store.update("ann@example.com", "sent", succeeded(10))
    with timers_at(at):
        await user_function(timers.reconcile_timer)(TimerRequest(past_due=False))
    streams = sorted(j.stream.value for j in await drain(services))
    assert streams == ["people", "sent", "todo"]


async def test_worker_runs_registered_processor_under_a_lease(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add(services, "ann@example.com")
    seen: list[str | None] = []

    async def processor(ctx: RunContext) -> None:
        cur = await ctx.services.store.cursors.get(ctx.job.mailbox, ctx.job.stream)
        seen.append(cur.lease_owner)
        ctx.count("processed", 3)

    monkeypatch.setitem(registry._PROCESSORS, (Stream.PEOPLE, JobKind.RECONCILE), processor)
    services.settings.app.webhook_memo_seconds = 0  # one pass; the memo pass is tested below
    await services.store.dirty.mark("ann@example.com", "people", ttl_seconds=600)
    job = Job(mailbox="ann@example.com", stream=Stream.PEOPLE, kind=JobKind.RECONCILE)
    await user_function(worker.sync_worker)(_msg(job))
    assert seen and seen[0] and seen[0].startswith(job.job_id)
    runs = await services.store.runs.recent("ann@example.com")
    assert (runs[0].status, runs[0].counts) == ("ok", {"processed": 3})
    cursor = await services.store.cursors.get("ann@example.com", "people")
    assert cursor.lease_owner is None, "lease released after the run"
    # a timer's run leaves the 'job pending' marker to the notification's job it stands for
    assert await services.store.dirty.is_marked("ann@example.com", "people")
    monkeypatch.setitem(registry._PROCESSORS, (Stream.PEOPLE, JobKind.DIRTY), processor)
    dirty = Job(mailbox="ann@example.com", stream=Stream.PEOPLE, kind=JobKind.DIRTY)
    await user_function(worker.sync_worker)(_msg(dirty))
    assert not await services.store.dirty.is_marked("ann@example.com", "people")


async def test_worker_records_skip_for_unknown_mailbox_and_missing_processor(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await user_function(worker.sync_worker)(
        _msg(Job(mailbox="nobody@example.com", stream=Stream.SENT, kind=JobKind.DIRTY))
    )
    await _add(services, "ann@example.com")
    monkeypatch.setattr(registry, "_PROCESSORS", {})
    await user_function(worker.sync_worker)(
        _msg(Job(mailbox="ann@example.com", stream=Stream.TODO, kind=JobKind.RESYNC))
    )
    run = (await services.store.runs.recent("ann@example.com"))[0]
    assert run.status == "skipped" and "no processor" in run.message


async def test_worker_resends_job_when_stream_is_busy(services: Any) -> None:
    await _add(services, "ann@example.com")
    assert await services.store.cursors.claim("ann@example.com", "events", "someone-else", 300)
    job = Job(mailbox="ann@example.com", stream=Stream.EVENTS, kind=JobKind.DIRTY)
    await user_function(worker.sync_worker)(_msg(job))
    assert await services.queue.depth() == 1  # re-sent with a delay, not lost
    run = (await services.store.runs.recent("ann@example.com"))[0]
    assert run.status == "retry"


async def test_worker_failure_is_recorded_and_raised_for_host_retry(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add(services, "ann@example.com")

    async def broken(ctx: RunContext) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.RESYNC), broken)
    job = Job(mailbox="ann@example.com", stream=Stream.CONTACTS, kind=JobKind.RESYNC)
    with pytest.raises(RuntimeError, match="boom"):
        await user_function(worker.sync_worker)(_msg(job))
    run = (await services.store.runs.recent("ann@example.com"))[0]
    assert run.status == "failed" and "boom" in run.message
    assert (await services.store.cursors.get("ann@example.com", "contacts")).lease_owner is None


async def test_worker_rejects_malformed_message(services: Any) -> None:
    from sync.core.jobs import JobDecodeError

    with pytest.raises(JobDecodeError):
        await user_function(worker.sync_worker)(
            QueueMessage(id="x", body=b"{not json", dequeue_count=1)
        )


async def test_manual_sync_queues_job_and_reports_progress(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Progress bookkeeping only: no stream processors, so each stream run is a quick skip.
    monkeypatch.setattr(registry, "_PROCESSORS", {})
    await _add(services, "ann@example.com")
    resp = await user_function(admin.manual_sync)(
        http(
            "POST",
            "/api/sync/Ann@Example.com",
            body={"kind": "push"},
            route_params={"mailbox": "Ann@Example.com"},
        )
    )
    assert resp.status_code == 202
    job_id = json.loads(resp.get_body())["job_id"]
    status = await user_function(admin.manual_sync_status)(
        http("GET", "/", route_params={"job_id": job_id})
    )
    assert json.loads(status.get_body())["state"] == "queued"
    # The worker expands it into one job per stream; each run advances progress.
    (fanout,) = await drain(services)
    assert fanout.stream == Stream.ALL and fanout.mode == "push"
    await user_function(worker.sync_worker)(_msg(fanout))
    stream_jobs = await drain(services)
    assert sorted(j.stream.value for j in stream_jobs) == ["contacts", "events", "sent", "todo"]
    for j in stream_jobs:
        await user_function(worker.sync_worker)(_msg(j))
    final = json.loads(
        (
            await user_function(admin.manual_sync_status)(
                http("GET", "/", route_params={"job_id": job_id})
            )
        ).get_body()
    )
    assert (final["state"], final["streams_done"], final["streams_total"]) == ("done", 4, 4)


@pytest.mark.parametrize(
    ("mailbox", "body", "status"),
    [
        ("nobody@example.com", {"kind": "full"}, 404),
        ("ann@example.com", {"kind": "everything"}, 400),
        ("ann@example.com", b"{oops", 400),
        ("ann@example.com", b'{"kind": "full", "pad": "' + b"x" * 20_000 + b'"}', 413),
        ("ann@example.com", b'["full"]', 400),
        ("ann@example.com", {"kind": 0}, 400),
        ("ann@example.com", {"kind": {}}, 400),
    ],
)
async def test_manual_sync_bad_input(services: Any, mailbox: str, body: Any, status: int) -> None:
    await _add(services, "ann@example.com")
    resp = await user_function(admin.manual_sync)(
        http("POST", "/", body=body, route_params={"mailbox": mailbox})
    )
    assert resp.status_code == status
    assert "error" in json.loads(resp.get_body())
    assert await drain(services) == []


async def test_status_reports_poison_depth(services: Any) -> None:
    await _add(services, "ann@example.com")
    poison = services.queue._service.get_queue_client(services.queue.poison_name)
    await poison.send_message(
        Job(mailbox="ann@example.com", stream=Stream.SENT, kind=JobKind.DIRTY).model_dump_json()
    )
    resp = await user_function(admin.status)(http("GET", "/api/status"))
    report = json.loads(resp.get_body())
    assert report["queue"]["poison_depth"] == 1
    assert report["mailboxes"][0]["id"] == "ann@example.com"
    assert isinstance(
        datetime.fromisoformat(report["mailboxes"][0]["recent_runs"][0]["started_at"])
        if report["mailboxes"][0]["recent_runs"]
        else datetime.now(),
        datetime,
    )


async def test_a_remembered_marker_is_followed_up_by_a_delayed_job_not_a_sleep(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notification the webhook answered from memory just after the run took the marker has
    no job of its own: the run queues a follow-up job, invisible until the memory window has
    passed, and ends at once (lease and trigger slot free)."""
    import asyncio
    import time

    await _add(services, "ann@example.com")
    services.settings.app.webhook_memo_seconds = 1.5
    services.settings.app.clock_skew_seconds = 0.0  # one clock here
    passes: list[float] = []

    async def processor(ctx: RunContext) -> None:
        passes.append(time.monotonic())

    monkeypatch.setitem(registry._PROCESSORS, (Stream.EVENTS, JobKind.DIRTY), processor)
    # A job is pending and a webhook instance remembers it.
    await services.store.dirty.mark("ann@example.com", "events", ttl_seconds=600)
    assert (
        await services.store.dirty.mark_or_remember(
            "ann@example.com", "events", ttl_seconds=600, window=1.5
        )
    ).value == "remembered"
    job = Job(mailbox="ann@example.com", stream=Stream.EVENTS, kind=JobKind.DIRTY)
    started = time.monotonic()
    await user_function(worker.sync_worker)(_msg(job))
    assert time.monotonic() - started < 1.0, "the worker must not wait for the window"
    assert len(passes) == 1
    run = (await services.store.runs.recent("ann@example.com"))[0]
    assert (run.status, run.counts) == ("ok", {"follow_up_queued": 1})
    assert (await services.store.cursors.get("ann@example.com", "events")).lease_owner is None
    # The follow-up is queued, invisible until the window has passed, and the stream is marked
    # so notifications until then coalesce into it.
    assert await services.queue.depth() == 1
    assert await drain(services) == []
    assert await services.store.dirty.is_marked("ann@example.com", "events")
    # Visibility is in whole seconds: the 1.5 s window becomes 2 s after the send.
    await asyncio.sleep(max(0.0, started + 3.5 - time.monotonic()))
    (follow,) = await drain(services)
    assert (follow.stream, follow.kind, follow.reason) == (
        Stream.EVENTS,
        JobKind.DIRTY,
        "follow-up",
    )
    await user_function(worker.sync_worker)(_msg(follow))
    assert len(passes) == 2 and passes[1] - passes[0] >= 1.5
    # Nothing was remembered this time: the chain ends.
    assert (await services.store.runs.recent("ann@example.com"))[0].counts == {}
    assert await services.queue.depth() == 0


async def test_a_marker_taken_after_its_memory_lapsed_needs_no_follow_up(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that waited in the queue (a backlog) takes a flagged marker after the webhook's
    memory of it has lapsed: every notification answered from memory came before the take,
    so the run's own read covers them and it queues no follow-up.  Taken before the flag's
    date (plus the clock skew allowed), it does."""
    import asyncio

    await _add(services, "ann@example.com")
    services.settings.app.webhook_memo_seconds = 5
    services.settings.app.clock_skew_seconds = 0.2

    async def processor(ctx: RunContext) -> None:
        return None

    monkeypatch.setitem(registry._PROCESSORS, (Stream.EVENTS, JobKind.DIRTY), processor)
    dirty = services.store.dirty
    job = Job(mailbox="ann@example.com", stream=Stream.EVENTS, kind=JobKind.DIRTY)
    for wait, follow_ups in ((0.0, 1), (0.7, 0)):
        await dirty.mark("ann@example.com", "events", ttl_seconds=600)
        await dirty.mark_or_remember("ann@example.com", "events", ttl_seconds=600, window=0.4)
        await asyncio.sleep(wait)
        await user_function(worker.sync_worker)(_msg(job))
        run = (await services.store.runs.recent("ann@example.com"))[0]
        assert (run.status, run.counts.get("follow_up_queued", 0)) == ("ok", follow_ups)
        assert await services.queue.depth() == follow_ups
        await services.queue._queue.clear_messages()
        await dirty.clear("ann@example.com", "events")


async def test_a_marker_nobody_remembers_ends_the_run_without_a_follow_up(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add(services, "ann@example.com")

    async def processor(ctx: RunContext) -> None:
        return None

    monkeypatch.setitem(registry._PROCESSORS, (Stream.EVENTS, JobKind.DIRTY), processor)
    await services.store.dirty.mark("ann@example.com", "events", ttl_seconds=600)
    job = Job(mailbox="ann@example.com", stream=Stream.EVENTS, kind=JobKind.DIRTY)
    await user_function(worker.sync_worker)(_msg(job))
    assert (await services.store.runs.recent("ann@example.com"))[0].counts == {}
    assert await services.queue.depth() == 0
    assert not await services.store.dirty.is_marked("ann@example.com", "events")


async def test_a_retry_after_a_remembered_marker_waits_out_the_window(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that ends in a re-delivery of its own (here: throttled, asked to come back in a
    second) is re-delivered no earlier than its follow-up read would have been."""
    from datetime import timedelta

    from sync.core.errors import RetryLater
    from sync.core.state_models import utcnow

    await _add(services, "ann@example.com")
    services.settings.app.webhook_memo_seconds = 8

    async def throttled(ctx: RunContext) -> None:
        raise RetryLater("busy", retry_at=utcnow() + timedelta(seconds=1))

    monkeypatch.setitem(registry._PROCESSORS, (Stream.EVENTS, JobKind.DIRTY), throttled)
    services.settings.app.clock_skew_seconds = 0.0
    await services.store.dirty.mark("ann@example.com", "events", ttl_seconds=600)
    await services.store.dirty.mark_or_remember(
        "ann@example.com", "events", ttl_seconds=600, window=8
    )
    job = Job(mailbox="ann@example.com", stream=Stream.EVENTS, kind=JobKind.DIRTY)
    await user_function(worker.sync_worker)(_msg(job))
    run = (await services.store.runs.recent("ann@example.com"))[0]
    assert run.status == "retry" and "in 8 s" in run.message
    assert await drain(services) == []  # not visible yet
    # Only the retry: no separate follow-up job on top of it.
    assert await services.queue.depth() == 1


@pytest.mark.parametrize("mailbox", [" ", "<>", "mailto:"])
async def test_blank_mailbox_is_not_registered_rather_than_a_crash(
    services: Any, mailbox: str
) -> None:
    from sync.blueprints import emails

    route = {"mailbox": mailbox}
    sync = await user_function(admin.manual_sync)(
        http("POST", "/", body={"kind": "full"}, route_params=route)
    )
    explain = await user_function(emails.email_explain)(
        http("GET", "/", route_params={**route, "message": "AAMkAD1="})
    )
    attach = await user_function(emails.email_attach)(
        http("POST", "/", body={"message_id": "m", "record": "CASE-1"}, route_params=route)
    )
    for resp in (sync, explain, attach):
        assert resp.status_code == 404
        assert "error" in json.loads(resp.get_body())
    assert await drain(services) == []
