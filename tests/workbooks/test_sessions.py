"""Dead sessions and not-found texts as the real service may give them (workbooks-api.md §1.6,
§1.8, §8 q3, q4): the client against the sandbox configured to each alternative."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from devkit.sandbox.workbooks import RunningSandbox, SandboxConfig, running_sandbox
from devkit.sandbox.workbooks.control import expire_sessions, seed
from sync.core.errors import NotFound, ReauthRequired
from sync.workbooks import WorkbooksClient, WorkbooksIdentity, WriteOp, write_batch
from sync.workbooks.timezones import iana_zone

from .conftest import ANN_KEY, FAST


@asynccontextmanager
async def session(
    **config: Any,
) -> AsyncIterator[tuple[RunningSandbox, WorkbooksClient, list[float]]]:
    """A sandbox with ``config`` and a client whose back-off sleeps are recorded, not slept."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with running_sandbox(SandboxConfig(sim_controls=True, **config)) as sb:
        identity = WorkbooksIdentity(sb.base_url, SecretStr(ANN_KEY))
        async with WorkbooksClient(identity, FAST, sleep=sleep) as wb:
            await wb.ensure_login()
            yield sb, wb, slept


def logins(sb: RunningSandbox) -> int:
    return int(sb.state.stats["POST login.api"])


@pytest.mark.parametrize("location", ["/login", "/", "/login.api", "same", "401"])
async def test_a_dead_session_is_answered_by_one_fresh_login_without_back_off(
    location: str,
) -> None:
    async with session(dead_session_location=location) as (sb, wb, slept):
        first = wb.login_info
        expire_sessions(sb.state)
        body = await wb.get("crm/people", [])
        assert body["success"] is True
        assert logins(sb) == 2 and wb.login_info is not first
        assert slept == []  # a fresh login, not throttling back-off


async def test_throttling_to_the_same_url_costs_one_login_then_backs_off() -> None:
    async with session(dead_session_location="same") as (sb, wb, slept):
        sb.state.faults.throttle_next = 3
        assert (await wb.get("crm/people", []))["success"] is True
        # the first redirect might have been a dead session: one login; it was not, so the
        # next two are throttling and wait
        assert logins(sb) == 2 and len(slept) == 2
        sb.state.faults.throttle_next = 2
        assert (await wb.get("crm/people", []))["success"] is True
        assert logins(sb) == 2 and len(slept) == 4  # proved throttling: no login this time


async def test_a_session_dead_for_good_is_reauth_required() -> None:
    async with session(dead_session_location="401") as (sb, wb, _):
        sb.state.config.users[0].api_key = "revoked"
        expire_sessions(sb.state)
        with pytest.raises(ReauthRequired):
            await wb.get("crm/people", [])


@pytest.mark.parametrize("text", ["sandbox", "rails", "rails5"])
async def test_not_found_texts_are_not_found(text: str) -> None:
    async with session(not_found_text=text) as (sb, wb, _):
        [person] = seed(sb.state, "crm/people", [{"name": "Gone"}])
        [deleted] = await write_batch(wb, "crm/people", [WriteOp.delete(person["id"], 0)])
        assert deleted.ok
        again = await write_batch(
            wb, "crm/people", [WriteOp.update(person["id"], 0, {"name": "Back"})]
        )
        assert isinstance(again[0].error, NotFound), again[0]
        [twice] = await write_batch(wb, "crm/people", [WriteOp.delete(person["id"], 0)])
        assert isinstance(twice.error, NotFound)


@pytest.mark.parametrize(
    ("reported", "zone"),
    [
        ("London (GMT+00:00)", "Europe/London"),
        ("(GMT-05:00) Eastern Time (US & Canada)", "America/New_York"),
        ("Pacific Time (US & Canada) (GMT-08:00)", "America/Los_Angeles"),
        ("Europe/Paris", "Europe/Paris"),
        ("UTC", "Etc/UTC"),
        ("Atlantis (GMT+01:00)", None),
        ("(GMT+01:00)", None),
        ("", None),
        (None, None),
    ],
)
def test_the_users_zone_as_login_reports_it(reported: str | None, zone: str | None) -> None:
    assert iana_zone(reported) == zone


async def test_login_carries_the_users_zone() -> None:
    async with session() as (sb, wb, _):
        assert wb.login_info is not None and wb.login_info.time_zone == "London (GMT+00:00)"
    config = SandboxConfig()
    config.users[0].time_zone = "Tokyo (GMT+09:00)"
    async with running_sandbox(config) as sb:
        identity = WorkbooksIdentity(sb.base_url, SecretStr(ANN_KEY))
        async with WorkbooksClient(identity, dataclasses.replace(FAST)) as wb:
            login = await wb.ensure_login()
            assert iana_zone(login.time_zone) == "Asia/Tokyo"
