"""Identity before creation, replayed as a user and an operator would: the local Functions host
runs ``function_app.py`` against Azurite; the user acts in Outlook and Workbooks through the
sandboxes' HTTP controls (Graph notifies the host's webhook, whose jobs the host's worker runs);
the operator uses ``python -m sync`` as a subprocess and the HTTP API with a function key.

One test per user action of the identity issue: sharing an existing contact, a second copy of
a synced contact, a deleted contact coming back, removing the sharing category, and a push
that must stay one-way."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.core.schedule import Cadence
from tests.support.clock import next_tick, timers_at
from tests.support.local import free_port, patched_environ

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UPN = "ann@contoso.example"
KEY = "e2e-function-key"
CATEGORY = "Workbooks"
PERSON_QUEUE = "Private::Crm::PersonQueue"


@dataclass
class Stack:
    host: Any  # devkit.host.localhost.LocalHost
    graph: Any  # the Graph sandbox (HTTP)
    workbooks: Any  # the Workbooks sandbox (HTTP)
    http: aiohttp.ClientSession
    env: dict[str, str]  # what the CLI subprocess sees

    # ---- the operator
    async def cli(self, *args: str, ok: bool = True) -> str:
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
        assert (proc.returncode == 0) == ok, (args, proc.returncode, text)
        assert "Traceback" not in text, text
        return text

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"{self.host.base_url}/api/{path}"
        headers = {"x-functions-key": KEY}
        async with self.http.request(method, url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def api_sync(self, kind: str, **more: Any) -> dict[str, Any]:
        """POST /api/sync/{mailbox}, then follow the job to its end as a console would."""
        status, queued = await self.api("POST", f"sync/{UPN}", {"kind": kind, **more})
        assert status == 202, queued
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, job = await self.api("GET", f"sync/jobs/{queued['job_id']}")
            if job["state"] in ("done", "failed"):
                assert job["state"] == "done", job
                return dict(job)
            await asyncio.sleep(0.1)
        raise AssertionError("the manual sync did not finish")

    async def items(self) -> dict[str, Any]:
        status, report = await self.api("GET", f"items/{UPN}?stream=contacts")
        assert status == 200, report
        return dict(report["streams"]["contacts"])

    # ---- the user, through the sandboxes' HTTP controls
    async def _graph(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.graph.origin}/_sim/{path}", json=body) as r:
            assert r.status < 300, (path, r.status, await r.text())
            return await r.json() if r.status != 204 else None

    async def _wb(self, method: str, name: str, body: Any = None) -> Any:
        url = f"{self.workbooks.base_url}/_sim/{name}"
        async with self.http.request(method, url, json=body) as r:
            assert r.status == 200, (name, r.status, await r.text())
            return await r.json()

    async def contact(self, name: str, *emails: str, shared: bool = True) -> str:
        first, _, last = name.partition(" ")
        data = {
            "givenName": first,
            "surname": last,
            "displayName": name,
            "emailAddresses": [{"address": e} for e in emails],
            "categories": [CATEGORY] if shared else [],
        }
        made = await self._graph("POST", f"users/{UPN}/items/contact", {"data": data})
        return str(made["id"])

    async def edit_contact(self, oid: str, data: dict[str, Any]) -> None:
        await self._graph("PATCH", f"users/{UPN}/items/contact/{oid}", {"data": data})

    async def delete_contact(self, oid: str) -> None:
        await self._graph("DELETE", f"users/{UPN}/items/contact/{oid}")

    async def contacts(self) -> dict[str, dict[str, Any]]:
        state = await self._graph("GET", "state")
        containers = state["mailboxes"][UPN]["containers"]
        return {
            item["id"]: item
            for key, cont in containers.items()
            if key.startswith("contact:")
            for item in cont["items"]
        }

    async def person(self, name: str, email: str, *, queue: int | None = None) -> int:
        first, _, last = name.partition(" ")
        values: dict[str, Any] = {
            "name": name,
            "person_first_name": first,
            "person_last_name": last,
            "main_location[email]": email,
        }
        if queue is not None:
            values["assigned_to"] = queue
        made = await self._wb("POST", "seed", {"endpoint": "crm/people", "records": [values]})
        return int(made["created"][0]["id"])

    async def edit_person(self, pid: int, changes: dict[str, Any]) -> None:
        await self._wb("POST", "clock", {"advance_seconds": 2})  # updated_at has 1 s steps
        await self._wb("POST", "edit", {"endpoint": "crm/people", "id": pid, "changes": changes})

    async def people(self) -> list[dict[str, Any]]:
        state = await self._wb("GET", "state")
        return [r for r in state["tables"]["crm/people"] if not r.get("is_deleted")]

    def bob_queue(self) -> int:
        state = self.workbooks.state
        return int(state.my_queues(state.config.users[1])[PERSON_QUEUE])

    async def settle(self) -> None:
        """Wait for the notification jobs the user's actions caused."""
        await asyncio.sleep(0.3)  # Graph's notification reaches the webhook
        await self.host.drain(timeout=60)


@pytest.fixture
async def stack(azurite_connection: str) -> AsyncIterator[Stack]:
    from devkit.host.localhost import LocalHost
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.graph import running_sandbox as graph_sandbox
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
    from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox
    from sync.runtime import reset_services
    from tests.support.world import drop_services

    port = free_port()
    async with (
        graph_sandbox(GraphConfig(controls=True, notify_retry_seconds=0.05)) as graph,
        workbooks_sandbox(WorkbooksConfig(sim_controls=True, concurrency_cap=None)) as wb,
        aiohttp.ClientSession() as http,
    ):
        graph.sandbox.state.add_mailbox(UPN)
        env = {
            "AzureWebJobsStorage": azurite_connection,
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_AUTHORITY_HOST": graph.origin,
            "GRAPH_TENANT_ID": graph.tenant_id,
            "GRAPH_CLIENT_ID": "sandbox-client",
            "GRAPH_CLIENT_SECRET": "sandbox-secret",
            "SYNC_TABLE_PREFIX": f"e{uuid.uuid4().hex[:10]}",
            "SYNC_JOBS_QUEUE": f"e2e-{uuid.uuid4().hex[:10]}",
            "SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SYNC_WEBHOOK_MEMO_SECONDS": "0.2",
            "SYNC_LOCAL_FUNCTION_KEY": KEY,
            "E2E_WB_KEY": "ann-api-key",
        }
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "SYNC_"))}
        cli_env.update(env)
        with patched_environ(env):
            await reset_services()
            try:
                async with LocalHost(port=port, timers=False) as host:
                    stack = Stack(host, graph, wb, http, cli_env)
                    out = await stack.cli(
                        "mailboxes",
                        "add",
                        UPN,
                        "--workbooks-url",
                        wb.base_url,
                        "--api-key-ref",
                        "env:E2E_WB_KEY",
                    )
                    assert "subscriptions: created 3" in out, out
                    yield stack
            finally:
                from sync.runtime import get_services

                await drop_services(await get_services())


async def test_sharing_a_contact_that_workbooks_already_holds_links_it(stack: Stack) -> None:
    # Walter is a colleague's Person (not in Ann's My People); Ann has him in Outlook too.
    pid = await stack.person("Walter White", "walter@cust.example", queue=stack.bob_queue())
    await stack.cli("sync", UPN, "--kind", "full")
    assert await stack.contacts() == {}  # not in her scope: the service adds nothing
    oid = await stack.contact("Walt White", "Walter@Cust.example")  # she shares her own
    await stack.settle()  # the notification run links it
    assert [p["id"] for p in await stack.people()] == [pid]  # no second Walter
    contact = (await stack.contacts())[oid]
    assert contact["ext"] and str(pid) in contact["ext"].values()  # stamped
    await stack.cli("sync", UPN, "--kind", "full")
    contact = (await stack.contacts())[oid]
    assert contact["displayName"] == "Walter White"  # Workbooks' name stands
    # out of her scope, yet shared by her: a resync keeps the pair
    await stack.api_sync("resync")
    assert [p["id"] for p in await stack.people()] == [pid]
    found = await stack.items()
    assert found["linked"] == 1 and found["ambiguous"] == found["duplicate"] == []
    # an address two People hold: nothing is created, the operator is told who they are
    a = await stack.person("Jesse Pinkman", "jesse@cust.example", queue=stack.bob_queue())
    b = await stack.person("Jesse P", "jesse@cust.example", queue=stack.bob_queue())
    jesse = await stack.contact("Jesse", "jesse@cust.example")
    await stack.settle()
    assert len(await stack.people()) == 3
    (entry,) = (await stack.items())["ambiguous"]
    assert entry["outlook_id"] == jesse
    assert sorted(c["workbooks_id"] for c in entry["candidates"]) == sorted([a, b])
    out = await stack.cli("items", UPN, "--stream", "contacts")
    assert "ambiguous" in out and f"Person {a}" in out and f"Person {b}" in out
    out = await stack.cli("status")
    assert "1 ambiguous, 0 duplicate" in out


async def test_a_second_copy_of_a_synced_contact_is_a_duplicate(stack: Stack) -> None:
    pid = await stack.person("Walter White", "walter@cust.example")
    await stack.api_sync("full")
    ((service_oid, _),) = (await stack.contacts()).items()  # the service's Walter
    own = await stack.contact("Walter", "walter@cust.example", shared=False)  # her own Walter
    await stack.settle()
    await stack.edit_contact(own, {"categories": [CATEGORY]})  # she categorises it
    await stack.settle()
    await stack.cli("sync", UPN, "--kind", "resync")
    assert [p["id"] for p in await stack.people()] == [pid]  # one Person
    contacts = await stack.contacts()
    assert set(contacts) == {service_oid, own} and contacts[own]["ext"] == {}  # both kept
    (dup,) = (await stack.items())["duplicate"]
    assert (dup["outlook_id"], dup["linked_outlook_id"]) == (own, service_oid)
    out = await stack.cli("items", UPN)
    assert f"already synced with Outlook item {service_oid}" in out
    status, report = await stack.api("GET", "status")
    assert status == 200
    assert report["mailboxes"][0]["two_way_items"]["contacts"]["duplicate"] == 1


async def test_a_contact_deleted_in_outlook_does_not_come_back(stack: Stack) -> None:
    from sync.core.jobs import Stream
    from sync.runtime import get_services

    service_pid = await stack.person("Hank Schrader", "hank@dea.example")
    await stack.cli("sync", UPN, "--kind", "full")
    ((hank, _),) = (await stack.contacts()).items()
    own = await stack.contact("Marie Schrader", "marie@cust.example")  # becomes a Person
    await stack.settle()
    assert len(await stack.people()) == 2
    await stack.delete_contact(hank)
    await stack.delete_contact(own)
    await stack.settle()
    assert len(await stack.people()) == 2  # the records stay in Workbooks
    # the next full run, a resync, a scope refresh: nothing comes back
    await stack.cli("sync", UPN, "--kind", "full")
    await stack.api_sync("resync")

    def aged(cursor: Any) -> Any:
        extra = {**cursor.extra, "workbooks_full_at": "2000-01-01T00:00:00+00:00"}
        return cursor.model_copy(update={"extra": extra})

    services = await get_services()
    await services.store.cursors.update(UPN, Stream.CONTACTS, aged)
    with timers_at(next_tick(UPN, Cadence.RECONCILE)):
        await stack.host.fire_timer("reconcile_timer")
    await stack.host.drain(timeout=60)
    assert await stack.contacts() == {}
    removed = (await stack.items())["removed"]
    assert sorted(r["title"] for r in removed) == ["Hank Schrader", "Marie Schrader"]
    assert "2 removed by the user" in await stack.cli("status")
    # an operator restores them explicitly (a resync only: refused with a push)
    status, refused = await stack.api(
        "POST", f"sync/{UPN}", {"kind": "push", "restore_removed": True}
    )
    assert status == 400 and "restore_removed" in refused["error"]
    await stack.cli("sync", UPN, "--kind", "push", "--restore-removed", ok=False)
    await stack.cli("sync", UPN, "--kind", "resync", "--restore-removed")
    assert sorted(c["displayName"] for c in (await stack.contacts()).values()) == [
        "Hank Schrader",
        "Marie Schrader",
    ]
    assert (await stack.items())["removed"] == [] and len(await stack.people()) == 2
    assert service_pid in [p["id"] for p in await stack.people()]


async def test_removing_the_category_unlinks_without_a_new_copy(stack: Stack) -> None:
    pid = await stack.person("Gus Fring", "gus@pollos.example")
    await stack.api_sync("full")
    ((oid, _),) = (await stack.contacts()).items()
    await stack.edit_contact(oid, {"categories": []})  # she unshares it
    await stack.settle()
    with timers_at(next_tick(UPN, Cadence.RECONCILE)):
        await stack.host.fire_timer("reconcile_timer")
    await stack.host.drain(timeout=60)
    await stack.cli("sync", UPN, "--kind", "resync")
    contacts = await stack.contacts()
    assert list(contacts) == [oid] and contacts[oid]["categories"] == []  # hers, untouched
    (removed,) = (await stack.items())["removed"]
    assert (removed["workbooks_id"], removed["how"]) == (pid, "unshared")
    await stack.edit_contact(oid, {"categories": [CATEGORY]})  # she shares it again
    await stack.settle()
    await stack.edit_person(pid, {"person_job_title": "Owner"})
    await stack.cli("sync", UPN, "--kind", "full")
    contacts = await stack.contacts()
    assert list(contacts) == [oid] and contacts[oid]["jobTitle"] == "Owner"
    assert len(await stack.people()) == 1
    found = await stack.items()
    assert found["removed"] == [] and found["linked"] == 1


async def test_a_push_is_one_way_from_every_trigger(stack: Stack) -> None:
    pid = await stack.person("Ted Beneke", "ted@beneke.example")
    await stack.cli("sync", UPN, "--kind", "full")
    ((oid, _),) = (await stack.contacts()).items()
    await stack.edit_person(pid, {"person_job_title": "CEO"})
    await stack.edit_contact(oid, {"companyName": "Beneke Fabricators"})
    await stack.settle()
    out = await stack.cli("sync", UPN, "--kind", "push")
    assert "done" in out
    await stack.api_sync("push")
    # A push of its own (with the default intervals every push falls on a reconcile, which
    # does it): Ann's push every 15 minutes, so every other one is a push alone.
    from sync.runtime import get_services

    services = await get_services()
    mailbox = await services.store.mailboxes.get(UPN)
    assert mailbox is not None
    policy = mailbox.policy.model_copy(update={"push_interval_minutes": 15})
    await services.store.mailboxes.put(mailbox.model_copy(update={"policy": policy}))
    with timers_at(next_tick(UPN, Cadence.PUSH, policy)):
        await stack.host.fire_timer("push_timer")
    await stack.host.drain(timeout=60)
    people = {p["id"]: p for p in await stack.people()}
    assert people[pid]["employer_name"] == "Beneke Fabricators"  # Outlook -> Workbooks
    assert (await stack.contacts())[oid].get("jobTitle") in (None, "")  # not the other way
    job = await stack.api_sync("full")  # a full sync is two-way
    assert job["counts"].get("outlook_update") == 1, json.dumps(job)
    assert (await stack.contacts())[oid]["jobTitle"] == "CEO"


async def test_items_answers_bad_requests_clearly(stack: Stack) -> None:
    status, body = await stack.api("GET", "items/nobody@contoso.example")
    assert status == 404 and "not registered" in body["error"]
    status, body = await stack.api("GET", f"items/{UPN}?stream=sent")
    assert status == 400 and "contacts, events, todo" in body["error"]
    async with stack.http.get(f"{stack.host.base_url}/api/items/{UPN}") as resp:
        assert resp.status == 401  # the function key is required
    status, body = await stack.api("GET", f"items/{UPN}")
    assert status == 200 and set(body["streams"]) == {"contacts", "events", "todo"}
    out = await stack.cli("items", "nobody@contoso.example", ok=False)
    assert "not registered" in out
    out = await stack.cli("items", UPN, "--json")
    assert json.loads(out)["streams"]["todo"]["removed"] == []
    for body in (
        {"kind": "resync", "restore_removed": "yes"},
        {"kind": "full", "restore_removed": True},
    ):
        status, refused = await stack.api("POST", f"sync/{UPN}", body)
        assert status == 400, refused
