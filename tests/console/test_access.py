"""Every route of the console, checked server-side for every kind of visitor: nobody signed
in, someone else, the mailbox's owner, an administrator; and every form for its token.  The
route table is read from the router, so a new route is covered the day it is added."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sync.console.routes import ROUTES, Route
from sync.core.state_models import JobStatus, Mailbox
from tests.console.support import Browser, as_admin, as_user, text_of

ANN, BOB = "ann@access.example", "bob@access.example"
NOT_ALLOWED = {
    "You can only see and change your own mailbox.",
    "This page is for Sync Center administrators.",
}


@pytest.fixture(autouse=True)
def _dev_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_CONSOLE_DEV_LOGIN", "1")
    # The live checks behind "enable" must not leave this machine: nothing listens on port 9.
    monkeypatch.setenv("GRAPH_BASE_URL", "http://127.0.0.1:9/v1.0")
    monkeypatch.setenv("GRAPH_AUTHORITY_HOST", "http://127.0.0.1:9")
    for name in ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME", "WEBSITE_AUTH_ENABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def two_mailboxes(services: Any) -> dict[str, str]:
    for upn in (ANN, BOB):
        await services.store.mailboxes.put(
            Mailbox(id=upn, workbooks_url="http://127.0.0.1:9", api_key_ref="env:K")
        )
    job = JobStatus(job_id=uuid.uuid4().hex, mailbox=BOB, kind="full", state="done")
    await services.store.jobs.put(job)
    return {"job": job.job_id}


def _path(route: Route, mailbox: str, job: str) -> str:
    rest = route.template.replace("{mb}", mailbox).replace("{job}", job)
    return f"/api/console/{rest}".rstrip("/")


async def _call(who: Browser, route: Route, path: str) -> Any:
    if route.method == "GET":
        return await who.get(path)
    await who.get("/api/console/me")  # a page first, for the CSRF cookie
    return await who.post(path, {})


def _refused(answer: Any) -> bool:
    return answer.status == 403 and any(t in text_of(answer.text) for t in NOT_ALLOWED)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template or '/'}")
async def test_every_route_is_checked_on_the_server(
    route: Route, two_mailboxes: dict[str, str]
) -> None:
    job = two_mailboxes["job"]
    path = _path(route, BOB, job)
    nobody = Browser("")
    answer = await _call(nobody, route, path)
    if route.method == "GET":
        assert answer.status == 302 and answer.location.startswith("/.auth/login/dev?")
    else:
        assert answer.status == 401

    ann = await _call(as_user(ANN), route, path)
    if route.access == "signed_in":
        assert not _refused(ann)
    else:  # Bob's mailbox or job, or an administrator's page
        assert _refused(ann), (route.template, ann.status)

    if route.access == "owner":
        bob = await _call(as_user(BOB), route, path)
        assert not _refused(bob) and bob.status < 500, (route.template, bob.status)
    admin = await _call(as_admin(), route, path)
    assert not _refused(admin) and admin.status < 500, (route.template, admin.status)


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.method == "POST"], ids=lambda r: r.template
)
async def test_every_form_needs_its_token(route: Route, two_mailboxes: dict[str, str]) -> None:
    admin = as_admin()
    await admin.get("/api/console/me")
    answer = await admin.post(_path(route, BOB, two_mailboxes["job"]), {}, csrf=False)
    assert answer.status == 403 and "The form has expired" in answer.text


async def test_without_a_trusted_sign_in_every_route_is_closed(
    two_mailboxes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNC_CONSOLE_DEV_LOGIN")
    for route in ROUTES:
        answer = await _call(as_admin(), route, _path(route, ANN, two_mailboxes["job"]))
        assert answer.status == 503 and "No sign-in is configured" in answer.text
    # In Azure without App Service Authentication the header could be forged: closed too.
    monkeypatch.setenv("WEBSITE_SITE_NAME", "func-sync")
    answer = await as_admin().get("/api/console/mailboxes")
    assert answer.status == 503 and "App Service Authentication is not enabled" in answer.text


async def test_a_sign_in_from_another_tenant_is_refused(two_mailboxes: dict[str, str]) -> None:
    stranger = Browser(ANN, tenant="99999999-9999-9999-9999-999999999999")
    answer = await stranger.get(f"/api/console/mailboxes/{ANN}")
    assert answer.status == 403 and "another organisation" in answer.text


async def test_unknown_pages_and_unreadable_principals(two_mailboxes: dict[str, str]) -> None:
    assert (await as_admin().get("/api/console/nowhere")).status == 404
    assert (await as_admin().get("/api/console/mailboxes/nobody@access.example")).status == 404
    forged = await Browser("").get(
        "/api/console/me", headers={"x-ms-client-principal": "not base64!"}
    )
    assert forged.status == 400
