"""The one back-off rule (``sync.core.backoff``): full jitter, growth, cap, Retry-After first.
Its users are tested with them: tests/graph/test_retry_policy.py, tests/workbooks/test_backoff.py
and the runner's re-queue in tests/functions/test_retry_backoff.py."""

from __future__ import annotations

import random

import pytest

from sync.core.backoff import Backoff

POLICY = Backoff(base_seconds=5, cap_seconds=90, after_spread=0.1)


def test_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    assert [POLICY.ceiling(a) for a in range(1, 9)] == [5, 10, 20, 40, 80, 90, 90, 90]
    assert POLICY.ceiling(0) == 5  # attempt counts from 1; 0 is treated as the first
    assert POLICY.ceiling(10_000) == 90  # no overflow, however many attempts


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert POLICY.delay(3, rand=lambda: 0.0) == 0.0
    assert POLICY.delay(3, rand=lambda: 0.999999) == pytest.approx(20, abs=1e-4)
    assert POLICY.delay(3, rand=lambda: 0.5) == 10


@pytest.mark.parametrize("attempt", [1, 2, 4, 6, 12])
def test_distribution_stays_within_bounds_and_is_spread(attempt: int) -> None:
    rng = random.Random(attempt)
    draws = [POLICY.delay(attempt, rand=rng.random) for _ in range(2000)]
    ceiling = POLICY.ceiling(attempt)
    assert min(draws) >= 0 and max(draws) <= ceiling
    # Roughly uniform: a quarter of the draws in each quarter of [0, ceiling].
    for quarter in range(4):
        low, high = quarter * ceiling / 4, (quarter + 1) * ceiling / 4
        share = sum(low <= d < high for d in draws) / len(draws)
        assert 0.2 < share < 0.3, (quarter, share)
    mean = sum(draws) / len(draws)
    assert ceiling * 0.45 < mean < ceiling * 0.55


def test_mean_grows_with_attempts_until_the_cap() -> None:
    rng = random.Random(7)
    means = [sum(POLICY.delay(a, rand=rng.random) for _ in range(500)) / 500 for a in (1, 3, 5)]
    assert means[0] < means[1] < means[2]
    assert means[2] <= 45  # never above half the cap on average


def test_retry_after_takes_precedence_and_is_never_shortened() -> None:
    for attempt in (1, 5, 50):
        assert POLICY.delay(attempt, retry_after=30, rand=lambda: 0.0) == 30
        assert POLICY.delay(attempt, retry_after=30, rand=lambda: 0.999) == pytest.approx(32.997)
    assert POLICY.delay(1, retry_after=1000, rand=lambda: 0.0) == 1000  # above the cap: honoured
    assert POLICY.delay(1, retry_after=0) == 0
    assert POLICY.delay(1, retry_after=-5) == 0  # a date in the past: now
    exact = Backoff(1, 10)
    assert exact.delay(3, retry_after=7, rand=lambda: 0.9) == 7


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Backoff(-1, 10)


def test_retry_after_reads_only_plausible_delta_seconds() -> None:
    from sync.core.backoff import retry_after_seconds

    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(" 7 ") == 7
    assert retry_after_seconds("9" * 5000) is None  # hostile: never an int of 5,000 digits
    assert retry_after_seconds("1e9") is None
    assert retry_after_seconds("١٢") is None  # non-ASCII digits
    assert retry_after_seconds("") is None and retry_after_seconds(None) is None


def test_graph_and_workbooks_ignore_a_hostile_retry_after() -> None:
    from datetime import UTC, datetime

    from sync.graph.errors import parse_retry_after
    from sync.workbooks.errors import _retry_at

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("9" * 5000, now) is None
    assert parse_retry_after("x" * 5000, now) is None
    assert parse_retry_after("30", now) == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert _retry_at("9" * 5000) is None
