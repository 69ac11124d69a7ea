"""Graph subscription upkeep as engine work: the renewal sweep, lifecycle events, and the
mailbox add/remove hooks the CLI uses.

Decisions live in ``sync.core.subscriptions``; the Graph calls in ``sync.graph``; this module
carries the decisions out against Graph and state, in an order that makes every step safe to
repeat:

- a new subscription's record (with only the sha256 of its clientState) is stored right after
  Graph confirms it, before anything else happens, so the webhook can map its notifications;
- a record is forgotten only after Graph deleted the subscription (or said 404);
- a failed renew with 404 turns into recreate + catch-up (the subscription lapsed at Graph).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sync.core.doctor import Probe
from sync.core.errors import InvalidRequest, NotFound, SyncError
from sync.core.jobs import Job, JobKind, Stream
from sync.core.state_models import Mailbox, SubscriptionRecord
from sync.core.streams import lifecycle_marker
from sync.core.subscriptions import (
    SUBSCRIBED_STREAMS,
    Action,
    CatchUp,
    Create,
    Delete,
    Renew,
    SubscriptionPolicy,
    hash_client_state,
    plan_lifecycle,
    plan_mailbox,
    plan_removal,
    recreate,
    resource_for,
)
from sync.engine.clients import graph_client
from sync.engine.registry import RunContext, register
from sync.graph import probes
from sync.graph.subscriptions import create_subscription
from sync.runtime import Services

if TYPE_CHECKING:
    from sync.graph.client import GraphClient
    from sync.queues import JobQueue
    from sync.state.store import StateStore

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/api/graph/notifications"
LIFECYCLE_PATH = "/api/graph/lifecycle"


def new_client_state() -> str:
    # 48 random bytes -> 64 URL-safe characters, well under Graph's 128-character limit.
    return secrets.token_urlsafe(48)


@dataclass
class Outcome:
    """What a sweep or lifecycle run did, for the run record and logs."""

    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    catch_ups: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def merge(self, other: Outcome) -> None:
        for name in ("created", "renewed", "deleted", "catch_ups", "failed"):
            getattr(self, name).extend(getattr(other, name))


class SubscriptionManager:
    def __init__(
        self,
        graph: GraphClient,
        state: StateStore,
        *,
        public_base_url: str,
        policy: SubscriptionPolicy,
        queue: JobQueue | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        base = public_base_url.rstrip("/")
        self.graph, self.state, self.policy, self.queue, self.clock = (
            graph,
            state,
            policy,
            queue,
            clock,
        )
        self.notification_url = f"{base}{NOTIFICATIONS_PATH}"
        self.lifecycle_url = f"{base}{LIFECYCLE_PATH}"

    @staticmethod
    def policy_from(subscription_minutes: int, renew_margin_hours: int) -> SubscriptionPolicy:
        return SubscriptionPolicy(
            lifetime=timedelta(minutes=subscription_minutes),
            renew_margin=timedelta(hours=renew_margin_hours),
        )

    # --- entry points -------------------------------------------------------------------------
    async def ensure_mailbox(self, mailbox: Mailbox) -> Outcome:
        """Create/renew/recreate what `mailbox` needs now (the sweep calls this per mailbox)."""
        records = await self.state.subscriptions.list_for_mailbox(mailbox.id)
        actions = plan_mailbox(
            mailbox.id, mailbox.graph_id, mailbox.enabled, records, self.clock(), self.policy
        )
        return await self._run(actions, mailbox.graph_id)

    async def sweep(self, mailboxes: list[Mailbox]) -> Outcome:
        """Renewal sweep over every registered mailbox; one mailbox failing does not stop the
        others.  Records of mailboxes no longer registered are deleted (at Graph too)."""
        total = Outcome()
        for mailbox in mailboxes:
            total.merge(await self.ensure_mailbox(mailbox))
        known = {m.id for m in mailboxes}
        orphans = [r for r in await self.state.subscriptions.list_all() if r.mailbox not in known]
        total.merge(await self._run(list[Action](plan_removal(orphans)), ""))
        return total

    async def remove_mailbox(self, mailbox_id: str) -> Outcome:
        records = await self.state.subscriptions.list_for_mailbox(mailbox_id)
        return await self._run(list[Action](plan_removal(records)), mailbox_id)

    async def handle_lifecycle(
        self, subscription_id: str, event: str, mailbox: Mailbox | None = None
    ) -> Outcome:
        """Act on one lifecycle notification (the LIFECYCLE job calls this)."""
        record = await self.state.subscriptions.get(subscription_id)
        graph_user = mailbox.graph_id if mailbox else (record.mailbox if record else "")
        actions = plan_lifecycle(event, record, graph_user, self.clock(), self.policy)
        return await self._run(actions, graph_user)

    # --- execution -----------------------------------------------------------------------------
    async def _run(self, actions: list[Action], graph_user: str) -> Outcome:
        out = Outcome()
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            try:
                queue[:0] = await self._apply(action, graph_user, out)
            except Exception as exc:
                # One failed action must not stop the rest (e.g. the next stream's renew); the
                # next sweep retries.  Recorded, never silent.
                log.warning("subscription action %s failed: %s", type(action).__name__, exc)
                out.failed.append(f"{type(action).__name__}:{action.mailbox}:{action.stream}")
        return out

    async def _apply(self, action: Action, graph_user: str, out: Outcome) -> list[Action]:
        """Perform one action; return follow-up actions (renew 404 -> recreate)."""
        if isinstance(action, Create):
            out.created.append(await self._create(action))
        elif isinstance(action, Renew):
            return await self._renew(action, graph_user, out)
        elif isinstance(action, Delete):
            await self._delete(action)
            out.deleted.append(action.subscription_id)
        elif isinstance(action, CatchUp):
            await self._catch_up(action)
            out.catch_ups.append(f"{action.mailbox}:{action.stream}")
        return []

    async def _create(self, action: Create) -> str:
        client_state = new_client_state()
        created = await create_subscription(
            self.graph,
            resource=action.resource,
            notification_url=self.notification_url,
            lifecycle_url=self.lifecycle_url,
            expires_at=action.expires_at,
            client_state=client_state,
        )
        record = SubscriptionRecord(
            subscription_id=created.subscription_id,
            mailbox=action.mailbox,
            stream=action.stream.value,
            resource=action.resource,
            client_state_hash=hash_client_state(client_state),
            expires_at=created.expires_at,
            created_at=self.clock(),
        )
        await self.state.subscriptions.put(record)
        return record.subscription_id

    async def _renew(self, action: Renew, graph_user: str, out: Outcome) -> list[Action]:
        record = await self.state.subscriptions.get(action.subscription_id)
        try:
            expires = await self.graph.renew_subscription(action.subscription_id, action.expires_at)
        except NotFound:
            if record is None:
                return []
            return recreate(record, graph_user, self.clock(), self.policy, reason="lapsed")
        if record is not None:
            renewed = record.model_copy(update={"expires_at": expires, "renewed_at": self.clock()})
            await self.state.subscriptions.put(renewed)
        out.renewed.append(action.subscription_id)
        return []

    async def _delete(self, action: Delete) -> None:
        # 404: already gone at Graph (expired, removed); forgetting it is all that is left.
        with contextlib.suppress(NotFound):
            await self.graph.delete_subscription(action.subscription_id)
        await self.state.subscriptions.delete(action.subscription_id)

    async def _catch_up(self, action: CatchUp) -> None:
        if action.full or self.queue is None:
            await self.state.cursors.request_resync(action.mailbox, action.stream, action.reason)
        if self.queue is not None:
            kind = JobKind.RESYNC if action.full else JobKind.DIRTY
            await self.queue.send(
                Job(
                    mailbox=action.mailbox,
                    stream=Stream(action.stream),
                    kind=kind,
                    reason=action.reason,
                )
            )


# ------------------------------------------------------------------ wiring to jobs and the CLI


def manager(services: Services) -> SubscriptionManager:
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


# doctor's test subscription: deleted at once; if that fails it lapses within the hour (Graph
# raises anything under 45 minutes to 45).
TEST_SUBSCRIPTION_MINUTES = 60


async def handshake_test(services: Services, mailbox: Mailbox) -> tuple[Probe, Probe | None]:
    """Create a short test subscription on the mailbox's contacts, then delete it: Graph runs
    the validation handshake against the notification and lifecycle URLs before it answers,
    so its answer says whether Graph can reach the webhook.  (what Graph answered to the
    create, to the delete; None when nothing was created).  Never recorded in state: should a
    notification for it arrive meanwhile, the webhook drops it as an unknown subscription."""
    upkeep = manager(services)
    now = upkeep.clock()
    try:
        created = await create_subscription(
            upkeep.graph,
            resource=resource_for(Stream.CONTACTS, mailbox.graph_id),
            notification_url=upkeep.notification_url,
            lifecycle_url=upkeep.lifecycle_url,
            expires_at=now + timedelta(minutes=TEST_SUBSCRIPTION_MINUTES),
            client_state=new_client_state(),
        )
    except SyncError as exc:
        return probes.failure(exc), None
    try:
        with contextlib.suppress(NotFound):  # already gone is what we wanted
            await upkeep.graph.delete_subscription(created.subscription_id)
    except SyncError as exc:
        log.warning("test subscription %s not deleted: %s", created.subscription_id, exc)
        return Probe(True, note=f" {created.subscription_id}"), probes.failure(exc)
    return Probe(True), Probe(True)


async def ensure_for_mailbox(services: Services, mailbox: Mailbox) -> Outcome:
    outcome = await manager(services).ensure_mailbox(mailbox)
    await _workbooks_hooks(services, mailbox, outcome, force=True)
    return outcome


async def remove_for_mailbox(services: Services, mailbox_id: str) -> Outcome:
    outcome = await manager(services).remove_mailbox(mailbox_id)
    await _workbooks_hooks(services, mailbox_id, outcome)
    return outcome


async def _workbooks_hooks(
    services: Services, mailbox: Mailbox | str, outcome: Outcome, *, force: bool = False
) -> None:
    """The Workbooks webhooks of the mailbox's tenant, kept up with its Graph subscriptions
    (``sync.engine.workbooks_webhooks``); a failure is reported like a failed Graph action."""
    from sync.engine import workbooks_webhooks as hooks

    mailbox_id = mailbox if isinstance(mailbox, str) else mailbox.id
    try:
        if isinstance(mailbox, str):
            await hooks.release(services, mailbox)
        else:
            await hooks.keep_up(services, mailbox, force=force)
    except Exception as exc:
        log.warning("workbooks webhook upkeep for %s failed: %s", mailbox_id, type(exc).__name__)
        outcome.failed.append(hooks.failure_note(mailbox_id, exc))


@register(Stream.SUBSCRIPTIONS)
async def renew(ctx: RunContext) -> None:
    """RENEW (timer) or any other subscriptions job: create what is missing, renew what is due
    (the Workbooks webhooks of the mailbox's tenant too)."""
    outcome = await manager(ctx.services).ensure_mailbox(ctx.mailbox)
    await _workbooks_hooks(ctx.services, ctx.mailbox, outcome)
    _record(ctx, outcome)
    # The mailbox's run history is trimmed here, every few hours, rather than by the sync
    # runs themselves: a run's only write to the history is its own row.
    pruned = await ctx.services.store.runs.prune(ctx.mailbox.id)
    if pruned:
        ctx.count("runs_pruned", pruned)


async def lifecycle(ctx: RunContext) -> None:
    """reauthorizationRequired -> renew; subscriptionRemoved -> recreate + catch up;
    missed -> catch up (the decisions are in sync.core.subscriptions.plan_lifecycle)."""
    job = ctx.job
    if not job.subscription_id or not job.lifecycle_event:
        ctx.messages.append("lifecycle job without subscription id or event; ignored")
        return
    # Clear first: a repeat delivery from now on means a new event and queues a new job.
    marker = lifecycle_marker(job.subscription_id, job.lifecycle_event)
    await ctx.services.store.dirty.clear(job.mailbox, marker)
    outcome = await manager(ctx.services).handle_lifecycle(
        job.subscription_id, job.lifecycle_event, ctx.mailbox
    )
    _record(ctx, outcome)


for _stream in SUBSCRIBED_STREAMS:
    register(_stream, JobKind.LIFECYCLE)(lifecycle)
