"""Process-wide services (state store, jobs queue), built lazily once per event loop.

Azure Functions reuses a worker process across invocations, so clients are created on first
use and kept; tests and the local host call ``reset_services()`` to rebuild them after changing
settings.  With a storage connection string (Azurite, CI, local runs) tables and queues are
created on first use (idempotent), so a fresh emulator needs no set-up step; in Azure
(identity-based storage) the infra templates created them and nothing is created here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync.core.notifications import SubscriptionCache
from sync.core.streams import MarkerMemory
from sync.queues import JobQueue
from sync.settings import Settings, get_settings
from sync.state.store import StateStore
from sync.storage import queue_service, table_service

if TYPE_CHECKING:  # clients load their SDKs on first use, never on the webhook path
    from sync.graph.client import GraphClient
    from sync.secrets import SecretProvider
    from sync.workbooks.client import WorkbooksClient


@dataclass
class Caches:
    """Per-process caches owned by the services they were filled from, so rebuilding services
    never serves another store's data."""

    graph: GraphClient | None = None  # one Graph client per process (sync.engine.clients)
    secrets: SecretProvider | None = None
    # One Workbooks client per credential, by identity fingerprint; and each mailbox's one.
    workbooks: dict[str, WorkbooksClient] = field(default_factory=dict)
    workbooks_by_mailbox: dict[str, str] = field(default_factory=dict)
    workbooks_shared: dict[str, Any] = field(default_factory=dict)  # WorkbooksClient.shared
    # Mailbox zones read from Outlook settings: mailbox -> (monotonic time read, IANA zone).
    time_zones: dict[str, tuple[float, str]] = field(default_factory=dict)
    # The webhook's subscription lookups, records and misses (sync.core.notifications).
    subscriptions: SubscriptionCache = field(default_factory=SubscriptionCache)
    # The directory load in flight (one per instance; concurrent requests wait for it).
    subscription_load: asyncio.Future[None] | None = None
    # The webhook's memory of live markers, and its marker checks in flight (single flight).
    webhook_memo: MarkerMemory = field(default_factory=MarkerMemory)
    webhook_flights: dict[tuple[str, str], asyncio.Future[bool]] = field(default_factory=dict)


@dataclass
class Services:
    settings: Settings
    store: StateStore
    queue: JobQueue
    cache: Caches = field(default_factory=Caches)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        self.closers.clear()
        await self.store.close()
        await self.queue.close()


_services: Services | None = None
_loop: asyncio.AbstractEventLoop | None = None
_lock: asyncio.Lock | None = None


async def get_services() -> Services:
    global _services, _loop, _lock
    loop = asyncio.get_running_loop()
    if _services is not None and _loop is loop:
        return _services
    if _lock is None or _loop is not loop:
        _lock, _loop, _services = asyncio.Lock(), loop, None
    async with _lock:
        if _services is None:
            settings = get_settings()
            store = StateStore(
                table_service(settings.app),
                settings.app.table_prefix,
                runs_keep_days=settings.app.runs_keep_days,
            )
            queue = JobQueue(queue_service(settings.app), settings.app.jobs_queue)
            if settings.app.creates_storage:  # Azurite/CI; in Azure the templates created them
                await store.ensure_tables()
                await queue.ensure()
            _services = Services(settings=settings, store=store, queue=queue)
    return _services


async def reset_services() -> None:
    """Close and forget the current services (settings are re-read on next use)."""
    global _services
    if _services is not None and _loop is asyncio.get_running_loop():
        await _services.close()
    _services = None
    get_settings.cache_clear()
