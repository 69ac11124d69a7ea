"""Shared fixtures: a real Azurite (started by ``make test`` or, failing that, here), and a
state store / jobs queue on fresh, uniquely named tables and queues per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.local import patched_environ, running_azurite

BASE_ENV = {
    "SYNC_PUBLIC_BASE_URL": "http://127.0.0.1:7071",
    "GRAPH_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
}


@pytest.fixture(scope="session")
def azurite_connection() -> Iterator[str]:
    """Connection string of a running Azurite: the one ``make test`` started, or our own."""
    with running_azurite() as (connection, _):
        yield connection


@pytest.fixture(scope="session", autouse=True)
def _base_env(azurite_connection: str) -> Iterator[None]:
    """Every test sees a valid configuration pointing at Azurite; tests override as needed."""
    from sync.settings import get_settings

    with patched_environ({**BASE_ENV, "AzureWebJobsStorage": azurite_connection}):
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(azurite_connection: str) -> AsyncIterator[object]:
    from sync.state.store import StateStore

    s = StateStore.from_connection_string(azurite_connection, unique("t"))
    await s.ensure_tables()
    yield s
    await s.drop_tables()
    await s.close()


@pytest.fixture
async def job_queue(azurite_connection: str) -> AsyncIterator[object]:
    from azure.storage.queue.aio import QueueServiceClient

    from sync.queues import JobQueue

    svc = QueueServiceClient.from_connection_string(azurite_connection)
    q = JobQueue(svc, f"q{uuid.uuid4().hex[:12]}")
    await q.ensure()
    yield q
    for name in (q.name, q.poison_name):
        await svc.delete_queue(name)
    await q.close()
    await svc.close()


@pytest.fixture
async def services(azurite_connection: str) -> AsyncIterator[object]:
    """The process-wide services (as the functions use them) on unique tables and queue."""
    from sync.runtime import get_services, reset_services
    from tests.support.world import drop_services

    prefix, queue = unique("f"), f"jobs-{uuid.uuid4().hex[:10]}"
    with patched_environ({"SYNC_TABLE_PREFIX": prefix, "SYNC_JOBS_QUEUE": queue}):
        await reset_services()
        svc = await get_services()
        yield svc
        await drop_services(svc)
