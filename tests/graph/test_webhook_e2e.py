"""End to end: sandbox Graph -> HTTP -> the webhook intake (`sync.webhook.handle`) -> queue.

Subscriptions are created by the real manager, so the validation handshake is answered by the
real intake; a notification delivered three times yields exactly one DIRTY job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.state import Mailbox as SandboxMailbox
from sync.core.state_models import Mailbox
from sync.core.subscriptions import SubscriptionPolicy
from sync.engine.subscriptions import SubscriptionManager
from sync.graph.client import GraphClient
from tests.graph.conftest import UPN
from tests.support.local import serving
from tests.support.world import webhook_app


@pytest.fixture
async def intake(services: Any) -> AsyncIterator[str]:
    """Serve the webhook routes over HTTP, as the Functions host would."""
    async with serving(webhook_app(services)) as origin:
        yield origin


async def test_triple_delivery_gives_one_job_per_dirty_stream(
    sandbox: SandboxHandle,
    mailbox: SandboxMailbox,
    graph: GraphClient,
    services: Any,
    intake: str,
) -> None:
    policy = SubscriptionPolicy(lifetime=timedelta(days=6), renew_margin=timedelta(hours=48))
    mgr = SubscriptionManager(graph, services.store, public_base_url=intake, policy=policy)
    account = Mailbox(
        id=UPN, workbooks_url="https://secure.workbooks.com", api_key_ref="env:WB_KEY"
    )
    out = await mgr.ensure_mailbox(account)
    assert len(out.created) == 3, out.failed  # handshakes answered by the real intake

    sb = sandbox.sandbox
    sb.config.notify_duplicates = 2  # every notification POSTed three times
    sent = sb.state.container(mailbox, "message", "sentitems")
    assert sent is not None
    sb.create_item(mailbox, sent, {"subject": "hello", "categories": ["Workbooks"]})
    await sb.notifier.drain()
    posts = [d for d in sb.notifier.deliveries if d.url.endswith("/notifications")]
    assert len(posts) == 3 and all(d.status == 202 for d in posts)
    assert await services.queue.depth() == 1

    # A lifecycle event reaches the lifecycle URL and becomes one LIFECYCLE job.
    sb.config.notify_duplicates = 0
    record = (await services.store.subscriptions.list_for_mailbox(UPN))[0]
    assert sb.notifier.lifecycle(sb.state.subscriptions[record.subscription_id], "missed")
    await sb.notifier.drain()
    assert [d.status for d in sb.notifier.deliveries if d.url.endswith("/lifecycle")] == [202]
    assert await services.queue.depth() == 2
