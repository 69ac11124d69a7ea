"""Graph subscription upkeep as engine work: the renewal sweep, lifecycle events, and the
mailbox add/remove hooks the CLI uses.  Decisions live in ``sync.core.subscriptions``; the
I/O sequencing in ``sync.graph.subscriptions``; this module only wires them to state and jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.core.errors import InvalidRequest
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import Mailbox
from sync.core.subscriptions import SUBSCRIBED_STREAMS
from sync.engine.clients import graph_client
from sync.engine.registry import RunContext, register
from sync.runtime import Services

if TYPE_CHECKING:
    from sync.graph.subscriptions import Outcome, SubscriptionManager


def manager(services: Services) -> SubscriptionManager:
    from sync.graph.subscriptions import SubscriptionManager

    base = services.settings.app.public_base_url
    if not base:
        raise InvalidRequest(
            "SYNC_PUBLIC_BASE_URL is not set: Graph needs a public https URL for notifications"
        )
    graph = services.settings.graph
    return SubscriptionManager(
        graph_client(services),
        services.store,
        public_base_url=base,
        policy=SubscriptionManager.policy_from(
            graph.subscription_minutes, graph.renew_margin_hours
        ),
        queue=services.queue,
    )


def _record(ctx: RunContext, outcome: Outcome) -> None:
    for name in ("created", "renewed", "deleted", "catch_ups", "failed"):
        n = len(getattr(outcome, name))
        if n:
            ctx.count(f"subscriptions_{name}", n)
    if outcome.failed:
        ctx.messages.append("failed: " + ", ".join(outcome.failed))


async def ensure_for_mailbox(services: Services, mailbox: Mailbox) -> Outcome:
    return await manager(services).ensure_mailbox(mailbox)


async def remove_for_mailbox(services: Services, mailbox_id: str) -> Outcome:
    return await manager(services).remove_mailbox(mailbox_id)


@register(Stream.SUBSCRIPTIONS)
async def renew(ctx: RunContext) -> None:
    """RENEW (timer) or any other subscriptions job: create what is missing, renew what is due."""
    _record(ctx, await manager(ctx.services).ensure_mailbox(ctx.mailbox))


async def lifecycle(ctx: RunContext) -> None:
    """reauthorizationRequired -> renew; subscriptionRemoved -> recreate + catch up;
    missed -> catch up (the decisions are in sync.core.subscriptions.plan_lifecycle)."""
    job = ctx.job
    if not job.subscription_id or not job.lifecycle_event:
        ctx.messages.append("lifecycle job without subscription id or event; ignored")
        return
    from sync.webhook import lifecycle_marker

    # Clear first: a repeat delivery from now on means a new event and queues a new job.
    marker = lifecycle_marker(job.subscription_id, job.lifecycle_event)
    await ctx.services.store.dirty.clear(job.mailbox, marker)
    outcome = await manager(ctx.services).handle_lifecycle(
        job.subscription_id, job.lifecycle_event, ctx.mailbox
    )
    _record(ctx, outcome)


for _stream in SUBSCRIBED_STREAMS:
    register(_stream, JobKind.LIFECYCLE)(lifecycle)
