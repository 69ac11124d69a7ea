"""Health at a glance, decided from stored cursors and runs (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync.console.health import (
    Health,
    StreamState,
    active_job,
    classify,
    latest_problem,
    stream_state,
)
from sync.core.health import StreamHealth, stale_after
from sync.core.state_models import JobStatus, Mailbox, RunRecord

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MB = Mailbox(id="ann@contoso.com", workbooks_url="https://wb.example", api_key_ref="env:K")


def run(status: str, minutes_ago: int, stream: str = "contacts", **counts: int) -> RunRecord:
    return RunRecord(
        mailbox=MB.id,
        stream=stream,
        job_id="j",
        kind="reconcile",
        status=status,
        started_at=NOW - timedelta(minutes=minutes_ago),
        counts=counts,
    )


def state(
    stream: str, last_ok_minutes_ago: int | None, *runs: RunRecord, leased: bool = False
) -> StreamState:
    last = None if last_ok_minutes_ago is None else NOW - timedelta(minutes=last_ok_minutes_ago)
    return stream_state(
        stream,
        last_success_at=last,
        lease_until=NOW + timedelta(minutes=1) if leased else NOW - timedelta(minutes=1),
        resync_requested=False,
        runs=runs,
        now=NOW,
        stale=HOUR,
    )


def test_a_failure_after_the_last_success_is_failing_and_an_older_one_is_not() -> None:
    assert state("contacts", 30, run("failed", 10)).failing
    assert not state("contacts", 5, run("failed", 10)).failing
    assert state("contacts", None, run("failed", 10)).failing  # never succeeded
    assert not state("contacts", 30, run("retry", 10)).failing  # a retry is not a failure


def test_a_failing_health_row_makes_the_stream_failing_with_its_error() -> None:
    """A run retried for an outage fails nothing in the runs the list reads, but its health row
    says failing (``sync.core.health``): the console shows it, with the row's error."""
    since = NOW - timedelta(minutes=20)
    health = StreamHealth(
        mailbox=MB.id,
        stream="contacts",
        last_success_at=NOW - timedelta(minutes=30),
        last_error="Graph answered 503",
        failing_since=since,
    )
    retried = stream_state(
        "contacts",
        last_success_at=NOW - timedelta(minutes=30),
        lease_until=None,
        resync_requested=False,
        runs=[run("retry", 10)],
        now=NOW,
        stale=HOUR,
        health=health,
    )
    assert retried.failing and retried.failing_since == since
    assert retried.message == "Graph answered 503"
    recovered = health.model_copy(update={"failing_since": None})
    assert not stream_state(
        "contacts",
        last_success_at=NOW,
        lease_until=None,
        resync_requested=False,
        runs=[],
        now=NOW,
        stale=HOUR,
        health=recovered,
    ).failing


def test_the_brake_is_told_from_a_lost_lease() -> None:
    braked = state("contacts", 30, run("stopped", 10, brake_stopped=1))
    assert braked.braked and not braked.failing
    assert not state("contacts", 30, run("stopped", 10)).braked  # a lost lease stops too


def test_the_newest_problem_wins() -> None:
    old, new = run("failed", 50), run("stopped", 5, brake_stopped=1)
    assert latest_problem([old, new, run("ok", 1)], NOW - timedelta(minutes=60)) is new


def test_stale_means_two_reconciliation_intervals_and_at_least_an_hour() -> None:
    assert stale_after("0 */30 * * * *") == HOUR
    assert stale_after("0 0 */2 * * *") == 4 * HOUR
    assert stale_after("*/5 * * * * *") == HOUR
    assert stale_after("not a schedule") == HOUR
    # The mailbox's own interval when it is the longer one.
    assert stale_after("0 */30 * * * *", 240) == 8 * HOUR
    assert stale_after("0 0 */2 * * *", 60) == 4 * HOUR
    assert stale_after("0 */30 * * * *", 5) == HOUR
    assert state("sent", 61).stale and state("sent", 61).failing
    assert not state("sent", 59).stale
    assert not state("sent", None).stale  # never synced is not "stale"


def test_classify_in_order_of_precedence() -> None:
    ok = state("sent", 5)
    failing = state("contacts", 30, run("failed", 10))
    braked = state("events", 30, run("stopped", 10, brake_stopped=1))
    paused = MB.model_copy(update={"enabled": False})
    assert classify(paused, {"sent": ok, "contacts": failing}) is Health.PAUSED
    assert classify(MB, {"sent": ok, "contacts": failing, "events": braked}) is Health.FAILING
    assert classify(MB, {"sent": ok, "events": braked}) is Health.BRAKE
    assert classify(MB, {"contacts": state("contacts", 5)}) is Health.NEVER
    assert classify(MB, {}) is Health.NEVER
    assert classify(MB, {"sent": ok, "contacts": state("contacts", 5)}) is Health.OK
    assert sorted(Health, key=lambda h: h.severity)[0] is Health.FAILING


def test_the_active_job_is_the_newest_unfinished_one_of_the_mailbox() -> None:
    def job(job_id: str, state: str, minutes_ago: int, mailbox: str = MB.id) -> JobStatus:
        return JobStatus(
            job_id=job_id,
            mailbox=mailbox,
            kind="full",
            state=state,
            requested_at=NOW - timedelta(minutes=minutes_ago),
        )

    jobs = [
        job("a", "done", 1),
        job("b", "running", 5),
        job("c", "queued", 2),
        job("d", "queued", 0, "bob@x.com"),
    ]
    found = active_job(jobs, MB.id)
    assert found is not None and found.job_id == "c"
    assert active_job([job("a", "failed", 1)], MB.id) is None
    assert state("sent", 5, leased=True).leased and not state("sent", 5).leased
