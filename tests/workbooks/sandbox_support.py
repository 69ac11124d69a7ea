"""Helpers of the sandbox tests: a sandbox with a given configuration and a strict session on
it, binding-shaped request bodies, and a webhook receiver that records what it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from devkit.sandbox.workbooks import RunningSandbox, SandboxConfig, running_sandbox
from tests.support.local import serving

from .conftest import Wire

Pairs = list[tuple[str, str]]


@asynccontextmanager
async def strict_sandbox(
    http: aiohttp.ClientSession, **config: Any
) -> AsyncIterator[tuple[RunningSandbox, Wire]]:
    """A sandbox with ``config`` and a session logged in as our client does: strict attribute
    checking and per-object transactions set at login."""
    async with running_sandbox(SandboxConfig(sim_controls=True, **config)) as sandbox:
        wire = Wire(http, sandbox.base_url)
        await wire.login(
            _application_name="WireTest",
            _fast_login="false",
            _strict_attribute_checking="true",
            _per_object_transactions="true",
        )
        yield sandbox, wire


def read_pairs(
    columns: Sequence[str] = ("id",),
    filters: Sequence[tuple[str, str, str]] = (),
    sorts: Sequence[str] = (),
) -> Pairs:
    pairs: Pairs = [("_start", "0"), ("_limit", "100")]
    for name, op, value in filters:
        pairs += [("_ff[]", name), ("_ft[]", op), ("_fc[]", value)]
    pairs += [("_sort[]", s) for s in sorts]
    pairs += [("_select_columns[]", c) for c in columns]
    return pairs


def batch(*objects: tuple[str, int, int, dict[str, str]]) -> Pairs:
    """A full-square batch: (``__method``, id, lock_version, attributes) per object, with the
    working set of §3.2 (``id eq`` per object, ``_fm=or``)."""
    names = sorted({n for *_, attrs in objects for n in attrs})
    pairs: Pairs = [("_fm", "or")]
    for _, record_id, _, _ in objects:
        pairs += [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", str(record_id))]
    for method, record_id, lock, attrs in objects:
        pairs += [("__method[]", method), ("id[]", str(record_id)), ("lock_version[]", str(lock))]
        pairs += [(f"{n}[]", attrs.get(n, ":no_value:")) for n in names]
    return pairs


def create(*attrs: dict[str, str]) -> Pairs:
    return batch(*(("POST", 0, 0, a) for a in attrs))


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint: answers with ``statuses`` in turn (then 200), after ``delay``."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            self.received.append(Received(dict(request.headers), await request.read()))
            self.arrived.set()
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.statuses.pop(0) if self.statuses else 200
            return web.Response(status=status, text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        return app

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.received


@asynccontextmanager
async def receiver(statuses: Sequence[int] = (), delay: float = 0.0) -> AsyncIterator[Receiver]:
    hook = Receiver(list(statuses), delay)
    async with serving(hook.app()) as origin:
        hook.url = f"{origin}/hook"
        yield hook
