"""One stream's life: every rule about when a (mailbox, stream) runs, in one file, without I/O.

A stream (``sync.core.jobs.Stream``) is one mailbox's sent items, contacts, events, ...  Three
pieces of state decide what happens to it; the webhook, the runner and the store keep them and
ask this module what to do:

* the **job marker**, a row meaning "a job for this stream is queued": the webhook sets it
  before it queues a notification job (so a burst queues one job), the run takes it before it
  reads the delta (a lifecycle event has a marker of its own, taken by its job);
* the **lease** on the stream's cursor row: which worker runs the stream, and until when;
* the webhook's **memory** (one per instance): when it last saw the stream's marker live.  A
  repeat within ``memo_seconds`` is answered from memory, without a storage round trip.

Put together, a stream is in one of these states::

    IDLE ──notification──► JOB PENDING ──claim──► RUNNING ──run ends──► IDLE
                            (marker set,          (lease held; the run    (lease released)
                             job queued)           takes the marker first)
                                                     │      ▲
                                     pass ends, a    │      │ window passed:
                                     marker was      ▼      │ read the delta again
                                     taken < memo   FOLLOW-UP DUE
                                     ago (≤ MAX_FOLLOW_UPS)

* A notification while RUNNING sets the marker again and queues a job; that job finds the
  stream BUSY and is re-sent after ``busy_delay`` (short for notification jobs).  The sent
  stream also looks at the marker after each delta round and reads again itself
  (``read_again``).
* FOLLOW-UP DUE exists because of the memory: a notification answered from memory just after
  the run took the marker has no job of its own, so the run reads once more when the window has
  passed.  A pass that takes a new marker opens a new window.
* A lease whose owner died EXPIRES after ``lease_seconds``; the next claim takes it over.  A
  marker whose job was lost goes STALE after its TTL; the next notification replaces it and
  queues again.

One job's part in this, as its worker sees it, is a ``StreamRun``: CLAIMING, then BUSY or
RUNNING, FOLLOW-UP DUE and RUNNING again, then DONE.  Rule: every transition of a run is in
``RUN_TRANSITIONS``; anything else is a bug and raises ``LifecycleError``, leaving the state as
it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sync.core.jobs import JobKind

BUSY_DELAY_SECONDS = 15  # a timer or manual job whose stream is busy waits this long
# A notification that lands while the stream's run is finishing should not wait long.
NOTIFICATION_BUSY_DELAY_SECONDS = 3
MAX_FOLLOW_UPS = 3  # follow-up reads per run: each one that takes a marker opens a new window
MEMORY_LIMIT = 50_000  # streams one webhook instance remembers before it starts afresh


class LifecycleError(RuntimeError):
    """An event that cannot happen in the run's current state: a bug in the caller."""


# ----------------------------------------------------------------------------- markers


def stream_marker(stream: str) -> str:
    """Name of the stream's 'job pending' marker: the stream itself."""
    return str(stream)


def lifecycle_marker(subscription_id: str, event: str) -> str:
    """Name of a 'lifecycle job pending' marker: Graph may deliver a lifecycle event several
    times, and one pending job per (subscription, event) suffices."""
    return f"lifecycle:{event}:{subscription_id}"[:200]


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


def lease_owner(job_id: str, nonce: str) -> str:
    """Owner name of a lease: the job (for the run log) plus a nonce, so two deliveries of
    one job are two owners."""
    return f"{job_id}:{nonce}"


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
    REMEMBERED = "remembered"  # this instance saw its marker live < memo window ago: coalesce
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


class MarkerMemory:
    """The webhook's memory: when this instance last saw each stream's marker live (or set
    it), by (mailbox, stream), on the monotonic clock."""

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._limit = limit

    def remembers(self, key: tuple[str, str], now: float, window: float) -> bool:
        seen = self._seen.get(key)
        return window > 0 and seen is not None and now - seen < window

    def saw_marker(self, key: tuple[str, str], now: float) -> None:
        if len(self._seen) > self._limit:
            self._seen.clear()  # bounded memory; forgetting only costs a storage read
        self._seen[key] = now

    def forget(self) -> None:
        self._seen.clear()


# -------------------------------------------------------------------------- one run


class RunState(Enum):
    CLAIMING = "claiming"  # a job was delivered; its stream's lease is being asked for
    BUSY = "busy"  # another worker holds the lease: the job is re-sent; this run is over
    RUNNING = "running"  # lease held: reading and writing
    FOLLOW_UP_DUE = "follow-up due"  # a pass ended < memo window after a marker was taken
    DONE = "done"  # the run ended; its lease is released


class RunEvent(Enum):
    CLAIMED = "claimed"
    REFUSED = "refused"  # the claim found the lease held
    MARKER_TAKEN = "marker taken"
    WINDOW_OPEN = "pass ends, window open"
    RUN_ENDS = "pass ends, run ends"
    WINDOW_PASSED = "window passed"


RUN_TRANSITIONS: dict[tuple[RunState, RunEvent], RunState] = {
    (RunState.CLAIMING, RunEvent.CLAIMED): RunState.RUNNING,
    (RunState.CLAIMING, RunEvent.REFUSED): RunState.BUSY,
    (RunState.RUNNING, RunEvent.MARKER_TAKEN): RunState.RUNNING,
    (RunState.RUNNING, RunEvent.WINDOW_OPEN): RunState.FOLLOW_UP_DUE,
    (RunState.RUNNING, RunEvent.RUN_ENDS): RunState.DONE,
    (RunState.FOLLOW_UP_DUE, RunEvent.WINDOW_PASSED): RunState.RUNNING,
}


@dataclass
class StreamRun:
    """One job's run on its stream, as the worker sees it. The runner reports what happened
    (claimed or not, marker taken, pass ended) and is told what comes next."""

    kind: JobKind
    memo_seconds: float  # the webhook's memory window (``SYNC_WEBHOOK_MEMO_SECONDS``)
    state: RunState = RunState.CLAIMING
    marker_taken_at: float | None = None  # monotonic time the last pass took the marker
    follow_ups: int = 0

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

    def marker_taken(self, now: float) -> None:
        """The run took the stream's marker: its next delta read covers every notification so
        far, and those the webhook answers from memory from now until the window closes."""
        self._fire(RunEvent.MARKER_TAKEN)
        self.marker_taken_at = now

    def pass_ended(self, *, ok: bool, now: float) -> float | None:
        """Seconds until the follow-up read is due, or None when the run ends.  A run that did
        not end well (retry, stopped, failed) has its own next delivery."""
        taken = self.marker_taken_at
        if ok and self.memo_seconds > 0 and taken is not None and self.follow_ups < MAX_FOLLOW_UPS:
            self._fire(RunEvent.WINDOW_OPEN)
            return max(0.0, taken + self.memo_seconds - now)
        self._fire(RunEvent.RUN_ENDS)
        return None

    def window_passed(self) -> None:
        self._fire(RunEvent.WINDOW_PASSED)
        self.marker_taken_at = None
        self.follow_ups += 1


def read_again(*, marker_taken: bool, rounds: int, max_rounds: int) -> bool:
    """After a delta round of a running stream: a marker means a notification arrived during
    the round, and its job would only find the stream busy, so the run reads again itself (up
    to ``max_rounds`` rounds per pass; a marker taken after the last round is covered by the
    follow-up read)."""
    return marker_taken and rounds < max_rounds
