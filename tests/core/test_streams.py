"""The stream lifecycle, driven directly: every state after every event, illegal events refused
with the state left as it was, and each decision the webhook, runner and store take from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync.core.jobs import JobKind
from sync.core.streams import (
    BUSY_DELAY_SECONDS,
    MAX_FOLLOW_UPS,
    NOTIFICATION_BUSY_DELAY_SECONDS,
    RUN_TRANSITIONS,
    Intake,
    LeaseState,
    LifecycleError,
    MarkerMemory,
    MarkerState,
    RunEvent,
    RunState,
    StreamRun,
    busy_delay,
    holds,
    lease_expiry,
    lease_owner,
    lease_state,
    lifecycle_marker,
    marker_state,
    on_notification,
    read_again,
    renew_interval,
    stream_marker,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _state(run: StreamRun) -> RunState:
    # Read through a call: the type checker would otherwise keep the state it saw last.
    return run.state


def _running(memo: float = 2.0, kind: JobKind = JobKind.DIRTY) -> StreamRun:
    run = StreamRun(kind, memo)
    run.claimed()
    return run


# --------------------------------------------------------------------------------- a run


def test_a_run_without_a_marker_ends_after_one_pass() -> None:
    run = StreamRun(JobKind.PUSH, 2.0)
    assert _state(run) is RunState.CLAIMING
    run.claimed()
    assert _state(run) is RunState.RUNNING
    assert run.pass_ended(ok=True, now=100.0) is None
    assert _state(run) is RunState.DONE


def test_taking_the_marker_makes_a_follow_up_due_when_the_window_has_passed() -> None:
    run = _running(memo=2.0)
    run.marker_taken(now=100.0)
    assert (run.state, run.marker_taken_at) == (RunState.RUNNING, 100.0)
    # The pass took 0.5 s: the follow-up read is due 1.5 s later.
    assert run.pass_ended(ok=True, now=100.5) == pytest.approx(1.5)
    assert _state(run) is RunState.FOLLOW_UP_DUE
    run.window_passed()
    assert (run.state, run.marker_taken_at, run.follow_ups) == (RunState.RUNNING, None, 1)
    # Nothing new was pending during the follow-up read: the run ends.
    assert run.pass_ended(ok=True, now=102.5) is None
    assert _state(run) is RunState.DONE


def test_a_pass_longer_than_the_window_follows_up_at_once() -> None:
    run = _running(memo=2.0)
    run.marker_taken(now=100.0)
    assert run.pass_ended(ok=True, now=107.0) == 0.0
    assert _state(run) is RunState.FOLLOW_UP_DUE


def test_each_follow_up_that_takes_a_marker_opens_a_new_window_up_to_the_limit() -> None:
    run = _running(memo=1.0)
    now = 0.0
    run.marker_taken(now)
    waits = []
    while (wait := run.pass_ended(ok=True, now=now)) is not None:
        waits.append(wait)
        now += wait
        run.window_passed()
        run.marker_taken(now)  # a notification keeps arriving during every read
    assert waits == [1.0] * MAX_FOLLOW_UPS
    assert (run.state, run.follow_ups) == (RunState.DONE, MAX_FOLLOW_UPS)


@pytest.mark.parametrize(("ok", "memo"), [(False, 2.0), (True, 0.0)])
def test_no_follow_up_after_a_failed_pass_or_with_the_memory_off(ok: bool, memo: float) -> None:
    run = _running(memo=memo)
    run.marker_taken(now=100.0)
    assert run.pass_ended(ok=ok, now=100.1) is None
    assert _state(run) is RunState.DONE


@pytest.mark.parametrize(
    ("kind", "delay"),
    [
        (JobKind.DIRTY, NOTIFICATION_BUSY_DELAY_SECONDS),
        (JobKind.PUSH, BUSY_DELAY_SECONDS),
        (JobKind.RECONCILE, BUSY_DELAY_SECONDS),
        (JobKind.MANUAL, BUSY_DELAY_SECONDS),
    ],
)
def test_a_busy_stream_sends_the_job_back_sooner_for_notifications(
    kind: JobKind, delay: int
) -> None:
    run = StreamRun(kind, 2.0)
    assert run.refused() == delay == busy_delay(kind)
    assert _state(run) is RunState.BUSY
    assert NOTIFICATION_BUSY_DELAY_SECONDS < BUSY_DELAY_SECONDS


def _fire(run: StreamRun, event: RunEvent) -> None:
    actions = {
        RunEvent.CLAIMED: run.claimed,
        RunEvent.REFUSED: run.refused,
        RunEvent.MARKER_TAKEN: lambda: run.marker_taken(1.0),
        RunEvent.WINDOW_PASSED: run.window_passed,
    }
    actions[event]()


@pytest.mark.parametrize("state", list(RunState))
@pytest.mark.parametrize(
    "event", [RunEvent.CLAIMED, RunEvent.REFUSED, RunEvent.MARKER_TAKEN, RunEvent.WINDOW_PASSED]
)
def test_events_outside_the_table_are_refused_and_change_nothing(
    state: RunState, event: RunEvent
) -> None:
    run = StreamRun(JobKind.DIRTY, 2.0, state=state, marker_taken_at=5.0, follow_ups=1)
    if (state, event) in RUN_TRANSITIONS:
        _fire(run, event)
        assert _state(run) is RUN_TRANSITIONS[(state, event)]
        return
    with pytest.raises(LifecycleError):
        _fire(run, event)
    assert (run.state, run.marker_taken_at, run.follow_ups) == (state, 5.0, 1)


@pytest.mark.parametrize(
    "state", [RunState.CLAIMING, RunState.BUSY, RunState.FOLLOW_UP_DUE, RunState.DONE]
)
def test_only_a_running_pass_can_end(state: RunState) -> None:
    run = StreamRun(JobKind.DIRTY, 2.0, state=state)
    with pytest.raises(LifecycleError, match=state.value):
        run.pass_ended(ok=True, now=1.0)
    assert _state(run) is state


def test_the_table_ends_in_busy_or_done_from_every_state() -> None:
    """Every state the table reaches can reach an end (no run is stuck holding its lease)."""
    ends = {RunState.BUSY, RunState.DONE}
    reach = {s: {t for (f, _), t in RUN_TRANSITIONS.items() if f is s} for s in RunState}
    for state in RunState:
        seen, todo = set(), [state]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo.extend(reach[s])
        assert seen & ends, state


def test_within_a_pass_the_run_reads_again_while_notifications_arrive_up_to_a_bound() -> None:
    assert read_again(marker_taken=True, rounds=1, max_rounds=5)
    assert not read_again(marker_taken=False, rounds=1, max_rounds=5)
    assert not read_again(marker_taken=True, rounds=5, max_rounds=5)


# ------------------------------------------------------------------------------- markers


def test_marker_names() -> None:
    assert stream_marker("sent") == "sent"
    assert lifecycle_marker("sub-1", "missed") == "lifecycle:missed:sub-1"
    assert len(lifecycle_marker("x" * 500, "missed")) == 200  # a Table RowKey stays small
    assert lifecycle_marker("sub-1", "missed") != lifecycle_marker("sub-1", "subscriptionRemoved")


@pytest.mark.parametrize(
    ("exists", "age", "state"),
    [
        (False, None, MarkerState.ABSENT),
        (True, 0, MarkerState.LIVE),
        (True, 599, MarkerState.LIVE),
        (True, 600, MarkerState.STALE),  # its job was lost: queue again
        (True, None, MarkerState.STALE),  # a row without its time cannot prove a job is queued
    ],
)
def test_marker_state(exists: bool, age: int | None, state: MarkerState) -> None:
    marked = None if age is None else NOW - timedelta(seconds=age)
    assert marker_state(exists=exists, marked_at=marked, now=NOW, ttl_seconds=600) is state


# -------------------------------------------------------------------------------- leases


@pytest.mark.parametrize(
    ("owner", "until", "state"),
    [
        (None, None, LeaseState.FREE),
        ("", NOW + timedelta(seconds=60), LeaseState.FREE),
        ("me", NOW + timedelta(seconds=60), LeaseState.OURS),
        ("me", NOW - timedelta(seconds=60), LeaseState.OURS),
        ("other", NOW + timedelta(seconds=60), LeaseState.HELD),
        ("other", NOW, LeaseState.EXPIRED),
        ("other", NOW - timedelta(seconds=1), LeaseState.EXPIRED),
        ("other", None, LeaseState.EXPIRED),
    ],
)
def test_lease_state(owner: str | None, until: datetime | None, state: LeaseState) -> None:
    assert lease_state(owner, until, "me", NOW) is state


def test_lease_ownership_and_timing() -> None:
    assert holds("job-1:ab", "job-1:ab") and not holds("job-1:cd", "job-1:ab")
    assert not holds(None, "job-1:ab")
    assert lease_owner("job-1", "ab") == "job-1:ab"
    assert lease_expiry(NOW, 300) == NOW + timedelta(seconds=300)
    assert renew_interval(300) == 100


# ------------------------------------------------------------------------ webhook intake


@pytest.mark.parametrize(
    ("repeat", "remembered", "in_flight", "intake"),
    [
        (True, True, True, Intake.REPEAT),
        (False, True, True, Intake.REMEMBERED),
        (False, False, True, Intake.IN_FLIGHT),
        (False, False, False, Intake.MARK),
    ],
)
def test_the_cheapest_answer_wins(
    repeat: bool, remembered: bool, in_flight: bool, intake: Intake
) -> None:
    assert on_notification(repeat=repeat, remembered=remembered, in_flight=in_flight) is intake


def test_memory_answers_only_inside_its_window() -> None:
    memory = MarkerMemory()
    key = ("ann@example.com", "sent")
    assert not memory.remembers(key, now=10.0, window=2.0)
    memory.saw_marker(key, now=10.0)
    assert memory.remembers(key, now=11.9, window=2.0)
    assert not memory.remembers(key, now=12.0, window=2.0)
    assert not memory.remembers(key, now=10.5, window=0.0)  # 0 turns the memory off
    assert not memory.remembers(("bob@example.com", "sent"), now=10.5, window=2.0)
    memory.forget()
    assert not memory.remembers(key, now=10.5, window=2.0)


def test_memory_is_bounded() -> None:
    memory = MarkerMemory(limit=3)
    for i in range(4):
        memory.saw_marker((f"m{i}", "sent"), now=1.0)
    memory.saw_marker(("new", "sent"), now=1.0)  # over the limit: starts afresh
    assert memory.remembers(("new", "sent"), now=1.5, window=2.0)
    assert not memory.remembers(("m0", "sent"), now=1.5, window=2.0)
