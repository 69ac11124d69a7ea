"""Graph webhook requests, without I/O: the body's shape, and what the intake remembers.

Graph POSTs a ``changeNotificationCollection`` (``{"value": [...]}``); one POST may mix items of
several subscriptions.  There is no SDK model for it (msgraph-sdk-python#1322), and the webhook
must not import the SDK anyway, so the shape is checked here by hand, after the body was read by
``sync.core.bodies.read_json`` (size, content type, depth, numbers, duplicate keys).  Everything
that arrives is untrusted: the mailbox is never taken from ``resource`` (Graph sends GUIDs in
varying case and shape there) but from our stored subscription record, looked up by
``subscriptionId``.  A body Graph would never send (an item that is not an object, a field of
the wrong type, an id too long to be Graph's) is a 400 for the whole request; Graph adds fields
over time, so fields we do not read are left alone.

The lookups are what an anonymous caller can make us pay for, so they are bounded: answers are
remembered (``SubscriptionCache``: records for ``HIT_SECONDS``, misses for ``MISS_SECONDS``), and
one request looks up at most ``MAX_LOOKUPS`` distinct subscriptions this instance does not
remember, ``LOOKUP_CONCURRENCY`` at a time (``plan_lookups``); items beyond that are dropped
unverified and counted.  A Graph batch names a handful of subscriptions, those of the last
minutes are remembered, and the reconciliation timer re-reads every stream anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sync.core.bodies import BodyError, BodyLimits, expect_object, optional_str
from sync.core.state_models import SubscriptionRecord

LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
MAX_ITEMS = 1000  # Graph batches far fewer; more is not a Graph request
MAX_DEPTH = 8  # {"value": [{"resourceData": {...}}]} is 4 levels deep
MAX_STRING_CHARS = 64 * 1024  # rich notifications carry encrypted content; ours do not
MAX_LOOKUPS = 16  # distinct subscriptions not in memory, looked up per request: one round
LOOKUP_CONCURRENCY = 16  # storage reads in flight per request
# A record's mailbox, stream and clientState never change (renewal moves only its expiry), so a
# record can be trusted for minutes; the longer it is, the fewer lookups real traffic needs.
HIT_SECONDS = 300.0
# Short: the record of a subscription created a moment ago may be written just after Graph's
# first notification for it, which must not be dropped for long.
MISS_SECONDS = 10.0
CACHE_LIMIT = 10_000  # records, and separately misses, one instance remembers
# A request that needs a lookup loads every subscription in one query instead (at most once
# per this long per instance): a tenant of 1,000 mailboxes has 3,000 subscriptions, whose
# notifications would otherwise cost one point read each whenever an instance starts or its
# records expire.  A flood of made-up ids can cause one such load per period, no more.
DIRECTORY_SECONDS = HIT_SECONDS

# Fields Graph sends as strings, with the longest value we take (ids are GUIDs, the client
# state is ours and at most 128 characters).
_STRING_FIELDS = {
    "subscriptionId": 128,
    "clientState": 256,
    "changeType": 64,
    "lifecycleEvent": 64,
    "resource": 2048,
    "tenantId": 64,
    "subscriptionExpirationDateTime": 64,
    "id": 128,
}


def body_limits(max_bytes: int) -> BodyLimits:
    """How the webhook reads a body: Graph always sends ``application/json``."""
    return BodyLimits(
        max_bytes=max_bytes,
        max_depth=MAX_DEPTH,
        max_string_chars=MAX_STRING_CHARS,
        require_json_type=True,
    )


@dataclass(frozen=True)
class NotificationItem:
    subscription_id: str
    client_state: str
    change_type: str
    resource_id: str
    lifecycle_event: str | None


def check_validation_token(token: str, max_chars: int) -> str:
    """The token to echo, or BodyError. Graph's token is opaque; we only insist that it is a
    plain printable string of sane length, since we echo it back verbatim as text/plain."""
    if not token:
        raise BodyError(400, "empty validationToken")
    if len(token) > max_chars:
        raise BodyError(400, f"validationToken longer than {max_chars} characters")
    if not token.isprintable():
        raise BodyError(400, "validationToken must be a plain printable string")
    return token


def parse_collection(payload: Any) -> list[NotificationItem]:
    """Shape-check a notification body (as ``read_json`` returned it); BodyError if it is not
    one Graph sends."""
    body = expect_object(payload)
    raw_items = body.get("value")
    if not isinstance(raw_items, list):
        raise BodyError(400, "body must be an object with a 'value' array")
    if len(raw_items) > MAX_ITEMS:
        raise BodyError(413, f"more than {MAX_ITEMS} notifications in one request")
    return [_item(raw, f"value[{i}].") for i, raw in enumerate(raw_items)]


def _item(raw: Any, where: str) -> NotificationItem:
    item = expect_object(raw, where.rstrip("."))
    for key, limit in _STRING_FIELDS.items():
        value = item.get(key)
        if value is not None and (type(value) is not str or len(value) > limit):
            optional_str(item, key, limit, where)  # raises, naming the field
    sub = item.get("subscriptionId")
    if not sub:
        raise BodyError(400, f"'{where}subscriptionId' is required")
    data = item.get("resourceData")
    resource_id = ""
    if data is not None:
        fields = expect_object(data, f"'{where}resourceData'")
        resource_id = optional_str(fields, "id", 1024, f"{where}resourceData.") or ""
    return NotificationItem(
        subscription_id=sub,
        client_state=item.get("clientState") or "",
        change_type=item.get("changeType") or "",
        resource_id=resource_id,
        lifecycle_event=item.get("lifecycleEvent") or None,
    )


class SubscriptionCache:
    """What this instance learnt from subscription lookups, on the monotonic clock: records
    for ``hit_seconds``, ids that have none for ``miss_seconds``.  Each kind holds at most
    ``limit`` entries; the oldest goes first, so a flood of made-up ids can only push out
    other made-up ids, never a real subscription."""

    def __init__(
        self,
        hit_seconds: float = HIT_SECONDS,
        miss_seconds: float = MISS_SECONDS,
        limit: int = CACHE_LIMIT,
    ) -> None:
        self.hit_seconds = hit_seconds
        self.miss_seconds = miss_seconds
        self.limit = limit
        self._hits: dict[str, tuple[float, SubscriptionRecord]] = {}
        self._misses: dict[str, float] = {}
        self._loaded_at: float | None = None  # when the last directory load began

    def load_due(self, now: float, every: float = DIRECTORY_SECONDS) -> bool:
        """Whether a request that needs a lookup should load every subscription first: never
        loaded, or the last load began ``every`` seconds ago (its records have expired)."""
        return self._loaded_at is None or now - self._loaded_at >= every

    def loading(self, now: float) -> None:
        """A directory load begins; failed or not, the next is due a period later."""
        self._loaded_at = now

    def remember_all(self, records: Iterable[SubscriptionRecord], now: float) -> int:
        """Remember the records of a directory load (up to the limit); returns how many."""
        count = 0
        for record in records:
            if count >= self.limit:
                break
            self.remember(record.subscription_id, record, now)
            count += 1
        return count

    def lookup(self, sub_id: str, now: float) -> tuple[bool, SubscriptionRecord | None]:
        """(remembered, record): ``(True, None)`` is a remembered miss."""
        hit = self._hits.get(sub_id)
        if hit is not None and now - hit[0] < self.hit_seconds:
            return True, hit[1]
        missed = self._misses.get(sub_id)
        if missed is not None and now - missed < self.miss_seconds:
            return True, None
        return False, None

    def remember(self, sub_id: str, record: SubscriptionRecord | None, now: float) -> None:
        if record is not None:
            self._misses.pop(sub_id, None)
            _put_newest(self._hits, sub_id, (now, record), self.limit)
        else:
            self._hits.pop(sub_id, None)
            _put_newest(self._misses, sub_id, now, self.limit)

    def __len__(self) -> int:
        return len(self._hits) + len(self._misses)

    def clear(self) -> None:
        self._hits.clear()
        self._misses.clear()
        self._loaded_at = None


def _put_newest(entries: dict[str, Any], key: str, value: Any, limit: int) -> None:
    entries.pop(key, None)  # re-inserting moves the key to the newest end
    while len(entries) >= limit:
        del entries[next(iter(entries))]
    entries[key] = value


@dataclass(frozen=True)
class LookupPlan:
    known: dict[str, SubscriptionRecord | None]  # answered from memory (None: a known miss)
    fetch: list[str]  # to look up in storage, at most MAX_LOOKUPS
    skipped: frozenset[str]  # over the budget: their items are dropped unverified


def plan_lookups(
    sub_ids: Iterable[str],
    remembered: Callable[[str], tuple[bool, SubscriptionRecord | None]],
    budget: int = MAX_LOOKUPS,
) -> LookupPlan:
    """Which of a request's subscriptions come from memory, which from storage, and which are
    not looked up at all; each distinct id is considered once, in the order of the body."""
    known: dict[str, SubscriptionRecord | None] = {}
    fetch: list[str] = []
    skipped: set[str] = set()
    for sub_id in dict.fromkeys(sub_ids):
        hit, record = remembered(sub_id)
        if hit:
            known[sub_id] = record
        elif len(fetch) < budget:
            fetch.append(sub_id)
        else:
            skipped.add(sub_id)
    return LookupPlan(known, fetch, frozenset(skipped))
