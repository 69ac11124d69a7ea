"""Helpers of the sandbox tests: a sandbox with a given configuration and a strict session on
it, binding-shaped request bodies, a webhook receiver that records what it is sent, and a
tenant whose deleted records keep Contact Details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from devkit.sandbox.workbooks import RunningSandbox, SandboxConfig, running_sandbox
from devkit.sandbox.workbooks.control import seed
from devkit.sandbox.workbooks.store import SandboxState
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


def seed_deleted_owners(state: SandboxState) -> dict[str, dict[str, Any]]:
    """Records whose addresses test who a deleted owner's Contact Details match: a live and a
    deleted Person (main emails ``live@x.com``, ``gone@x.com``), a deleted Organisation
    (``o@x.com``), a deleted and a live Lead (``l@x.com``, ``k@x.com``); Contact Details of
    the deleted Person (``gone.alt@y.com``), of the deleted Lead (``lead.work@y.com``), and
    ``shared@y.com`` held by both People."""
    live, gone = seed(
        state,
        "crm/people",
        [
            {"name": "Live", "main_location[email]": "live@x.com"},
            {"name": "Gone", "main_location[email]": "gone@x.com"},
        ],
    )
    [org] = seed(
        state, "crm/organisations", [{"name": "Old Co", "main_location[email]": "o@x.com"}]
    )
    lead, kept = seed(
        state,
        "crm/sales_leads",
        [
            {"person_lead_party[name]": "L", "person_lead_party[main_location[email]]": "l@x.com"},
            {"person_lead_party[name]": "K", "person_lead_party[main_location[email]]": "k@x.com"},
        ],
    )
    lead_party = state.tables["crm/sales_leads"][lead["id"]]["person_lead_party_id"]
    seed(
        state,
        "crm/party_locations",
        [
            {"party_id": gone["id"], "alternate_email": "gone.alt@y.com"},
            {"party_id": live["id"], "alternate_email": "shared@y.com"},
            {"party_id": gone["id"], "email": "shared@y.com"},
            {"party_id": lead_party, "email": "lead.work@y.com"},
        ],
    )
    for endpoint, rid in (
        ("crm/people", gone["id"]),
        ("crm/organisations", org["id"]),
        ("crm/sales_leads", lead["id"]),
    ):
        state.tables[endpoint][rid]["is_deleted"] = True
    return {"live": live, "gone": gone, "org": org, "lead": lead, "kept": kept}
