"""``python -m sync`` as an operator runs it (a real subprocess), against Azurite and the Graph
sandbox: the mailbox registry, subscriptions created and deleted with it, status, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cli.conftest import UPN, sync_cli


@pytest.mark.slow
async def test_mailbox_lifecycle_through_the_cli(world: tuple[dict[str, str], Any]) -> None:
    env, graph = world
    add = ("mailboxes", "add", UPN, "--workbooks-url", env["WORKBOOKS_URL"])
    code, out = await sync_cli(env, *add, "--api-key-ref", "env:WB_KEY_ANN")
    assert code == 0, out
    assert "registered ann@contoso.example" in out and "subscriptions: created 3" in out
    assert len(graph.sandbox.state.subscriptions) == 3  # doctor's test subscription is gone
    assert f"doctor {UPN}" in out and "0 fail" in out  # the checks it passed are shown

    code, out = await sync_cli(env, *add, "--api-key-ref", "env:WB_KEY_ANN", "--no-subscribe")
    assert (code, "already registered" in out) == (1, True)
    code, out = await sync_cli(
        env,
        "mailboxes",
        "add",
        "bob@contoso.example",
        "--workbooks-url",
        "https://secure.workbooks.com",
        "--api-key-ref",
        "a-raw-api-key-123",
    )
    assert code == 2 and "never the API key itself" in out

    code, out = await sync_cli(env, "mailboxes", "list")
    assert code == 0 and UPN in out and "key=env:WB_KEY_ANN" in out and "enabled" in out

    code, out = await sync_cli(env, "mailboxes", "disable", UPN, "--reason", "on leave")
    assert code == 0 and "deleted 3" in out
    assert graph.sandbox.state.subscriptions == {}  # deleted at Graph, not left to lapse
    code, out = await sync_cli(env, "mailboxes", "list")
    assert "disabled (on leave)" in out

    code, out = await sync_cli(env, "status")
    assert code == 0 and "poison" in out and UPN in out

    code, out = await sync_cli(env, "mailboxes", "remove", UPN)
    assert code == 0 and f"removed {UPN}" in out
    code, out = await sync_cli(env, "mailboxes", "list")
    assert "no mailboxes registered" in out
    code, out = await sync_cli(env, "mailboxes", "remove", UPN)
    assert code == 1 and "not registered" in out


async def test_bad_configuration_stops_with_the_variable_named(
    world: tuple[dict[str, str], Any],
) -> None:
    env, _ = world
    env = {k: v for k, v in env.items() if k != "GRAPH_TENANT_ID"}
    env["SYNC_RECONCILE_SCHEDULE"] = "*/30 * * * *"
    code, out = await sync_cli(env, "status")
    assert code == 2
    assert "GRAPH_TENANT_ID: missing" in out
    assert "SYNC_RECONCILE_SCHEDULE: expected a six-field NCRONTAB" in out
    assert "Traceback" not in out


async def test_a_rejected_api_key_ref_is_not_echoed(world: tuple[dict[str, str], Any]) -> None:
    env, _ = world
    add = ("mailboxes", "add", UPN, "--workbooks-url", "https://secure.workbooks.com")
    code, out = await sync_cli(env, *add, "--api-key-ref", "wb-live-0123456789abcdef")
    assert code == 2 and "api_key_ref: expected a secret reference" in out
    assert "wb-live-0123456789abcdef" not in out and "Traceback" not in out
