"""A whole local world for end-to-end tests: Azurite-backed services on unique tables and
queue, the Graph sandbox and the Workbooks sandbox in-process, and registered mailboxes.

    async with world_running(azurite_connection) as world:
        mb = await world.add_mailbox("ann@example.com")
        world.seed("crm/people", [{"name": "P", "main_location[email]": "p@cust.com"}])
        msg = world.send("ann@example.com", to=["p@cust.com"], categories=["Workbooks"])
        await world.run("ann@example.com", Stream.SENT)

The engine's clients are pre-built with fast retry settings (milliseconds, not seconds) and put
in the services' cache, so throttling tests stay quick; ``world.workbooks_calls()`` counts the
Workbooks requests they sent.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from sync.core.jobs import Job, JobKind, Stream
from sync.core.state_models import Mailbox, MailboxPolicy, RunRecord
from sync.runtime import Services
from tests.support.local import patched_environ, start_server

if TYPE_CHECKING:
    from aiohttp import web

WORKBOOKS_KEYS = {"ann@example.com": "ann-api-key", "bob@example.com": "bob-api-key"}


@dataclass
class World:
    services: Services
    graph: Any  # devkit.sandbox.graph.SandboxHandle
    workbooks: Any  # devkit.sandbox.workbooks.RunningSandbox
    key_env: dict[str, str] = field(default_factory=dict)
    wb_api_key: str = "ann-api-key"
    webhook_url: str = ""
    _webhook_runner: Any = None

    # ------------------------------------------------------------------ mailboxes
    async def add_mailbox(self, upn: str, *, api_key: str | None = None, **policy: Any) -> Mailbox:
        """Register ``upn`` in state and in the Graph sandbox (Workbooks user: Ann by default)."""
        env = f"WB_KEY_{uuid.uuid4().hex[:8].upper()}"
        os.environ[env] = api_key or WORKBOOKS_KEYS.get(upn, self.wb_api_key)
        self.key_env[upn] = env
        self.graph.sandbox.state.add_mailbox(upn)
        mailbox = Mailbox(
            id=upn,
            workbooks_url=self.workbooks.base_url,
            api_key_ref=f"env:{env}",
            policy=MailboxPolicy(**policy),
        )
        await self.services.store.mailboxes.put(mailbox)
        self._fast_workbooks_client(mailbox, os.environ[env])
        return mailbox

    async def set_policy(self, upn: str, **policy: Any) -> Mailbox:
        mailbox = await self.services.store.mailboxes.get(upn)
        assert mailbox is not None
        mailbox = mailbox.model_copy(update={"policy": mailbox.policy.model_copy(update=policy)})
        await self.services.store.mailboxes.put(mailbox)
        return mailbox

    def _fast_workbooks_client(self, mailbox: Mailbox, key: str) -> None:
        from sync.engine.clients import identity_fingerprint
        from sync.workbooks import ClientConfig, WorkbooksClient, WorkbooksIdentity

        config = ClientConfig.from_settings(
            self.services.settings.workbooks,
            backoff_base_seconds=0.005,
            backoff_max_seconds=0.05,
            timeout_seconds=20.0,
        )
        identity = WorkbooksIdentity(mailbox.workbooks_url, SecretStr(key), mailbox.id)
        client = WorkbooksClient(identity, config, shared=self.services.cache.workbooks_shared)
        fingerprint = identity_fingerprint(mailbox.workbooks_url, key)
        self.services.cache.workbooks[fingerprint] = client
        self.services.cache.workbooks_by_mailbox[mailbox.id] = fingerprint
        self.services.closers.append(client.close)

    def workbooks_calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for client in self.services.cache.workbooks.values():
            for name, n in client.calls.items():
                total[name] = total.get(name, 0) + n
        return total

    def reset_call_counts(self) -> None:
        for client in self.services.cache.workbooks.values():
            client.calls.clear()

    # ------------------------------------------------------------------ Outlook side
    def send(
        self,
        upn: str,
        *,
        to: list[str] | None = None,
        cc: list[str] | None = None,
        bcc: list[str] | None = None,
        subject: str = "Hello",
        body: str = "Hi there",
        categories: list[str] | None = None,
        internet_message_id: str | None = None,
        sent_at: str | None = None,
    ) -> str:
        """Act as ``upn`` sending an email; returns the message's immutable id."""
        from devkit.sandbox.graph.control import sent_message

        sb = self.graph.sandbox
        box = sb.state.mailbox(upn)
        data = sent_message(
            box.upn,
            {
                "subject": subject,
                "body": body,
                "to": to or [],
                "cc": cc or [],
                "bcc": bcc or [],
                "categories": categories or [],
                "internetMessageId": internet_message_id
                or f"<{uuid.uuid4().hex}@{upn.split('@')[1]}>",
                **({"sentDateTime": sent_at} if sent_at else {}),
            },
        )
        item = sb.create_item(box, sb.state.container(box, "message", "sentitems"), data)
        return str(item.immutable_id)

    def categorise(self, upn: str, message_id: str, categories: list[str]) -> None:
        sb = self.graph.sandbox
        box = sb.state.mailbox(upn)
        found = sb.state.find(box, "message", message_id)
        assert found is not None
        sb.update_item(box, found[0], found[1], {"categories": categories})

    def message(self, upn: str, message_id: str) -> dict[str, Any]:
        sb = self.graph.sandbox
        found = sb.state.find(sb.state.mailbox(upn), "message", message_id)
        assert found is not None
        return dict(found[1].data)

    def expire_delta(self, upn: str | None = None) -> int:
        sb = self.graph.sandbox
        box = sb.state.mailbox(upn) if upn else None
        return int(sb.state.expire_tokens(box.user_id if box else None))

    def graph_fault(self, **fault: Any) -> None:
        from devkit.sandbox.graph.service import Fault

        self.graph.sandbox.faults.append(Fault(**fault))

    # ------------------------------------------------------------------ Workbooks side
    def seed(self, endpoint: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from devkit.sandbox.workbooks.control import seed

        return seed(self.workbooks.state, endpoint, records)

    def person(self, name: str, email: str) -> int:
        return int(
            self.seed("crm/people", [{"name": name, "main_location[email]": email}])[0]["id"]
        )

    def lead(self, name: str, email: str) -> int:
        rows = self.seed(
            "crm/sales_leads",
            [{"person_lead_party[name]": name, "person_lead_party[main_location[email]]": email}],
        )
        return int(rows[0]["id"])

    def contact_detail(self, party_id: int, email: str, *, alternate: bool = False) -> int:
        field_name = "alternate_email" if alternate else "email"
        rows = self.seed(
            "crm/party_locations",
            [{"party_id": party_id, "location_name": "Other", field_name: email}],
        )
        return int(rows[0]["id"])

    def case(self, name: str = "A case") -> int:
        return int(self.seed("crm/cases", [{"name": name}])[0]["id"])

    def emails(self) -> list[dict[str, Any]]:
        return [r for r in self.workbooks.state.tables["email/emails"].values()]

    def links(self) -> list[tuple[int, str, int]]:
        path = self.workbooks.state.config.email_link_path
        return sorted(
            (int(r["email_id"]), str(r["resource_type"]), int(r["resource_id"]))
            for r in self.workbooks.state.tables[path].values()
            if not r.get("is_deleted")
        )

    # ------------------------------------------------------------------ webhook + worker
    async def start_webhook(self) -> str:
        """Serve ``sync.webhook.handle`` on a free port (what Graph calls); returns its URL."""
        if self.webhook_url:
            return self.webhook_url
        self._webhook_runner, origin = await start_server(webhook_app(self.services))
        self.webhook_url = f"{origin}/api/graph/notifications"
        return self.webhook_url

    async def subscribe(self, upn: str) -> str:
        """A real sent-items subscription in the Graph sandbox, recorded in state."""

        from sync.core.state_models import SubscriptionRecord, utcnow
        from sync.engine.clients import graph_client
        from sync.state.store import hash_client_state

        url = await self.start_webhook()
        secret = uuid.uuid4().hex
        expires = utcnow() + timedelta(days=2)
        resource = f"users/{upn}/mailFolders('sentitems')/messages"
        created = await graph_client(self.services).create_subscription(
            {
                "changeType": "created,updated",
                "notificationUrl": url,
                "resource": resource,
                "expirationDateTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "clientState": secret,
            }
        )
        await self.services.store.subscriptions.put(
            SubscriptionRecord(
                subscription_id=created["id"],
                mailbox=upn,
                stream=Stream.SENT,
                resource=resource,
                client_state_hash=hash_client_state(secret),
                expires_at=expires,
            )
        )
        return str(created["id"])

    async def work_once(self, visibility: int = 60) -> list[RunRecord]:
        """Receive the visible jobs once, run each, delete it; returns the runs."""
        from sync.core.jobs import decode_job
        from sync.engine.runner import run_job

        queue = self.services.queue._queue
        runs = []
        async for m in queue.receive_messages(max_messages=32, visibility_timeout=visibility):
            runs.append(await run_job(self.services, decode_job(m.content)))
            await queue.delete_message(m)
        return runs

    async def stop_webhook(self) -> None:
        if self._webhook_runner is not None:
            await self._webhook_runner.cleanup()
            self._webhook_runner = None

    # ------------------------------------------------------------------ running jobs
    async def run(
        self, upn: str, stream: Stream = Stream.SENT, kind: JobKind = JobKind.DIRTY, **extra: Any
    ) -> RunRecord:
        from sync.engine.runner import run_job

        job = Job(mailbox=upn, stream=stream, kind=kind, reason="test", **extra)
        return await run_job(self.services, job)


def webhook_app(services: Services) -> web.Application:
    """The webhook's two routes over HTTP, as the Functions host serves them."""
    from aiohttp import web

    from sync.webhook import handle

    async def route(request: web.Request) -> web.Response:
        reply = await handle(
            services,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            lifecycle=request.path.endswith("/lifecycle"),
        )
        return web.Response(status=reply.status, text=reply.body, content_type=reply.content_type)

    app = web.Application()
    app.router.add_post("/api/graph/notifications", route)
    app.router.add_post("/api/graph/lifecycle", route)
    return app


async def drop_services(services: Services) -> None:
    """Drop the services' tables and queues, then forget them (``get_services`` builds anew)."""
    from sync.runtime import reset_services

    await services.store.drop_tables()
    for name in (services.queue.name, services.queue.poison_name):
        await services.queue._service.delete_queue(name)
    await reset_services()


def _env(graph: Any, prefix: str, queue: str) -> dict[str, str]:
    return {
        "GRAPH_BASE_URL": graph.base_url,
        "GRAPH_AUTHORITY_HOST": graph.origin,
        "GRAPH_TENANT_ID": graph.tenant_id,
        "GRAPH_CLIENT_ID": "sandbox-client",
        "GRAPH_CLIENT_SECRET": "sandbox-secret",
        "GRAPH_MAX_RETRY_WAIT_SECONDS": "2",
        "SYNC_TABLE_PREFIX": prefix,
        "SYNC_JOBS_QUEUE": queue,
    }


@asynccontextmanager
async def world_running(
    azurite_connection: str,
    *,
    graph_config: Any = None,
    workbooks_config: Any = None,
) -> AsyncIterator[World]:
    """Both sandboxes + services wired to them; everything torn down on exit."""
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.graph import running_sandbox as graph_sandbox
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
    from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox
    from sync.graph.client import GraphClient
    from sync.graph.limiter import RetryPolicy
    from sync.runtime import get_services, reset_services

    gcfg = graph_config or GraphConfig(
        controls=True, validation_timeout_seconds=0.5, notify_retry_seconds=0.05
    )
    wcfg = workbooks_config or WorkbooksConfig(sim_controls=True, concurrency_cap=None)
    async with graph_sandbox(gcfg) as graph, workbooks_sandbox(wcfg) as workbooks:
        env = _env(graph, f"w{uuid.uuid4().hex[:10]}", f"jobs-{uuid.uuid4().hex[:10]}")
        with patched_environ(env):
            os.environ["AzureWebJobsStorage"] = azurite_connection
            await reset_services()
            services = await get_services()
            # A new deployment: its emails table holds no email created without an intent.
            await services.store.intents.start(datetime.now(UTC) - timedelta(days=1))
            fast = RetryPolicy(attempts=5, backoff_base_seconds=0.01, max_wait_seconds=2.0)
            client = GraphClient.create(services.settings.graph, policy=fast)
            services.cache.graph = client
            services.closers.append(client.aclose)
            world = World(services, graph, workbooks)
            try:
                yield world
            finally:
                await world.stop_webhook()
                await drop_services(services)
                for var in world.key_env.values():
                    os.environ.pop(var, None)
