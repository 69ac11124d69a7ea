"""``mailboxes add`` checks what it registers and ``doctor`` checks a registered mailbox, both as
an operator runs them (a real subprocess) against Azurite and the two sandboxes."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.cli.conftest import UPN, sync_cli

World = tuple[dict[str, str], Any]


def _add(
    env: dict[str, str], *extra: str, url: str = "", ref: str = "env:WB_KEY_ANN"
) -> tuple[str, ...]:
    return (
        "mailboxes",
        "add",
        UPN,
        "--workbooks-url",
        url or env["WORKBOOKS_URL"],
        "--api-key-ref",
        ref,
        "--no-subscribe",
        *extra,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


async def _registered(env: dict[str, str]) -> bool:
    code, out = await sync_cli(env, "mailboxes", "list")
    assert code == 0, out
    return UPN in out


@pytest.mark.slow
async def test_a_bad_key_is_refused_unless_forced(world: World) -> None:
    env, _graph = world
    env = {**env, "WB_KEY_BAD": "not-anybodys-key"}
    code, out = await sync_cli(env, *_add(env, ref="env:WB_KEY_BAD"))
    assert code == 1, out
    assert "FAIL workbooks.login" in out and "login failed" in out
    assert "not registered: workbooks.login failed" in out and "--force" in out
    assert "not-anybodys-key" not in out  # the key itself is never shown
    assert not await _registered(env)

    code, out = await sync_cli(env, *_add(env, "--force", ref="env:WB_KEY_BAD"))
    assert code == 0, out
    assert "registering despite workbooks.login (--force)" in out and f"registered {UPN}" in out
    code, out = await sync_cli(env, "status")
    assert code == 0 and "failing: workbooks.login" in out  # the doctor result is recorded


@pytest.mark.slow
async def test_an_unresolvable_key_reference_is_refused(world: World) -> None:
    env, _graph = world
    code, out = await sync_cli(env, *_add(env, ref="env:WB_KEY_NOBODY_SET"))
    assert code == 1, out
    assert "FAIL secrets.api_key" in out and "WB_KEY_NOBODY_SET is not set" in out
    assert "workbooks.login" in out and "not checked: the API key cannot be read" in out
    assert not await _registered(env)


@pytest.mark.slow
async def test_an_unreachable_workbooks_url_is_refused(world: World) -> None:
    env, _graph = world
    code, out = await sync_cli(env, *_add(env, url=f"http://127.0.0.1:{_closed_port()}"))
    assert code == 1, out
    assert "FAIL workbooks.login" in out and "Workbooks did not answer" in out
    assert not await _registered(env)


@pytest.mark.slow
async def test_a_missing_permission_is_refused(world: World) -> None:
    env, graph = world
    # The admin consented everything but To Do: tokens issued from now on lack the role.
    graph.sandbox.config.app_roles = [
        r for r in graph.sandbox.config.app_roles if r != "Tasks.ReadWrite.All"
    ]
    code, out = await sync_cli(env, *_add(env))
    assert code == 1, out
    assert "FAIL graph.roles" in out and "missing Tasks.ReadWrite.All" in out
    assert "FAIL graph.stream.todo" in out  # Graph refuses the read too
    assert "ok   graph.stream.contacts" in out  # the other streams still work
    assert not await _registered(env)


@pytest.mark.slow
async def test_doctor_checks_a_registered_mailbox(world: World) -> None:
    env, graph = world
    code, out = await sync_cli(env, "doctor", UPN)
    assert (code, "is not registered" in out) == (1, True)
    code, out = await sync_cli(env, "doctor")
    assert code == 2 and "name one mailbox or give --all" in out
    code, out = await sync_cli(env, *_add(env))
    assert code == 0, out

    code, out = await sync_cli(env, "doctor", UPN, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["mailbox"] == UPN and report["status"] in ("ok", "warn")
    names = {c["name"] for c in report["checks"]}
    assert {
        "secrets.key_vault",
        "secrets.api_key",
        "workbooks.login",
        "workbooks.my_queues",
        "graph.token",
        "graph.roles",
        "graph.mailbox",
        "graph.stream.sent",
        "graph.stream.contacts",
        "graph.stream.calendar",
        "graph.stream.todo",
        "graph.webhook_handshake",
    } <= names

    # Exchange now scopes the app to a group Ann is not in: every Outlook read is refused.
    graph.sandbox.config.access_policy = ["someone.else@contoso.example"]
    code, out = await sync_cli(env, "doctor", "--all")
    assert code == 1, out
    assert "FAIL graph.mailbox" in out and "Access to OData is disabled." in out
    assert "Test-ServicePrincipalAuthorization" in out  # how to confirm the fix
    assert "ok   graph.stream.todo" in out  # To Do is outside Exchange's scoping
    code, out = await sync_cli(env, "status")
    assert code == 0 and "failing: graph.mailbox" in out
