"""Small engine decisions that need no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from sync.core.jobs import JobKind
from sync.core.reconcile import Direction
from sync.engine.twoway import calendar_window, direction_for


def test_direction_by_job_kind() -> None:
    assert direction_for(JobKind.DIRTY) == Direction.OUTLOOK_TO_WORKBOOKS
    assert direction_for(JobKind.PUSH) == Direction.OUTLOOK_TO_WORKBOOKS
    for kind in (JobKind.RECONCILE, JobKind.MANUAL, JobKind.RESYNC):
        assert direction_for(kind) == Direction.BOTH


def test_calendar_window_whole_days_and_stable_within_a_day() -> None:
    morning = datetime(2030, 3, 30, 1, 0, tzinfo=UTC)
    evening = datetime(2030, 3, 30, 23, 59, tzinfo=UTC)
    lo, hi = calendar_window(morning, 30, 365)
    assert calendar_window(evening, 30, 365) == (lo, hi)
    assert lo == datetime(2030, 2, 28, tzinfo=UTC)
    assert hi == datetime(2031, 3, 31, tzinfo=UTC)
    assert calendar_window(datetime(2030, 3, 31, tzinfo=UTC), 30, 365)[0] > lo


def test_watermark_compacted_to_the_highest_ids() -> None:
    from sync.engine.twoway import compact
    from sync.workbooks.reads import MAX_SEEN_FILTERS, Watermark, changed_filter

    stamp = datetime(2030, 1, 1, tzinfo=UTC)
    big = Watermark(stamp, frozenset((i, 0, False) for i in range(10_000)))
    small = compact(big)
    assert len(small.to_json()) < 4000
    assert max(small.seen_ids) == 9_999 and len(small.seen) == MAX_SEEN_FILTERS + 1
    # the reader's filter is the same: continue the second after the highest seen id
    assert changed_filter(small, None) == changed_filter(big, None)
    few = Watermark(stamp, frozenset({(1, 0, False)}))
    assert compact(few) is few
