"""The sweeper timer: streams whose run was cut or whose job was lost are sent again, once, and
nothing else is.  Through the azure-functions API, against Azurite."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from sync.blueprints import timers
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import Mailbox, utcnow
from sync.core.streams import lease_owner
from sync.engine.sweeper import sweep_streams
from tests.functions.helpers import drain, register, user_function

ANN = "ann@example.com"
SWEEP = user_function(timers.sweep_timer)


async def _mailbox(services: Any, mailbox: str = ANN, enabled: bool = True) -> None:
    await services.store.mailboxes.put(
        Mailbox(id=mailbox, workbooks_url="https://x.example", api_key_ref="env:K", enabled=enabled)
    )


async def _dead_run(services: Any, stream: str, kind: JobKind, died_ago: float = 90) -> None:
    """A run whose worker died ``died_ago`` seconds ago: its 60 s lease was never released."""
    then = utcnow() - timedelta(seconds=died_ago)
    lease = await services.store.cursors.claim(
        ANN, stream, lease_owner("dead-job", "n", kind), 60, now=then
    )
    assert lease is not None


async def test_a_cut_run_is_sent_again_once_with_its_kind(services: Any) -> None:
    await _mailbox(services)
    await _dead_run(services, "contacts", JobKind.RECONCILE)
    await SWEEP(TimerRequest(past_due=False))
    (job,) = await drain(services)
    assert (job.mailbox, job.stream, job.kind) == (ANN, Stream.CONTACTS, JobKind.RECONCILE)
    assert job.reason == "sweeper: run cut"
    # Its dead lease is gone (any claim takes the stream), and the stream is marked, so the
    # notifications until the job runs coalesce into it.
    assert (await services.store.cursors.get(ANN, "contacts")).lease_owner is None
    assert await services.store.dirty.is_marked(ANN, "contacts")
    # The next sweep has nothing to do.
    outcome = await sweep_streams(services)
    assert (outcome.cut, outcome.lost) == (0, 0)
    assert await drain(services) == []


async def test_a_live_run_is_left_alone_with_its_markers(services: Any) -> None:
    await _mailbox(services)
    await _dead_run(services, "sent", JobKind.DIRTY, died_ago=10)  # renewed 10 s ago: alive
    await services.store.dirty.mark(
        ANN, "sent", ttl_seconds=600, now=utcnow() - timedelta(seconds=300)
    )
    outcome = await sweep_streams(services)
    assert (outcome.cut, outcome.lost) == (0, 0)
    assert await drain(services) == []


async def test_a_lost_job_is_sent_again_once_per_threshold(services: Any) -> None:
    await _mailbox(services)
    long_ago = utcnow() - timedelta(seconds=61)
    await services.store.dirty.mark(ANN, "sent", ttl_seconds=600, now=long_ago)
    await services.store.dirty.mark(ANN, "events", ttl_seconds=600)  # recent: its job waits
    outcome = await sweep_streams(services)
    assert (outcome.cut, outcome.lost) == (0, 1)
    (job,) = await drain(services)
    assert (job.stream, job.kind, job.reason) == (Stream.SENT, JobKind.DIRTY, "sweeper: job lost")
    # Dated anew: still live (notifications coalesce into the re-sent job), not sent again.
    assert await services.store.dirty.is_marked(ANN, "sent")
    assert (await sweep_streams(services)).lost == 0


async def test_a_lost_lifecycle_job_is_rebuilt_from_its_subscription(services: Any) -> None:
    await register(services, ANN, "sub-1", "secret-1", stream="events")
    long_ago = utcnow() - timedelta(seconds=120)
    await services.store.dirty.mark(ANN, "lifecycle:missed:sub-1", ttl_seconds=600, now=long_ago)
    await services.store.dirty.mark(ANN, "lifecycle:missed:gone", ttl_seconds=600, now=long_ago)
    await sweep_streams(services)
    (job,) = await drain(services)
    assert (job.stream, job.kind, job.subscription_id, job.lifecycle_event) == (
        Stream.EVENTS,
        JobKind.LIFECYCLE,
        "sub-1",
        "missed",
    )
    # The marker of a subscription that no longer exists is dropped, not re-sent forever.
    assert not await services.store.dirty.is_marked(ANN, "lifecycle:missed:gone")


async def test_streams_of_a_disabled_or_removed_mailbox_are_cleared_not_sent(
    services: Any,
) -> None:
    await _mailbox(services, enabled=False)
    await _dead_run(services, "sent", JobKind.DIRTY)
    long_ago = utcnow() - timedelta(seconds=120)
    await services.store.dirty.mark("gone@example.com", "sent", ttl_seconds=600, now=long_ago)
    outcome = await sweep_streams(services)
    assert (outcome.sent, len(outcome.dropped)) == (0, 2)
    assert await drain(services) == []
    assert (await services.store.cursors.get(ANN, "sent")).lease_owner is None
    assert not await services.store.dirty.is_marked("gone@example.com", "sent")
    assert (await sweep_streams(services)).dropped == []
