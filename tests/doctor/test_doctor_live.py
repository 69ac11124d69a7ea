"""``doctor`` against the local stack (Azurite, the Graph and Workbooks sandboxes, the real
webhook): every check passes on a healthy setup, and each one is made to fail the way a real
tenant would fail it."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from devkit.sandbox.graph.service import Fault
from sync.blueprints import admin
from sync.core.checks import Check
from sync.core.doctor import ESSENTIAL
from sync.core.state_models import Mailbox
from sync.engine.doctor import diagnose, run_doctor
from sync.engine.subscriptions import NOTIFICATIONS_PATH
from sync.graph.client import GraphClient
from sync.graph.limiter import RetryPolicy
from sync.status import status_report
from tests.functions.helpers import http, user_function
from tests.support.local import start_server
from tests.support.world import World, world_running

UPN = "ann@example.com"
KV_REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x/)"


@pytest.fixture
async def world(azurite_connection: str) -> AsyncIterator[World]:
    async with world_running(azurite_connection) as w:
        url = await w.start_webhook()
        w.services.settings.app.public_base_url = url.removesuffix(NOTIFICATIONS_PATH)
        yield w


async def _checks(world: World, mailbox: Mailbox, **kw: Any) -> dict[str, Check]:
    report = await diagnose(world.services, mailbox, **kw)
    assert len({c.name for c in report.checks}) == len(report.checks)  # each check once
    return {c.name: c for c in report.checks}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- healthy


async def test_a_healthy_mailbox_passes_and_the_result_is_recorded(world: World) -> None:
    mailbox = await world.add_mailbox(UPN)
    report = await run_doctor(world.services, mailbox)
    checks = {c.name: c for c in report.checks}
    assert report.failures == [], report.summary()
    for name in (
        "secrets.key_vault",
        "secrets.api_key",
        "workbooks.login",
        "workbooks.time_zone",
        "workbooks.email_link_strategy",
        "workbooks.my_queues",
        "mailbox.time_zone",
        "graph.token",
        "graph.roles",
        "graph.mailbox",
        "graph.stream.sent",
        "graph.stream.contacts",
        "graph.stream.calendar",
        "graph.stream.todo",
        "graph.mailbox_settings",
        "graph.webhook_url",
        "graph.webhook_handshake",
    ):
        assert checks[name].status == "ok", checks[name]
    assert "Tasks.ReadWrite.All" in checks["graph.roles"].message
    assert "list 'Tasks'" in checks["graph.stream.todo"].message  # the default list was found
    # The handshake's test subscription was created (Graph validated the webhook) and deleted.
    posts = [r for r in world.graph.sandbox.requests if r[:2] == ("POST", "/v1.0/subscriptions")]
    assert len(posts) == 1 and world.graph.sandbox.state.subscriptions == {}

    stored = await world.services.store.doctor.get(UPN)
    assert stored is not None and stored.summary() == report.summary()
    status = await status_report(world.services)
    (entry,) = [m for m in status["mailboxes"] if m["id"] == UPN]
    assert entry["doctor"]["summary"] == report.summary()
    assert {c["name"] for c in entry["doctor"]["checks"]} == set(checks)


async def test_the_http_route_checks_and_records(world: World) -> None:
    await world.add_mailbox(UPN)
    doctor = user_function(admin.doctor)
    resp = await doctor(http("GET", "/api/doctor/x", route_params={"mailbox": "ANN@example.com"}))
    assert resp.status_code == 200
    body = json.loads(resp.get_body())
    assert body["mailbox"] == UPN and body["status"] in ("ok", "warn")
    assert body["essential_failures"] == []
    assert await world.services.store.doctor.get(UPN) is not None
    missing = await doctor(
        http("GET", "/api/doctor/x", route_params={"mailbox": "nobody@example.com"})
    )
    assert (
        missing.status_code == 404 and "not registered" in json.loads(missing.get_body())["error"]
    )


# ----------------------------------------------------------------------------- secrets


async def test_an_unresolved_key_vault_reference_fails(world: World) -> None:
    mailbox = await world.add_mailbox(UPN)
    env = {"GRAPH_CLIENT_SECRET": KV_REFERENCE, "SYNC_LOG_LEVEL": "INFO"}
    check = (await _checks(world, mailbox, env=env))["secrets.key_vault"]
    assert check.status == "fail" and "GRAPH_CLIENT_SECRET" in check.message
    assert "SYNC_LOG_LEVEL" not in check.message and "kv.vault" not in check.message
    assert "Key Vault Secrets User" in check.fix


async def test_an_api_key_still_reading_a_key_vault_reference_fails(world: World) -> None:
    var = f"WB_KEY_{uuid.uuid4().hex[:6].upper()}"
    os.environ[var] = KV_REFERENCE
    try:
        mailbox = Mailbox(id=UPN, workbooks_url=world.workbooks.base_url, api_key_ref=f"env:{var}")
        checks = await _checks(world, mailbox)
    finally:
        os.environ.pop(var)
    assert checks["secrets.api_key"].status == "fail" and "secrets.api_key" in ESSENTIAL
    assert "still reads '@Microsoft.KeyVault(...)'" in checks["secrets.api_key"].message
    assert checks["workbooks.login"].message == "not checked: the API key cannot be read"


async def test_an_api_key_reference_that_resolves_to_nothing_fails(world: World) -> None:
    mailbox = Mailbox(id=UPN, workbooks_url=world.workbooks.base_url, api_key_ref="env:WB_NOPE_X")
    check = (await _checks(world, mailbox))["secrets.api_key"]
    assert check.status == "fail" and "WB_NOPE_X is not set" in check.message


# ----------------------------------------------------------------------------- Workbooks


async def test_a_rejected_key_fails_the_login(world: World) -> None:
    mailbox = await world.add_mailbox(UPN, api_key="not-a-key")
    report = await diagnose(world.services, mailbox)
    login = next(c for c in report.checks if c.name == "workbooks.login")
    assert login.status == "fail" and "login failed" in login.message
    assert [c.name for c in report.essential_failures] == ["workbooks.login"]
    assert "not-a-key" not in json.dumps(report.as_dict())


async def test_an_unreachable_workbooks_url_fails_the_login(world: World) -> None:
    os.environ["WB_KEY_DOCTOR"] = "ann-api-key"
    try:
        url = f"http://127.0.0.1:{_closed_port()}"
        mailbox = Mailbox(id=UPN, workbooks_url=url, api_key_ref="env:WB_KEY_DOCTOR")
        world.graph.sandbox.state.add_mailbox(UPN)
        check = (await _checks(world, mailbox))["workbooks.login"]
    finally:
        os.environ.pop("WB_KEY_DOCTOR")
    assert check.status == "fail" and "Workbooks did not answer" in check.message
    assert url in check.fix


async def test_a_tenant_without_an_email_link_strategy_fails(world: World) -> None:
    world.workbooks.state.configure({"email_link_strategy": "none"})
    mailbox = await world.add_mailbox(UPN)
    check = (await _checks(world, mailbox))["workbooks.email_link_strategy"]
    assert check.status == "fail" and "email linking disabled" in check.message


async def test_a_login_without_a_personal_queue_warns(world: World) -> None:
    world.workbooks.state.queues.pop("Private::Activity::ActivityQueue")
    mailbox = await world.add_mailbox(UPN)
    check = (await _checks(world, mailbox))["workbooks.my_queues"]
    assert check.status == "warn" and "no personal queue for Activities" in check.message
    assert "activity_queues" in check.fix


# ----------------------------------------------------------------------------- Graph


async def test_a_rejected_client_secret_fails_the_token(world: World) -> None:
    mailbox = await world.add_mailbox(UPN)
    settings = world.services.settings.graph.model_copy(
        update={"client_secret": SecretStr("wrong")}
    )
    wrong = GraphClient.create(settings, policy=RetryPolicy(attempts=1))
    world.services.cache.graph = wrong
    world.services.closers.append(wrong.aclose)
    report = await diagnose(world.services, mailbox)
    checks = {c.name: c for c in report.checks}
    assert checks["graph.token"].status == "fail"
    assert "AADSTS7000215" in checks["graph.token"].message and "client secret" in (
        checks["graph.token"].fix
    )
    assert checks["graph.mailbox"].message == "not checked: no Graph token"
    assert "graph.token" in [c.name for c in report.essential_failures]


async def test_a_token_without_a_needed_role_fails(world: World) -> None:
    world.graph.sandbox.config.app_roles = ["Mail.Read", "Contacts.Read", "Calendars.ReadWrite"]
    mailbox = await world.add_mailbox(UPN)
    checks = await _checks(world, mailbox)
    roles = checks["graph.roles"]
    assert roles.status == "fail" and "missing Tasks.ReadWrite.All" in roles.message
    assert "only the read variant of Contacts.ReadWrite" in roles.message
    assert "app-registration.md" in roles.fix
    assert checks["graph.stream.todo"].status == "fail"  # Graph refuses the read as well
    assert "ErrorAccessDenied" in checks["graph.stream.todo"].message
    assert checks["graph.stream.contacts"].status == "ok"  # Contacts.Read reads
    # Without MailboxSettings.Read the zone cannot come from Outlook: a warning, not a failure.
    assert checks["graph.mailbox_settings"].status == "warn"


async def test_a_mailbox_outside_the_exchange_scope_fails_with_the_fix(world: World) -> None:
    world.graph.sandbox.config.access_policy = ["bob@example.com"]
    mailbox = await world.add_mailbox(UPN)
    checks = await _checks(world, mailbox)
    reach = checks["graph.mailbox"]
    assert reach.status == "fail" and "Access to OData is disabled." in reach.message
    assert "RBAC for Applications" in reach.message
    assert UPN in reach.fix and "Test-ApplicationAccessPolicy" in reach.fix
    for stream in ("sent", "contacts", "calendar"):
        assert checks[f"graph.stream.{stream}"].status == "fail"
    assert checks["graph.stream.todo"].status == "ok"  # Tasks.* is not scoped by Exchange
    assert checks["graph.webhook_handshake"].message.startswith("not checked")


async def test_a_user_without_a_mailbox_fails(world: World) -> None:
    os.environ["WB_KEY_DOCTOR"] = "ann-api-key"
    try:
        mailbox = Mailbox(
            id="nobody@example.com",
            workbooks_url=world.workbooks.base_url,
            api_key_ref="env:WB_KEY_DOCTOR",
        )
        check = (await _checks(world, mailbox))["graph.mailbox"]
    finally:
        os.environ.pop("WB_KEY_DOCTOR")
    assert check.status == "fail" and "Graph has no mailbox nobody@example.com" in check.message
    assert "ErrorInvalidUser" in check.message


@pytest.mark.parametrize(
    ("stream", "path", "status"),
    [
        ("sent", "sentitems/messages", 500),
        ("contacts", "/contacts", 403),
        ("calendar", "/calendarView", 503),
        ("todo", "/todo/lists", 403),
    ],
)
async def test_a_stream_that_errors_fails_alone(
    world: World, stream: str, path: str, status: int
) -> None:
    mailbox = await world.add_mailbox(UPN)
    code = "ErrorAccessDenied" if status == 403 else ""
    world.graph.sandbox.faults.append(Fault(status=status, count=20, path=path, code=code))
    checks = await _checks(world, mailbox)
    failing = sorted(n for n, c in checks.items() if c.status == "fail")
    assert failing == [f"graph.stream.{stream}"], failing
    assert str(status) in checks[f"graph.stream.{stream}"].message


async def test_unreadable_outlook_settings_warn_only_when_the_zone_is_not_fixed(
    world: World,
) -> None:
    mailbox = await world.add_mailbox(UPN)
    world.graph.sandbox.faults.append(
        Fault(status=403, count=20, path="/mailboxSettings", code="ErrorAccessDenied")
    )
    check = (await _checks(world, mailbox))["graph.mailbox_settings"]
    assert check.status == "warn" and "MailboxSettings.Read" in check.fix
    fixed = await world.set_policy(UPN, time_zone="Europe/Paris")
    asked = len(world.graph.sandbox.requests)
    check = (await _checks(world, fixed))["graph.mailbox_settings"]
    assert check.status == "ok" and "not needed" in check.message
    assert not any("mailboxSettings" in r[1] for r in world.graph.sandbox.requests[asked:])


# ----------------------------------------------------------------------------- webhook


async def test_no_public_url_fails_the_webhook(world: World) -> None:
    mailbox = await world.add_mailbox(UPN)
    world.services.settings.app.public_base_url = None
    checks = await _checks(world, mailbox)
    assert checks["graph.webhook_url"].status == "fail"
    assert "SYNC_PUBLIC_BASE_URL is not set" in checks["graph.webhook_url"].message
    assert checks["graph.webhook_handshake"].message == "not checked: no usable URL"
    assert world.graph.sandbox.state.subscriptions == {}


async def test_a_webhook_that_does_not_echo_the_token_fails_the_handshake(world: World) -> None:
    async def wrong(request: web.Request) -> web.Response:
        return web.Response(text="hello", content_type="text/plain")

    app = web.Application()
    app.router.add_post(NOTIFICATIONS_PATH, wrong)
    app.router.add_post("/api/graph/lifecycle", wrong)
    runner, origin = await start_server(app)
    try:
        mailbox = await world.add_mailbox(UPN)
        world.services.settings.app.public_base_url = origin
        check = (await _checks(world, mailbox))["graph.webhook_handshake"]
    finally:
        await runner.cleanup()
    assert check.status == "fail" and "Response must exactly match validationToken" in (
        check.message
    )
    assert f"{origin}{NOTIFICATIONS_PATH}" in check.fix
    assert world.graph.sandbox.state.subscriptions == {}  # Graph created nothing


async def test_an_unreachable_webhook_fails_the_handshake(world: World) -> None:
    mailbox = await world.add_mailbox(UPN)
    world.services.settings.app.public_base_url = f"http://127.0.0.1:{_closed_port()}"
    check = (await _checks(world, mailbox))["graph.webhook_handshake"]
    assert check.status == "fail" and "validation" in check.message.lower()


async def test_a_section_that_stops_is_a_failing_check_not_a_crash(world: World) -> None:
    # Workbooks names no zone, so the mailbox's zone is read from Outlook, and Graph is down
    # for that read (503 after every retry).
    world.workbooks.state.config.users[0].time_zone = ""
    mailbox = await world.add_mailbox(UPN)
    world.graph.sandbox.faults.append(Fault(status=503, count=50, path="/mailboxSettings"))
    checks = await _checks(world, mailbox)
    assert checks["workbooks.checks"].status == "fail"
    assert "the workbooks checks stopped" in checks["workbooks.checks"].message
    assert checks["graph.token"].status == "ok"  # the Graph section still ran


async def test_an_unknown_workbooks_zone_warns_and_outlook_decides(world: World) -> None:
    world.workbooks.state.config.users[0].time_zone = "Atlantis (GMT+13:37)"
    world.graph.sandbox.state.add_mailbox(UPN).time_zone = "W. Europe Standard Time"
    mailbox = await world.add_mailbox(UPN)
    checks = await _checks(world, mailbox)
    assert checks["workbooks.time_zone"].status == "warn"
    assert (
        "'Atlantis (GMT+13:37)' is not a known zone name" in checks["workbooks.time_zone"].message
    )
    assert checks["mailbox.time_zone"].message.endswith("syncs in Europe/Berlin (derived)")
