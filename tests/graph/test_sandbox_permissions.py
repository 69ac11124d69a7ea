"""The sandbox checks what a real tenant checks on every Outlook request: the application
permissions in the token's ``roles`` claim, and Exchange's scoping of mailboxes (RBAC for
Applications / an application access policy), which leaves To Do alone."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from devkit.sandbox.graph import SandboxHandle
from tests.graph.conftest import UPN
from tests.graph.sandbox_http import sandbox_http, token

CONTACTS = f"/v1.0/users/{UPN}/contacts"


def _claims(jwt: str) -> dict[str, Any]:
    body = jwt.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


async def _with_roles(handle: SandboxHandle, http: httpx.AsyncClient, roles: list[str]) -> None:
    handle.sandbox.config.app_roles = roles
    http.headers["Authorization"] = f"Bearer {await token(handle, http)}"


async def test_tokens_carry_the_consented_roles() -> None:
    async with sandbox_http() as (handle, http):
        claims = _claims(http.headers["Authorization"].removeprefix("Bearer "))
        assert claims["roles"] == list(handle.sandbox.config.app_roles)
        assert "Tasks.ReadWrite.All" in claims["roles"]
        assert claims["aud"] == "https://graph.microsoft.com"
        assert claims["appid"] == "sandbox-client" and claims["idtyp"] == "app"
        assert claims["tid"] == handle.tenant_id
        handle.sandbox.config.app_roles = []
        bare = _claims(await token(handle, http))
        assert "roles" not in bare  # nothing consented: Entra leaves the claim out


async def test_a_missing_permission_is_refused_and_write_needs_readwrite() -> None:
    async with sandbox_http() as (handle, http):
        old = http.headers["Authorization"]
        await _with_roles(handle, http, ["Mail.Read", "Contacts.Read"])
        assert (await http.get(CONTACTS)).status_code == 200
        write = await http.post(CONTACTS, json={"displayName": "X"})
        assert write.status_code == 403
        error = write.json()["error"]
        assert error["code"] == "ErrorAccessDenied"
        assert error["message"] == "Access is denied. Check credentials and try again."
        cal = await http.get(f"/v1.0/users/{UPN}/events")
        assert cal.status_code == 403
        todo = await http.get(f"/v1.0/users/{UPN}/todo/lists")
        assert todo.status_code == 403
        # A token issued before the change keeps what it was issued with.
        http.headers["Authorization"] = old
        assert (await http.post(CONTACTS, json={"displayName": "X"})).status_code == 201


async def test_a_subscription_needs_the_read_permission_of_its_resource() -> None:
    async with sandbox_http() as (handle, http):
        await _with_roles(handle, http, ["Mail.Read"])
        resp = await http.post(
            "/v1.0/subscriptions",
            json={
                "changeType": "created",
                "notificationUrl": "http://127.0.0.1:1/api/graph/notifications",
                "resource": f"/users/{UPN}/contacts",
                "expirationDateTime": "2099-01-01T00:00:00Z",
            },
        )
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == "ExtensionError"
        assert "does not have permission" in resp.json()["error"]["message"]


async def test_the_exchange_scope_leaves_out_other_mailboxes_but_not_to_do() -> None:
    async with sandbox_http(access_policy=["bob@example.com"]) as (handle, http):
        for path in ("contacts", "mailFolders/sentitems/messages", "events", "mailboxSettings"):
            resp = await http.get(f"/v1.0/users/{UPN}/{path}")
            assert resp.status_code == 403, path
            assert resp.json()["error"]["message"] == "Access to OData is disabled."
        assert (await http.get(f"/v1.0/users/{UPN}/todo/lists")).status_code == 200
        box = handle.sandbox.state.mailbox(UPN)
        assert box is not None
        handle.sandbox.config.access_policy = [box.user_id]  # scoped by id works too
        assert (await http.get(CONTACTS)).status_code == 200


async def test_a_mail_folder_can_be_read_and_lists_page_with_top() -> None:
    async with sandbox_http() as (_handle, http):
        for i in range(5):
            await http.post(f"/_sim/users/{UPN}/send", json={"subject": f"m{i}", "to": ["x@y"]})
        folder = await http.get(f"/v1.0/users/{UPN}/mailFolders('sentitems')")
        assert folder.status_code == 200 and folder.json()["totalItemCount"] == 5
        chosen = await http.get(f"/v1.0/users/{UPN}/mailFolders/sentitems?$select=totalItemCount")
        assert set(chosen.json()) == {"id", "totalItemCount"}
        first = await http.get(f"/v1.0/users/{UPN}/mailFolders/sentitems/messages?$top=2")
        assert len(first.json()["value"]) == 2
        seen = [m["id"] for m in first.json()["value"]]
        link = first.json().get("@odata.nextLink")
        while link:
            page = (await http.get(link)).json()
            seen += [m["id"] for m in page["value"]]
            link = page.get("@odata.nextLink")
        assert len(set(seen)) == 5
