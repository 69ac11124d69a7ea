"""The operator CLI's world: Azurite, both sandboxes and a webhook that answers Graph's
validation handshake; ``sync_cli`` runs ``python -m sync`` in a real subprocess."""

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
from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox
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
    """Azurite, the Graph sandbox with Ann's mailbox, a webhook that answers the validation
    handshake, and the Workbooks sandbox (``env["WORKBOOKS_URL"]``, Ann's key in
    ``WB_KEY_ANN``): what ``mailboxes add`` checks before it registers."""

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
        workbooks_sandbox(WorkbooksConfig(sim_controls=True)) as workbooks,
    ):
        graph.sandbox.state.add_mailbox(UPN)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "SYNC_"))}
        env.update(
            {
                "WORKBOOKS_URL": workbooks.base_url,
                "WB_KEY_ANN": "ann-api-key",
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
