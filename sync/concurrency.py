"""One helper for running awaitables concurrently with a bound on how many are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_bounded(coros: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Await every one of ``coros``, at most ``limit`` at a time; results in their order."""
    gate = asyncio.Semaphore(max(1, limit))

    async def one(c: Awaitable[T]) -> T:
        async with gate:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))
