"""The Graph client's in-request retries: full jitter without Retry-After, Retry-After exactly."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from sync.core.errors import RetryLater
from sync.graph.limiter import RetryPolicy


def test_graph_policy_uses_full_jitter_without_retry_after() -> None:
    now = datetime.now(UTC)
    error = RetryLater("Graph answered 503", source="graph", detail="503 : busy")
    low = RetryPolicy(rand=lambda: 0.0)
    high = RetryPolicy(rand=lambda: 0.999999)
    assert low.wait_seconds(error, 1, now) == 0.0
    assert high.wait_seconds(error, 1, now) == pytest.approx(0.5, abs=1e-5)
    assert high.wait_seconds(error, 4, now) == pytest.approx(4.0, abs=1e-4)
    assert high.wait_seconds(error, 20, now) == pytest.approx(30.0, abs=1e-3)  # the cap
    waits = {
        RetryPolicy(rand=random.Random(i).random).wait_seconds(error, 4, now) for i in range(50)
    }
    assert len(waits) == 50 and min(waits) < 1 and max(waits) > 3  # spread, not 4 s each


def test_graph_policy_waits_retry_after_exactly() -> None:
    now = datetime.now(UTC)
    error = RetryLater("429", retry_at=now + timedelta(seconds=7), source="graph")
    assert RetryPolicy(rand=lambda: 0.9).wait_seconds(error, 1, now) == 7
    assert RetryPolicy().next_wait(error, 1, now) == 7
    late = RetryLater("429", retry_at=now + timedelta(seconds=600), source="graph")
    assert RetryPolicy().next_wait(late, 1, now) is None  # too long: back to the job
