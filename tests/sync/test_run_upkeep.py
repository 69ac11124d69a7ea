"""What a finished run writes besides its work, through the real runner and Azurite: its run
row, its stream's health row (from the version this process wrote last) and its position
together with the lease's release; old run history is trimmed by the renewal job only."""

from __future__ import annotations

from datetime import timedelta

from sync.core.jobs import JobKind, Stream
from sync.core.state_models import RunRecord, utcnow
from sync.engine import processors
from tests.sync.conftest import UPN, Sides

processors.load()


async def test_renewal_job_trims_old_runs_and_sync_runs_do_not(sides: Sides) -> None:
    w = sides.world
    store = w.services.store
    old = utcnow() - timedelta(days=store.runs.keep_days + 3)
    for i in range(3):
        await store.runs.put(
            RunRecord(mailbox=UPN, stream="sent", job_id=f"old{i}", kind="dirty", started_at=old)
        )
    for _ in range(3):
        await w.run(UPN, Stream.SENT, JobKind.DIRTY)
    jobs = [r.job_id for r in await store.runs.recent(UPN, limit=50)]
    assert sum(j.startswith("old") for j in jobs) == 3  # sync runs never prune
    renewal = await w.run(UPN, Stream.SUBSCRIPTIONS, JobKind.RENEW)
    assert renewal.counts.get("runs_pruned") == 3, renewal
    jobs = [r.job_id for r in await store.runs.recent(UPN, limit=50)]
    assert not any(j.startswith("old") for j in jobs) and len(jobs) == 4


async def test_position_is_written_with_the_release(sides: Sides) -> None:
    """The sent stream's last delta link lands in the same write that frees the lease."""
    w = sides.world
    w.send(UPN, to=["someone@example.com"], subject="one")
    run = await w.run(UPN, Stream.SENT, JobKind.DIRTY)
    assert run.status == "ok", run
    cursor = await w.services.store.cursors.get(UPN, Stream.SENT)
    assert cursor.delta_link and cursor.lease_owner is None
    assert cursor.last_success_at is not None
    first = cursor.delta_link
    w.send(UPN, to=["someone@example.com"], subject="two")
    await w.run(UPN, Stream.SENT, JobKind.DIRTY)
    cursor = await w.services.store.cursors.get(UPN, Stream.SENT)
    assert cursor.delta_link != first and cursor.lease_owner is None


async def test_health_row_follows_runs_when_another_process_wrote_it(
    sides: Sides, azurite_connection: str
) -> None:
    """The health row is written from the version this process remembers; when another
    process wrote it since (its ETag moved), the write reads the row and keeps both."""
    w = sides.world
    store = w.services.store
    await w.run(UPN, Stream.SENT, JobKind.DIRTY)
    first = {h.stream: h for h in await store.health.for_mailbox(UPN)}["sent"]
    # another process records a failed run of the same stream (its own store, no memory)
    from sync.state.store import StateStore

    other = StateStore.from_connection_string(azurite_connection, store.prefix)
    failed = RunRecord(mailbox=UPN, stream="sent", job_id="elsewhere", kind="dirty")
    failed.status, failed.message, failed.finished_at = "failed", "boom", utcnow()
    try:
        await other.health.record(failed)
    finally:
        await other.close()
    after_other = {h.stream: h for h in await store.health.for_mailbox(UPN)}["sent"]
    assert after_other.consecutive_failures == first.consecutive_failures + 1
    # this process's next run starts from its stale memory, gets 412, reads, and folds in
    await w.run(UPN, Stream.SENT, JobKind.DIRTY)
    now = {h.stream: h for h in await store.health.for_mailbox(UPN)}["sent"]
    assert now.last_status == "ok" and now.consecutive_failures == 0
    assert now.last_error == "boom"  # the other process's failure was read, not overwritten
