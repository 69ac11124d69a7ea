"""The alerts in infra/main.bicep read what the code writes today.

The failing-mailbox alert parses the worker's line per job with KQL's `parse` (simple mode: each
column takes the text up to the next literal, the last one the rest). Here the same pattern,
taken from the template, is applied to the lines the real worker logs for a failed and a
successful run, so a change to either side fails the suite.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from devkit.checks.infra import Template, alert_queries, parse_bicep
from sync.blueprints import worker
from sync.core.errors import ReauthRequired
from sync.core.jobs import Job, JobKind, Stream, encode_job
from sync.core.state_models import Mailbox
from sync.engine import registry
from sync.engine.registry import RunContext
from tests.functions.helpers import user_function

MAIN = Path(__file__).resolve().parents[1] / "infra" / "main.bicep"


def _query(marker: str) -> str:
    template = Template(MAIN, parse_bicep(MAIN), "infra/main.bicep", MAIN.read_text())
    found = [query for query, _, _ in alert_queries(template) if marker in query]
    assert len(found) == 1, f"one alert query with {marker!r}"
    return found[0]


def kql_parse(pattern: str) -> re.Pattern[str]:
    """A regex equivalent to KQL `parse ... with <pattern>` in simple mode."""
    parts: list[str] = []
    tokens = re.findall(r'"([^"]*)"|(\w+)', pattern)
    for index, (literal, column) in enumerate(tokens):
        if column:
            last = index == len(tokens) - 1
            parts.append(f"(?P<{column}>.*)" if last else f"(?P<{column}>.*?)")
        else:
            parts.append(re.escape(literal))
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


def _worker_pattern() -> re.Pattern[str]:
    query = _query('startswith "job "')
    match = re.search(r"\| parse message with (.+)", query)
    assert match
    return kql_parse(match[1])


async def _run(services: Any, job: Job, caplog: pytest.LogCaptureFixture) -> str:
    caplog.clear()
    message = QueueMessage(
        id="m1", body=base64.b64decode(encode_job(job)), dequeue_count=1, pop_receipt="p"
    )
    with caplog.at_level(logging.INFO, logger="sync.worker"):
        await user_function(worker.sync_worker)(message)
    lines = [r.getMessage() for r in caplog.records if r.name == "sync.worker"]
    assert len(lines) == 1
    return lines[0]


async def test_mailbox_alert_parses_the_workers_lines(
    services: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await services.store.mailboxes.put(
        Mailbox(
            id="ann@example.com", workbooks_url="https://secure.workbooks.com", api_key_ref="env:K"
        )
    )
    services.settings.app.webhook_memo_seconds = 0

    async def rejected(ctx: RunContext) -> None:
        raise ReauthRequired("Workbooks answered 401", source="workbooks")

    async def fine(ctx: RunContext) -> None:
        ctx.count("created", 2)

    pattern = _worker_pattern()
    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.RECONCILE), rejected)
    failed = await _run(
        services,
        Job(mailbox="ann@example.com", stream=Stream.CONTACTS, kind=JobKind.RECONCILE),
        caplog,
    )
    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.RECONCILE), fine)
    ok = await _run(
        services,
        Job(mailbox="ann@example.com", stream=Stream.CONTACTS, kind=JobKind.RECONCILE),
        caplog,
    )
    for line, status in ((failed, "failed"), (ok, "ok")):
        assert line.startswith("job ")
        fields = pattern.match(line)
        assert fields, line
        assert (fields["mailbox"], fields["stream"], fields["kind"], fields["status"]) == (
            "ann@example.com",
            "contacts",
            "reconcile",
            status,
        )


def test_alert_queries_name_real_functions() -> None:
    from sync.blueprints import timers, webhooks

    names = {
        fn.build().get_function_name()
        for fn in (timers.reconcile_timer, webhooks.graph_notifications, webhooks.graph_lifecycle)
    }
    assert '"reconcile_timer"' in _query("reconcile_timer") and "reconcile_timer" in names
    webhook = _query("graph_notifications")
    assert {"graph_notifications", "graph_lifecycle"} <= names
    assert '"graph_notifications", "graph_lifecycle"' in webhook
    assert 'message has "MaxDequeueCount"' in _query("MaxDequeueCount")
