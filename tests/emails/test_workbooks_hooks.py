"""Workbooks webhooks and the created-since poll, through both sandboxes and Azurite: the
subscription upkeep per tenant (shared, repaired, crash-safe, released), the delivery route
(signature, hostile bodies, duplicates), the poll's cost, a push's retroactive run, and that
no secret is ever written in the clear or logged."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import azure.functions as func
import pytest
from aiohttp import web

import sync.engine.contacts
import sync.engine.people  # noqa: F401  (registers the processors)
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import utcnow
from sync.engine import workbooks_webhooks as hooks
from tests.support.local import patched_environ, start_server
from tests.support.world import World, world_running

ANN, BOB = "ann@example.com", "bob@example.com"
SUBS = "admin/triggers/webhook_subscriptions"
SHARED = ["Workbooks"]


@pytest.fixture(autouse=True)
def _no_refusal_summary_left_behind() -> Iterator[None]:
    """Refused deliveries are counted in a rate-limited log whose summary line is written a
    window later, on the shared event loop: forget it so it never lands in a later test."""
    from sync.blueprints import workbooks_hooks

    yield
    workbooks_hooks.LOG.reset()


def route_app() -> web.Application:
    """The blueprint's route on a real port, called the way the Functions host calls it."""
    from sync.blueprints.workbooks_hooks import workbooks_webhook

    call = workbooks_webhook.build().get_user_function()

    async def handle(request: web.Request) -> web.Response:
        req = func.HttpRequest(
            method="POST",
            url=str(request.url),
            headers=dict(request.headers),
            params={},
            route_params={"token": request.match_info["token"]},
            body=await request.read(),
        )
        resp = await call(req)
        return web.Response(status=resp.status_code, body=resp.get_body())

    app = web.Application()
    app.router.add_post("/api/workbooks/webhook/{token}", handle)
    return app


@pytest.fixture
async def world(azurite_connection: str, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    from devkit.sandbox.workbooks import SandboxConfig

    allowed = getattr(request, "param", True)
    runner, origin = await start_server(route_app())
    config = SandboxConfig(
        sim_controls=True,
        concurrency_cap=None,
        webhooks_allowed=allowed,
        webhook_backoff_seconds=0.02,
        webhook_backoff_max_seconds=0.1,
    )
    env = {"SYNC_PUBLIC_BASE_URL": origin, "WORKBOOKS_CONTACT_DETAILS_TRIGGER_ID": "9001"}
    try:
        with patched_environ(env):
            async with world_running(azurite_connection, workbooks_config=config) as w:
                w.webhook_url = origin  # where the route listens (start_webhook is Graph's)
                yield w
    finally:
        await runner.cleanup()


def live_subscriptions(w: World) -> list[dict[str, Any]]:
    return [dict(r) for r in w.workbooks.state.tables[SUBS].values() if not r.get("is_deleted")]


async def queued(w: World) -> list[Any]:
    from tests.functions.helpers import drain

    return await drain(w.services)


async def test_one_tenant_shares_one_set_of_subscriptions(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN)
    bob = await w.add_mailbox(BOB)  # Bob's own key, same Workbooks database
    first = await hooks.keep_up(w.services, ann, force=True)
    assert first.created == 3 and first.webhooks == ("contact_details", "leads", "people")
    subs = live_subscriptions(w)
    assert sorted(s["trigger_id"] for s in subs) == [1, 5, 9001]
    assert all(s["enabled"] and s["callback_url"].startswith(w.webhook_url) for s in subs)
    w.reset_call_counts()
    again = await hooks.keep_up(w.services, bob)  # checked a moment ago: no Workbooks call
    assert again.skipped == "checked recently" and again.created == 0
    assert not any(SUBS in k for k in w.workbooks_calls())
    forced = await hooks.keep_up(w.services, bob, force=True)
    assert (forced.created, forced.deleted) == (0, 0)
    assert w.workbooks_calls().get(f"GET {SUBS}") == 1 and f"PUT {SUBS}" not in w.workbooks_calls()
    assert (
        len(live_subscriptions(w)) == 3
        and len(await w.services.store.workbooks_hooks.tenants()) == 1
    )


async def test_secrets_are_sealed_in_state_and_never_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    caplog.set_level(logging.DEBUG)
    ann = await w.add_mailbox(ANN)
    await hooks.keep_up(w.services, ann, force=True)
    secrets = list(w.workbooks.state.webhooks.secrets.values())
    assert len(secrets) == 3
    rows = [r async for r in w.services.store.workbooks_hooks._t.query("RowKey eq 'wbhook'")]
    text = json.dumps(rows, default=str)
    assert len(rows) == 4  # the tenant and one row per token
    tokens = [s["callback_url"].rsplit("/", 1)[1] for s in live_subscriptions(w)]
    assert not any(s in text for s in secrets) and not any(t in text for t in tokens)
    w.person("Logged", "logged@cust.com")
    await w.workbooks.state.webhooks.idle()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(s in logged for s in secrets)


async def test_a_subscription_deleted_at_workbooks_is_made_again(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN)
    await hooks.keep_up(w.services, ann, force=True)
    store = w.services.store.workbooks_hooks
    (tenant,) = await store.tenants()
    person = next(s for s in tenant.subscriptions if s.source == "people")
    w.workbooks.state.tables[SUBS].pop(person.subscription_id)  # an admin deleted it
    repaired = await hooks.keep_up(w.services, ann, force=True)
    assert (repaired.created, repaired.deleted) == (1, 0)
    (tenant,) = await store.tenants()
    new = next(s for s in tenant.subscriptions if s.source == "people")
    assert new.subscription_id != person.subscription_id and new.token_hash != person.token_hash
    assert await store.token(person.token_hash) is None and await store.token(new.token_hash)
    assert sorted(s["trigger_id"] for s in live_subscriptions(w)) == [1, 5, 9001]


async def test_a_crash_between_creating_and_recording_leaves_no_second_subscription(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    ann = await w.add_mailbox(ANN)
    store = w.services.store.workbooks_hooks
    original = store.put_token
    calls = {"n": 0}

    async def dying(token: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        await original(token)

    monkeypatch.setattr(store, "put_token", dying)
    with pytest.raises(RuntimeError, match="killed"):
        await hooks.keep_up(w.services, ann, force=True)
    assert len(live_subscriptions(w)) == 2  # people's, recorded; leads', lost with the crash
    (tenant,) = await store.tenants()
    assert tenant.upkeep_owner == "" and tenant.subscriptions == []  # the lease was given back
    monkeypatch.setattr(store, "put_token", original)
    healed = await hooks.keep_up(w.services, ann, force=True)
    assert healed.deleted == 2 and healed.created == 3  # unverifiable ones are replaced
    assert sorted(s["trigger_id"] for s in live_subscriptions(w)) == [1, 5, 9001]


async def test_the_last_mailbox_of_a_tenant_takes_the_subscriptions_with_it(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN)
    await w.add_mailbox(BOB)
    await hooks.keep_up(w.services, ann, force=True)
    await w.services.store.mailboxes.set_enabled(ANN, False, "leave")
    kept = await hooks.release(w.services, ANN)
    assert kept.skipped == f"still used by {BOB}" and len(live_subscriptions(w)) == 3
    bob = await w.services.store.mailboxes.set_enabled(BOB, False, "leave")
    assert bob is not None
    gone = await hooks.keep_up(w.services, bob)  # disabled: released
    assert gone.deleted == 3 and live_subscriptions(w) == []
    assert await w.services.store.workbooks_hooks.tenants() == []


@pytest.mark.parametrize("world", [False], indirect=True)
async def test_without_trigger_rights_everything_is_polled_once_per_tenant(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN, internal_domains=["example.com"])
    await w.add_mailbox(BOB, internal_domains=["example.com"])
    upkeep = await hooks.keep_up(w.services, ann, force=True)
    assert upkeep.webhooks == () and set(upkeep.polled) == {"people", "leads", "contact_details"}
    assert "may not manage triggers" in upkeep.polled["people"]
    mid = w.send(ANN, to=["later@cust.com"], categories=SHARED)
    await w.run(ANN)
    await w.run(ANN, Stream.PEOPLE, JobKind.RECONCILE)  # the stream's watermark exists
    w.reset_call_counts()
    await hooks.poll(w.services)  # nothing new: one read per source, nobody hinted
    reads = {k: n for k, n in w.workbooks_calls().items() if k.startswith("GET crm/")}
    assert reads == {"GET crm/people": 1, "GET crm/sales_leads": 1, "GET crm/party_locations": 1}
    assert await queued(w) == []
    pid = w.person("Later", "later@cust.com")
    w.reset_call_counts()
    polled = await hooks.poll(w.services)
    assert polled.tenants == 1 and polled.reads == 3  # two mailboxes, one tenant
    assert polled.hinted.mailboxes == [ANN]  # Bob waits on no such address
    reads = {k: n for k, n in w.workbooks_calls().items() if k.startswith("GET crm/")}
    assert sum(reads.values()) == 3
    (job,) = await queued(w)
    assert (job.mailbox, job.stream, job.kind) == (ANN, Stream.PEOPLE, JobKind.DIRTY)
    run = await w.run(ANN, Stream.PEOPLE, JobKind.DIRTY)
    assert run.counts.get("retro_linked") == 1
    assert w.links()[0][1:] == ("Private::Crm::Person", pid)
    record = await w.services.store.emails.get(ANN, mid)
    assert record is not None and record.state == "linked"


async def test_with_webhooks_the_poll_reads_only_what_no_trigger_covers(world: World) -> None:
    w = world
    # The People the schema's first load samples (sync.workbooks.owners, once per client and
    # hour) are not the poll's reads: "listed" leaves them out of the count.
    with patched_environ(
        {"WORKBOOKS_CONTACT_DETAILS_TRIGGER_ID": "0", "WORKBOOKS_DELETED_OWNER_LOCATIONS": "listed"}
    ):
        from sync.settings import get_settings

        get_settings.cache_clear()
        w.services.settings = get_settings()
        ann = await w.add_mailbox(ANN)
        upkeep = await hooks.keep_up(w.services, ann, force=True)
        assert upkeep.webhooks == ("leads", "people") and list(upkeep.polled) == ["contact_details"]
        w.reset_call_counts()
        await hooks.poll(w.services)
    reads = {k: n for k, n in w.workbooks_calls().items() if k.startswith("GET crm/")}
    assert reads == {"GET crm/party_locations": 1}


async def test_a_signed_delivery_queues_one_people_job_per_waiting_mailbox(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN, internal_domains=["example.com"])
    await w.add_mailbox(BOB, internal_domains=["example.com"])
    await hooks.keep_up(w.services, ann, force=True)
    w.send(ANN, to=["wanted@cust.com"], categories=SHARED)
    await w.run(ANN)
    from devkit.sandbox.workbooks.control import webhook_faults

    webhook_faults(w.workbooks.state, duplicate=True)  # at least once: each delivery twice
    w.seed(
        "crm/people",
        [
            {"name": "Wanted", "main_location[email]": "wanted@cust.com"},
            {"name": "Nobody Waits", "main_location[email]": "free@cust.com"},
        ],
    )
    await w.workbooks.state.webhooks.idle()
    (delivery,) = [d for d in w.workbooks.state.webhooks.deliveries if d.trigger_id == 1]
    assert delivery.state == "delivered" and delivery.copies == 2
    jobs = await queued(w)
    assert [(j.mailbox, j.stream) for j in jobs] == [(ANN, Stream.PEOPLE)]  # one, coalesced
    assert await w.services.store.dirty.is_marked(ANN, "people")


async def test_the_route_refuses_what_is_not_a_signed_delivery(world: World) -> None:
    import aiohttp

    from devkit.sandbox.workbooks.webhooks import sign

    w = world
    ann = await w.add_mailbox(ANN)
    await hooks.keep_up(w.services, ann, force=True)
    person = next(s for s in live_subscriptions(w) if s["trigger_id"] == 1)
    url = str(person["callback_url"])
    secret = w.workbooks.state.webhooks.secrets[person["id"]]
    good = b'[{"person": {"id": 1, "main_location[email]": "a@b.com"}}]'

    async def post(body: bytes, signature: str | None, ctype: str = "application/json") -> int:
        headers = {"Content-Type": ctype}
        if signature is not None:
            headers["X-Workbooks-Signature"] = signature
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            return r.status

    assert await post(good, sign(secret, good)) == 200
    assert await post(good, None) == 401
    assert await post(good, sign(secret, good + b"\n")) == 401
    assert await post(b"x" * 1_100_000, sign(secret, b"x" * 1_100_000)) == 413
    for body, status in (
        (b'{"person": {}}', 400),
        (b"[1, 2]", 400),
        (b"not json", 400),
        (b'[{"person": {"id": 1, "id": 2}}]', 400),
        (b"[" * 50 + b"]" * 50, 400),
    ):
        assert await post(body, sign(secret, body)) == status, body
    assert await post(good, sign(secret, good), "text/plain") == 415
    assert await queued(w) == []  # nobody waits on a@b.com; nothing else got through


async def test_a_contacts_push_runs_the_retroactive_stream_after_it(world: World) -> None:
    w = world
    await w.add_mailbox(ANN, internal_domains=["example.com"])
    mid = w.send(ANN, to=["carol@cust.com"], categories=SHARED)
    await w.run(ANN)
    w.graph.sandbox.create_item(
        w.graph.sandbox.state.mailbox(ANN),
        next(
            c for c in w.graph.sandbox.state.mailbox(ANN).containers.values() if c.kind == "contact"
        ),
        {
            "displayName": "Carol",
            "emailAddresses": [{"address": "carol@cust.com"}],
            "categories": SHARED,
        },
    )
    push = await w.run(ANN, Stream.CONTACTS, JobKind.PUSH)
    assert push.counts.get("workbooks_create") == 1 and push.counts.get("retro_queued") == 1
    (job,) = await queued(w)
    assert (job.stream, job.kind, job.reason) == (Stream.PEOPLE, JobKind.DIRTY, "push")
    run = await w.run(ANN, Stream.PEOPLE, JobKind.DIRTY)
    assert run.counts.get("retro_linked") == 1
    record = await w.services.store.emails.get(ANN, mid)
    assert record is not None and record.state == "linked"
    assert utcnow() >= record.processed_at


async def test_repeated_hints_are_remembered_only_once_the_marker_promises_a_follow_up(
    world: World,
) -> None:
    """A second hint while the PEOPLE job waits flags its marker, so the run that takes it reads
    again after the memory window; only then are further hints answered from memory, without
    a storage read, and a record created meanwhile is not missed."""
    w = world
    await w.add_mailbox(ANN, internal_domains=["example.com"])
    memo, dirty = w.services.cache.webhook_memo, w.services.store.dirty
    key = (ANN, str(Stream.PEOPLE))
    w.services.settings.app.webhook_memo_seconds = 30.0
    assert await hooks.hint_people(w.services, ANN, "workbooks webhook") is True
    assert not memo.remembers(key, time.monotonic(), 30.0)  # the marker promises nothing yet
    assert await hooks.hint_people(w.services, ANN, "workbooks webhook") is False
    assert memo.remembers(key, time.monotonic(), 30.0)
    reads: list[str] = []
    original = dirty.place  # every marker write or read of the webhook path goes through it

    async def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append("marker")
        return await original(*args, **kwargs)

    dirty.place = counting  # type: ignore[method-assign]
    try:
        assert await hooks.hint_people(w.services, ANN, "workbooks webhook") is False
    finally:
        del dirty.place
    assert reads == []  # answered from memory
    taken = await dirty.take(ANN, str(Stream.PEOPLE))
    assert taken is not None and taken.remembered  # the run that takes it reads again later
    jobs = await queued(w)
    assert [(j.mailbox, j.stream) for j in jobs] == [(ANN, Stream.PEOPLE)]


# ------------------------------------------------------------------ doctor


async def test_doctor_says_how_new_records_arrive_and_sees_subscriptions_gone(world: World) -> None:
    """``workbooks.webhooks``: not set up, then every source by webhook, then a subscription
    an admin deleted or disabled in Workbooks; the check reads and never repairs."""
    w = world
    ann = await w.add_mailbox(ANN)
    before = await hooks.doctor_check(w.services, ann)
    assert before.status == "warn" and "not set up yet" in before.message, before
    await hooks.keep_up(w.services, ann, force=True)
    healthy = await hooks.doctor_check(w.services, ann)
    assert healthy.status == "ok", healthy
    assert healthy.message == "webhooks: contact_details, leads, people (3 live in Workbooks)"
    (tenant,) = await w.services.store.workbooks_hooks.tenants()
    ids = {s.source: s.subscription_id for s in tenant.subscriptions}
    w.workbooks.state.tables[SUBS].pop(ids["people"])  # an admin deleted it
    w.workbooks.state.tables[SUBS][ids["leads"]]["enabled"] = False  # and switched one off
    broken = await hooks.doctor_check(w.services, ann)
    assert broken.status == "warn", broken
    assert f"people (subscription {ids['people']}) deleted in Workbooks" in broken.message
    assert f"leads (subscription {ids['leads']}) disabled" in broken.message
    assert "mailboxes enable" in broken.fix
    assert len(live_subscriptions(w)) == 2  # nothing made again by looking
    (after,) = await w.services.store.workbooks_hooks.tenants()
    assert after == tenant


@pytest.mark.parametrize("world", [False], indirect=True)
async def test_doctor_warns_when_the_key_may_not_manage_triggers(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN)
    await hooks.keep_up(w.services, ann, force=True)
    check = await hooks.doctor_check(w.services, ann)
    assert check.status == "warn" and "may not manage triggers" in check.message, check
    assert "within minutes" in check.message and "WORKBOOKS_WEBHOOKS=false" in check.fix


async def test_doctor_accepts_webhooks_turned_off_on_purpose(world: World) -> None:
    w = world
    ann = await w.add_mailbox(ANN)
    w.services.settings.workbooks.webhooks = False
    w.reset_call_counts()
    check = await hooks.doctor_check(w.services, ann)
    assert check.status == "ok" and "WORKBOOKS_WEBHOOKS=false" in check.message, check
    assert w.workbooks_calls() == {}  # nothing to ask Workbooks
    w.services.settings.app.public_base_url = None
    w.services.settings.workbooks.webhooks = True
    check = await hooks.doctor_check(w.services, ann)
    assert check.status == "warn" and "SYNC_PUBLIC_BASE_URL" in check.fix, check
