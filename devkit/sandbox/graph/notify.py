"""Outbound HTTP of the sandbox: the validation handshake and change/lifecycle notifications.

Delivery is at least once, as Graph documents (graph.md §1.13): failed POSTs are retried, and
the config can add duplicates, delays and random per-POST delays that reorder deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.state import Subscription, iso

log = logging.getLogger(__name__)

VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with "
    "200 OK to validation request."
)
VALIDATION_MISMATCH = (
    "Subscription validation request failed. Response must exactly match validationToken "
    "query parameter."
)
VALIDATION_TIMEOUT = "Subscription validation request timed out."


@dataclass
class Delivery:
    url: str
    body: dict[str, Any]
    status: int | None = None
    attempts: int = 0


@dataclass
class Notifier:
    config: SandboxConfig
    tenant_id: str
    session: aiohttp.ClientSession | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("notifier not started")
        return self.session

    async def validate(self, url: str) -> str | None:
        """POST `url?validationToken=...`; None when the endpoint echoed it, else the error."""
        # Shaped like Graph's token: spaces and colons, so clients must URL-decode it.
        token = (
            "Validation: Testing client application reachability for subscription "
            f"Request-Id: {secrets.token_hex(8)}"
        )
        sep = "&" if "?" in url else "?"
        target = f"{url}{sep}{urlencode({'validationToken': token})}"
        timeout = aiohttp.ClientTimeout(total=self.config.validation_timeout_seconds)
        try:
            async with self._session().post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=timeout,
            ) as resp:
                text = await resp.text()
                if resp.status != 200:
                    return VALIDATION_FAILED
                if text != token:
                    return VALIDATION_MISMATCH
                return None
        except TimeoutError:
            return VALIDATION_TIMEOUT
        except aiohttp.ClientError:
            return VALIDATION_FAILED

    def change(self, sub: Subscription, change_type: str, item_id: str, etag: str) -> None:
        odata_type, segment = _RESOURCE_NAMES[sub.kind]
        resource = f"Users/{sub.mailbox}/{segment}/{item_id}"
        note = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": iso(sub.expires),
            "changeType": change_type,
            "resource": resource,
            "tenantId": self.tenant_id,
            "clientState": sub.client_state,
            "resourceData": {
                "@odata.type": odata_type,
                "@odata.id": resource,
                "@odata.etag": etag,
                "id": item_id,
            },
        }
        self._send(sub.notification_url, {"value": [note]})

    def lifecycle(self, sub: Subscription, event: str) -> bool:
        if not sub.lifecycle_url:
            return False
        note = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": iso(sub.expires),
            "tenantId": self.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self._send(sub.lifecycle_url, {"value": [note]})
        return True

    def _send(self, url: str, body: dict[str, Any]) -> None:
        for _ in range(1 + self.config.notify_duplicates):
            delivery = Delivery(url=url, body=body)
            self.deliveries.append(delivery)
            task = asyncio.get_running_loop().create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        delay = self.config.notify_delay_seconds
        delay += random.uniform(0, self.config.notify_reorder_seconds)
        if delay:
            await asyncio.sleep(delay)
        timeout = aiohttp.ClientTimeout(total=3.0)  # Graph's 3 s notification timeout (§1.8)
        for attempt in range(1, self.config.notify_attempts + 1):
            delivery.attempts = attempt
            try:
                async with self._session().post(
                    delivery.url, json=delivery.body, timeout=timeout
                ) as resp:
                    delivery.status = resp.status
                    if 200 <= resp.status < 300:
                        return
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.info("notification to %s failed: %s", delivery.url, type(exc).__name__)
            await asyncio.sleep(self.config.notify_retry_seconds * attempt)

    async def drain(self) -> None:
        """Wait until every queued delivery finished (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


_RESOURCE_NAMES = {
    "message": ("#Microsoft.Graph.Message", "Messages"),
    "contact": ("#Microsoft.Graph.Contact", "Contacts"),
    "event": ("#Microsoft.Graph.Event", "Events"),
    "task": ("#Microsoft.Graph.TodoTask", "Tasks"),
}
