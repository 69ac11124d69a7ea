"""Sent emails -> Workbooks, end to end: Graph sandbox, Workbooks sandbox, Azurite state and the
real runner.  Each test states one rule of issue #5 and checks what Workbooks and state hold."""

from __future__ import annotations

import asyncio

import pytest

from sync.core.email_linking import CASE, LEAD, PERSON
from sync.core.errors import NotFound
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import PendingAddress
from sync.engine.emails import explain
from tests.support.world import World

from .conftest import ANN, sent_steps

SHARED = ["Workbooks"]


async def _pending(w: World, address: str) -> list[PendingAddress]:
    return list(await w.services.store.pending.for_address(ANN, address))


# ----------------------------------------------------------------------------- 1. trigger path


async def test_notification_to_webhook_to_queue_to_linked_email(ann: World) -> None:
    w = ann
    pid = w.person("Pat", "pat@cust.com")
    await w.subscribe(ANN)
    w.send(ANN, to=["pat@cust.com"], categories=SHARED)
    runs = []
    for _ in range(100):  # the notification is POSTed asynchronously by the sandbox
        runs += await w.work_once()
        if w.links():
            break
        await asyncio.sleep(0.02)
    assert [r.kind for r in runs] == ["dirty"] and runs[0].status == "ok"
    assert w.links() == [(w.emails()[0]["id"], PERSON, pid)]


async def test_triple_delivered_reordered_notifications_link_each_email_once(ann: World) -> None:
    w = ann
    w.graph.sandbox.config.notify_duplicates = 2  # every notification POSTed three times
    w.graph.sandbox.config.notify_reorder_seconds = 0.05  # ... in random order
    pid = w.person("Pat", "pat@cust.com")
    await w.subscribe(ANN)
    for i in range(5):
        w.send(ANN, to=["pat@cust.com"], subject=f"m{i}", categories=SHARED)
        await asyncio.sleep(0.01)
    idle = 0
    while idle < 15:  # until no notification or job has turned up for a while
        runs = await w.work_once()
        idle = 0 if runs else idle + 1
        await asyncio.sleep(0.02)
    assert len(w.graph.sandbox.notifier.deliveries) >= 15
    assert len(w.emails()) == 5 and sorted(r for _, _, r in w.links()) == [pid] * 5


async def test_push_and_reconcile_run_the_same_path_and_catch_missed_notifications(
    ann: World,
) -> None:
    w = ann
    pid = w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], categories=SHARED)  # no subscription: notification missed
    run = await w.run(ANN, Stream.SENT, JobKind.PUSH)
    assert run.status == "ok" and w.links() == [(w.emails()[0]["id"], PERSON, pid)]
    w.send(ANN, to=["pat@cust.com"], categories=SHARED)
    run = await w.run(ANN, Stream.SENT, JobKind.RECONCILE)
    assert run.status == "ok" and len(w.emails()) == 2 and len(w.links()) == 2


# ----------------------------------------------------------------------------- 2. sharing policy


async def test_shared_policy_links_only_categorised_and_later_categorisation(ann: World) -> None:
    w = ann
    pid = w.person("Pat", "pat@cust.com")
    mid = w.send(ANN, to=["pat@cust.com"])
    await w.run(ANN)
    assert w.emails() == [] and w.links() == []
    first = await explain(w.services, ANN, mid)
    assert first["state"] == "not_shared" and "Workbooks" in first["explanation"]["reason"]
    assert "pat@cust.com" not in str(first)  # recipients of unshared mail are not stored

    w.categorise(ANN, mid, ["Important", "workbooks"])  # category match is case-insensitive
    await w.run(ANN)
    assert w.links() == [(w.emails()[0]["id"], PERSON, pid)]
    assert (await explain(w.services, ANN, mid))["state"] == "linked"


async def test_category_name_is_configurable(world: World) -> None:
    w = world
    await w.add_mailbox(ANN, category="CRM")
    w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], categories=["Workbooks"])
    w.send(ANN, to=["pat@cust.com"], categories=["CRM"])
    await w.run(ANN)
    assert len(w.emails()) == 1 and w.emails()[0]["subject"] == "Hello"


async def test_auto_policy_links_every_message_with_a_known_recipient(world: World) -> None:
    w = world
    await w.add_mailbox(ANN, email_policy="auto")
    lid = w.lead("Lee", "lee@prospect.com")
    known = w.send(ANN, to=["lee@prospect.com", "nobody@else.com"])
    unknown = w.send(ANN, to=["stranger@else.com"])
    await w.run(ANN)
    assert w.links() == [(w.emails()[0]["id"], LEAD, lid)]
    assert (await explain(w.services, ANN, known))["explanation"]["shared_by"].startswith("auto")
    assert (await explain(w.services, ANN, unknown))["state"] == "not_shared"
    # Recipients nobody matches are remembered in our state for retroactive linking (rule 7 of
    # docs/email-linking.md: under auto too), never written to Workbooks: only the email with
    # a match exists there.
    assert len(w.emails()) == 1
    assert [p.message_key for p in await _pending(w, "nobody@else.com")] == [known]
    assert [p.message_key for p in await _pending(w, "stranger@else.com")] == [unknown]


async def test_auto_policy_does_not_copy_history_beyond_the_look_back_window(world: World) -> None:
    w = world
    await w.add_mailbox(ANN, email_policy="auto", retro_lookback_days=30)
    pid = w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], subject="old", sent_at="2020-01-02T10:00:00Z")
    recent = w.send(ANN, to=["pat@cust.com"], subject="recent")
    # The user's own categorisation counts whatever the age.
    w.send(
        ANN,
        to=["pat@cust.com"],
        subject="old but shared",
        categories=["Workbooks"],
        sent_at="2020-01-03T10:00:00Z",
    )
    run = await w.run(ANN)
    assert run.counts.get("older_than_auto_window") == 1
    assert sorted(e["subject"] for e in w.emails()) == ["old but shared", "recent"]
    assert (await explain(w.services, ANN, recent))["state"] == "linked"
    assert {r[2] for r in w.links()} == {pid}


# ----------------------------------------------------------------------------- 3. matching


async def test_three_people_one_contact_detail_one_unknown(ann: World, strategy: str) -> None:
    w = ann
    p1, p2, p3 = (w.person(f"P{i}", f"p{i}@cust.com") for i in (1, 2, 3))
    owner = w.person("Olly", "olly@cust.com")
    w.contact_detail(owner, "olly.private@home.net", alternate=True)
    mid = w.send(
        ANN,
        to=['"Person One" <P1@Cust.com>', " p2@cust.com "],
        cc=["p3@cust.com", "olly.private@home.net"],
        bcc=["unknown@nowhere.org"],
        categories=SHARED,
    )
    run = await w.run(ANN)
    assert run.status == "ok"
    (email,) = w.emails()
    expl = (await explain(w.services, ANN, mid))["explanation"]
    if strategy == "render_with":  # filed against the first recipient; the rest explained
        assert w.links() == [(email["id"], PERSON, p1)]
        assert [n["record"] for n in expl["not_linked"]] == sorted(
            f"{PERSON}:{i}" for i in (p2, p3, owner)
        )
    else:
        assert w.links() == sorted((email["id"], PERSON, i) for i in (p1, p2, p3, owner))
    assert email["to_addresses"] == "p1@cust.com, p2@cust.com"
    assert "olly.private@home.net" in email["cc_addresses"]
    assert email["bcc_addresses"] == "unknown@nowhere.org"
    assert "Hi there" in email["rfc822"] and email["status"] == "DRAFT"
    by_addr = {r["address"]: r for r in expl["recipients"]}
    assert by_addr["olly.private@home.net"]["matches"] == [
        {"record": f"{PERSON}:{owner}", "field": "party_locations.alternate_email"}
    ]
    assert by_addr["p1@cust.com"]["matches"][0]["field"] == "main_location[email]"
    assert by_addr["unknown@nowhere.org"]["result"] == "no_match_yet"
    assert [p.message_key for p in await _pending(w, "unknown@nowhere.org")] == [mid]


async def test_internal_and_blocklisted_addresses_are_never_matched_or_stored(
    world: World,
) -> None:
    w = world
    await w.add_mailbox(ANN, internal_domains=["corp.example"], blocklist=["secret@cust.com"])
    w.person("Colleague", "bob@example.com")  # a Person with an internal address
    w.person("Secret", "secret@cust.com")
    pid = w.person("Pat", "pat@cust.com")
    mid = w.send(
        ANN,
        to=["bob@example.com", "pat@cust.com"],
        cc=["it@sub.corp.example", "secret@cust.com"],
        categories=SHARED,
    )
    await w.run(ANN)
    (email,) = w.emails()
    assert w.links() == [(email["id"], PERSON, pid)]
    assert "secret@cust.com" not in email["cc_addresses"] + email["rfc822"]
    record = await explain(w.services, ANN, mid)
    assert "secret@cust.com" not in str(record)
    rules = sorted(e["rule"] for e in record["explanation"]["excluded"])
    assert rules == ["blocklisted", "internal", "internal"]
    for address in ("bob@example.com", "it@sub.corp.example", "secret@cust.com"):
        assert await _pending(w, address) == []


async def test_only_internal_recipients_is_excluded(ann: World) -> None:
    w = ann
    mid = w.send(ANN, to=["bob@example.com"], categories=SHARED)
    await w.run(ANN)
    record = await explain(w.services, ANN, mid)
    assert record["state"] == "excluded" and w.emails() == []


# ----------------------------------------------------------------------------- 4. idempotency


async def test_triple_delivery_reordering_and_replays_create_one_email_and_one_link(
    world: World,
) -> None:
    w = world
    w.graph.sandbox.config.delta_duplicates = True  # Graph repeats items across pages
    w.graph.sandbox.config.page_sizes["message"] = 2
    await w.add_mailbox(ANN)
    pid = w.person("Pat", "pat@cust.com")
    for i in range(5):
        w.send(ANN, to=["pat@cust.com"], subject=f"m{i}", categories=SHARED)
    kinds = [JobKind.DIRTY, JobKind.DIRTY, JobKind.RECONCILE, JobKind.DIRTY, JobKind.PUSH]
    runs = await asyncio.gather(*(w.run(ANN, Stream.SENT, k) for k in kinds))
    assert {r.status for r in runs} <= {"ok", "retry"}  # busy stream: re-queued, not failed
    await w.run(ANN)
    assert len(w.emails()) == 5
    assert len(w.links()) == 5 and {link[2] for link in w.links()} == {pid}


async def test_same_internet_message_id_twice_is_one_email(ann: World) -> None:
    w = ann
    w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], categories=SHARED, internet_message_id="<same@x>")
    w.send(ANN, to=["pat@cust.com"], categories=SHARED, internet_message_id="<same@x>")
    await w.run(ANN)
    assert len(w.emails()) == 1 and len(w.links()) == 1


@pytest.mark.parametrize("step", ["fetch", "write_email", "write_links", "persist", "advance"])
async def test_killed_between_steps_then_rerun_converges(
    ann: World, step: str, strategy: str
) -> None:
    w = ann
    people = [w.person(f"P{i}", f"p{i}@cust.com") for i in range(3)]
    for i in range(3):
        w.send(ANN, to=[f"p{i}@cust.com", "p0@cust.com"], subject=f"m{i}", categories=SHARED)

    class Killed(Exception):
        pass

    async def kill(at: str) -> None:
        if at == step:
            raise Killed(at)

    with sent_steps(kill), pytest.raises(Killed):
        await w.run(ANN)
    run = await w.run(ANN)
    assert run.status == "ok"
    if step in ("write_email", "write_links"):  # created but not recorded: found, not re-made
        assert run.counts.get("emails_recovered") == 3 and "emails_created" not in run.counts
    await w.run(ANN)  # and once more: nothing new
    assert len(w.emails()) == 3
    links = w.links()
    if strategy == "render_with":  # one record per email: m0 -> P0; m1 -> P1; m2 -> P2
        assert len(links) == len(set(links)) == 3
    else:
        assert len(links) == len(set(links)) == 5  # m0 -> P0; m1 -> P1, P0; m2 -> P2, P0
    assert {r for _, _, r in links} == set(people)
    records = [r async for r in w.services.store.emails.list(ANN)]
    assert sorted(r.state for r in records) == ["linked"] * 3


async def test_delta_expiry_full_resync_without_duplicates(ann: World) -> None:
    w = ann
    w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], categories=SHARED)
    await w.run(ANN)
    assert w.expire_delta(ANN) > 0
    w.send(ANN, to=["pat@cust.com"], subject="after expiry", categories=SHARED)
    first = await w.run(ANN)
    assert first.status == "retry" and "resync" in first.message
    cursor = await w.services.store.cursors.get(ANN, Stream.SENT)
    assert cursor.resync_requested
    second = await w.run(ANN, Stream.SENT, JobKind.RESYNC)
    assert second.status == "ok" and second.counts.get("full_rounds") == 1
    assert len(w.emails()) == 2 and len(w.links()) == 2
    assert not (await w.services.store.cursors.get(ANN, Stream.SENT)).resync_requested


# ----------------------------------------------------------------------------- 5. references


async def test_object_references_in_subject_and_category_attach_too(
    ann: World, strategy: str
) -> None:
    w = ann
    pid = w.person("Pat", "pat@cust.com")
    case_id = w.case()
    other = w.person("Other", "other@cust.com")
    w.send(ANN, to=["pat@cust.com"], subject=f"Re: [CASE-{case_id}] broken", categories=SHARED)
    # a reference category alone shares the message
    w.send(ANN, to=["x@nowhere.org"], subject="no ref", categories=[f"PERS-{other}"])
    await w.run(ANN)
    emails = sorted(e["id"] for e in w.emails())
    if strategy == "render_with":  # the recipient first; the case is explained, not linked
        assert w.links() == sorted([(emails[0], PERSON, pid), (emails[1], PERSON, other)])
    else:
        assert w.links() == sorted(
            [(emails[0], PERSON, pid), (emails[0], CASE, case_id), (emails[1], PERSON, other)]
        )


async def test_attach_on_request_links_once_and_creates_email_if_needed(ann: World) -> None:
    from sync.core.email_linking import RecordRef
    from sync.engine.emails import attach_job

    w = ann
    case_id = w.case()
    mid = w.send(ANN, to=["x@nowhere.org"])  # not shared: no email in Workbooks yet
    await w.run(ANN)
    job = attach_job(ANN, mid, RecordRef(CASE, case_id))
    for _ in range(2):
        run = await w.run(ANN, Stream.SENT, JobKind.ATTACH, args=job.args)
        assert run.status == "ok" and run.counts.get("attached") == 1, run
    assert len(w.emails()) == 1 and w.links() == [(w.emails()[0]["id"], CASE, case_id)]
    record = await explain(w.services, ANN, mid)
    assert record["state"] == "linked" and record["explanation"]["attached_on_request"]
    bad = await w.run(
        ANN,
        Stream.SENT,
        JobKind.ATTACH,
        args={"message": mid, "record_type": CASE, "record_id": "999999"},
    )
    assert bad.counts.get("attach_failed") == 1 and "999999" in bad.message


# ----------------------------------------------------------------------------- 7. explanations


async def test_explain_by_internet_message_id_and_unknown(ann: World) -> None:
    w = ann
    w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], categories=SHARED, internet_message_id="<abc@x.org>")
    await w.run(ANN)
    assert (await explain(w.services, ANN, "<abc@x.org>"))["state"] == "linked"
    assert (await explain(w.services, ANN, "abc@x.org"))["state"] == "linked"
    with pytest.raises(NotFound):
        await explain(w.services, ANN, "<nope@x.org>")


# ----------------------------------------------------------------------------- 8. failures


async def test_workbooks_down_retries_later_without_advancing_or_duplicating(ann: World) -> None:
    w = ann
    w.person("Pat", "pat@cust.com")
    w.send(ANN, to=["pat@cust.com"], categories=SHARED)
    await w.run(ANN)
    before = (await w.services.store.cursors.get(ANN, Stream.SENT)).delta_link
    w.send(ANN, to=["pat@cust.com"], subject="during outage", categories=SHARED)
    w.workbooks.state.faults.fail_next = [503] * 30
    run = await w.run(ANN)
    assert run.status == "retry"
    assert (await w.services.store.cursors.get(ANN, Stream.SENT)).delta_link == before
    w.workbooks.state.faults.fail_next = []
    assert (await w.run(ANN)).status == "ok"
    assert len(w.emails()) == 2 and len(w.links()) == 2


async def test_429_storm_on_both_sides(ann: World) -> None:
    w = ann
    w.person("Pat", "pat@cust.com")
    for i in range(12):
        w.send(ANN, to=["pat@cust.com"], subject=f"m{i}", categories=SHARED)
    w.graph_fault(status=429, count=6, retry_after=0)
    w.workbooks.state.faults.throttle_every = 2  # every 2nd Workbooks request is throttled
    runs = [await w.run(ANN)]
    assert runs[0].status == "retry"  # Graph kept answering 429 beyond the attempt budget
    while runs[-1].status == "retry" and len(runs) < 6:
        runs.append(await w.run(ANN))
    w.workbooks.state.faults.throttle_every = None
    if runs[-1].status != "ok":
        runs.append(await w.run(ANN))
    assert runs[-1].status == "ok", runs
    assert len(w.emails()) == 12 and len(w.links()) == 12


def test_conflicts_and_throttling_retry_the_job_other_errors_fail_the_message() -> None:
    from sync.core.errors import Conflict, InvalidRequest, RetryLater
    from sync.engine.emails import _first_retry

    assert isinstance(_first_retry([None, Conflict("stale", source="workbooks")]), RetryLater)
    throttled = RetryLater("slow down")
    assert _first_retry([InvalidRequest("bad field"), throttled]) is throttled
    assert _first_retry([InvalidRequest("bad field"), None]) is None


async def test_outage_between_create_and_link_keeps_progress_and_pending(
    ann: World, strategy: str
) -> None:
    w = ann
    pid = w.person("Pat", "pat@cust.com")
    mid = w.send(ANN, to=["pat@cust.com", "later@cust.com"], categories=SHARED)

    async def outage(step: str) -> None:
        if step == "write_email":
            w.workbooks.state.faults.fail_next = [503] * 20

    with sent_steps(outage):
        first = await w.run(ANN)
    if strategy != "link_type":  # the links travel with the create: nothing is left to write
        assert first.status == "ok" and w.links() == [(w.emails()[0]["id"], PERSON, pid)]
        assert (await explain(w.services, ANN, mid))["state"] == "linked"
        return
    assert first.status == "retry" and len(w.emails()) == 1 and w.links() == []
    kept = await explain(w.services, ANN, mid)
    assert kept["state"] == "pending" and kept["workbooks_email_id"] == w.emails()[0]["id"]
    w.workbooks.state.faults.fail_next = []
    assert (await w.run(ANN)).status == "ok"
    assert w.links() == [(w.emails()[0]["id"], PERSON, pid)] and len(w.emails()) == 1
    assert [p.message_key for p in await _pending(w, "later@cust.com")] == [mid]
