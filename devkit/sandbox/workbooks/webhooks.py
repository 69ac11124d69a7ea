"""Webhook deliveries for new-record triggers (workbooks-api.md §4.11, [OBS] Pipedream).

A record created (through the API or a ``/_sim/seed``) whose type has a trigger, with enabled
subscriptions for it, is POSTed to each subscription's ``callback_url`` as a JSON array of
objects keyed by resource name (``[{"person": {...}}]``), signed with
``X-Workbooks-Signature: sha256=<hex HMAC-SHA256 of the raw body with secret_key>``.

Deliveries are at least once: sent in the background (the write that caused them is never
slowed), retried with doubling back-off on a non-2xx answer, a timeout or a refused connection,
up to ``webhook_max_attempts``.  Faults (``Faults.webhook_*``) send each delivery twice, hold a
few and send them newest first, or delay them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from .types import TRIGGERS_BY_ENDPOINT, TRIGGERS_BY_ID, WEBHOOK_PATH, RecordType

if TYPE_CHECKING:
    from .store import Record, SandboxState

SIGNATURE_HEADER = "X-Workbooks-Signature"
USER_AGENT = "Workbooks-Webhooks/1.0 (sandbox)"


def sign(secret_key: str, body: bytes) -> str:
    """The header value a receiver checks: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret_key.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Attempt:
    at: datetime
    status: int | None  # HTTP status, or None when no answer came
    error: str | None = None


@dataclass
class Delivery:
    delivery_id: int
    subscription_id: int
    trigger_id: int
    resource: str
    callback_url: str = field(repr=False)
    body: bytes = field(repr=False)
    signature: str = field(repr=False)
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"  # pending | delivered | failed
    copies: int = 0  # accepted POSTs of this delivery (2 under the duplicate fault)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.delivery_id,
            "subscription_id": self.subscription_id,
            "trigger_id": self.trigger_id,
            "resource": self.resource,
            "callback_url": self.callback_url,
            "body": self.body.decode(),
            "signature": self.signature,
            "state": self.state,
            "copies": self.copies,
            "attempts": [
                {"at": a.at.isoformat(), "status": a.status, "error": a.error}
                for a in self.attempts
            ],
        }


class WebhookHub:
    """Secrets of the subscriptions, and every delivery with its attempts."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = set()
        self.secrets: dict[int, str] = {}  # subscription id -> secret_key (never readable)
        self.deliveries: list[Delivery] = []
        self._backlog: list[Delivery] = []  # made with no running loop; sent on ``kick``
        self._held: list[Delivery] = []  # the reorder fault's held deliveries

    def new_secret(self, subscription_id: int) -> str:
        secret = secrets.token_hex(32)
        self.secrets[subscription_id] = secret
        return secret

    # ------------------------------------------------------------ making deliveries

    def records_created(self, created: list[tuple[RecordType, Record]]) -> None:
        """Deliveries for committed creates: one per subscription, all of its trigger's new
        records of this write in one array, in creation order."""
        by_endpoint: dict[str, list[Record]] = defaultdict(list)
        for rtype, record in created:
            if rtype.endpoint in TRIGGERS_BY_ENDPOINT:
                by_endpoint[rtype.endpoint].append(record)
        if not by_endpoint:
            return
        for subscription in self._active_subscriptions():
            trigger_id = subscription.get("trigger_id")
            records = [
                r
                for endpoint, rows in by_endpoint.items()
                if TRIGGERS_BY_ENDPOINT[endpoint].trigger_id == trigger_id
                for r in rows
            ]
            if records:
                self._add(subscription, records)
        self.kick()

    def _active_subscriptions(self) -> list[Record]:
        return [
            s
            for s in self.state.tables.get(WEBHOOK_PATH, {}).values()
            if s.get("enabled") is True and not s.get("is_deleted")
        ]

    def _add(self, subscription: Record, records: list[Record]) -> None:
        from .store import ReadContext

        state = self.state
        owner = state.user_by_id(subscription.get("created_by")) or state.config.users[0]
        ctx = ReadContext(owner)
        trigger = TRIGGERS_BY_ID[subscription["trigger_id"]]
        rtype = state.types[trigger.endpoint]
        payload = [{trigger.resource: state.output_row(rtype, r, ctx, None)} for r in records]
        body = orjson.dumps(payload)
        secret = self.secrets.get(subscription["id"], "")
        delivery = Delivery(
            len(self.deliveries) + 1,
            subscription["id"],
            trigger.trigger_id,
            trigger.resource,
            str(subscription.get("callback_url") or ""),
            body,
            sign(secret, body),
        )
        self.deliveries.append(delivery)
        self._backlog.append(delivery)

    # ------------------------------------------------------------ sending

    def kick(self) -> None:
        """Start sending what is waiting; a no-op without a running event loop (the next
        request kicks again)."""
        if not self._backlog:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        backlog, self._backlog = self._backlog, []
        faults = self.state.faults
        for delivery in backlog:
            if faults.webhook_reorder_next > 0:
                self._held.append(delivery)
                faults.webhook_reorder_next -= 1
                if faults.webhook_reorder_next == 0:
                    held, self._held = self._held, []
                    self._start(self._send_in_order(list(reversed(held))))
                continue
            self._start(self._send(delivery))

    def _start(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_in_order(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self._send(delivery)

    async def _send(self, delivery: Delivery) -> None:
        config, faults = self.state.config, self.state.faults
        if faults.webhook_delay_ms:
            await asyncio.sleep(faults.webhook_delay_ms / 1000)
        for attempt in range(1, config.webhook_max_attempts + 1):
            if await self._post(delivery):
                delivery.state = "delivered"
                if faults.webhook_duplicate:  # at-least-once: the same delivery again
                    await self._post(delivery)
                return
            if attempt < config.webhook_max_attempts:
                delay = config.webhook_backoff_seconds * 2 ** (attempt - 1)
                await asyncio.sleep(min(delay, config.webhook_backoff_max_seconds))
        delivery.state = "failed"

    async def _post(self, delivery: Delivery) -> bool:
        """One POST; True on a 2xx answer.  Every attempt is recorded."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        timeout = aiohttp.ClientTimeout(total=self.state.config.webhook_timeout_seconds)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: delivery.signature}
        at = datetime.now(UTC)
        try:
            async with self._http.post(
                delivery.callback_url, data=delivery.body, headers=headers, timeout=timeout
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            delivery.attempts.append(Attempt(at, None, type(exc).__name__))
            return False
        delivery.attempts.append(Attempt(at, status))
        if 200 <= status < 300:
            delivery.copies += 1
            return True
        return False

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until no delivery is in progress (tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = set()
        if self._http is not None:
            await self._http.close()
            self._http = None
