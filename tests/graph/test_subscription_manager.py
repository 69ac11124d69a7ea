"""The subscription manager: real client -> sandbox (with validation handshakes against a real
receiver) and real state in Azurite."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.state import Mailbox as SandboxMailbox
from sync.core.jobs import Stream
from sync.core.state_models import Mailbox
from sync.core.subscriptions import SubscriptionPolicy
from sync.engine.subscriptions import SubscriptionManager
from sync.graph.client import GraphClient
from tests.graph.conftest import UPN, Receiver

POLICY = SubscriptionPolicy(lifetime=timedelta(days=6), renew_margin=timedelta(hours=48))


def account(enabled: bool = True) -> Mailbox:
    return Mailbox(
        id=UPN,
        workbooks_url="https://secure.workbooks.com",
        api_key_ref="env:WB_KEY",
        enabled=enabled,
    )


def manager(
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
    queue: Any = None,
    policy: SubscriptionPolicy = POLICY,
) -> SubscriptionManager:
    return SubscriptionManager(
        graph, store, public_base_url=receiver.origin, policy=policy, queue=queue
    )


async def test_ensure_creates_three_validated_subscriptions(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
) -> None:
    out = await manager(graph, store, receiver).ensure_mailbox(account())
    assert len(out.created) == 3 and out.failed == []
    assert receiver.validations == 6  # notification + lifecycle URL per subscription
    subs = sandbox.sandbox.state.subscriptions
    records = await store.subscriptions.list_for_mailbox(UPN)
    assert {r.stream for r in records} == {"sent", "contacts", "events"}
    for rec in records:
        live = subs[rec.subscription_id]
        assert live.lifecycle_url and live.lifecycle_url.endswith("/api/graph/lifecycle")
        assert live.client_state and len(live.client_state) <= 128
        assert rec.client_state_hash == hashlib.sha256(live.client_state.encode()).hexdigest()
        assert live.client_state not in rec.model_dump_json()  # never the secret itself
    assert {s.resource for s in subs.values()} == {
        f"/users/{UPN}/mailFolders('sentitems')/messages",
        f"/users/{UPN}/contacts",
        f"/users/{UPN}/events",
    }
    # Idempotent: a second run does nothing.
    again = await manager(graph, store, receiver).ensure_mailbox(account())
    assert again.created == again.renewed == again.deleted == []


async def test_validation_failure_is_reported_and_nothing_stored(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
) -> None:
    receiver.mode = "wrong"
    out = await manager(graph, store, receiver).ensure_mailbox(account())
    assert out.created == [] and len(out.failed) == 3
    assert await store.subscriptions.list_for_mailbox(UPN) == []


async def test_renewal_sweep_renews_inside_margin(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
) -> None:
    short = SubscriptionPolicy(lifetime=timedelta(days=1), renew_margin=timedelta(hours=48))
    await manager(graph, store, receiver, policy=short).ensure_mailbox(account())
    before = {r.subscription_id: r.expires_at for r in await store.subscriptions.list_all()}
    out = await manager(graph, store, receiver).sweep([account()])
    assert sorted(out.renewed) == sorted(before) and out.created == []
    for rec in await store.subscriptions.list_all():
        assert rec.expires_at > before[rec.subscription_id] + timedelta(days=4)
        assert rec.renewed_at is not None
        live = sandbox.sandbox.state.subscriptions[rec.subscription_id]
        assert abs((live.expires - rec.expires_at).total_seconds()) < 1


async def test_renew_404_recreates_and_queues_catch_up(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
    job_queue: Any,
) -> None:
    short = SubscriptionPolicy(lifetime=timedelta(days=1), renew_margin=timedelta(hours=48))
    await manager(graph, store, receiver, policy=short).ensure_mailbox(account())
    contacts = next(r for r in await store.subscriptions.list_all() if r.stream == "contacts")
    del sandbox.sandbox.state.subscriptions[contacts.subscription_id]  # lapsed at Graph
    out = await manager(graph, store, receiver, job_queue).sweep([account()])
    assert len(out.renewed) == 2 and len(out.created) == 1
    assert out.catch_ups == [f"{UPN}:{Stream.CONTACTS}"]
    assert await store.subscriptions.get(contacts.subscription_id) is None
    streams = {r.stream for r in await store.subscriptions.list_for_mailbox(UPN)}
    assert streams == {"sent", "contacts", "events"}
    assert await job_queue.depth() == 1


@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
async def test_lifecycle_events(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
    job_queue: Any,
    event: str,
) -> None:
    mgr = manager(graph, store, receiver, job_queue)
    await mgr.ensure_mailbox(account())
    sent = next(r for r in await store.subscriptions.list_all() if r.stream == "sent")
    # Graph sends the lifecycle notification; the webhook would enqueue a LIFECYCLE job whose
    # handler calls handle_lifecycle with what the notification said.
    live = sandbox.sandbox.state.subscriptions[sent.subscription_id]
    assert sandbox.sandbox.notifier.lifecycle(live, event)
    if event == "subscriptionRemoved":
        del sandbox.sandbox.state.subscriptions[sent.subscription_id]
    await receiver.wait_for(1, "lifecycle")
    note = receiver.lifecycle[0]
    assert note["lifecycleEvent"] == event
    out = await mgr.handle_lifecycle(note["subscriptionId"], note["lifecycleEvent"], account())
    records = await store.subscriptions.list_for_mailbox(UPN)
    if event == "reauthorizationRequired":
        assert out.renewed == [sent.subscription_id] and await job_queue.depth() == 0
    elif event == "subscriptionRemoved":
        assert len(out.created) == 1 and out.catch_ups == [f"{UPN}:sent"]
        assert sent.subscription_id not in {r.subscription_id for r in records}
        assert out.created[0] in sandbox.sandbox.state.subscriptions
        assert await job_queue.depth() == 1
    else:
        assert out.catch_ups == [f"{UPN}:sent"] and out.created == []
        cursor = await store.cursors.get(UPN, "sent")
        assert cursor.resync_requested
        assert await job_queue.depth() == 1
    assert len(records) == 3


async def test_removing_mailbox_deletes_its_subscriptions(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
) -> None:
    mgr = manager(graph, store, receiver)
    await mgr.ensure_mailbox(account())
    out = await mgr.remove_mailbox(UPN)
    assert len(out.deleted) == 3
    assert sandbox.sandbox.state.subscriptions == {}
    assert await store.subscriptions.list_for_mailbox(UPN) == []


async def test_sweep_deletes_subscriptions_of_unregistered_mailboxes(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    store: Any,
    receiver: Receiver,
) -> None:
    mgr = manager(graph, store, receiver)
    await mgr.ensure_mailbox(account())
    out = await mgr.sweep([])  # the mailbox was unregistered
    assert len(out.deleted) == 3 and sandbox.sandbox.state.subscriptions == {}
    assert await store.subscriptions.list_all() == []
