"""The stream lifecycle, driven directly: every state after every event, illegal events refused
with the state left as it was, and each decision the webhook, runner and store take from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync.core.jobs import JobKind, Stream
from sync.core.streams import (
    BUSY_DELAY_SECONDS,
    MAX_MEMORY_SECONDS,
    NOTIFICATION_BUSY_DELAY_SECONDS,
    RUN_TRANSITIONS,
    Intake,
    LeaseRow,
    LeaseState,
    LifecycleError,
    Marked,
    MarkerCheck,
    MarkerMemory,
    MarkerRow,
    MarkerState,
    OwnMarker,
    RunEvent,
    RunState,
    StreamRun,
    TakenMarker,
    busy_delay,
    first_check,
    flag_lasts,
    holds,
    in_burst,
    lease_expiry,
    lease_owner,
    lease_state,
    lifecycle_marker,
    marked,
    marker_state,
    memory_left,
    on_notification,
    owner_kind,
    parse_lifecycle_marker,
    read_again,
    renew_interval,
    rerun_kind,
    stream_marker,
    sweep,
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


def test_a_marker_nobody_remembers_needs_no_follow_up() -> None:
    """The read that follows the take covers every notification that set or found it."""
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=False)
    assert (run.state, run.follow_up_at) == (RunState.RUNNING, None)
    assert run.pass_ended(ok=True, now=100.5) is None
    assert _state(run) is RunState.DONE


def test_a_remembered_marker_makes_a_follow_up_due_when_the_window_has_passed() -> None:
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True)
    assert run.follow_up_at == 102.0
    # The pass took 0.5 s: the follow-up job is due 1.5 s later, and the run is over (its
    # lease is released; nothing waits).
    assert run.pass_ended(ok=True, now=100.5) == pytest.approx(1.5)
    assert _state(run) is RunState.FOLLOW_UP_DUE


def test_a_pass_longer_than_the_window_follows_up_at_once() -> None:
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True)
    assert run.pass_ended(ok=True, now=107.0) == 0.0
    assert _state(run) is RunState.FOLLOW_UP_DUE


def test_the_latest_window_decides_when_several_markers_were_taken() -> None:
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True)
    run.marker_taken(now=101.0, remembered=False)  # read follows: no later follow-up needed
    assert run.follow_up_at == 102.0
    run.marker_taken(now=101.5, remembered=True)
    assert run.follow_up_at == 103.5
    assert run.pass_ended(ok=True, now=102.0) == pytest.approx(1.5)


def test_a_marker_taken_after_the_last_read_is_followed_up_at_once() -> None:
    """The sent stream reads again while markers arrive, up to a bound; a marker it takes
    after its last round has a notification behind it that no read covers yet."""
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=False, read_follows=False)
    assert run.pass_ended(ok=True, now=100.2) == 0.0
    # Remembered as well: the window still decides.
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True, read_follows=False)
    assert run.pass_ended(ok=True, now=100.2) == pytest.approx(1.8)


@pytest.mark.parametrize(("ok", "memo"), [(False, 2.0), (True, 0.0)])
def test_no_follow_up_after_a_failed_pass_or_with_the_memory_off(ok: bool, memo: float) -> None:
    run = _running(memo=memo)
    run.marker_taken(now=100.0, remembered=True)
    assert run.pass_ended(ok=ok, now=100.1) is None
    assert _state(run) is RunState.DONE


def test_a_failed_pass_still_tells_how_long_its_redelivery_must_wait() -> None:
    run = _running(memo=2.0)
    assert run.follow_up_in(100.0) is None
    run.marker_taken(now=100.0, remembered=True)
    assert run.follow_up_in(100.5) == pytest.approx(1.5)
    assert run.follow_up_in(103.0) == 0.0


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
        RunEvent.MARKER_TAKEN: lambda: run.marker_taken(1.0, remembered=True),
        RunEvent.FOLLOW_UP: lambda: run.pass_ended(ok=True, now=1.5),
        RunEvent.RUN_ENDS: lambda: run.pass_ended(ok=False, now=1.5),
    }
    actions[event]()


@pytest.mark.parametrize("state", list(RunState))
@pytest.mark.parametrize("event", list(RunEvent))
def test_events_outside_the_table_are_refused_and_change_nothing(
    state: RunState, event: RunEvent
) -> None:
    run = StreamRun(JobKind.DIRTY, 2.0, state=state, follow_up_at=5.0)
    if (state, event) in RUN_TRANSITIONS:
        _fire(run, event)
        assert _state(run) is RUN_TRANSITIONS[(state, event)]
        return
    with pytest.raises(LifecycleError):
        _fire(run, event)
    assert (run.state, run.follow_up_at) == (state, 5.0)


@pytest.mark.parametrize(
    "state", [RunState.CLAIMING, RunState.BUSY, RunState.FOLLOW_UP_DUE, RunState.DONE]
)
def test_only_a_running_pass_can_end(state: RunState) -> None:
    run = StreamRun(JobKind.DIRTY, 2.0, state=state)
    with pytest.raises(LifecycleError, match=state.value):
        run.pass_ended(ok=True, now=1.0)
    assert _state(run) is state


def test_every_run_ends_and_none_waits_holding_its_lease() -> None:
    """Every state the table reaches can reach an end, and the ends (BUSY, DONE, FOLLOW-UP
    DUE) have no way out: a run that queued its follow-up is over, not sleeping."""
    ends = {RunState.BUSY, RunState.DONE, RunState.FOLLOW_UP_DUE}
    reach = {s: {t for (f, _), t in RUN_TRANSITIONS.items() if f is s} for s in RunState}
    for end in ends:
        assert reach[end] == set(), end
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
    assert parse_lifecycle_marker("lifecycle:missed:sub-1") == ("missed", "sub-1")
    assert parse_lifecycle_marker("sent") is None
    assert parse_lifecycle_marker("lifecycle:missed") is None
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
    assert lease_owner("job-1", "ab", JobKind.RECONCILE) == "job-1:ab:reconcile"
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
    memory.saw_marker(key, now=10.0, seconds=2.0)
    assert memory.remembers(key, now=11.9, window=2.0)
    assert not memory.remembers(key, now=12.0, window=2.0)
    assert not memory.remembers(key, now=10.5, window=0.0)  # 0 turns the memory off
    assert not memory.remembers(("bob@example.com", "sent"), now=10.5, window=2.0)
    memory.forget()
    assert not memory.remembers(key, now=10.5, window=2.0)


def test_memory_lasts_no_longer_than_the_flag_is_dated_for() -> None:
    """An instance that finds another's flag remembers only until that flag's date, which the
    run that takes the marker reads: a memory of its own window would outlast it."""
    memory = MarkerMemory()
    key = ("ann@example.com", "sent")
    memory.saw_marker(key, now=10.0, seconds=0.3)
    assert memory.remembers(key, now=10.2, window=2.0)
    assert not memory.remembers(key, now=10.3, window=2.0)


def test_a_flag_lasts_until_its_date() -> None:
    t0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert flag_lasts(True, t0 + timedelta(seconds=0.75), t0) == pytest.approx(0.75)
    assert flag_lasts(True, t0, t0) is None  # its date has come: dated afresh
    assert flag_lasts(True, t0 - timedelta(seconds=5), t0) is None
    assert flag_lasts(True, None, t0) is None  # undated (written before flags had dates)
    assert flag_lasts(False, t0 + timedelta(seconds=5), t0) is None


def test_memory_left_reads_the_flag_date_with_the_clock_skew_allowed() -> None:
    t0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    dated = TakenMarker(remembered=True, remembered_until=t0 + timedelta(seconds=0.5))
    assert memory_left(dated, t0, skew_seconds=1.0) == pytest.approx(1.5)
    # Taken long after the date (jobs waiting in a backlog): the memory has lapsed.
    assert memory_left(dated, t0 + timedelta(seconds=1.6), skew_seconds=1.0) == 0.0
    # Within the skew allowed, it has not.
    assert memory_left(dated, t0 + timedelta(seconds=1.2), skew_seconds=1.0) == pytest.approx(0.3)
    assert memory_left(TakenMarker(remembered=False), t0, 1.0) is None
    assert memory_left(TakenMarker(remembered=True), t0, 1.0) is None  # undated: whole window
    absurd = TakenMarker(remembered=True, remembered_until=t0 + timedelta(days=3))
    assert memory_left(absurd, t0, skew_seconds=1.0) == MAX_MEMORY_SECONDS + 1.0


def test_the_memory_cap_is_the_longest_window_the_settings_allow() -> None:
    import annotated_types

    from sync.settings import AppSettings

    limits = AppSettings.model_fields["webhook_memo_seconds"].metadata
    assert [m.le for m in limits if isinstance(m, annotated_types.Le)] == [MAX_MEMORY_SECONDS]


def test_a_lapsed_memory_needs_no_follow_up_and_a_live_one_waits_only_for_its_date() -> None:
    """The webhook's memory of a flag ends at the flag's date: a run that takes the marker
    after that (plus the skew) reads after every notification answered from memory, so it
    queues no follow-up; one that takes it before waits for that date, not a whole window."""
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True, memory_left=0.0)
    assert (run.follow_up_at, run.pass_ended(ok=True, now=100.4)) == (None, None)
    assert _state(run) is RunState.DONE
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True, memory_left=0.7)
    assert run.pass_ended(ok=True, now=100.4) == pytest.approx(0.3)
    # A date from an instance with a longer window than this worker's is still honoured.
    run = _running(memo=0.0)
    run.marker_taken(now=100.0, remembered=True, memory_left=5.0)
    assert run.pass_ended(ok=True, now=100.0) == pytest.approx(5.0)
    # A marker taken after the last read still needs a read at once.
    run = _running(memo=2.0)
    run.marker_taken(now=100.0, remembered=True, memory_left=0.0, read_follows=False)
    assert run.pass_ended(ok=True, now=100.2) == 0.0


def test_only_a_look_inside_the_window_of_the_last_one_is_a_burst() -> None:
    assert not in_burst(None, now=10.0, window=1.0)  # the first look
    assert in_burst(9.5, now=10.0, window=1.0)
    assert not in_burst(9.0, now=10.0, window=1.0)  # an email every second or more: no
    assert not in_burst(9.9, now=10.0, window=0.0)  # the memory off
    memory = MarkerMemory()
    key = ("ann@example.com", "sent")
    assert not memory.in_burst(key, now=1.0, window=1.0)
    assert memory.in_burst(key, now=1.5, window=1.0)
    assert not memory.in_burst(key, now=3.0, window=1.0)  # measured from the last look
    assert not memory.in_burst(("bob@example.com", "sent"), now=3.1, window=1.0)
    memory.forget()
    assert not memory.in_burst(key, now=3.2, window=1.0)


def test_memory_is_bounded() -> None:
    memory = MarkerMemory(limit=3)
    for i in range(4):
        memory.saw_marker((f"m{i}", "sent"), now=1.0, seconds=2.0)
    memory.saw_marker(("new", "sent"), now=1.0, seconds=2.0)  # over the limit: starts afresh
    assert memory.remembers(("new", "sent"), now=1.5, window=2.0)
    assert not memory.remembers(("m0", "sent"), now=1.5, window=2.0)


@pytest.mark.parametrize(
    ("state", "flagged", "remember", "outcome"),
    [
        (MarkerState.ABSENT, False, True, Marked.QUEUE),
        (MarkerState.STALE, True, True, Marked.QUEUE),  # its job was lost: queue again
        (MarkerState.LIVE, False, False, Marked.COALESCED),
        (MarkerState.LIVE, True, False, Marked.COALESCED),
        (MarkerState.LIVE, True, True, Marked.REMEMBERED),
        (MarkerState.LIVE, False, True, None),  # flag it first, then ask again
    ],
)
def test_the_webhook_remembers_only_a_live_flagged_marker(
    state: MarkerState, flagged: bool, remember: bool, outcome: Marked | None
) -> None:
    assert marked(state, flagged=flagged, remember=remember) is outcome


# ------------------------------------------------------------------------------- sweeper


def test_a_lease_owner_names_the_kind_the_sweeper_runs_again() -> None:
    assert owner_kind(lease_owner("j", "n", JobKind.RESYNC)) is JobKind.RESYNC
    assert owner_kind(lease_owner("j", "n")) is None
    assert owner_kind("job:with:colons:n:push") is JobKind.PUSH
    assert rerun_kind(JobKind.RECONCILE, "contacts") is JobKind.RECONCILE
    assert rerun_kind(JobKind.MANUAL, "contacts") is JobKind.RECONCILE
    assert rerun_kind(JobKind.ATTACH, "sent") is JobKind.DIRTY
    assert rerun_kind(JobKind.LIFECYCLE, "sent") is JobKind.DIRTY
    assert rerun_kind(None, "events") is JobKind.DIRTY
    assert rerun_kind(JobKind.RENEW, "subscriptions") is JobKind.RENEW


def _lease(mailbox: str, stream: str, seconds_left: float, kind: JobKind) -> LeaseRow:
    return LeaseRow(
        mailbox, stream, lease_owner("job", "n", kind), NOW + timedelta(seconds=seconds_left)
    )


def _marker(mailbox: str, name: str, age: float | None) -> MarkerRow:
    return MarkerRow(mailbox, name, None if age is None else NOW - timedelta(seconds=age))


def test_the_sweeper_resends_cut_runs_and_lost_jobs_once_each() -> None:
    leases = [
        _lease("ann", "sent", -1, JobKind.DIRTY),  # cut: expired with its owner named
        _lease("ann", "events", 30, JobKind.RECONCILE),  # running: left alone
        _lease("bob", "contacts", -300, JobKind.RECONCILE),
    ]
    markers = [
        _marker("ann", "sent", 500),  # the cut run's stream: one job, not two
        _marker("ann", "events", 500),  # its stream runs: the run takes it or its job waits
        _marker("bob", "sent", 61),  # lost job
        _marker("bob", "todo", 10),  # recent: its job is probably just queued
        _marker("cid", "sent", None),  # no date: cannot prove a job is queued
        _marker("cid", "lifecycle:missed:sub-9", 500),
        _marker("cid", "nonsense", 500),
    ]
    got = {
        (r.mailbox, r.stream or r.subscription_id, r.kind, r.why)
        for r in sweep(leases, markers, NOW, stale_after_seconds=60)
    }
    assert got == {
        ("ann", "sent", JobKind.DIRTY, "run cut"),
        ("bob", "contacts", JobKind.RECONCILE, "run cut"),
        ("bob", "sent", JobKind.DIRTY, "job lost"),
        ("cid", "sent", JobKind.DIRTY, "job lost"),
        ("cid", "sub-9", JobKind.LIFECYCLE, "job lost"),
    }


def test_the_sweeper_keeps_what_it_read_so_it_can_undo_only_that() -> None:
    lease = _lease("ann", "sent", -1, JobKind.PUSH)
    (resend,) = sweep([lease], [], NOW, stale_after_seconds=60)
    assert (resend.lease, resend.marker, resend.kind) == (lease, None, JobKind.PUSH)
    assert resend.stream == Stream.SENT


def test_memory_knows_which_check_to_try_first() -> None:
    memory = MarkerMemory(limit=2)
    key = ("ann@example.com", "sent")
    assert not memory.expects_live(key)  # nothing known: no marker is the common case
    memory.found(key, live=True)
    assert memory.expects_live(key)
    memory.found(key, live=False)
    assert not memory.expects_live(key)
    memory.found(key, live=True)
    memory.forget()
    assert not memory.expects_live(key)


@pytest.mark.parametrize(
    ("own", "share", "expects_live", "remember", "check"),
    [
        (False, 0.0, False, True, MarkerCheck.INSERT),  # nothing known: no marker is usual
        (False, 0.0, True, True, MarkerCheck.READ),  # last look found one
        (True, 0.0, False, True, MarkerCheck.INSERT),  # jobs start at once: ours is gone
        (True, 0.3, True, True, MarkerCheck.READ),  # below a third: not worth the guess
        (True, 0.34, False, True, MarkerCheck.OWN),  # a backlog: ours is probably there
        (True, 1.0, True, True, MarkerCheck.OWN),
        # Outside a burst nothing is flagged: read first once most of ours outlive a repeat
        (True, 1.0, False, False, MarkerCheck.READ),
        (True, 0.51, False, False, MarkerCheck.READ),
        (True, 0.5, False, False, MarkerCheck.INSERT),  # an even guess: inserting is no worse
        (True, 0.0, False, False, MarkerCheck.INSERT),
        (False, 1.0, False, False, MarkerCheck.INSERT),  # not ours: the share says nothing of it
        (False, 1.0, False, True, MarkerCheck.INSERT),  # no version of ours to rely on
    ],
)
def test_the_first_look_at_a_marker_is_the_cheapest_guess(
    own: bool, share: float, expects_live: bool, remember: bool, check: MarkerCheck
) -> None:
    found = first_check(own=own, own_live_share=share, expects_live=expects_live, remember=remember)
    assert found is check


def test_memory_learns_whether_its_own_markers_outlive_a_repeat() -> None:
    memory = MarkerMemory(limit=2)
    key = ("ann@example.com", "sent")
    mine = OwnMarker('W/"v1"', datetime(2026, 12, 6, tzinfo=UTC))
    memory.placed(key, mine)
    assert memory.own(key) == mine
    assert memory.first_check(key, remember=True) is MarkerCheck.INSERT  # no backlog seen
    memory.learned(still_there=True)
    assert memory.first_check(key, remember=True) is MarkerCheck.INSERT  # one is not a trend
    memory.learned(still_there=True)
    assert 1 / 3 < memory.own_live_share < 1 / 2
    assert memory.first_check(key, remember=True) is MarkerCheck.OWN
    assert memory.first_check(key, remember=False) is MarkerCheck.INSERT  # not yet a backlog
    memory.learned(still_there=True)
    memory.learned(still_there=True)
    assert memory.own_live_share > 1 / 2
    assert memory.first_check(key, remember=False) is MarkerCheck.READ  # a repeat between bursts
    assert memory.first_check(("bob@example.com", "sent"), remember=False) is MarkerCheck.INSERT
    assert memory.first_check(("bob@example.com", "sent"), remember=True) is MarkerCheck.INSERT
    for _ in range(5):  # the backlog is over: jobs take their markers before repeats come
        memory.learned(still_there=False)
    assert memory.first_check(key, remember=True) is MarkerCheck.INSERT
    memory.placed(key, None)  # its version is spent
    assert memory.own(key) is None
    for i in range(4):  # bounded like the rest of the memory
        memory.placed((f"m{i}", "sent"), mine)
    assert memory.own(("m3", "sent")) == mine and memory.own(("m0", "sent")) is None
    memory.learned(still_there=True)
    memory.forget()
    assert memory.own(("m3", "sent")) is None and memory.own_live_share == 0.0
