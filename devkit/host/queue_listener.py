"""One poller per queue-triggered function, with the storage extension's semantics:

* messages are base64 (host.json ``messageEncoding``); one that does not decode goes straight
  to ``<queue>-poison`` without an invocation;
* a batch of ``batchSize`` messages is fetched whenever no more than ``newBatchThreshold`` are
  in flight, so at most ``batchSize + newBatchThreshold`` run at once;
* a message is leased for 10 minutes while its function runs, and the lease is renewed;
* success deletes it; a failure makes it visible again after ``visibilityTimeout``, or moves it
  to ``<queue>-poison`` once its ``dequeue_count`` reaches ``maxDequeueCount``;
* polling backs off exponentially from 100 ms to ``maxPollingInterval`` while the queue is
  empty, and resets as soon as messages arrive (or an output binding of this host writes to
  the queue, like the SDK's shared queue watcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueMessage as StoredMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devkit.host.config import QueueOptions
from devkit.host.functions import LoadedFunction
from devkit.host.storage import decode_message, ensure_queue

log = logging.getLogger("devkit.host.queues")

LEASE_SECONDS = 600  # the real host's 10-minute lease while a function runs
RENEW_EVERY = LEASE_SECONDS / 2
MIN_POLL = 0.1

Invoker = Callable[[LoadedFunction, Any, str], Awaitable[Any]]


class _Lease:
    """The message's current pop receipt (it changes with every visibility update)."""

    def __init__(self, message: StoredMessage) -> None:
        self.id: str = message.id
        self.pop_receipt: str | None = message.pop_receipt


class QueueListener:
    def __init__(
        self,
        function: LoadedFunction,
        service: QueueServiceClient,
        queue_name: str,
        options: QueueOptions,
        invoke: Invoker,
    ) -> None:
        self.function = function
        self.queue_name = queue_name
        self.poison_name = f"{queue_name}-poison"
        self.options = options
        self._invoke = invoke
        self._queue: QueueClient = service.get_queue_client(queue_name)
        self._poison: QueueClient = service.get_queue_client(self.poison_name)
        self._poison_ready = False
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.processed = 0
        self.failed = 0
        self.poisoned = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await ensure_queue(self._queue)
        self._runner = asyncio.create_task(self._run(), name=f"queue:{self.function.name}")

    async def stop(self, grace: float = 10.0) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    def wake(self) -> None:
        """Poll now (a message was just written by this host, or someone is draining)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def depth(self) -> int:
        """Approximate message count, including invisible (leased or retrying) messages."""
        try:
            props = await self._queue.get_queue_properties()
        except ResourceNotFoundError:
            return 0
        return int(props.approximate_message_count or 0)

    # -- polling -----------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = MIN_POLL
        while True:
            while len(self._tasks) > self.options.new_batch_threshold:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            want = max(1, min(32, self.options.batch_size))
            try:
                messages = [
                    m
                    async for m in self._queue.receive_messages(
                        messages_per_page=want, max_messages=want, visibility_timeout=LEASE_SECONDS
                    )
                ]
            except ResourceNotFoundError:
                await ensure_queue(self._queue)
                messages = []
            except (AzureError, OSError) as exc:  # storage hiccup: back off, keep going
                log.warning("receiving from %s failed: %s", self.queue_name, exc)
                messages = []
                delay = self.options.max_polling_interval
            if messages:
                delay = MIN_POLL
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            if self._wake.is_set():
                delay = MIN_POLL
            else:
                # Exponential back-off with a little jitter, capped at maxPollingInterval.
                delay = min(delay * 2 * random.uniform(0.9, 1.1), self.options.max_polling_interval)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("queue message handling crashed", exc_info=task.exception())

    # -- one message -------------------------------------------------------------------------

    async def _process(self, message: StoredMessage) -> None:
        lease = _Lease(message)
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self.options.max_dequeue_count:
            # Already past the limit (e.g. a host crashed while running it): straight to poison.
            await self._to_poison(message, lease, "dequeue count already exceeds maxDequeueCount")
            return
        try:
            body = decode_message(message.content, self.options.message_encoding)
        except ValueError as exc:
            # The real host dead-letters undecodable messages without invoking the function.
            await self._to_poison(message, lease, str(exc))
            return
        trigger = FuncQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        renewer = asyncio.create_task(self._renew(lease))
        try:
            await self._invoke(
                self.function, trigger, f"New queue message detected on '{self.queue_name}'."
            )
        except asyncio.CancelledError:
            # Host shutting down mid-invocation: hand the message back right away.
            renewer.cancel()
            with contextlib.suppress(Exception):
                await self._queue.update_message(lease.id, lease.pop_receipt, visibility_timeout=0)
            raise
        except Exception:  # the invocation failed; the host already logged it
            renewer.cancel()
            self.failed += 1
            if dequeue_count >= self.options.max_dequeue_count:
                log.warning(
                    "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self.options.max_dequeue_count,
                    self.poison_name,
                )
                await self._to_poison(message, lease, "function failed")
            else:
                await self._release(lease, round(self.options.visibility_timeout))
            return
        renewer.cancel()
        self.processed += 1
        await self._delete(lease)

    async def _renew(self, lease: _Lease) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                receipt = await self._queue.update_message(
                    lease.id, lease.pop_receipt, visibility_timeout=LEASE_SECONDS
                )
                lease.pop_receipt = receipt.pop_receipt
            except AzureError as exc:
                log.warning("renewing the lease on message %s failed: %s", lease.id, exc)
                return

    async def _delete(self, lease: _Lease) -> None:
        try:
            await self._queue.delete_message(lease.id, lease.pop_receipt)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            log.warning("deleting message %s from %s failed: %s", lease.id, self.queue_name, exc)

    async def _release(self, lease: _Lease, delay: int) -> None:
        try:
            await self._queue.update_message(
                lease.id, lease.pop_receipt, visibility_timeout=max(0, delay)
            )
        except AzureError as exc:
            log.warning("releasing message %s failed: %s", lease.id, exc)

    async def _to_poison(self, message: StoredMessage, lease: _Lease, why: str) -> None:
        if not self._poison_ready:
            await ensure_queue(self._poison)
            self._poison_ready = True
        content = message.content
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        await self._poison.send_message(content if content is not None else "")
        self.poisoned += 1
        log.warning(
            "message %s on %s moved to %s (%s)", message.id, self.queue_name, self.poison_name, why
        )
        await self._delete(lease)
