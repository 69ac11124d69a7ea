"""Fixtures for sent-email linking: a whole world (Azurite + both sandboxes) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial

import pytest

import sync.engine.emails
import sync.engine.people  # registers the PEOPLE processor
from sync.core.jobs import Stream
from sync.engine import registry
from tests.support.world import World, world_running

ANN = "ann@example.com"


# The email-link mechanisms a tenant may have (sync.workbooks.schema.choose_link): every test
# here runs against a Workbooks sandbox offering each, and the service finds it from the
# sandbox's metadata/types.  ``none`` has tests of its own (test_link_strategies.py).
STRATEGIES = ("link_type", "association", "render_with")


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def world(azurite_connection: str, strategy: str) -> AsyncIterator[World]:
    from devkit.sandbox.workbooks import SandboxConfig

    config = SandboxConfig(sim_controls=True, concurrency_cap=None, email_link_strategy=strategy)
    async with world_running(azurite_connection, workbooks_config=config) as w:
        yield w


@pytest.fixture
async def ann(world: World) -> World:
    await world.add_mailbox(ANN, internal_domains=["example.com"])
    return world


@contextmanager
def sent_steps(on_step: sync.engine.emails.Step) -> Iterator[None]:
    """SENT jobs run with ``on_step`` called after each durable step (the runner looks the
    processor up per job, so every job inside the block gets it)."""
    key = (Stream.SENT, None)
    original = registry._PROCESSORS[key]
    registry._PROCESSORS[key] = partial(sync.engine.emails.process_sent, on_step=on_step)
    try:
        yield
    finally:
        registry._PROCESSORS[key] = original
