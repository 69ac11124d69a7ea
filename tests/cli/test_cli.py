"""``python -m sync`` as an operator runs it (a real subprocess), against Azurite and the Graph
sandbox: the mailbox registry, subscriptions created and deleted with it, status, bad input."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devkit.sandbox.graph import SandboxConfig, running_sandbox
from tests.support.local import serving

ROOT = Path(__file__).resolve().parents[2]
UPN = "ann@contoso.example"


async def sync_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sync",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return int(proc.returncode or 0), out.decode()


@pytest.fixture
async def world(azurite_connection: str) -> AsyncIterator[tuple[dict[str, str], Any]]:
    async def echo(request: web.Request) -> web.Response:  # the validation handshake only
        return web.Response(
            text=request.query.get("validationToken", ""), content_type="text/plain"
        )

    app = web.Application()
    app.router.add_post("/api/graph/notifications", echo)
    app.router.add_post("/api/graph/lifecycle", echo)
    async with (
        serving(app) as origin,
        running_sandbox(SandboxConfig(controls=True, validation_timeout_seconds=5)) as graph,
    ):
        graph.sandbox.state.add_mailbox(UPN)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "SYNC_"))}
        env.update(
            {
                "AzureWebJobsStorage": azurite_connection,
                "SYNC_TABLE_PREFIX": f"c{uuid.uuid4().hex[:10]}",
                "SYNC_JOBS_QUEUE": f"cli-{uuid.uuid4().hex[:10]}",
                "SYNC_PUBLIC_BASE_URL": origin,
                "GRAPH_BASE_URL": graph.base_url,
                "GRAPH_AUTHORITY_HOST": graph.origin,
                "GRAPH_TENANT_ID": graph.tenant_id,
                "GRAPH_CLIENT_ID": "sandbox-client",
                "GRAPH_CLIENT_SECRET": "sandbox-secret",
            }
        )
        yield env, graph


@pytest.mark.slow
async def test_mailbox_lifecycle_through_the_cli(world: tuple[dict[str, str], Any]) -> None:
    env, graph = world
    add = ("mailboxes", "add", UPN, "--workbooks-url", "https://secure.workbooks.com")
    code, out = await sync_cli(env, *add, "--api-key-ref", "env:WB_KEY_ANN")
    assert code == 0, out
    assert "registered ann@contoso.example" in out and "subscriptions: created 3" in out
    assert len(graph.sandbox.state.subscriptions) == 3

    code, out = await sync_cli(env, *add, "--api-key-ref", "env:WB_KEY_ANN", "--no-subscribe")
    assert (code, "already registered" in out) == (1, True)
    code, out = await sync_cli(
        env,
        "mailboxes",
        "add",
        "bob@contoso.example",
        "--workbooks-url",
        "https://secure.workbooks.com",
        "--api-key-ref",
        "a-raw-api-key-123",
    )
    assert code == 2 and "never the API key itself" in out

    code, out = await sync_cli(env, "mailboxes", "list")
    assert code == 0 and UPN in out and "key=env:WB_KEY_ANN" in out and "enabled" in out

    code, out = await sync_cli(env, "mailboxes", "disable", UPN, "--reason", "on leave")
    assert code == 0 and "deleted 3" in out
    assert graph.sandbox.state.subscriptions == {}  # deleted at Graph, not left to lapse
    code, out = await sync_cli(env, "mailboxes", "list")
    assert "disabled (on leave)" in out

    code, out = await sync_cli(env, "status")
    assert code == 0 and "poison" in out and UPN in out

    code, out = await sync_cli(env, "mailboxes", "remove", UPN)
    assert code == 0 and f"removed {UPN}" in out
    code, out = await sync_cli(env, "mailboxes", "list")
    assert "no mailboxes registered" in out
    code, out = await sync_cli(env, "mailboxes", "remove", UPN)
    assert code == 1 and "not registered" in out


async def test_bad_configuration_stops_with_the_variable_named(
    world: tuple[dict[str, str], Any],
) -> None:
    env, _ = world
    env = {k: v for k, v in env.items() if k != "GRAPH_TENANT_ID"}
    env["SYNC_RECONCILE_SCHEDULE"] = "*/30 * * * *"
    code, out = await sync_cli(env, "status")
    assert code == 2
    assert "GRAPH_TENANT_ID: missing" in out
    assert "SYNC_RECONCILE_SCHEDULE: expected a six-field NCRONTAB" in out
    assert "Traceback" not in out


async def test_a_rejected_api_key_ref_is_not_echoed(world: tuple[dict[str, str], Any]) -> None:
    env, _ = world
    add = ("mailboxes", "add", UPN, "--workbooks-url", "https://secure.workbooks.com")
    code, out = await sync_cli(env, *add, "--api-key-ref", "wb-live-0123456789abcdef")
    assert code == 2 and "api_key_ref: expected a secret reference" in out
    assert "wb-live-0123456789abcdef" not in out and "Traceback" not in out
