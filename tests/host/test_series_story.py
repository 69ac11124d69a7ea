"""The recurring-meeting story, as a user lives it, through the local Functions host running
the real ``function_app.py``: a weekly meeting shared in Outlook (the Graph sandbox's HTTP
controls), Graph's notifications to the host's webhook, the queue worker, and Workbooks read
over its HTTP API.  One Workbooks meeting for the series, on its next occurrence; cancelling
that occurrence moves it; a full reconcile duplicates nothing; deleting the series removes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from sync.core.schedule import Cadence
from tests.conftest import unique
from tests.support.clock import next_tick, timers_at
from tests.support.local import free_port, patched_environ

UPN = "ann@contoso.example"
KEY_ENV = "SERIES_STORY_WORKBOOKS_KEY"
SUBJECT = "Weekly pipeline call"


@asynccontextmanager
async def running_stack() -> AsyncIterator[tuple[Any, Any, Any, Any]]:
    """Both sandboxes, the local host on function_app.py and the services it uses."""
    from devkit.host.localhost import LocalHost
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.graph import running_sandbox as graph_sandbox
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
    from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox
    from sync.runtime import get_services, reset_services
    from sync.settings import get_settings
    from tests.support.world import drop_services

    port = free_port()
    async with (
        graph_sandbox(GraphConfig(controls=True)) as graph,
        workbooks_sandbox(WorkbooksConfig(sim_controls=True)) as workbooks,
    ):
        env = {
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_AUTHORITY_HOST": graph.origin,
            "GRAPH_TENANT_ID": graph.tenant_id,
            "GRAPH_CLIENT_ID": "sandbox-client",
            "GRAPH_CLIENT_SECRET": "sandbox-secret",
            "SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SYNC_WEBHOOK_MEMO_SECONDS": "0.2",
            "SYNC_TABLE_PREFIX": unique("s"),
            "SYNC_JOBS_QUEUE": f"jobs-{unique('q')}",
            KEY_ENV: "ann-api-key",
        }
        with patched_environ(env):
            get_settings.cache_clear()
            await reset_services()
            services = await get_services()
            try:
                async with LocalHost(port=port, timers=False) as host:
                    yield graph, workbooks, host, services
            finally:
                await drop_services(services)
                get_settings.cache_clear()


async def eventually(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_shared_weekly_meeting_is_one_workbooks_meeting_through_the_host() -> None:
    from sync.core.state_models import Mailbox
    from sync.engine.clients import workbooks_client
    from sync.engine.subscriptions import ensure_for_mailbox
    from sync.workbooks import Cond, iter_records

    async with running_stack() as (graph, workbooks, host, services):
        graph.sandbox.state.add_mailbox(UPN)
        mailbox = Mailbox(id=UPN, workbooks_url=workbooks.base_url, api_key_ref=f"env:{KEY_ENV}")
        await services.store.mailboxes.put(mailbox)
        outcome = await ensure_for_mailbox(services, mailbox)
        assert len(outcome.created) == 3
        client = await workbooks_client(services, mailbox)

        async def rows() -> list[dict[str, Any]]:
            where = Cond("name", "eq", SUBJECT)
            columns = ["name", "start", "finish", "description"]
            return [r async for r in iter_records(client, "activity/meetings", columns, where)]

        # A weekly meeting that began three weeks ago; its next occurrence is in two days.
        nxt = datetime.now(UTC).date() + timedelta(days=2)
        first = nxt - timedelta(days=21)
        weekday = first.strftime("%A").lower()
        series = {
            "subject": SUBJECT,
            "categories": ["Workbooks"],
            "start": {"dateTime": f"{first}T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"{first}T10:30:00", "timeZone": "UTC"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [weekday]},
                "range": {"type": "noEnd", "startDate": first.isoformat()},
            },
        }
        async with aiohttp.ClientSession(graph.origin) as sim:
            made = await sim.post(f"/_sim/users/{UPN}/series", json={"data": series})
            assert made.status == 201, await made.text()
            master = (await made.json())["id"]

            async def one_on(day: date) -> list[dict[str, Any]]:
                found = await rows()
                ok = len(found) == 1 and str(found[0]["start"]).startswith(f"{day}T10:00:00")
                return found if ok else []

            (meeting,) = await eventually("the series' meeting", lambda: one_on(nxt))
            assert "[Outlook series] Every week on" in meeting["description"]
            assert "no end date" in meeting["description"]
            await host.drain()

            # Ann cancels that occurrence: the meeting moves to the following week.
            gone = await sim.delete(f"/_sim/users/{UPN}/series/{master}/occurrences/{nxt}")
            assert gone.status == 204, await gone.text()
            await eventually("the meeting to move", lambda: one_on(nxt + timedelta(days=7)))
            await host.drain()

            # The 30-minute reconcile runs: still exactly one meeting, where it was.
            with timers_at(next_tick(UPN, Cadence.RECONCILE)):
                await host.fire_timer("reconcile_timer")
            await host.drain()
            assert await one_on(nxt + timedelta(days=7))

            # Ann deletes the series: the meeting the service created goes with it.
            deleted = await sim.delete(f"/_sim/users/{UPN}/items/event/{master}")
            assert deleted.status == 204, await deleted.text()

            async def none_left() -> bool:
                return await rows() == []

            await eventually("the meeting to be deleted", none_left)
            await host.drain()
