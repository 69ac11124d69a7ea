"""Fixtures for sent-email linking: a whole world (Azurite + both sandboxes) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import sync.engine.emails
import sync.engine.people
from tests.support.world import World, world_running

ANN = "ann@example.com"


@pytest.fixture
async def world(azurite_connection: str) -> AsyncIterator[World]:
    async with world_running(azurite_connection) as w:
        yield w


@pytest.fixture
async def ann(world: World) -> World:
    await world.add_mailbox(ANN, internal_domains=["example.com"])
    return world


@pytest.fixture(autouse=True)
def _no_checkpoints() -> None:
    sync.engine.emails.CHECKPOINTS.clear()
