"""Graph subscription upkeep as pure decisions: stored records + now -> actions.

No I/O and no clock reads: `sync.engine.subscriptions` loads the records, calls these functions
and carries out the actions in order.  Rules (graph.md §1.3, §1.10, §1.11, "Implications" 5):

- Each enabled mailbox has exactly one subscription for sent items, contacts and events.
  To Do is polled (Graph has no app-only To Do subscriptions), so it is never subscribed.
- A subscription is renewed once less than `renew_margin` of its life remains.  With the
  defaults (6-day lifetime, 48 h margin, a sweep every 4 h) a subscription gets about twelve
  sweeps' worth of chances to renew before it would lapse (48 h / 4 h = 12).
- An expired record, or a renew answered 404, means the subscription is gone: recreate it and
  catch the stream up with delta, because notifications for the gap were lost.
- Duplicate records for one stream keep the one that lives longest; the others are deleted.
- Lifecycle events: reauthorizationRequired -> renew (a PATCH with a new expiry also
  reauthorizes); subscriptionRemoved -> recreate + catch up; missed -> full resync of the stream.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sync.core.jobs import Stream
from sync.core.state_models import SubscriptionRecord

SUBSCRIBED_STREAMS: tuple[Stream, ...] = (Stream.SENT, Stream.CONTACTS, Stream.EVENTS)


def hash_client_state(client_state: str) -> str:
    """What is stored of a subscription's clientState: its SHA-256, never the secret itself.
    The webhook compares this digest in constant time with the digest of what Graph sends."""
    return hashlib.sha256(client_state.encode("utf-8")).hexdigest()


# Resource paths per stream (graph.md §1.1); `{user}` is the Graph user id or UPN.
RESOURCES: dict[Stream, str] = {
    Stream.SENT: "/users/{user}/mailFolders('sentitems')/messages",
    Stream.CONTACTS: "/users/{user}/contacts",
    Stream.EVENTS: "/users/{user}/events",
}
CHANGE_TYPES = "created,updated,deleted"
# Basic Outlook subscriptions: live Graph refuses more than 10,070 minutes ("Subscription
# expiration can only be 10070 minutes in the future."), its docs say 10,080 (graph.md §1.3).
# GRAPH_SUBSCRIPTION_MINUTES is validated against the same number (sync.settings).
MAX_LIFETIME = timedelta(minutes=10_070)


@dataclass(frozen=True)
class SubscriptionPolicy:
    lifetime: timedelta = timedelta(minutes=8_640)
    renew_margin: timedelta = timedelta(hours=48)

    def expiry(self, now: datetime) -> datetime:
        return now + min(self.lifetime, MAX_LIFETIME)


@dataclass(frozen=True)
class Create:
    mailbox: str
    stream: Stream
    resource: str
    expires_at: datetime
    reason: str


@dataclass(frozen=True)
class Renew:
    subscription_id: str
    mailbox: str
    stream: Stream
    expires_at: datetime
    reason: str


@dataclass(frozen=True)
class Delete:
    """Delete at Graph (404 counts as done) and forget the record."""

    subscription_id: str
    mailbox: str
    stream: str
    reason: str


@dataclass(frozen=True)
class CatchUp:
    """Run the stream from its stored delta link (or a full resync when `full`)."""

    mailbox: str
    stream: Stream
    full: bool
    reason: str


Action = Create | Renew | Delete | CatchUp


def resource_for(stream: Stream, graph_user: str) -> str:
    return RESOURCES[stream].format(user=graph_user)


def _stream(value: str) -> Stream | None:
    try:
        stream = Stream(value)
    except ValueError:
        return None
    return stream if stream in SUBSCRIBED_STREAMS else None


def plan_mailbox(
    mailbox: str,
    graph_user: str,
    enabled: bool,
    records: list[SubscriptionRecord],
    now: datetime,
    policy: SubscriptionPolicy,
) -> list[Action]:
    """Actions that bring one mailbox's subscriptions to the desired state."""
    if not enabled:
        return [Delete(r.subscription_id, mailbox, r.stream, "mailbox disabled") for r in records]
    actions: list[Action] = []
    by_stream: dict[Stream, list[SubscriptionRecord]] = {}
    for rec in records:
        stream = _stream(rec.stream)
        if stream is None:
            actions.append(
                Delete(rec.subscription_id, mailbox, rec.stream, "not a subscribed stream")
            )
        else:
            by_stream.setdefault(stream, []).append(rec)
    for stream in SUBSCRIBED_STREAMS:
        actions.extend(
            _plan_stream(mailbox, graph_user, stream, by_stream.get(stream, []), now, policy)
        )
    return actions


def _plan_stream(
    mailbox: str,
    graph_user: str,
    stream: Stream,
    records: list[SubscriptionRecord],
    now: datetime,
    policy: SubscriptionPolicy,
) -> list[Action]:
    resource = resource_for(stream, graph_user)
    if not records:
        return [Create(mailbox, stream, resource, policy.expiry(now), "missing")]
    keep, *extra = sorted(records, key=lambda r: r.expires_at, reverse=True)
    actions: list[Action] = [Delete(r.subscription_id, mailbox, stream, "duplicate") for r in extra]
    if keep.expires_at <= now:
        actions += recreate(keep, graph_user, now, policy, reason="expired")
    elif keep.expires_at - now <= policy.renew_margin:
        actions.append(
            Renew(keep.subscription_id, mailbox, stream, policy.expiry(now), "within renew margin")
        )
    return actions


def recreate(
    record: SubscriptionRecord,
    graph_user: str,
    now: datetime,
    policy: SubscriptionPolicy,
    *,
    reason: str,
) -> list[Action]:
    """The subscription is gone at Graph: forget it, create a new one, catch the stream up."""
    stream = _stream(record.stream)
    forget = Delete(record.subscription_id, record.mailbox, record.stream, reason)
    if stream is None:
        return [forget]
    return [
        forget,
        Create(
            record.mailbox, stream, resource_for(stream, graph_user), policy.expiry(now), reason
        ),
        CatchUp(record.mailbox, stream, full=False, reason=f"subscription {reason}"),
    ]


def plan_lifecycle(
    event: str,
    record: SubscriptionRecord | None,
    graph_user: str,
    now: datetime,
    policy: SubscriptionPolicy,
) -> list[Action]:
    """Actions for one lifecycle notification about `record` (None: not ours any more)."""
    if record is None:
        return []
    stream = _stream(record.stream)
    if stream is None:
        return [Delete(record.subscription_id, record.mailbox, record.stream, "unknown stream")]
    if event == "reauthorizationRequired":
        return [Renew(record.subscription_id, record.mailbox, stream, policy.expiry(now), event)]
    if event == "subscriptionRemoved":
        return recreate(record, graph_user, now, policy, reason="removed")
    if event == "missed":
        # Graph: "do a full resync of the resource" (graph.md §1.10).
        return [CatchUp(record.mailbox, stream, full=True, reason="notifications missed")]
    return []


def plan_removal(records: list[SubscriptionRecord]) -> list[Delete]:
    """A mailbox leaves the sync: delete all of its subscriptions."""
    return [Delete(r.subscription_id, r.mailbox, r.stream, "mailbox removed") for r in records]
