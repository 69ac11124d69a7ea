"""The sandbox speaks Graph's protocol: checked with a plain HTTP client, no SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devkit.sandbox.graph import SandboxHandle, running_sandbox
from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.state import Mailbox
from tests.graph.conftest import UPN, Receiver, fast_config
from tests.graph.sandbox_http import iso, token


@pytest.fixture
async def http(sandbox: SandboxHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.origin) as client:
        client.headers["Authorization"] = f"Bearer {await token(sandbox, client)}"
        yield client


async def test_auth_errors_use_graph_format(sandbox: SandboxHandle, mailbox: Mailbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.origin) as raw:
        resp = await raw.get(f"/v1.0/users/{UPN}/contacts")
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "innerError" in resp.json()["error"]
        bad = await raw.post(
            sandbox.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "nope",
                "scope": "x",
            },
        )
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        disco = await raw.get(f"/{sandbox.tenant_id}/v2.0/.well-known/openid-configuration")
        assert disco.json()["token_endpoint"] == sandbox.token_url


async def test_controls_are_off_by_default() -> None:
    async with running_sandbox(SandboxConfig()) as handle, httpx.AsyncClient() as raw:
        assert (await raw.get(f"{handle.origin}/_sim/state")).status_code == 404
        assert (await raw.post(f"{handle.origin}/_sim/mailboxes", json={})).status_code == 404


async def test_default_page_size_and_no_prefer_carry_over(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    for i in range(25):
        await http.post(f"/_sim/users/{UPN}/send", json={"subject": f"m{i}", "to": ["x@y.z"]})
    first = await http.get(
        f"/v1.0/users/{UPN}/mailFolders('sentitems')/messages/delta()",
        headers={"Prefer": "odata.maxpagesize=20"},
    )
    body = first.json()
    assert len(body["value"]) == 20 and "@odata.nextLink" in body
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=20"
    second = (await http.get(body["@odata.nextLink"])).json()  # no Prefer: default 10
    assert len(second["value"]) == 5 and "@odata.deltaLink" in second
    plain = (await http.get(f"/v1.0/users/{UPN}/mailFolders/sentitems/messages/delta")).json()
    assert len(plain["value"]) == 10


async def test_ids_change_on_move_unless_immutable(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    sent = (await http.post(f"/_sim/users/{UPN}/send", json={"subject": "hi"})).json()
    imm = {"Prefer": 'IdType="ImmutableId"'}
    before = (await http.get(f"/v1.0/users/{UPN}/messages/{sent['id']}")).json()["id"]
    await http.post(
        f"/_sim/users/{UPN}/items/message/{sent['id']}/move", json={"destination": "inbox"}
    )
    after = (await http.get(f"/v1.0/users/{UPN}/messages/{sent['id']}")).json()["id"]
    assert before != after
    immutable = (await http.get(f"/v1.0/users/{UPN}/messages/{sent['id']}", headers=imm)).json()
    assert immutable["id"] == sent["id"] and immutable["parentFolderId"] == "inbox"


async def test_calendar_view_delta_rules(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    path = f"/v1.0/users/{UPN}/calendarView/delta"
    window = {"startDateTime": iso(now), "endDateTime": iso(now + timedelta(days=7))}
    assert (await http.get(path)).status_code == 400  # window required
    with_select = await http.get(path, params={**window, "$select": "subject"})
    assert with_select.status_code == 400
    inside = {
        "start": {"dateTime": iso(now + timedelta(days=1))[:-1], "timeZone": "UTC"},
        "end": {"dateTime": iso(now + timedelta(days=1, hours=1))[:-1], "timeZone": "UTC"},
    }
    outside = {"start": {"dateTime": iso(now + timedelta(days=30))[:-1], "timeZone": "UTC"}}
    for data in (inside, outside):
        await http.post(f"/_sim/users/{UPN}/items/event", json={"data": data})
    body = (await http.get(path, params=window)).json()
    assert len(body["value"]) == 1 and "@odata.deltaLink" in body


async def test_expired_delta_token_is_410_sync_state_not_found(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    body = (await http.get(f"/v1.0/users/{UPN}/contacts/delta")).json()
    assert (await http.post("/_sim/expire-delta", json={"mailbox": UPN})).json()["expired"] >= 1
    resp = await http.get(body["@odata.deltaLink"])
    assert resp.status_code == 410
    assert resp.json()["error"]["code"] == "syncStateNotFound"
    assert "/contacts/delta" in resp.headers["Location"]


async def test_duplicates_across_pages_on_demand(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    await http.post("/_sim/config", json={"delta_duplicates": True})
    for i in range(4):
        await http.post(f"/_sim/users/{UPN}/items/contact", json={"data": {"givenName": f"{i}"}})
    ids: list[str] = []
    url: str | None = f"/v1.0/users/{UPN}/contacts/delta"
    while url:
        page = (await http.get(url, headers={"Prefer": "odata.maxpagesize=2"})).json()
        ids += [v["id"] for v in page["value"]]
        url = page.get("@odata.nextLink")
    assert len(ids) > len(set(ids)) == 4


async def test_concurrency_throttle_answers_429_with_retry_after(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    sandbox.sandbox.config.latency_seconds = 0.5
    sandbox.sandbox.config.throttle_concurrency = 2
    results = await asyncio.gather(*(http.get(f"/v1.0/users/{UPN}/contacts") for _ in range(5)))
    throttled = [r for r in results if r.status_code == 429]
    assert len(throttled) == 3
    assert throttled[0].headers["Retry-After"] == "1"
    assert throttled[0].json()["error"]["code"] == "ApplicationThrottled"


async def test_request_budget_throttle() -> None:
    config = fast_config(throttle_requests=3, throttle_window_seconds=60)
    async with running_sandbox(config) as handle, httpx.AsyncClient(base_url=handle.origin) as c:
        handle.sandbox.state.add_mailbox(UPN)
        c.headers["Authorization"] = f"Bearer {await token(handle, c)}"
        codes = [(await c.get(f"/v1.0/users/{UPN}/contacts")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]


def sub_body(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": f"{receiver.origin}/api/graph/notifications",
        "lifecycleNotificationUrl": f"{receiver.origin}/api/graph/lifecycle",
        "resource": f"/users/{UPN}/mailFolders('sentitems')/messages",
        "expirationDateTime": iso(datetime.now(UTC) + timedelta(days=2)),
        "clientState": "s3cret",
    }
    body.update(overrides)
    return body


async def test_subscription_validation_handshake(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    ok = await http.post("/v1.0/subscriptions", json=sub_body(receiver))
    assert ok.status_code == 201, ok.text
    assert receiver.validations == 2  # notification and lifecycle URLs both validated
    assert receiver.content_types[0].startswith("text/plain")
    for mode, text in [
        ("wrong", "must exactly match validationToken"),
        ("error", "must respond with 200 OK"),
        ("slow", "timed out"),
    ]:
        receiver.mode = mode
        resp = await http.post("/v1.0/subscriptions", json=sub_body(receiver))
        assert resp.status_code == 400
        assert text in resp.json()["error"]["message"]


async def test_subscription_expiry_limits_and_todo(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    too_long = sub_body(receiver, expirationDateTime=iso(now + timedelta(minutes=10_090)))
    resp = await http.post("/v1.0/subscriptions", json=too_long)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "ExtensionError"
    assert "can only be 10070 minutes in the future" in resp.json()["error"]["message"]
    short = sub_body(receiver, expirationDateTime=iso(now + timedelta(minutes=5)))
    created = (await http.post("/v1.0/subscriptions", json=short)).json()
    expires = datetime.fromisoformat(created["expirationDateTime"].replace("Z", "+00:00"))
    assert expires >= now + timedelta(minutes=44)
    todo = sub_body(receiver, resource=f"/users/{UPN}/todo/lists/L1/tasks")
    assert (await http.post("/v1.0/subscriptions", json=todo)).status_code == 403


async def test_notifications_renew_delete_and_lifecycle(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await http.post("/_sim/config", json={"notify_duplicates": 2})
    sub = (await http.post("/v1.0/subscriptions", json=sub_body(receiver))).json()
    await http.post(f"/_sim/users/{UPN}/send", json={"subject": "hello", "to": ["a@b.c"]})
    await receiver.wait_for(3)
    note = receiver.notifications[0]
    assert note["clientState"] == "s3cret" and note["changeType"] == "created"
    assert note["subscriptionId"] == sub["id"] and note["tenantId"] == sandbox.tenant_id
    assert set(note["resourceData"]) == {"@odata.type", "@odata.id", "@odata.etag", "id"}

    new_exp = iso(datetime.now(UTC) + timedelta(days=3))
    renewed = await http.patch(
        f"/v1.0/subscriptions/{sub['id']}", json={"expirationDateTime": new_exp}
    )
    assert renewed.status_code == 200
    assert (await http.post(f"/v1.0/subscriptions/{sub['id']}/reauthorize")).status_code == 204
    await http.post("/_sim/lifecycle", json={"subscriptionId": sub["id"], "event": "missed"})
    await receiver.wait_for(1, "lifecycle")
    assert receiver.lifecycle[0]["lifecycleEvent"] == "missed"
    assert (await http.delete(f"/v1.0/subscriptions/{sub['id']}")).status_code == 204
    gone = await http.patch(
        f"/v1.0/subscriptions/{sub['id']}", json={"expirationDateTime": new_exp}
    )
    assert gone.status_code == 404


async def test_fault_injection_and_state_dump(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient
) -> None:
    await http.post("/_sim/faults", json={"status": 503, "count": 2, "retryAfter": 3})
    first = await http.get(f"/v1.0/users/{UPN}/contacts")
    assert first.status_code == 503 and first.headers["Retry-After"] == "3"
    assert (await http.get(f"/v1.0/users/{UPN}/contacts")).status_code == 503
    assert (await http.get(f"/v1.0/users/{UPN}/contacts")).status_code == 200
    dump = (await http.get("/_sim/state")).json()
    assert UPN in dump["mailboxes"]


async def test_notifications_at_least_once_with_delay_and_reordering(
    sandbox: SandboxHandle, mailbox: Mailbox, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    body = sub_body(receiver, resource=f"/users/{UPN}/contacts")
    sub = (await http.post("/v1.0/subscriptions", json=body)).json()
    await http.post(
        "/_sim/config", json={"notify_delay_seconds": 0.05, "notify_reorder_seconds": 0.3}
    )
    receiver.fail_next = 2
    created = []
    for i in range(6):
        data = {"data": {"givenName": f"g{i}"}}
        created.append((await http.post(f"/_sim/users/{UPN}/items/contact", json=data)).json())
    await sandbox.sandbox.notifier.drain()
    # Subscribed without Prefer IdType="ImmutableId": notifications carry REST ids.
    notified = {n["resourceData"]["id"] for n in receiver.notifications}
    assert notified == {c["restId"] for c in created}
    assert all(n["subscriptionId"] == sub["id"] for n in receiver.notifications)
    # The two refused POSTs were retried (by whichever deliveries met them).
    assert sum(d.attempts - 1 for d in sandbox.sandbox.notifier.deliveries) == 2
