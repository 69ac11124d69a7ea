"""The Workbooks client's replays of a throttled request: full jitter, Retry-After honoured."""

from __future__ import annotations

from pydantic import SecretStr

from sync.workbooks import ClientConfig, WorkbooksClient, WorkbooksIdentity


def test_workbooks_replays_use_full_jitter_and_honour_retry_after() -> None:
    config = ClientConfig(backoff_base_seconds=0.5, backoff_max_seconds=8.0)
    client = WorkbooksClient(WorkbooksIdentity("http://127.0.0.1:9", SecretStr("k")), config)
    draws = [client._backoff(5, None) for _ in range(300)]
    assert min(draws) >= 0 and max(draws) <= 8.0
    assert len(set(draws)) > 250 and min(draws) < 2 and max(draws) > 6
    assert max(client._backoff(1, None) for _ in range(100)) <= 0.5
    assert client._backoff(1, "3") == 3.0
    assert client._backoff(7, " 12 ") == 12.0
    # A header that is not a sane number of seconds is ignored, not slept for ages.
    assert client._backoff(1, "9" * 5000) <= 0.5
    assert client._backoff(1, "soon") <= 0.5
