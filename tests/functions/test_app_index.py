"""What the Functions host would index from function_app.py: routes, auth, queues, schedules."""

from __future__ import annotations

import os
from typing import Any

import pytest
from croniter import croniter

from sync.core.state_models import MailboxPolicy
from sync.settings import AppSettings, get_settings
from tests.support import app_index


@pytest.fixture(scope="module")
def indexed() -> dict[str, dict[str, Any]]:
    # get_functions() may be called once per app; tests/support/app_index.py makes that so.
    return app_index.indexed()


def _binding(fn: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(b for b in fn["bindings"] if b["type"] == kind)


def test_http_routes_and_auth_levels(indexed: dict[str, dict[str, Any]]) -> None:
    routes = {
        name: (b["route"], tuple(b["methods"]), b["authLevel"])
        for name, fn in indexed.items()
        for b in fn["bindings"]
        if b["type"] == "httpTrigger"
    }
    assert routes == {
        "graph_notifications": ("graph/notifications", ("POST",), "ANONYMOUS"),
        "graph_lifecycle": ("graph/lifecycle", ("POST",), "ANONYMOUS"),
        "manual_sync": ("sync/{mailbox}", ("POST",), "FUNCTION"),
        "manual_sync_status": ("sync/jobs/{job_id}", ("GET",), "FUNCTION"),
        "status": ("status", ("GET",), "FUNCTION"),
        "two_way_items": ("items/{mailbox}", ("GET",), "FUNCTION"),
        "email_explain": ("emails/{mailbox}/{message}", ("GET",), "FUNCTION"),
        "email_attach": ("emails/{mailbox}/attach", ("POST",), "FUNCTION"),
        "workbooks_webhook": ("workbooks/webhook/{token}", ("POST",), "ANONYMOUS"),
        "doctor": ("doctor/{mailbox}", ("GET",), "FUNCTION"),
        # The console signs people in itself (App Service Authentication in front, the
        # principal header checked on every route: sync/console/auth.py), so no function key.
        "console_page": ("console/{*path}", ("GET",), "ANONYMOUS"),
        "console_action": ("console/{*path}", ("POST",), "ANONYMOUS"),
        "console_static": ("console/static/{name}", ("GET",), "ANONYMOUS"),
    }


def test_queue_trigger_reads_the_jobs_queue_setting(indexed: dict[str, dict[str, Any]]) -> None:
    trigger = _binding(indexed["sync_worker"], "queueTrigger")
    assert trigger["queueName"] == "%SYNC_JOBS_QUEUE%"
    assert trigger["connection"] == "AzureWebJobsStorage"


def test_schedules_come_from_app_settings_with_the_documented_defaults(
    indexed: dict[str, dict[str, Any]],
) -> None:
    schedules = {
        name: _binding(fn, "timerTrigger")["schedule"]
        for name, fn in indexed.items()
        if any(b["type"] == "timerTrigger" for b in fn["bindings"])
    }
    assert schedules == {
        "push_timer": "%SYNC_PUSH_SCHEDULE%",
        "reconcile_timer": "%SYNC_RECONCILE_SCHEDULE%",
        "renew_timer": "%SYNC_RENEW_SCHEDULE%",
        "todo_poll_timer": "%SYNC_TODO_POLL_SCHEDULE%",
        "retro_poll_timer": "%SYNC_RETRO_POLL_SCHEDULE%",
        "sweep_timer": "%SYNC_SWEEP_SCHEDULE%",
    }
    defaults = AppSettings.model_fields
    # The push, reconcile and To Do timers tick every minute; each mailbox's own intervals
    # (2 hours and 30 minutes by default) are policy fields (sync.core.schedule).
    for name in ("push_schedule", "reconcile_schedule", "todo_poll_schedule"):
        tick = croniter(defaults[name].default, second_at_beginning=True)
        first, second = tick.get_next(float), tick.get_next(float)
        assert second - first == 60, name
    policy = MailboxPolicy()
    assert (policy.push_interval_minutes, policy.reconcile_interval_minutes) == (120, 30)
    # A new record is linked within 5 minutes where no webhook covers it (poll + the run).
    retro = croniter(defaults["retro_poll_schedule"].default, second_at_beginning=True)
    first, second = retro.get_next(float), retro.get_next(float)
    assert second - first < 5 * 60
    # A dead worker's streams run again within the lease plus one sweep: 2 minutes at most.
    sweeper = croniter(defaults["sweep_schedule"].default, second_at_beginning=True)
    first, second = sweeper.get_next(float), sweeper.get_next(float)
    assert second - first + defaults["lease_seconds"].default <= 120


def test_schedules_are_overridable_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.settings import SettingsError, load_settings

    monkeypatch.setenv("SYNC_PUSH_SCHEDULE", "0 0 * * * *")
    assert load_settings().app.push_schedule == "0 0 * * * *"
    monkeypatch.setenv("SYNC_RECONCILE_SCHEDULE", "*/30 * * * *")  # classic 5-field cron
    with pytest.raises(
        SettingsError, match="SYNC_RECONCILE_SCHEDULE: expected a six-field NCRONTAB"
    ):
        load_settings()
    get_settings.cache_clear()


def test_missing_storage_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.settings import SettingsError, load_settings

    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("SYNC_WEBHOOK_MAX_BODY_BYTES", "lots")
    monkeypatch.setenv("SYNC_SECRETS_PROVIDER", "vault")
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "SYNC_WEBHOOK_MAX_BODY_BYTES" in text
    assert "SYNC_SECRETS_PROVIDER: Input should be 'env' or 'keyvault'" in text
    monkeypatch.delenv("SYNC_WEBHOOK_MAX_BODY_BYTES")
    monkeypatch.delenv("SYNC_SECRETS_PROVIDER")
    with pytest.raises(SettingsError, match="AzureWebJobsStorage to a connection string"):
        load_settings()
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("SYNC_SECRETS_PROVIDER", "keyvault")
    with pytest.raises(SettingsError, match="SYNC_KEY_VAULT_URL is required"):
        load_settings()
    assert os.environ.get("SYNC_KEY_VAULT_URL") is None
