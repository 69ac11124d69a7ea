"""One stream's life: every rule about when a (mailbox, stream) runs, in one file, without I/O.

A stream (``sync.core.jobs.Stream``) is one mailbox's sent items, contacts, events, ...  Three
pieces of state decide what happens to it; the webhook, the runner, the sweeper and the store
keep them and ask this module what to do:

* the **job marker**, a row meaning "a job for this stream is queued": the webhook sets it
  before it queues a notification job (so a burst queues one job), the run takes it before it
  reads the delta (a lifecycle event has a marker of its own, taken by its job);
* the **lease** on the stream's cursor row: which worker runs the stream, and until when.  A
  live run renews it (``renew_interval``); a run that dies stops renewing, and the lease expires
  ``lease_seconds`` after the last renewal;
* the webhook's **memory** (one per instance): a stream whose marker this instance found live
  (a job queued and not started) and *flagged* ``remembered`` on the row.  For ``memo_seconds``
  repeats are answered from memory, without a storage round trip.

Put together, a stream is in one of these states::

    IDLE ──notification──► JOB PENDING ──claim──► RUNNING ──run ends──► IDLE
                            (marker set,          (lease held, renewed;    (lease released)
                             job queued)           the run takes the
                               ▲                   marker first)
                               │                     │      │
                               │ the follow-up job   │      │ owner dies (kill, crash) or
                               │ becomes visible     │      │ cannot release (outage)
                               │                     ▼      ▼
                            FOLLOW-UP DUE  ◄──────────┘    CUT (lease expired, owner named)
                            (no lease, no worker:          │
                             a follow-up job is            │ sweeper: re-sent as a new job
                             queued, invisible until       └──────────► JOB PENDING
                             the window has passed;
                             marker set)

* A notification while RUNNING sets the marker again and queues a job; that job finds the
  stream BUSY and is re-sent after ``busy_delay`` (short for notification jobs).  The sent
  stream also looks at the marker after each delta round and reads again itself
  (``read_again``).
* FOLLOW-UP DUE exists because of the memory: a notification answered from memory just after
  the run took the marker has no job of its own.  The flag is *dated*: the instance that
  writes it sets ``remembered_until``, when its memory lapses (its clock), and an instance
  that finds the flag remembers only until that date (past it, it dates the flag afresh).  A
  run that took a remembered marker whose date (plus ``clock_skew_seconds``) is still ahead
  (or took a marker after its last read) queues one follow-up job, invisible until then
  (``StreamRun.pass_ended``), marks the stream (so a burst coalesces into that job rather
  than queueing more) and releases its lease and its trigger slot at once: nothing sleeps
  while it waits.  A date already past needs no follow-up: every answer from memory came
  before the take, and the run's own read covers it (the common case once jobs wait in a
  backlog).  The follow-up is a notification job like any other; when it runs it takes the
  marker, and a remembered marker opens the next window.
* Invariant: every notification answered from memory is covered by a later delta read.  The
  webhook remembers only a marker it found live and flagged before the run took it, dates its
  memory from *before* that storage call, and ends it no later than the flag's date; the run
  that takes a flagged marker reads after that date plus the clock skew allowed (an undated
  flag, written before flags had dates: ``memo_seconds`` after the take).  A run that ends in
  a re-delivery of its own (retry, resync) is re-delivered no earlier than that either.
* A lease whose owner died EXPIRES ``lease_seconds`` after its last renewal; the next claim
  takes it over, and the **sweeper** (a timer) re-sends a job for every CUT stream (a lease
  expired with its owner still named: the run never released it), so a dead worker's stream
  runs again within ``lease_seconds`` plus one sweep, although the host keeps the dead
  worker's queue message invisible for up to 10 minutes.  A marker whose job was lost goes
  STALE: the sweeper re-sends a job for a marker older than ``sweep_after_seconds`` on a stream
  nobody holds, and the next notification after its TTL replaces it and queues again.

One job's part in this, as its worker sees it, is a ``StreamRun``: CLAIMING, then BUSY or
RUNNING, then DONE or FOLLOW-UP DUE (both end the run and release its lease).  Rule: every
transition of a run is in ``RUN_TRANSITIONS``; anything else is a bug and raises
``LifecycleError``, leaving the state as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sync.core.jobs import JobKind, Stream

BUSY_DELAY_SECONDS = 15  # a timer or manual job whose stream is busy waits this long
# A notification that lands while the stream's run is finishing should not wait long.
NOTIFICATION_BUSY_DELAY_SECONDS = 3
MEMORY_LIMIT = 50_000  # streams one webhook instance remembers before it starts afresh
FOLLOW_UP_REASON = "follow-up"


class LifecycleError(RuntimeError):
    """An event that cannot happen in the run's current state: a bug in the caller."""


# ----------------------------------------------------------------------------- markers


def stream_marker(stream: str) -> str:
    """Name of the stream's 'job pending' marker: the stream itself."""
    return str(stream)


LIFECYCLE_PREFIX = "lifecycle:"


def lifecycle_marker(subscription_id: str, event: str) -> str:
    """Name of a 'lifecycle job pending' marker: Graph may deliver a lifecycle event several
    times, and one pending job per (subscription, event) suffices."""
    return f"{LIFECYCLE_PREFIX}{event}:{subscription_id}"[:200]


def parse_lifecycle_marker(name: str) -> tuple[str, str] | None:
    """(event, subscription id) of a lifecycle marker's name; None for any other name."""
    if not name.startswith(LIFECYCLE_PREFIX):
        return None
    event, _, subscription_id = name[len(LIFECYCLE_PREFIX) :].partition(":")
    return (event, subscription_id) if event and subscription_id else None


class MarkerState(Enum):
    ABSENT = "absent"  # no job pending: a notification queues one
    LIVE = "live"  # a job is queued: a notification coalesces into it
    STALE = "stale"  # older than its TTL: its job was lost (crash, poison); queue again


def marker_state(
    *, exists: bool, marked_at: datetime | None, now: datetime, ttl_seconds: int
) -> MarkerState:
    if not exists:
        return MarkerState.ABSENT
    if marked_at is not None and now - marked_at < timedelta(seconds=ttl_seconds):
        return MarkerState.LIVE
    return MarkerState.STALE


class Marked(Enum):
    """What setting a marker came to, for the webhook."""

    QUEUE = "queue"  # there was no live marker; it is set now: queue the job
    COALESCED = "coalesced"  # a job is pending: nothing to queue
    # A job is pending and the marker carries the ``remembered`` flag, so the run that takes it
    # follows up after the memory window: this instance may answer repeats from memory.
    REMEMBERED = "remembered"


def marked(state: MarkerState, *, flagged: bool, remember: bool) -> Marked | None:
    """The outcome for a marker read in ``state``; None when the caller must first write the
    ``remembered`` flag (with the ETag it read) and ask again."""
    if state is not MarkerState.LIVE:
        return Marked.QUEUE
    if not remember:
        return Marked.COALESCED
    return Marked.REMEMBERED if flagged else None


@dataclass(frozen=True)
class TakenMarker:
    """A marker a run took (deleted) before reading: whether a webhook remembers it, and until
    when (``remembered_until``, the flagging instance's clock; None on a flag written before
    flags were dated: then for a whole window from the take)."""

    remembered: bool
    remembered_until: datetime | None = None


# The longest memory window the settings allow (SYNC_WEBHOOK_MEMO_SECONDS's limit; a test
# holds the two equal).
MAX_MEMORY_SECONDS = 30.0


def memory_left(taken: TakenMarker, now: datetime, skew_seconds: float) -> float | None:
    """How much longer a webhook may answer repeats from memory of a marker just taken, in
    seconds (0: its memory has lapsed, so the read that follows covers every notification it
    answered); None when no webhook remembers it, or when the flag is undated (the caller
    then waits a whole window).  ``skew_seconds`` allows for the flagging instance's clock
    being behind this one's."""
    if not taken.remembered or taken.remembered_until is None:
        return None
    left = (taken.remembered_until - now).total_seconds() + skew_seconds
    return min(max(left, 0.0), MAX_MEMORY_SECONDS + skew_seconds)


def flag_lasts(flagged: bool, until: datetime | None, now: datetime) -> float | None:
    """How long an instance that finds a marker flagged may answer from memory, in seconds
    from ``now``: until the flag's date (None: the flag has lapsed or there is none, so the
    instance writes a fresh date before it remembers).  An undated flag (written before flags
    were dated) counts as lapsed, so it gets a date."""
    if not flagged or until is None:
        return None
    left = (until - now).total_seconds()
    return left if left > 0 else None


# ------------------------------------------------------------------------------ leases


class LeaseState(Enum):
    FREE = "free"
    OURS = "ours"  # a claim again (the same owner) is harmless
    HELD = "held"  # another worker runs the stream: the job is re-sent later
    EXPIRED = "expired"  # its owner stopped renewing (died): the next claim takes it over


def holds(owner: str | None, claimant: str) -> bool:
    """A lease is ours while its row names us, even past its expiry: only another worker's
    claim ends it.  Renewals and cursor writes check this (a lost lease stops the run)."""
    return bool(owner) and owner == claimant


def lease_state(
    owner: str | None, until: datetime | None, claimant: str, now: datetime
) -> LeaseState:
    if not owner:
        return LeaseState.FREE
    if holds(owner, claimant):
        return LeaseState.OURS
    if until is not None and until > now:
        return LeaseState.HELD
    return LeaseState.EXPIRED


def lease_owner(job_id: str, nonce: str, kind: JobKind | None = None) -> str:
    """Owner name of a lease: the job (for the run log) plus a nonce, so two deliveries of
    one job are two owners, and the job's kind, so the sweeper can run a cut run again."""
    return f"{job_id}:{nonce}" if kind is None else f"{job_id}:{nonce}:{kind.value}"


def owner_kind(owner: str) -> JobKind | None:
    """The job kind a lease owner's name carries (``lease_owner``), if any."""
    tail = owner.rsplit(":", 1)[-1]
    try:
        return JobKind(tail)
    except ValueError:
        return None


def lease_expiry(now: datetime, lease_seconds: int) -> datetime:
    return now + timedelta(seconds=lease_seconds)


def renew_interval(lease_seconds: int) -> float:
    """A live run renews its lease three times per lease period, so one slow renewal does not
    lose it."""
    return lease_seconds / 3


def busy_delay(kind: JobKind) -> int:
    """How long a job whose stream is busy waits before it is delivered again."""
    return NOTIFICATION_BUSY_DELAY_SECONDS if kind == JobKind.DIRTY else BUSY_DELAY_SECONDS


# ----------------------------------------------------------------------- webhook intake


class Intake(Enum):
    """What the webhook does with a notification for a stream, cheapest first."""

    REPEAT = "repeat"  # the same stream earlier in this request: counted once
    REMEMBERED = "remembered"  # this instance flagged its live marker < memo window ago
    IN_FLIGHT = "in flight"  # a request of this instance is checking the marker: share it
    MARK = "mark"  # set the marker; queue a job if there was none (else coalesce)


def on_notification(*, repeat: bool, remembered: bool, in_flight: bool) -> Intake:
    if repeat:
        return Intake.REPEAT
    if remembered:
        return Intake.REMEMBERED
    if in_flight:
        return Intake.IN_FLIGHT
    return Intake.MARK


class MarkerCheck(Enum):
    """How the webhook first looks at a stream's marker (``first_check``)."""

    INSERT = "insert"  # insert a fresh marker; refused when one exists
    READ = "read"  # read it, then act on what is there
    OWN = "own"  # flag the marker this instance set, conditional on its version (ETag)


@dataclass(frozen=True)
class OwnMarker:
    """A marker this instance set and has not looked at since: its version and its date, so
    it can be flagged without reading it (the row is exactly what this instance wrote)."""

    etag: str
    marked_at: datetime


OWN_LIVE_WEIGHT = 0.2  # the weight of the newest repeat in ``MarkerMemory.own_live_share``
# Inserting first costs one round trip when the marker is gone and three when it is still
# there (refused, read, flagged); flagging the known version costs one when it is there and
# two when it is gone (refused, inserted).  The known version is the cheaper guess once more
# than a third of repeats find their marker still there.
OWN_FIRST_ABOVE = 1 / 3
# Without a flag to write (outside a burst), inserting first costs one round trip when the
# marker is gone and two when it is there (refused, read); reading first costs one when it is
# there and two when it is gone (read, inserted).  Reading first is the cheaper guess once more
# than half of repeats find this instance's marker still there: jobs that wait in a backlog.
OWN_READ_ABOVE = 1 / 2


def first_check(
    *, own: bool, own_live_share: float, expects_live: bool, remember: bool
) -> MarkerCheck:
    """The cheapest first look at a marker, given what this instance knows of it.

    * ``own``: this instance set the marker and has not looked at it since.  Whether it is
      still there depends on how fast jobs start (a backlog keeps markers live), so the
      choice follows ``own_live_share``, what recent repeats of this kind found;
    * ``expects_live``: the last look found a marker (a burst, or jobs that wait): read;
    * otherwise no marker is the common case: insert, unless this instance set the marker
      and most recent repeats found theirs still there (a backlog): read.  Under a backlog
      each stream notified now and then pays one round trip per repeat instead of two."""
    if own and remember and own_live_share > OWN_FIRST_ABOVE:
        return MarkerCheck.OWN
    if expects_live or (own and own_live_share > OWN_READ_ABOVE):
        return MarkerCheck.READ
    return MarkerCheck.INSERT


def in_burst(previous_look: float | None, now: float, window: float) -> bool:
    """Whether a notification comes in a burst: this instance looked at the stream's marker
    less than a memory window ago.  Only then is the marker flagged and remembered.  A flag
    costs a follow-up read whenever the run takes the marker before the flag's date, and a
    stream notified now and then (an email every few seconds) would pay that follow-up for
    nothing: no repeat comes inside the window to be answered from memory."""
    return window > 0 and previous_look is not None and now - previous_look < window


class MarkerMemory:
    """The webhook's memory: when this instance last found each stream's marker live and
    flagged it (``Marked.REMEMBERED``), by (mailbox, stream), on the monotonic clock, and for
    how long: until the flag's date.  The time given is the moment *before* the storage call,
    so the memory never outlasts the date the run that takes the marker reads
    (``memory_left``).

    It also keeps what the last check of each stream found (``expects_live``), the markers
    this instance set (``own``), and how often a repeat found such a marker still there
    (``own_live_share``), which together choose the first look (``first_check``).  None of it
    is ever trusted as an answer: every look is a storage call, conditional where it relies
    on a version this memory holds."""

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        # When this instance found each stream's flag, and when its date has passed.
        self._seen: dict[tuple[str, str], tuple[float, float]] = {}
        self._live: dict[tuple[str, str], bool] = {}  # what the last marker check found
        self._looked: dict[tuple[str, str], float] = {}  # when this instance last looked
        self._own: dict[tuple[str, str], OwnMarker] = {}
        self._limit = limit
        self.own_live_share = 0.0

    def remembers(self, key: tuple[str, str], now: float, window: float) -> bool:
        seen = self._seen.get(key)
        return window > 0 and seen is not None and now < seen[1] and now - seen[0] < window

    def saw_marker(self, key: tuple[str, str], now: float, seconds: float) -> None:
        """Remember the stream from ``now`` (the moment before the storage call) for at most
        ``seconds``, the time the marker's flag is dated for (``flag_lasts``), and at most
        the window."""
        if len(self._seen) > self._limit:
            self._seen.clear()  # bounded memory; forgetting only costs a storage read
        self._seen[key] = (now, now + seconds)

    def found(self, key: tuple[str, str], *, live: bool) -> None:
        """Note what a marker check found: the next check of the stream reads first after a
        live marker (a burst, or a job that waits), and inserts first after none."""
        if len(self._live) > self._limit:
            self._live.clear()
        self._live[key] = live

    def expects_live(self, key: tuple[str, str]) -> bool:
        return self._live.get(key, False)

    def in_burst(self, key: tuple[str, str], now: float, window: float) -> bool:
        """Note a look at the stream's marker at ``now``; True when this instance looked at
        it less than ``window`` ago as well (``in_burst``)."""
        previous = self._looked.get(key)
        if len(self._looked) > self._limit:
            self._looked.clear()
        self._looked[key] = now
        return in_burst(previous, now, window)

    def placed(self, key: tuple[str, str], marker: OwnMarker | None) -> None:
        """Note the marker this instance just set (None: it set none, or the version it knew
        is spent)."""
        if marker is None:
            self._own.pop(key, None)
            return
        if len(self._own) > self._limit:
            self._own.clear()
        self._own[key] = marker

    def own(self, key: tuple[str, str]) -> OwnMarker | None:
        return self._own.get(key)

    def learned(self, *, still_there: bool) -> None:
        """A repeat looked at a marker this instance had set: was it still there?"""
        share = self.own_live_share
        self.own_live_share = share + OWN_LIVE_WEIGHT * (float(still_there) - share)

    def first_check(self, key: tuple[str, str], *, remember: bool) -> MarkerCheck:
        return first_check(
            own=key in self._own,
            own_live_share=self.own_live_share,
            expects_live=self.expects_live(key),
            remember=remember,
        )

    def forget(self) -> None:
        self._seen.clear()
        self._looked.clear()
        self._live.clear()
        self._own.clear()
        self.own_live_share = 0.0


# -------------------------------------------------------------------------- one run


class RunState(Enum):
    CLAIMING = "claiming"  # a job was delivered; its stream's lease is being asked for
    BUSY = "busy"  # another worker holds the lease: the job is re-sent; this run is over
    RUNNING = "running"  # lease held: reading and writing
    # The run is over and its lease released; a follow-up job is queued, due when the memory
    # window of the last remembered marker it took has passed.
    FOLLOW_UP_DUE = "follow-up due"
    DONE = "done"  # the run is over; its lease is released


class RunEvent(Enum):
    CLAIMED = "claimed"
    REFUSED = "refused"  # the claim found the lease held
    MARKER_TAKEN = "marker taken"
    FOLLOW_UP = "pass ends, follow-up queued"
    RUN_ENDS = "pass ends, run ends"


RUN_TRANSITIONS: dict[tuple[RunState, RunEvent], RunState] = {
    (RunState.CLAIMING, RunEvent.CLAIMED): RunState.RUNNING,
    (RunState.CLAIMING, RunEvent.REFUSED): RunState.BUSY,
    (RunState.RUNNING, RunEvent.MARKER_TAKEN): RunState.RUNNING,
    (RunState.RUNNING, RunEvent.FOLLOW_UP): RunState.FOLLOW_UP_DUE,
    (RunState.RUNNING, RunEvent.RUN_ENDS): RunState.DONE,
}


@dataclass
class StreamRun:
    """One job's run on its stream, as the worker sees it. The runner reports what happened
    (claimed or not, markers taken, pass ended) and is told what comes next."""

    kind: JobKind
    memo_seconds: float  # the webhook's memory window (``SYNC_WEBHOOK_MEMO_SECONDS``)
    state: RunState = RunState.CLAIMING
    follow_up_at: float | None = None  # monotonic time a follow-up read is due, if one is

    def _fire(self, event: RunEvent) -> None:
        new = RUN_TRANSITIONS.get((self.state, event))
        if new is None:
            raise LifecycleError(f"'{event.value}' cannot happen while {self.state.value}")
        self.state = new

    def claimed(self) -> None:
        self._fire(RunEvent.CLAIMED)

    def refused(self) -> int:
        """The stream is busy: returns the delay after which the job is delivered again."""
        self._fire(RunEvent.REFUSED)
        return busy_delay(self.kind)

    def marker_taken(
        self,
        now: float,
        *,
        remembered: bool,
        memory_left: float | None = None,
        read_follows: bool = True,
    ) -> None:
        """The run took the stream's marker at ``now``.  A read that follows covers every
        notification so far; one a webhook answers from memory (``remembered``) until its
        memory lapses needs a read after that: ``memory_left`` seconds from now (the flag's
        date says, ``sync.core.streams.memory_left``; 0 when it has lapsed already, which is
        the common case once jobs wait in a backlog), or a whole window when the flag is
        undated.  A marker taken after the last read needs one at once."""
        self._fire(RunEvent.MARKER_TAKEN)
        due: float | None = None
        if remembered:
            left = self.memo_seconds if memory_left is None else memory_left
            if left > 0:
                due = now + left
        if not read_follows:
            due = max(due, now) if due is not None else now
        if due is not None:
            self.follow_up_at = due if self.follow_up_at is None else max(self.follow_up_at, due)

    def follow_up_in(self, now: float) -> float | None:
        """Seconds until the follow-up read is due (0 if it already is), or None."""
        return None if self.follow_up_at is None else max(0.0, self.follow_up_at - now)

    def pass_ended(self, *, ok: bool, now: float) -> float | None:
        """Seconds until the follow-up job is due (the runner queues it with that delay and
        releases the lease), or None when the run simply ends.  A run that did not end well
        has a re-delivery of its own, which the runner makes no earlier than
        ``follow_up_in``."""
        wait = self.follow_up_in(now)
        if ok and wait is not None:
            self._fire(RunEvent.FOLLOW_UP)
            return wait
        self._fire(RunEvent.RUN_ENDS)
        return None


def read_again(*, marker_taken: bool, rounds: int, max_rounds: int) -> bool:
    """After a delta round of a running stream: a marker means a notification arrived during
    the round, and its job would only find the stream busy, so the run reads again itself (up
    to ``max_rounds`` rounds per pass; a marker taken after the last round is covered by a
    follow-up job)."""
    return marker_taken and rounds < max_rounds


# ------------------------------------------------------------------------------ sweeper


@dataclass(frozen=True)
class LeaseRow:
    """A cursor row that names a lease owner, as the sweeper's query returns it."""

    mailbox: str
    stream: str
    owner: str
    until: datetime | None
    etag: str = ""  # the row's version when read: the sweeper clears only what it saw


@dataclass(frozen=True)
class MarkerRow:
    """A job marker older than the sweeper's threshold."""

    mailbox: str
    name: str
    marked_at: datetime | None
    etag: str = ""


@dataclass(frozen=True)
class Resend:
    """A job the sweeper sends again: why, and what it needs to build it."""

    mailbox: str
    stream: str  # a Stream value; for a lifecycle marker, unknown ("") until its record is read
    kind: JobKind
    why: str  # "run cut" | "job lost"
    lease: LeaseRow | None = None  # the cut run's lease, cleared once the job is sent
    marker: MarkerRow | None = None  # the lost job's marker, refreshed once the job is sent
    subscription_id: str | None = None
    lifecycle_event: str | None = None


def rerun_kind(kind: JobKind | None, stream: str) -> JobKind:
    """The kind of job that finishes a cut run's work: the same kind where a job of it
    carries nothing else, else a notification job (a delta read from the stored cursor)."""
    if stream == Stream.SUBSCRIPTIONS:
        return JobKind.RENEW
    if kind is JobKind.MANUAL:
        return JobKind.RECONCILE  # the same two-way run, without the operator's progress record
    if kind in (JobKind.DIRTY, JobKind.PUSH, JobKind.RECONCILE, JobKind.RESYNC):
        return kind
    return JobKind.DIRTY  # attach, lifecycle, renew or unknown: catch the stream up


def _stream(name: str) -> str | None:
    try:
        return Stream(name).value
    except ValueError:
        return None


def sweep(
    leases: Iterable[LeaseRow],
    markers: Iterable[MarkerRow],
    now: datetime,
    *,
    stale_after_seconds: float,
) -> list[Resend]:
    """What the sweeper re-sends: one job per CUT stream (a lease expired with its owner still
    named) and one per marker older than ``stale_after_seconds`` whose stream nobody holds (its
    job was lost: a killed worker, an enqueue that failed after the marker was set, a poisoned
    message).  A stream is re-sent once per sweep, a cut run taking precedence."""
    out: dict[tuple[str, str], Resend] = {}
    held: set[tuple[str, str]] = set()
    for lease in leases:
        key = (lease.mailbox, lease.stream)
        if lease.until is not None and lease.until > now:
            held.add(key)  # a live run: its markers are taken by it or wait for it
            continue
        kind = rerun_kind(owner_kind(lease.owner), lease.stream)
        out[key] = Resend(lease.mailbox, lease.stream, kind, "run cut", lease=lease)
    limit = timedelta(seconds=stale_after_seconds)
    for marker in markers:
        if marker.marked_at is not None and now - marker.marked_at < limit:
            continue
        lifecycle = parse_lifecycle_marker(marker.name)
        if lifecycle is not None:
            event, sub = lifecycle
            key = (marker.mailbox, marker.name)
            out.setdefault(
                key,
                Resend(
                    marker.mailbox,
                    "",
                    JobKind.LIFECYCLE,
                    "job lost",
                    marker=marker,
                    subscription_id=sub,
                    lifecycle_event=event,
                ),
            )
            continue
        stream = _stream(marker.name)
        key = (marker.mailbox, stream or "")
        if stream is None or key in held or key in out:
            continue
        out[key] = Resend(marker.mailbox, stream, JobKind.DIRTY, "job lost", marker=marker)
    return list(out.values())
