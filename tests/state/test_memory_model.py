"""The webhook's memory never leaves a notification unread: random schedules of notifications
to two webhook instances and runs of the stream's jobs, on simulated clocks that disagree by up
to the skew allowed, through the real marker rows in Azurite (``DirtyMarkers``) and the real
rules (``MarkerMemory``, ``in_burst``, ``memory_left``, ``StreamRun``).

Checked after every schedule: each notification an instance answered from memory (no storage
call, no job of its own) is followed by a delta read that starts after it: the run that takes
the marker, or the follow-up job that run queued.  Coalesced and queued notifications are
covered by the job their marker stands for, which the schedule always runs in the end.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.core.jobs import JobKind
from sync.core.streams import (
    Marked,
    MarkerCheck,
    MarkerMemory,
    StreamRun,
    memory_left,
)
from sync.state.store import StateStore
from tests.conftest import unique

WINDOW = 1.0  # the memory window
SKEW = 0.5  # the clock skew the runs allow for
BASE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
STREAM = "sent"
INSTANCES = ("a", "b")

Step = tuple[str, Any]
_notify = st.tuples(st.just("notify"), st.sampled_from(INSTANCES))
# Bursts (repeats closer than the window, which are what the memory answers) are common.
steps = st.one_of(
    st.tuples(st.just("wait"), st.floats(0.01, 0.4)),
    _notify,
    st.tuples(
        st.just("burst"),
        st.tuples(st.sampled_from(INSTANCES), st.integers(2, 8), st.floats(0.02, 0.5)),
    ),
    st.tuples(st.just("wait"), st.floats(0.4, 2.5)),
    st.tuples(st.just("run"), st.none()),
)


@dataclass
class Sim:
    """One mailbox's sent stream: the simulated time, each party's wall clock (an offset from
    it), what was answered from memory, and when delta reads started."""

    store: StateStore
    mailbox: str
    offsets: dict[str, float]
    now: float = 0.0
    memories: dict[str, MarkerMemory] = field(
        default_factory=lambda: {name: MarkerMemory() for name in INSTANCES}
    )
    answered: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    follow_ups: list[float] = field(default_factory=list)

    def wall(self, party: str) -> datetime:
        return BASE + timedelta(seconds=self.now + self.offsets[party])

    async def notify(self, name: str) -> None:
        """``sync.webhook.queue_stream`` as one instance runs it (no concurrency inside it)."""
        memo, key = self.memories[name], (self.mailbox, STREAM)
        if memo.remembers(key, self.now, WINDOW):
            self.answered.append(self.now)
            return
        remember = memo.in_burst(key, self.now, WINDOW)
        own = memo.own(key)
        check = memo.first_check(key, remember=remember)
        placed = await self.store.dirty.place(
            self.mailbox,
            STREAM,
            ttl_seconds=600,
            remember_for=WINDOW if remember else 0.0,
            expect_live=check is MarkerCheck.READ,
            own=own if check is MarkerCheck.OWN else None,
            now=self.wall(name),
        )
        queued = placed.outcome is Marked.QUEUE
        memo.found(key, live=not queued)
        if own is not None and placed.found is not None:
            memo.learned(still_there=placed.found)
        memo.placed(key, placed.own if queued else None)
        if placed.outcome is Marked.REMEMBERED:
            memo.saw_marker(key, self.now, placed.remember_for)

    async def run(self) -> None:
        """A job's run (``sync.engine.runner``): take the marker, read, queue the follow-up."""
        life = StreamRun(JobKind.DIRTY, WINDOW)
        life.claimed()
        taken = await self.store.dirty.take(self.mailbox, STREAM)
        if taken is not None:
            left = memory_left(taken, self.wall("worker"), SKEW)
            life.marker_taken(self.now, remembered=taken.remembered, memory_left=left)
        self.reads.append(self.now)
        wait = life.pass_ended(ok=True, now=self.now)
        if wait is not None:
            self.follow_ups.append(self.now + wait)
            await self.store.dirty.place(
                self.mailbox, STREAM, ttl_seconds=600, now=self.wall("worker")
            )

    async def wait(self, seconds: float) -> None:
        """Time passes; follow-up jobs run when they fall due."""
        until = self.now + seconds
        while self.follow_ups and min(self.follow_ups) <= until:
            due = min(self.follow_ups)
            self.follow_ups.remove(due)
            self.now = max(self.now, due)
            await self.run()
        self.now = until

    async def finish(self) -> None:
        """The job a marker stands for runs in the end, and so does every follow-up."""
        await self.wait(0.01)
        if await self.store.dirty.is_marked(self.mailbox, STREAM):
            await self.run()
        await self.wait(3 * (WINDOW + SKEW))

    def unread(self) -> list[float]:
        return [a for a in self.answered if not any(r > a for r in self.reads)]


async def _play(store: StateStore, offsets: dict[str, float], schedule: list[Step]) -> Sim:
    sim = Sim(store, f"{unique('m')}@example.com", offsets)
    for kind, arg in schedule:
        if kind == "wait":
            await sim.wait(arg)
        elif kind == "notify":
            await sim.notify(arg)
        elif kind == "burst":
            name, count, gap = arg
            for _ in range(count):
                await sim.notify(name)
                await sim.wait(gap)
        else:
            await sim.run()
    await sim.finish()
    return sim


@pytest.fixture(scope="module")
def played(azurite_connection: str) -> Iterator[Any]:
    """Plays schedules on one event loop and one store (tables made once)."""
    loop = asyncio.new_event_loop()
    store = StateStore.from_connection_string(azurite_connection, unique("mem"))
    loop.run_until_complete(store.ensure_tables())

    def play(offsets: dict[str, float], schedule: list[Step]) -> Sim:
        return loop.run_until_complete(_play(store, offsets, schedule))

    yield play
    loop.run_until_complete(store.drop_tables())
    loop.run_until_complete(store.close())
    loop.close()


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    schedule=st.lists(steps, min_size=4, max_size=40),
    clocks=st.tuples(*(st.floats(-SKEW / 2, SKEW / 2) for _ in range(3))),
)
def test_every_answer_from_memory_is_followed_by_a_read(
    played: Any, schedule: list[Step], clocks: tuple[float, float, float]
) -> None:
    offsets = dict(zip((*INSTANCES, "worker"), clocks, strict=True))
    sim = played(offsets, schedule)
    assert sim.unread() == [], (sim.answered, sim.reads, offsets)


def test_the_check_finds_a_clock_further_behind_than_allowed(played: Any) -> None:
    """The same check fails when an instance's clock is further behind the worker's than the
    skew allowed: its flag looks lapsed to the run, which queues no follow-up, while the
    instance still answers from memory."""
    behind = {"a": -2 * SKEW, "b": 0.0, "worker": 0.0}
    burst: list[Step] = [("notify", "a"), ("wait", 0.1), ("notify", "a")]  # flagged
    late = [*burst, ("wait", 0.2), ("run", None), ("wait", 0.6), ("notify", "a")]
    assert played(behind, late).unread() == [pytest.approx(0.9)]
    within = {"a": -SKEW / 2, "b": 0.0, "worker": SKEW / 2}
    assert played(within, late).unread() == []


def test_an_instance_that_finds_a_flag_remembers_only_until_its_date(played: Any) -> None:
    """Instance b finds a's flag late in its window and must not remember past the flag's
    date: the run reads that date, so a memory of b's own whole window would answer a
    notification after the run's follow-up read."""
    clocks = {"a": 0.0, "b": 0.0, "worker": 0.0}
    schedule: list[Step] = [
        ("notify", "a"),  # queues the job
        ("wait", 0.1),
        ("notify", "a"),  # a burst: flags the marker, dated 1.1
        ("wait", 0.6),
        ("notify", "b"),
        ("wait", 0.1),
        ("notify", "b"),  # b's burst: finds the flag, remembers until 1.1
        ("wait", 0.1),
        ("run", None),  # at 0.9: follow-up due at 1.1 + the skew
        ("wait", 0.8),
        ("notify", "b"),  # at 1.7, after the follow-up's read
    ]
    sim = played(clocks, schedule)
    assert sim.reads[:2] == [pytest.approx(0.9), pytest.approx(1.6)]
    assert sim.unread() == []


def test_a_schedule_of_bursts_answers_from_memory(played: Any) -> None:
    """The random schedules are worth something only if instances do answer from memory: a
    burst to both instances, with runs in between, answers most repeats from memory."""
    burst = [
        step
        for _ in range(6)
        for step in itertools.chain(
            [("notify", "a"), ("notify", "b"), ("wait", 0.15)] * 3, [("run", None)]
        )
    ]
    sim = played({"a": 0.1, "b": -0.1, "worker": 0.0}, burst)
    assert len(sim.answered) >= 10 and sim.unread() == []
