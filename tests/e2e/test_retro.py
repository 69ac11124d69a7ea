"""Retroactive linking in seconds, replayed as a user and an operator would: the local Functions
host runs ``function_app.py`` against Azurite; the operator onboards the mailbox with
``python -m sync mailboxes add`` (which subscribes to Workbooks' new-record triggers); the user
sends mail through the Graph sandbox and creates records through the Workbooks sandbox's HTTP
controls, whose signed webhook deliveries reach the host's anonymous route.

* a Person, Sales Lead or Contact Details row created in Workbooks: its delivery links the
  earlier email within seconds;
* a forged or unsigned delivery: 401, nothing queued;
* a key that may not manage triggers: the created-since poll links it (a short schedule here);
* the ``auto`` email policy: an email to an unknown address is linked when its Person appears.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.local import free_port, patched_environ


@pytest.fixture(autouse=True)
def _no_refusal_summary_left_behind() -> Iterator[None]:
    """Refused deliveries are counted in a rate-limited log whose summary line is written a
    window later, on the shared event loop: forget it so it never lands in a later test."""
    from sync.blueprints import workbooks_hooks

    yield
    workbooks_hooks.LOG.reset()


pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UPN = "ann@contoso.example"
KEY = "e2e-function-key"
SHARED = ["Workbooks"]
SECONDS = 10.0  # "within seconds": delivery, queue, run and links on a busy 2-core machine
NEVER = "0 0 0 1 1 *"  # a schedule that does not fire during a test


@dataclass
class Stack:
    host: Any  # devkit.host.localhost.LocalHost
    graph: Any
    workbooks: Any
    http: aiohttp.ClientSession
    env: dict[str, str]

    async def cli(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sync",
            *args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = out.decode()
        assert proc.returncode == 0 and "Traceback" not in text, (args, text)
        return text

    async def api(self, method: str, path: str) -> tuple[int, Any]:
        url = f"{self.host.base_url}/api/{path}"
        async with self.http.request(method, url, headers={"x-functions-key": KEY}) as resp:
            return resp.status, await resp.json()

    async def send(self, to: list[str], *, categories: list[str] | None = None) -> str:
        url = f"{self.graph.origin}/_sim/users/{UPN}/send"
        body = {"subject": "Quote", "body": "Hello there", "to": to, "categories": categories or []}
        async with self.http.post(url, json=body) as resp:
            assert resp.status == 201
            return str((await resp.json())["id"])

    async def seed(self, endpoint: str, record: dict[str, Any]) -> int:
        url = f"{self.workbooks.base_url}/_sim/seed"
        async with self.http.post(url, json={"endpoint": endpoint, "records": [record]}) as r:
            assert r.status == 200, await r.text()
            return int((await r.json())["created"][0]["id"])

    async def deliveries(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.workbooks.base_url}/_sim/webhook_deliveries") as r:
            return list(await r.json())

    async def explain(self, message: str) -> dict[str, Any]:
        status, body = await self.api("GET", f"emails/{UPN}/by-id?id={message}")
        assert status == 200, body
        return dict(body)

    async def linked_within(self, message: str, seconds: float) -> float:
        """Seconds until the message is linked (fails after ``seconds``)."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if (await self.explain(message))["state"] == "linked":
                return time.monotonic() - start
            await asyncio.sleep(0.05)
        raise AssertionError(f"not linked within {seconds} s: {await self.explain(message)}")

    async def settle(self) -> None:
        await asyncio.sleep(0.3)  # Graph's notification reaches the host
        await self.host.drain(timeout=60)

    def links(self) -> list[tuple[str, int]]:
        table = self.workbooks.state.tables[self.workbooks.state.config.email_link_path]
        return sorted(
            (str(r["resource_type"]), int(r["resource_id"]))
            for r in table.values()
            if not r.get("is_deleted")
        )

    def subscriptions(self) -> list[dict[str, Any]]:
        table = self.workbooks.state.tables["admin/triggers/webhook_subscriptions"]
        return [dict(r) for r in table.values() if not r.get("is_deleted")]


@asynccontextmanager
async def running(
    azurite_connection: str,
    *,
    webhooks_allowed: bool = True,
    policy: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    from devkit.host.localhost import LocalHost
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.graph import running_sandbox as graph_sandbox
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
    from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox
    from sync.runtime import get_services, reset_services
    from tests.support.world import drop_services

    port = free_port()
    wb_config = WorkbooksConfig(
        sim_controls=True,
        concurrency_cap=None,
        webhooks_allowed=webhooks_allowed,
        webhook_backoff_seconds=0.05,
        webhook_backoff_max_seconds=0.2,
    )
    async with (
        graph_sandbox(GraphConfig(controls=True, notify_retry_seconds=0.05)) as graph,
        workbooks_sandbox(wb_config) as wb,
        aiohttp.ClientSession() as http,
    ):
        graph.sandbox.state.add_mailbox(UPN)
        values = {
            "AzureWebJobsStorage": azurite_connection,
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_AUTHORITY_HOST": graph.origin,
            "GRAPH_TENANT_ID": graph.tenant_id,
            "GRAPH_CLIENT_ID": "sandbox-client",
            "GRAPH_CLIENT_SECRET": "sandbox-secret",
            "SYNC_TABLE_PREFIX": f"r{uuid.uuid4().hex[:10]}",
            "SYNC_JOBS_QUEUE": f"retro-{uuid.uuid4().hex[:10]}",
            "SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SYNC_WEBHOOK_MEMO_SECONDS": "0.2",
            "SYNC_LOCAL_FUNCTION_KEY": KEY,
            # The sandbox's trigger for new Contact Details rows (an extension, see docs).
            "WORKBOOKS_CONTACT_DETAILS_TRIGGER_ID": "9001",
            "RETRO_WB_KEY": "ann-api-key",
            **(env or {}),
        }
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "SYNC_"))}
        cli_env.update(values)
        with patched_environ(values):
            await reset_services()
            try:
                timers = "SYNC_RETRO_POLL_SCHEDULE" in values
                async with LocalHost(port=port, timers=timers) as host:
                    stack = Stack(host, graph, wb, http, cli_env)
                    args = ["--api-key-ref", "env:RETRO_WB_KEY"]
                    if policy:
                        args += ["--policy", json.dumps(policy)]
                    add = ("mailboxes", "add", UPN, "--workbooks-url", wb.base_url, *args)
                    out = await stack.cli(*add)
                    assert "subscriptions: created 3" in out and "warning" not in out, out
                    await stack.settle()
                    yield stack
            finally:
                await drop_services(await get_services())


async def test_a_new_person_links_the_earlier_email_within_seconds(
    azurite_connection: str,
) -> None:
    async with running(azurite_connection) as stack:
        subs = stack.subscriptions()  # onboarding subscribed to new people, leads, details
        assert sorted(s["trigger_id"] for s in subs) == [1, 5, 9001]
        assert all(s["enabled"] and "/api/workbooks/webhook/" in s["callback_url"] for s in subs)
        assert len({s["callback_url"] for s in subs}) == 3  # a token of its own each
        mid = await stack.send(["newbie@cust.example", "lee@prospect.example"], categories=SHARED)
        other = await stack.send(["alt@home.example"], categories=SHARED)
        await stack.settle()
        record = await stack.explain(mid)
        assert record["state"] == "no_match" and stack.links() == []

        pid = await stack.seed(
            "crm/people", {"name": "New Bie", "main_location[email]": "newbie@cust.example"}
        )
        took = await stack.linked_within(mid, SECONDS)
        delivered = [d for d in await stack.deliveries() if d["trigger_id"] == 1]
        assert [d["state"] for d in delivered] == ["delivered"], delivered
        assert delivered[0]["attempts"][-1]["status"] == 200
        assert stack.links() == [("Private::Crm::Person", pid)], took

        lid = await stack.seed(
            "crm/sales_leads",
            {
                "person_lead_party[name]": "Lee",
                "person_lead_party[main_location[email]]": "lee@prospect.example",
            },
        )
        await _until(lambda: ("Private::Crm::SalesLead", lid) in stack.links())
        holder = await stack.seed("crm/people", {"name": "Al T"})
        await stack.seed(
            "crm/party_locations",
            {"party_id": holder, "location_name": "Home", "email": "alt@home.example"},
        )
        await stack.linked_within(other, SECONDS)
        assert ("Private::Crm::Person", holder) in stack.links()
        explained = await stack.explain(mid)
        results = {r["address"]: r["result"] for r in explained["explanation"]["recipients"]}
        assert results == {
            "newbie@cust.example": "matched_later",
            "lee@prospect.example": "matched_later",
        }
        # A second delivery of the same records (at least once) links nothing twice.
        before = stack.links()
        await stack.seed("crm/people", {"name": "Nobody", "main_location[email]": "n@x.example"})
        await stack.host.drain(timeout=30)
        assert stack.links() == before and len(stack.workbooks.state.tables["email/emails"]) == 2


async def test_a_forged_or_unsigned_delivery_is_refused_and_queues_nothing(
    azurite_connection: str,
) -> None:
    from devkit.sandbox.workbooks.webhooks import sign
    from sync.runtime import get_services

    async with running(azurite_connection) as stack:
        mid = await stack.send(["victim@cust.example"], categories=SHARED)
        await stack.settle()
        person = next(s for s in stack.subscriptions() if s["trigger_id"] == 1)
        url = str(person["callback_url"])
        body = json.dumps([{"person": {"id": 99, "main_location[email]": "victim@cust.example"}}])
        services = await get_services()
        cases = [
            {},  # unsigned
            {"X-Workbooks-Signature": sign("not-the-secret", body.encode())},
            {"X-Workbooks-Signature": "sha256=" + "0" * 64},
            {"X-Workbooks-Signature": "md5=abc"},
        ]
        for extra in cases:
            headers = {"Content-Type": "application/json", **extra}
            async with stack.http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 401, (extra, await resp.text())
        forged_token = url.rsplit("/", 1)[0] + "/" + "A" * 43
        headers = {
            "Content-Type": "application/json",
            "X-Workbooks-Signature": "sha256=" + "1" * 64,
        }
        async with stack.http.post(forged_token, data=body, headers=headers) as resp:
            assert resp.status == 401
        assert not await services.store.dirty.is_marked(UPN, "people")  # nothing queued
        assert await services.queue.depth() == 0
        await stack.host.drain(timeout=30)
        assert (await stack.explain(mid))["state"] == "no_match" and stack.links() == []


async def test_without_trigger_rights_the_poll_links_within_its_interval(
    azurite_connection: str,
) -> None:
    from sync.runtime import get_services

    schedules = {
        "SYNC_RETRO_POLL_SCHEDULE": "*/2 * * * * *",  # every 2 s here; 4 minutes by default
        "SYNC_PUSH_SCHEDULE": NEVER,
        "SYNC_RECONCILE_SCHEDULE": NEVER,
        "SYNC_RENEW_SCHEDULE": NEVER,
        "SYNC_TODO_POLL_SCHEDULE": NEVER,
    }
    async with running(azurite_connection, webhooks_allowed=False, env=schedules) as stack:
        assert stack.subscriptions() == []  # the key may not manage triggers
        services = await get_services()
        (tenant,) = await services.store.workbooks_hooks.tenants()
        assert tenant.allowed is False and "may not manage triggers" in tenant.reason
        mid = await stack.send(["late@cust.example"], categories=SHARED)
        await stack.settle()
        pid = await stack.seed(
            "crm/people", {"name": "Late Comer", "main_location[email]": "late@cust.example"}
        )
        await stack.linked_within(mid, 2 + SECONDS)  # the next poll, then the run
        assert stack.links() == [("Private::Crm::Person", pid)]
        assert await stack.deliveries() == []


async def test_under_auto_an_email_to_an_unknown_address_is_linked_when_its_person_appears(
    azurite_connection: str,
) -> None:
    async with running(azurite_connection, policy={"email_policy": "auto"}) as stack:
        mid = await stack.send(["stranger@cust.example"])  # no category: auto decides
        await stack.settle()
        record = await stack.explain(mid)
        assert record["state"] == "not_shared"
        assert record["explanation"]["pending"] == ["stranger@cust.example"]
        assert stack.workbooks.state.tables["email/emails"] == {}  # nothing in Workbooks yet
        pid = await stack.seed(
            "crm/people", {"name": "Stran Ger", "main_location[email]": "stranger@cust.example"}
        )
        await stack.linked_within(mid, SECONDS)
        assert stack.links() == [("Private::Crm::Person", pid)]
        explained = (await stack.explain(mid))["explanation"]
        assert explained["shared_by"] == "auto: a recipient matched a record later"


async def _until(check: Callable[[], bool], seconds: float = SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
