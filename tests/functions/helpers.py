"""Helpers for calling functions through the azure-functions API, as the worker would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import azure.functions as func

from sync.core.state_models import Mailbox, SubscriptionRecord, utcnow
from sync.state.store import hash_client_state


def use_storage(services: Any, connection: str) -> Callable[[], Awaitable[None]]:
    """Point the running services' table and queue clients at ``connection``, built with the
    app's own builders (so with its retry policy and timeouts).  Returns what closes them and
    puts the previous clients back."""
    from pydantic import SecretStr

    from sync.queues import JobQueue
    from sync.state.store import StateStore
    from sync.storage import queue_service, table_service

    store, queue = services.store, services.queue
    app = services.settings.app.model_copy(update={"storage_connection": SecretStr(connection)})
    services.store = StateStore(table_service(app), app.table_prefix)
    services.queue = JobQueue(queue_service(app), app.jobs_queue)

    async def restore() -> None:
        with contextlib.suppress(Exception):
            await services.store.close()
            await services.queue.close()
        services.store, services.queue = store, queue

    return restore


def user_function(builder: Any) -> Any:
    return builder.build().get_user_function()


def http(
    method: str,
    url: str,
    *,
    body: bytes | dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> func.HttpRequest:
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    return func.HttpRequest(
        method=method,
        url=url,
        headers={"content-type": content_type},
        params=params or {},
        route_params=route_params or {},
        body=raw,
    )


def notification(
    sub_id: str, secret: str, *, resource_id: str = "AAMkAD1=", event: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": sub_id,
        "clientState": secret,
        "changeType": "created",
        "resource": f"Users/9f8e7d6c-0000-0000-0000-000000000001/Messages/{resource_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": resource_id},
        "tenantId": "00000000-0000-0000-0000-000000000001",
        "subscriptionExpirationDateTime": (utcnow() + timedelta(days=3)).isoformat(),
    }
    if event:
        item.pop("resource")
        item.pop("resourceData")
        item["lifecycleEvent"] = event
    return item


async def register(
    services: Any, mailbox: str, sub_id: str, secret: str, stream: str = "sent"
) -> None:
    await services.store.mailboxes.put(
        Mailbox(id=mailbox, workbooks_url="https://secure.workbooks.com", api_key_ref="env:WB_KEY")
    )
    await services.store.subscriptions.put(
        SubscriptionRecord(
            subscription_id=sub_id,
            mailbox=mailbox,
            stream=stream,
            resource=f"/users/{mailbox}/mailFolders('sentitems')/messages",
            client_state_hash=hash_client_state(secret),
            expires_at=utcnow() + timedelta(days=6),
        )
    )


async def drain(services: Any) -> list[Any]:
    """Receive and delete every job currently on the queue (decoded)."""
    from sync.core.jobs import decode_job

    jobs = []
    async for m in services.queue._queue.receive_messages(max_messages=32, visibility_timeout=30):
        jobs.append(decode_job(m.content))
        await services.queue._queue.delete_message(m)
    return jobs
