"""The pure subscription decisions: records + now -> actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync.core.jobs import Stream
from sync.core.state_models import SubscriptionRecord
from sync.core.subscriptions import (
    MAX_LIFETIME,
    CatchUp,
    Create,
    Delete,
    Renew,
    SubscriptionPolicy,
    plan_lifecycle,
    plan_mailbox,
    plan_removal,
)
from sync.settings import MAX_SUBSCRIPTION_MINUTES

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = SubscriptionPolicy(lifetime=timedelta(days=6), renew_margin=timedelta(hours=48))
MB = "ann@example.com"


def rec(stream: str, expires_in: timedelta, sub_id: str | None = None) -> SubscriptionRecord:
    return SubscriptionRecord(
        subscription_id=sub_id or f"s-{stream}-{expires_in.total_seconds()}",
        mailbox=MB,
        stream=stream,
        resource=f"/users/{MB}/{stream}",
        client_state_hash="0" * 64,
        expires_at=NOW + expires_in,
    )


def healthy() -> list[SubscriptionRecord]:
    return [rec(s, timedelta(days=5)) for s in ("sent", "contacts", "events")]


def test_new_mailbox_gets_three_subscriptions_and_no_todo() -> None:
    actions = plan_mailbox(MB, "guid-1", True, [], NOW, POLICY)
    assert [type(a) for a in actions] == [Create, Create, Create]
    creates = [a for a in actions if isinstance(a, Create)]
    assert {a.stream for a in creates} == {Stream.SENT, Stream.CONTACTS, Stream.EVENTS}
    assert creates[0].resource == "/users/guid-1/mailFolders('sentitems')/messages"
    assert all(a.expires_at == NOW + timedelta(days=6) for a in creates)


def test_healthy_subscriptions_need_nothing() -> None:
    assert plan_mailbox(MB, MB, True, healthy(), NOW, POLICY) == []


def test_renew_inside_margin_only() -> None:
    records = healthy()
    records[1] = rec("contacts", timedelta(hours=47), "c1")
    records[2] = rec("events", timedelta(hours=49), "e1")
    actions = plan_mailbox(MB, MB, True, records, NOW, POLICY)
    assert actions == [
        Renew("c1", MB, Stream.CONTACTS, NOW + timedelta(days=6), "within renew margin")
    ]


def test_expired_record_is_recreated_with_catch_up() -> None:
    records = healthy()
    records[0] = rec("sent", timedelta(minutes=-1), "old")
    actions = plan_mailbox(MB, MB, True, records, NOW, POLICY)
    assert [type(a) for a in actions] == [Delete, Create, CatchUp]
    assert actions[0] == Delete("old", MB, "sent", "expired")
    catch_up = actions[2]
    assert isinstance(catch_up, CatchUp) and not catch_up.full
    assert catch_up.stream is Stream.SENT


def test_duplicates_keep_the_longest_lived() -> None:
    records = [*healthy(), rec("sent", timedelta(days=1), "dup")]
    actions = plan_mailbox(MB, MB, True, records, NOW, POLICY)
    assert actions == [Delete("dup", MB, Stream.SENT, "duplicate")]


def test_disabled_mailbox_and_stray_streams_are_deleted() -> None:
    assert [type(a) for a in plan_mailbox(MB, MB, False, healthy(), NOW, POLICY)] == [Delete] * 3
    stray = [*healthy(), rec("todo", timedelta(days=3), "t1")]
    assert plan_mailbox(MB, MB, True, stray, NOW, POLICY) == [
        Delete("t1", MB, "todo", "not a subscribed stream")
    ]


def test_lifecycle_events() -> None:
    record = rec("events", timedelta(days=3), "e1")
    reauth = plan_lifecycle("reauthorizationRequired", record, MB, NOW, POLICY)
    assert reauth == [
        Renew("e1", MB, Stream.EVENTS, NOW + timedelta(days=6), "reauthorizationRequired")
    ]
    removed = plan_lifecycle("subscriptionRemoved", record, MB, NOW, POLICY)
    assert [type(a) for a in removed] == [Delete, Create, CatchUp]
    missed = plan_lifecycle("missed", record, MB, NOW, POLICY)
    assert missed == [CatchUp(MB, Stream.EVENTS, full=True, reason="notifications missed")]
    assert plan_lifecycle("missed", None, MB, NOW, POLICY) == []
    assert plan_lifecycle("somethingNew", record, MB, NOW, POLICY) == []


def test_lifetime_is_capped_at_graph_maximum() -> None:
    # Live Graph refuses more than 10,070 minutes for mail, contacts and events.
    policy = SubscriptionPolicy(lifetime=timedelta(days=30))
    assert policy.expiry(NOW) == NOW + timedelta(minutes=10_070)
    assert timedelta(minutes=MAX_SUBSCRIPTION_MINUTES) == MAX_LIFETIME


def test_removal_deletes_everything() -> None:
    assert [a.subscription_id for a in plan_removal(healthy())] == [
        r.subscription_id for r in healthy()
    ]
