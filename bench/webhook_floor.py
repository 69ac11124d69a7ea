"""The floor under the webhook's latency on this machine: a bare aiohttp server that makes, per
notification, the same storage requests as the service's intake and nothing else.

    python bench/webhook_floor.py --port 7072     (run by ``bench_webhook --floor``)

Per notification it inserts the stream's marker row (a Table insert, refused when the row is
there) and, when the insert took, sends one job message: the service's first-time path (a
marker insert, then a queue message) and, for a repeat, one Table request as the service's
repeat costs.  No subscription lookup, no ``clientState`` check, no deadline, no logging, no
Functions host: what is left is the SDKs' per-request work, Azurite's and the HTTP server's.
Its p99 at a rate is what no webhook built on the mandated SDKs can beat on the same machine,
so ``bench_webhook --floor`` tells a miss of the target that the code could close from one
that the machine sets.  It uses the service's own storage clients (``sync.storage``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.core.exceptions import ResourceExistsError

from sync.settings import AppSettings
from sync.storage import queue_service, table_service


async def _intake(table: Any, queue: Any, note: dict[str, Any]) -> None:
    sub = str(note.get("subscriptionId") or "")
    try:
        await table.create_entity({"PartitionKey": sub, "RowKey": "marker", "live": True})
    except ResourceExistsError:
        return  # a repeat: its job is already queued
    body = json.dumps({"subscription": sub, "kind": "notification"}).encode()
    await queue.send_message(base64.b64encode(body).decode())


def build(table: Any, queue: Any) -> web.Application:
    async def notifications(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            return web.Response(text=token, content_type="text/plain")
        try:
            payload = json.loads(await request.read())
            notes = payload["value"]
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400)
        await asyncio.gather(*(_intake(table, queue, n) for n in notes))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/graph/notifications", notifications)
    return app


async def serve(port: int) -> None:
    settings = AppSettings()
    tables, queues = table_service(settings), queue_service(settings)
    table = tables.get_table_client(f"{settings.table_prefix}floor")
    queue = queues.get_queue_client(settings.jobs_queue)
    for create in (table.create_table, queue.create_queue):
        with contextlib.suppress(ResourceExistsError):
            await create()
    runner = web.AppRunner(build(table, queue), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await table.close()
        await queue.close()
        await tables.close()
        await queues.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
