"""Job markers remembered by the webhook, taken by runs, found late by the sweeper; leases
found cut by the sweeper and cleared only as it read them.  Against Azurite."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from sync.core.jobs import JobKind
from sync.core.keys import encode_key
from sync.core.state_models import utcnow
from sync.core.streams import Marked, TakenMarker, lease_owner
from sync.state.store import StateStore
from tests.support.storage_requests import record_storage_requests

ANN, BOB = "ann@example.com", "bob+x@example.com"


async def test_the_first_repeat_flags_a_live_marker_and_the_take_reports_it(store: Any) -> None:
    s: StateStore = store
    assert await s.dirty.mark_or_remember(ANN, "sent", ttl_seconds=600) is Marked.QUEUE
    taken = await s.dirty.take(ANN, "sent")
    assert taken is not None and not taken.remembered  # nobody answered from memory
    assert await s.dirty.take(ANN, "sent") is None

    assert await s.dirty.mark(ANN, "sent", ttl_seconds=600)
    assert await s.dirty.mark_or_remember(ANN, "sent", ttl_seconds=600) is Marked.REMEMBERED
    # Another instance finds it flagged already: no second write needed, same answer.
    assert await s.dirty.mark_or_remember(ANN, "sent", ttl_seconds=600) is Marked.REMEMBERED
    # Without the memory it is a plain coalesce.
    assert not await s.dirty.mark(ANN, "sent", ttl_seconds=600)
    taken = await s.dirty.take(ANN, "sent")
    assert taken is not None and taken.remembered


async def test_a_stale_marker_is_replaced_not_remembered(store: Any) -> None:
    s: StateStore = store
    t0 = utcnow()
    assert await s.dirty.mark(ANN, "sent", ttl_seconds=600, now=t0)
    later = t0 + timedelta(seconds=601)
    assert await s.dirty.mark_or_remember(ANN, "sent", ttl_seconds=600, now=later) is Marked.QUEUE
    taken = await s.dirty.take(ANN, "sent")
    assert taken is not None and not taken.remembered


async def test_a_flag_racing_the_take_is_never_lost(store: Any) -> None:
    """Either the flag lands before the take (the take reports it and the run follows up) or
    after (the webhook is told it coalesced but must not remember): never a remembered
    notification with no follow-up."""
    s: StateStore = store
    for _ in range(10):
        assert await s.dirty.mark(ANN, "sent", ttl_seconds=600)
        outcome, taken = await asyncio.gather(
            s.dirty.mark_or_remember(ANN, "sent", ttl_seconds=600), s.dirty.take(ANN, "sent")
        )
        assert taken is not None
        if outcome is Marked.REMEMBERED:
            assert taken.remembered
        elif outcome is Marked.QUEUE:  # it ran after the take: a marker of its own, unflagged
            await s.dirty.clear(ANN, "sent")
        else:
            assert outcome is Marked.COALESCED
        assert not await s.dirty.is_marked(ANN, "sent")


async def test_late_markers_are_listed_across_mailboxes_and_refreshed_once(store: Any) -> None:
    s: StateStore = store
    t0 = utcnow()
    old = t0 - timedelta(seconds=120)
    await s.dirty.mark(ANN, "sent", ttl_seconds=600, now=old)
    await s.dirty.mark(BOB, "lifecycle:missed:sub-1", ttl_seconds=600, now=old)
    await s.dirty.mark(BOB, "sent", ttl_seconds=600, now=t0)
    late = await s.dirty.older_than(t0 - timedelta(seconds=60))
    assert sorted((m.mailbox, m.name) for m in late) == [
        (ANN, "sent"),
        (BOB, "lifecycle:missed:sub-1"),
    ]
    ann = next(m for m in late if m.mailbox == ANN)
    assert await s.dirty.refresh(ann, now=t0)
    assert not await s.dirty.refresh(ann, now=t0)  # changed since read: left alone
    assert [m.mailbox for m in await s.dirty.older_than(t0 - timedelta(seconds=60))] == [BOB]
    # Refreshing keeps the marker live: notifications still coalesce into its job.
    assert not await s.dirty.mark(ANN, "sent", ttl_seconds=600, now=t0)


async def test_leased_rows_show_running_and_cut_streams_and_clear_only_what_was_read(
    store: Any,
) -> None:
    s: StateStore = store
    t0 = utcnow()
    owner = lease_owner("job-1", "n1", JobKind.RECONCILE)
    dead = await s.cursors.claim(ANN, "contacts", owner, 30, now=t0 - timedelta(seconds=60))
    live = await s.cursors.claim(BOB, "sent", "job-2:n2:dirty", 30, now=t0)
    assert dead is not None and live is not None
    await s.cursors.claim(ANN, "events", "job-3:n3:dirty", 30, now=t0)
    released = await s.cursors.claim(ANN, "todo", "job-4:n4:push", 30, now=t0)
    assert released is not None
    await s.cursors.release(released)  # a run that ended well names no owner
    rows = {(r.mailbox, r.stream): r for r in await s.cursors.leased()}
    assert set(rows) == {(ANN, "contacts"), (BOB, "sent"), (ANN, "events")}
    cut = rows[(ANN, "contacts")]
    assert cut.owner == owner and cut.until is not None and cut.until < t0
    # A claim after the sweeper read the row wins: the clear is refused.
    taken = await s.cursors.claim(ANN, "contacts", "job-5:n5:dirty", 30, now=t0)
    assert taken is not None
    assert not await s.cursors.clear_cut(cut)
    assert (await s.cursors.get(ANN, "contacts")).lease_owner == "job-5:n5:dirty"
    # As read, it is cleared: free for any claim, and no longer listed.
    again = {(r.mailbox, r.stream): r for r in await s.cursors.leased()}
    await s.cursors.release(taken)
    stale = next(r for r in await s.cursors.leased() if r.stream == "events")
    assert await s.cursors.clear_cut(stale)
    assert (ANN, "contacts") in again
    assert {(r.mailbox, r.stream) for r in await s.cursors.leased()} == {(BOB, "sent")}
    assert await s.cursors.claim(ANN, "events", "job-6:n6:dirty", 30, now=t0) is not None


async def test_inserting_first_or_reading_first_comes_to_the_same(store: Any) -> None:
    s: StateStore = store
    for expect_live in (False, True):
        await s.dirty.clear(ANN, "sent")
        first = await s.dirty.mark_or_remember(
            ANN, "sent", ttl_seconds=600, expect_live=expect_live
        )
        second = await s.dirty.mark_or_remember(
            ANN, "sent", ttl_seconds=600, expect_live=not expect_live
        )
        assert (first, second) == (Marked.QUEUE, Marked.REMEMBERED)


async def test_a_marker_of_ours_is_flagged_in_one_write_without_a_read(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: StateStore = store
    placed = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0)
    assert placed.outcome is Marked.QUEUE and placed.found is False
    mine = placed.own
    assert mine is not None and mine.marked_at == placed.marked_at
    sent = record_storage_requests(monkeypatch)
    again = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, own=mine)
    assert (again.outcome, again.found, again.own) == (Marked.REMEMBERED, True, None)
    assert sent == [("PUT", 204)]
    # Flagged as a read would have flagged it: the run's take reports the memory.
    taken = await s.dirty.take(ANN, "sent", mine.etag)
    assert taken is not None and taken.remembered


async def test_a_marker_of_ours_taken_by_its_run_is_set_anew(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: StateStore = store
    mine = (await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0)).own
    assert mine is not None
    assert await s.dirty.take(ANN, "sent", mine.etag) is not None  # the job started
    sent = record_storage_requests(monkeypatch)
    again = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, own=mine)
    assert (again.outcome, again.found) == (Marked.QUEUE, False)
    assert again.own is not None and again.own.etag != mine.etag
    assert sent == [("PUT", 404), ("POST", 201)]
    taken = await s.dirty.take(ANN, "sent", again.own.etag)  # its own job takes it in one go
    assert taken is not None and not taken.remembered


async def test_a_marker_of_ours_changed_by_others_is_read_before_anything_is_decided(
    store: Any,
) -> None:
    s: StateStore = store
    mine = (await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0)).own
    assert mine is not None
    # Another instance flagged it meanwhile: our version is spent, the read decides.
    assert await s.dirty.mark_or_remember(ANN, "sent", ttl_seconds=600) is Marked.REMEMBERED
    again = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, own=mine)
    assert (again.outcome, again.found) == (Marked.REMEMBERED, True)
    # Taken and set again by another instance's job: still read, and coalesced into it.
    await s.dirty.take(ANN, "sent")
    theirs = await s.dirty.place(ANN, "sent", ttl_seconds=600)
    assert theirs.outcome is Marked.QUEUE
    again = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, own=mine)
    assert again.outcome is Marked.REMEMBERED
    taken = await s.dirty.take(ANN, "sent", theirs.etag)
    assert taken is not None and taken.remembered  # the flag landed on their marker


async def test_a_stale_marker_of_ours_is_set_anew_and_queued_again(store: Any) -> None:
    s: StateStore = store
    t0 = utcnow()
    first = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, now=t0)
    mine = first.own
    assert mine is not None
    later = t0 + timedelta(seconds=601)  # its job was lost
    again = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, own=mine, now=later)
    assert (again.outcome, again.found, again.marked_at) == (Marked.QUEUE, True, later)
    assert again.own is not None
    taken = await s.dirty.take(ANN, "sent", again.own.etag)
    assert taken is not None and not taken.remembered


async def test_without_the_memory_a_marker_of_ours_is_not_flagged(store: Any) -> None:
    s: StateStore = store
    mine = (await s.dirty.place(ANN, "sent", ttl_seconds=600)).own
    assert mine is not None
    again = await s.dirty.place(ANN, "sent", ttl_seconds=600, own=mine)
    assert again.outcome is Marked.COALESCED
    taken = await s.dirty.take(ANN, "sent", mine.etag)  # untouched: taken in one request
    assert taken is not None and not taken.remembered


async def test_a_flag_is_dated_and_others_remember_only_until_its_date(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flag carries the date the flagging instance's memory lapses; another instance that
    finds it remembers only until then, without a write, and one that finds it lapsed dates it
    afresh before it remembers.  The run's take reads the latest date."""
    s: StateStore = store
    t0 = utcnow()
    assert await s.dirty.mark(ANN, "sent", ttl_seconds=600, now=t0)
    first = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, now=t0)
    assert (first.outcome, first.remember_for) == (Marked.REMEMBERED, 1.0)

    async def look(after: float, remember_for: float) -> Any:
        """Another instance's look, ``after`` seconds in, reading first (a burst)."""
        at = t0 + timedelta(seconds=after)
        return await s.dirty.place(
            ANN, "sent", ttl_seconds=600, remember_for=remember_for, expect_live=True, now=at
        )

    sent = record_storage_requests(monkeypatch)
    other = await look(0.25, remember_for=5.0)
    assert other.outcome is Marked.REMEMBERED
    assert other.remember_for == pytest.approx(0.75)
    assert sent == [("GET", 200)]  # no second write
    lapsed = await look(3.0, remember_for=2.0)
    assert (lapsed.outcome, lapsed.remember_for) == (Marked.REMEMBERED, 2.0)
    assert sent[1:] == [("GET", 200), ("PUT", 204)]  # read, then dated afresh
    taken = await s.dirty.take(ANN, "sent")
    assert taken is not None and taken.remembered
    assert taken.remembered_until == t0 + timedelta(seconds=5)


async def test_an_undated_flag_is_taken_as_a_whole_window_and_dated_when_found(
    store: Any,
) -> None:
    """A flag written before flags were dated: the take reports no date (the run then waits a
    whole window, as it did), and an instance that finds it dates it before remembering."""
    s: StateStore = store
    t0 = utcnow()
    row = {"PartitionKey": encode_key(ANN), "RowKey": "sent", "marked_at": t0, "mailbox": ANN}
    assert await s.dirty._t.create({**row, "remembered": True})
    taken = await s.dirty.take(ANN, "sent")
    assert taken == TakenMarker(remembered=True, remembered_until=None)
    assert await s.dirty._t.create({**row, "remembered": True, "remembered_until": "garbage"})
    taken = await s.dirty.take(ANN, "sent")  # unreadable: the safe way, not a crash
    assert taken == TakenMarker(remembered=True, remembered_until=None)
    assert await s.dirty._t.create({**row, "remembered": True})
    found = await s.dirty.place(ANN, "sent", ttl_seconds=600, remember_for=1.0, now=t0)
    assert (found.outcome, found.remember_for) == (Marked.REMEMBERED, 1.0)
    taken = await s.dirty.take(ANN, "sent")
    assert taken is not None and taken.remembered_until == t0 + timedelta(seconds=1)


async def test_a_marker_insert_whose_connection_drops_is_settled_not_left_jobless(
    azurite_connection: str,
) -> None:
    """azure-core sends no POST again after a connection dropped under it, so an insert whose
    reply is lost may have landed.  Left as an error, the webhook answered 503, Graph's retry
    then coalesced into that marker, and no job ran until the sweeper re-sent one a minute
    later.  The marker is read instead: dated as this insert, it is this insert's."""
    from tests.conftest import unique
    from tests.support.relay import endpoint_port, relay, through

    async with relay(endpoint_port(azurite_connection, "Table")) as tables:
        s = StateStore.from_connection_string(
            through(azurite_connection, Table=tables.port), unique("t")
        )
        await s.ensure_tables()
        try:
            tables.lose_next_reply = True  # landed, reply lost
            placed = await s.dirty.place(ANN, "sent", ttl_seconds=600)
            assert not tables.lose_next_reply  # the fault happened
            assert placed.outcome is Marked.QUEUE and placed.etag
            assert await s.dirty.take(ANN, "sent", placed.etag) == TakenMarker(remembered=False)
            tables.drop_next = True  # dropped before it was passed on: sent again
            placed = await s.dirty.place(ANN, "sent", ttl_seconds=600)
            assert not tables.drop_next
            assert placed.outcome is Marked.QUEUE
            # Another's marker is there: the insert's 409 is lost, and the read says whose.
            tables.lose_next_reply = True
            again = await s.dirty.place(ANN, "sent", ttl_seconds=600)
            assert not tables.lose_next_reply
            assert again.outcome is Marked.COALESCED
            assert await s.dirty.take(ANN, "sent", placed.etag) == TakenMarker(remembered=False)
        finally:
            await s.drop_tables()
            await s.close()
