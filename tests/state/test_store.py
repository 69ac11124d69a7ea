"""State store against a real Azurite: ETag concurrency, leases, limits, key encoding."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from sync.core.keys import decode_key, encode_key
from sync.core.state_models import (
    EmailRecord,
    Link,
    Mailbox,
    PendingAddress,
    RunRecord,
    SubscriptionRecord,
    utcnow,
)
from sync.state import store as store_module
from sync.state.limits import EntityTooLarge, chunk_batch, pack_json, unpack_json
from sync.state.store import (
    EmailIntents,
    MailboxRegistry,
    Operation,
    StateStore,
    hash_client_state,
)


def _mailbox(addr: str = "ann@example.com") -> Mailbox:
    return Mailbox(
        id=addr, workbooks_url="https://secure.workbooks.com", api_key_ref="env:WB_KEY_ANN"
    )


async def test_mailbox_registry_roundtrip(store: Any) -> None:
    s: StateStore = store
    assert await s.mailboxes.add(_mailbox("Ann@Example.com"))
    assert not await s.mailboxes.add(_mailbox("ann@example.com")), "second add must be refused"
    got = await s.mailboxes.get("ANN@example.com")
    assert got is not None and got.id == "ann@example.com" and got.api_key_ref == "env:WB_KEY_ANN"
    disabled = await s.mailboxes.set_enabled("ann@example.com", False, "left the company")
    assert disabled is not None and not disabled.enabled
    assert [m.id for m in await s.mailboxes.list(enabled_only=True)] == []
    assert await s.mailboxes.remove("ann@example.com")
    assert await s.mailboxes.get("ann@example.com") is None
    assert not await s.mailboxes.remove("ann@example.com")


async def test_jobs_read_a_mailbox_once_in_a_while_and_see_changes_made_here(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: StateStore = store
    other = StateStore(s.service, s.prefix)  # another process on the same tables
    reads: list[str] = []
    real_get = s.mailboxes._t.client.get_entity

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[1] if len(args) > 1 else "")
        return await real_get(*args, **kwargs)

    monkeypatch.setattr(s.mailboxes._t.client, "get_entity", counted)
    assert await s.mailboxes.add(_mailbox("ann@example.com"))
    for _ in range(3):
        found = await s.mailboxes.for_job("ann@example.com")
        assert found is not None and found.enabled
    assert len(reads) == 1  # one read for three jobs
    await s.mailboxes.set_enabled("ann@example.com", False, "left")  # here: seen at once
    found = await s.mailboxes.for_job("ann@example.com")
    assert found is not None and not found.enabled
    # a change made by another process (its row written without this process knowing) is
    # seen once the cached copy is older than the cache time
    enabled = _mailbox("ann@example.com").model_copy(update={"enabled": True})
    await other.mailboxes._t.upsert(MailboxRegistry._row(enabled))
    found = await s.mailboxes.for_job("ann@example.com")
    assert found is not None and not found.enabled
    monkeypatch.setattr(store_module, "MAILBOX_CACHE_SECONDS", 0.0)
    found = await s.mailboxes.for_job("ann@example.com")
    assert found is not None and found.enabled


def test_mailbox_refuses_a_raw_api_key() -> None:
    with pytest.raises(ValueError, match="secret reference"):
        Mailbox(id="a@b.com", workbooks_url="https://x.workbooks.com", api_key_ref="abc123secret")


@pytest.mark.parametrize(
    "value",
    [
        "a/b",
        "x\\y",
        "hash#tag",
        "what?",
        "tab\there",
        "del\x7f",
        "AAMkAD/+==",
        "o'brien@x.com",
        "%41",
    ],
)
async def test_awkward_keys_roundtrip_through_azurite(store: Any, value: str) -> None:
    s: StateStore = store
    key = encode_key(value)
    assert decode_key(key) == value
    record = EmailRecord(
        mailbox="ann@example.com", message_key=value, internet_message_id=f"<{value}>"
    )
    await s.emails.put(record)
    got = await s.emails.get("ann@example.com", value)
    assert got is not None and got.message_key == value


async def test_very_long_ids_are_shortened_but_stable(store: Any) -> None:
    s: StateStore = store
    long_id = "x/" * 600
    key = encode_key(long_id)
    assert len(key) <= 400 and key == encode_key(long_id)
    assert encode_key(long_id + "y") != key
    await s.emails.put(EmailRecord(mailbox="ann@example.com", message_key=long_id))
    assert (await s.emails.get("ann@example.com", long_id)) is not None


async def test_subscription_lookup_and_listing(store: Any) -> None:
    s: StateStore = store
    rec = SubscriptionRecord(
        subscription_id="7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        mailbox="ann@example.com",
        stream="sent",
        resource="/users/ann@example.com/mailFolders('sentitems')/messages",
        client_state_hash=hash_client_state("s3cret"),
        expires_at=utcnow() + timedelta(days=6),
    )
    await s.subscriptions.put(rec)
    got = await s.subscriptions.get(rec.subscription_id)
    assert got is not None and got.client_state_hash == hash_client_state("s3cret")
    assert [
        r.subscription_id for r in await s.subscriptions.list_for_mailbox("ann@example.com")
    ] == [rec.subscription_id]
    assert await s.subscriptions.list_for_mailbox("bob@example.com") == []
    assert await s.subscriptions.get("unknown") is None
    await s.subscriptions.delete(rec.subscription_id)
    assert await s.subscriptions.get(rec.subscription_id) is None


async def test_lease_has_exactly_one_owner_among_concurrent_claimers(store: Any) -> None:
    s: StateStore = store
    results = await asyncio.gather(
        *(s.cursors.claim("ann@example.com", "sent", f"worker-{i}", 60) for i in range(8))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    cur = await s.cursors.get("ann@example.com", "sent")
    assert cur.lease_owner == winners[0].owner


async def test_lease_expires_when_owner_dies(store: Any) -> None:
    s: StateStore = store
    t0 = utcnow()
    first = await s.cursors.claim("ann@example.com", "sent", "dead-worker", 30, now=t0)
    assert first is not None
    assert (
        await s.cursors.claim(
            "ann@example.com", "sent", "new-worker", 30, now=t0 + timedelta(seconds=10)
        )
        is None
    )
    later = await s.cursors.claim(
        "ann@example.com", "sent", "new-worker", 30, now=t0 + timedelta(seconds=31)
    )
    assert later is not None and later.owner == "new-worker"


async def test_cursor_advance_refuses_after_lease_lost(store: Any) -> None:
    from sync.state.store import LeaseLost

    s: StateStore = store
    t0 = utcnow()
    old = await s.cursors.claim("ann@example.com", "contacts", "w1", 30, now=t0)
    assert old is not None
    new = await s.cursors.claim(
        "ann@example.com", "contacts", "w2", 30, now=t0 + timedelta(seconds=40)
    )
    assert new is not None
    with pytest.raises(LeaseLost):
        await s.cursors.advance(old, lambda c: c.model_copy(update={"delta_link": "stale"}))
    await s.cursors.advance(
        new, lambda c: c.model_copy(update={"delta_link": "https://g/delta?t=2"})
    )
    assert (await s.cursors.get("ann@example.com", "contacts")).delta_link == "https://g/delta?t=2"


async def test_concurrent_read_modify_write_loses_no_update(store: Any) -> None:
    s: StateStore = store

    def bump(c: Any) -> Any:
        n = int(c.extra.get("n", 0)) + 1
        return c.model_copy(update={"extra": {"n": n}})

    await asyncio.gather(*(s.cursors.update("ann@example.com", "todo", bump) for _ in range(6)))
    assert (await s.cursors.get("ann@example.com", "todo")).extra["n"] == 6


async def test_dirty_marker_coalesces_and_expires(store: Any) -> None:
    s: StateStore = store
    t0 = utcnow()
    assert await s.dirty.mark("ann@example.com", "sent", ttl_seconds=600, now=t0)
    assert not await s.dirty.mark("ann@example.com", "sent", ttl_seconds=600, now=t0)
    assert await s.dirty.mark("ann@example.com", "contacts", ttl_seconds=600, now=t0)
    # A marker whose job was lost is replaced after the TTL.
    assert await s.dirty.mark(
        "ann@example.com", "sent", ttl_seconds=600, now=t0 + timedelta(seconds=601)
    )
    await s.dirty.clear("ann@example.com", "sent")
    assert await s.dirty.mark("ann@example.com", "sent", ttl_seconds=600, now=t0)


async def test_links_are_found_from_both_sides_and_deleted_together(store: Any) -> None:
    s: StateStore = store
    links = [
        Link(
            mailbox="ann@example.com",
            stream="contacts",
            outlook_id=f"AAMk/{i}==",
            workbooks_type="Private::Crm::Person",
            workbooks_id=1000 + i,
            snapshot={"name": f"P{i}", "email": f"p{i}@x.com"},
        )
        for i in range(150)  # more than one transaction's worth
    ]
    await s.links.put_many(links)
    assert await s.links.count("ann@example.com", "contacts") == 150
    by_o = await s.links.by_outlook("ann@example.com", "contacts", "AAMk/7==")
    by_w = await s.links.by_workbooks("ann@example.com", "contacts", "Private::Crm::Person", 1007)
    assert by_o is not None and by_w is not None and by_o == by_w
    await s.links.delete(links[7])
    assert await s.links.by_outlook("ann@example.com", "contacts", "AAMk/7==") is None
    assert (
        await s.links.by_workbooks("ann@example.com", "contacts", "Private::Crm::Person", 1007)
        is None
    )
    await s.links.delete(links[7])  # deleting twice is harmless
    assert await s.links.count("ann@example.com", "contacts") == 149


async def test_large_snapshot_is_split_across_properties(store: Any) -> None:
    s: StateStore = store
    big = {"notes": "é" * 70_000}
    link = Link(
        mailbox="ann@example.com",
        stream="contacts",
        outlook_id="x",
        workbooks_type="P",
        workbooks_id=1,
        snapshot=big,
    )
    await s.links.put(link)
    got = await s.links.by_outlook("ann@example.com", "contacts", "x")
    assert got is not None and got.snapshot == big


def test_entity_limits_are_enforced_by_our_code() -> None:
    too_many = {"PartitionKey": "p", "RowKey": "r", **{f"p{i}": i for i in range(253)}}
    with pytest.raises(EntityTooLarge, match="252"):
        list(chunk_batch([("upsert", too_many)]))
    huge = {"PartitionKey": "p", "RowKey": "r", **pack_json("data", "x" * 600_000)}
    with pytest.raises(EntityTooLarge, match="1 MiB"):
        list(chunk_batch([("upsert", huge)]))
    assert unpack_json("data", pack_json("data", {"a": "x" * 100_000})) == {"a": "x" * 100_000}


def test_batches_respect_100_operations_and_4_mib() -> None:
    small = [("upsert", {"PartitionKey": "p", "RowKey": str(i), "v": "x"}) for i in range(250)]
    assert [len(b) for b in chunk_batch(small)] == [100, 100, 50]
    fat = [
        ("upsert", {"PartitionKey": "p", "RowKey": str(i), **pack_json("d", "y" * 100_000)})
        for i in range(40)
    ]
    batches = list(chunk_batch(fat))
    assert len(batches) > 1 and sum(len(b) for b in batches) == 40
    for b in batches:
        assert sum(2 * 100_000 for _ in b) <= 4 * 1024 * 1024
    with pytest.raises(ValueError, match="one PartitionKey"):
        list(
            chunk_batch(
                [
                    ("upsert", {"PartitionKey": "a", "RowKey": "1"}),
                    ("upsert", {"PartitionKey": "b", "RowKey": "1"}),
                ]
            )
        )


async def test_pending_index_is_read_per_mailbox_and_address(store: Any) -> None:
    s: StateStore = store
    entries = [
        PendingAddress(
            address="New.Person@Example.com", mailbox="ann@example.com", message_key="m1"
        ),
        PendingAddress(
            address="new.person@example.com", mailbox="ann@example.com", message_key="m3"
        ),
        PendingAddress(
            address="new.person@example.com", mailbox="bob@example.com", message_key="m2"
        ),
        PendingAddress(
            address="new.person@example.com.au", mailbox="ann@example.com", message_key="m4"
        ),
        PendingAddress(address="other@example.com", mailbox="ann@example.com", message_key="m1"),
    ]
    await s.pending.add_many(entries)
    await s.emails.put(EmailRecord(mailbox="ann@example.com", message_key="m1"))
    found = await s.pending.for_address("Ann@example.com", " NEW.PERSON@example.com ")
    assert sorted(p.message_key for p in found) == ["m1", "m3"]  # not bob's, not the .au one
    assert [
        p.message_key
        for p in await s.pending.for_address("bob@example.com", "new.person@example.com")
    ] == ["m2"]
    mine = await s.pending.for_mailbox("ann@example.com")
    assert sorted((p.address, p.message_key) for p in mine) == sorted(
        (p.address, p.message_key) for p in entries if p.mailbox == "ann@example.com"
    )
    # the mailbox's records share its partition, and neither listing sees the other
    assert [r.message_key async for r in s.emails.list("ann@example.com")] == ["m1"]
    await s.pending.remove(found[0])
    await s.pending.remove_many([found[1], found[1], entries[2]])  # gone twice: harmless
    assert await s.pending.for_address("ann@example.com", "new.person@example.com") == []
    assert await s.pending.for_address("bob@example.com", "new.person@example.com") == []
    assert await s.pending.count("ann@example.com") == 2


async def test_a_create_intent_is_inserted_once(store: Any) -> None:
    s: StateStore = store
    rows = [
        EmailIntents.row("Ann@Example.com", "olk:aaa", "ann@example.com", "m1"),
        EmailIntents.row("ann@example.com", "olk:bbb", "ann@example.com", "m2"),
    ]
    assert await s.intents.claim(rows) == set()  # both new: no lookup needed
    again = [*rows, EmailIntents.row("ann@example.com", "olk:ccc", "ann@example.com", "m3")]
    assert await s.intents.claim(again) == {"olk:aaa", "olk:bbb"}  # an earlier attempt
    assert await s.intents.claim(again) == {"olk:aaa", "olk:bbb", "olk:ccc"}
    # a copy filed in another mailbox names the same author: the same row
    copy = EmailIntents.row("ann@example.com", "olk:aaa", "bob@example.com", "x9")
    assert await s.intents.claim([copy]) == {"olk:aaa"}


async def test_intents_cover_messages_sent_after_they_began(store: Any) -> None:
    s: StateStore = store
    began = await s.intents.start(utcnow() - timedelta(days=2))
    assert await s.intents.start(utcnow()) == began  # recorded once
    assert await s.intents.covers(utcnow())
    assert not await s.intents.covers(began - timedelta(days=1))  # may predate intents
    assert not await s.intents.covers(began + timedelta(minutes=5))  # within the margin
    assert not await s.intents.covers(None)


async def test_inserts_that_find_their_row_leave_out_what_depends_on_them(store: Any) -> None:
    s: StateStore = store
    table = s.emails.table
    pk = encode_key("ann@example.com")

    def row(rk: str) -> dict[str, Any]:
        return {"PartitionKey": pk, "RowKey": rk, "v": 1}

    await table.upsert(row("b"))
    ops = [
        Operation("create", row("a")),
        Operation("create", row("b"), drop_with=("b1", "b2")),
        Operation("upsert", row("b1")),
        Operation("upsert", row("b2")),
        Operation("create", row("c")),
    ]
    assert await table.transact_inserting(ops) == {"b"}
    keys = sorted([r["RowKey"] async for r in table.partition(pk)])
    assert keys == ["a", "b", "c"]


async def test_a_cursor_written_here_is_not_read_before_the_next_write(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: StateStore = store
    reads: list[str] = []
    table = s.cursors._t
    real_get = table.client.get_entity

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[1] if len(args) > 1 else "")
        return await real_get(*args, **kwargs)

    monkeypatch.setattr(table.client, "get_entity", counted)
    lease = await s.cursors.claim("ann@example.com", "sent", "job1:a", 300)
    assert lease is not None
    reads.clear()
    cursor = await s.cursors.for_run(lease)
    assert cursor.lease_owner == "job1:a" and reads == []  # what the claim wrote

    def advance(c: Any) -> Any:
        return c.model_copy(update={"delta_link": "https://g/delta?t=1"})

    await s.cursors.advance(lease, advance)
    await s.cursors.advance(lease, advance)  # no change: nothing written either
    await s.cursors.release(lease)
    assert reads == []
    stored = await s.cursors.get("ann@example.com", "sent")
    assert stored.delta_link == "https://g/delta?t=1" and stored.lease_owner is None


async def test_the_next_claim_starts_from_the_row_this_process_released(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: StateStore = store
    other = StateStore(s.service, s.prefix)  # another process on the same tables
    reads: list[str] = []
    real_get = s.cursors._t.client.get_entity

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[1] if len(args) > 1 else "")
        return await real_get(*args, **kwargs)

    monkeypatch.setattr(s.cursors._t.client, "get_entity", counted)
    first = await s.cursors.claim("ann@example.com", "sent", "job1:a", 300)
    assert first is not None
    await s.cursors.release(first)
    reads.clear()
    second = await s.cursors.claim("ann@example.com", "sent", "job2:a", 300)
    assert second is not None and reads == []  # no read: this process wrote the row last
    await s.cursors.release(second)
    # another process claims meanwhile: the remembered row is stale, the write says so (412),
    # the row is read, and the live lease is respected
    taken = await other.cursors.claim("ann@example.com", "sent", "job3:b", 300)
    assert taken is not None
    assert await s.cursors.claim("ann@example.com", "sent", "job4:a", 300) is None
    assert reads == ["sent"]
    await other.cursors.release(taken)
    again = await s.cursors.claim("ann@example.com", "sent", "job5:a", 300)
    assert again is not None and again.owner == "job5:a"


async def test_a_cursor_changed_elsewhere_is_read_again_before_writing(store: Any) -> None:
    s: StateStore = store
    other = StateStore(s.service, s.prefix)  # another process on the same tables
    lease = await s.cursors.claim("ann@example.com", "sent", "job1:a", 300)
    assert lease is not None
    await other.cursors.request_resync("ann@example.com", "sent", "operator")
    # our remembered row is stale: the write finds out (412), reads, and keeps both changes
    await s.cursors.advance(lease, lambda c: c.model_copy(update={"extra": {**c.extra, "n": 1}}))
    got = await other.cursors.get("ann@example.com", "sent")
    assert got.resync_requested and got.extra["n"] == 1 and got.lease_owner == "job1:a"


async def test_run_log_newest_first(store: Any) -> None:
    s: StateStore = store
    t0 = utcnow()
    for i in range(3):
        await s.runs.put(
            RunRecord(
                mailbox="ann@example.com",
                stream="sent",
                job_id=f"j{i}",
                kind="dirty",
                started_at=t0 + timedelta(seconds=i),
            )
        )
    assert [r.job_id for r in await s.runs.recent("ann@example.com")] == ["j2", "j1", "j0"]


async def test_run_log_keeps_a_bounded_history(store: Any) -> None:
    s: StateStore = store
    s.runs.keep_days = 3
    now = utcnow()
    for days in (10, 5, 2, 0):
        await s.runs.put(
            RunRecord(
                mailbox="ann@example.com",
                stream="sent",
                job_id=f"old{days}",
                kind="dirty",
                started_at=now - timedelta(days=days),
            )
        )
    await s.runs.put(
        RunRecord(
            mailbox="bob@example.com",
            stream="sent",
            job_id="b",
            kind="dirty",
            started_at=now - timedelta(days=9),
        )
    )
    assert await s.runs.prune("ann@example.com", now=now) == 2
    assert [r.job_id for r in await s.runs.recent("ann@example.com")] == ["old0", "old2"]
    assert await s.runs.count("bob@example.com") == 1  # another mailbox: its own prune
    # a put never prunes (the renewal job does): the old run is still there
    await s.runs.put(RunRecord(mailbox="bob@example.com", stream="sent", job_id="c", kind="dirty"))
    assert [r.job_id for r in await s.runs.recent("bob@example.com")] == ["c", "b"]
    # keep_days 0 keeps every run
    s.runs.keep_days = 0
    assert await s.runs.prune("bob@example.com", now=now) == 0
    assert await s.runs.count("bob@example.com") == 2


async def test_cursor_keeps_very_long_delta_links_and_watermarks(store: Any) -> None:
    s: StateStore = store
    link = "https://graph.microsoft.com/v1.0/users/x/contacts/delta?$deltatoken=" + "t" * 50_000
    mark = (
        '{"v":1,"ts":"2026-11-27T10:00:00Z","seen":[' + ",".join(str(i) for i in range(9000)) + "]}"
    )
    await s.cursors.update(
        "ann@example.com",
        "contacts",
        lambda c: c.model_copy(update={"delta_link": link, "watermark": mark}),
    )
    got = await s.cursors.get("ann@example.com", "contacts")
    assert got.delta_link == link and got.watermark == mark


async def test_blank_ids_find_nothing_instead_of_raising(store: Any) -> None:
    s: StateStore = store
    assert await s.mailboxes.get(" ") is None
    assert await s.mailboxes.get("<>") is None
    assert not await s.mailboxes.remove("")
    assert await s.mailboxes.set_enabled("mailto:", False, "x") is None
    assert await s.emails.get("", "AAMkAD1=") is None
    assert await s.emails.get("ann@example.com", "") is None
    assert await s.emails.by_internet_id("", "<a@b>") is None
