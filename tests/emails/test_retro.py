"""Retroactive linking (issue #5 rule 6): shared emails whose recipients matched nobody are
linked, once, when a Person, Sales Lead or Contact Details email with that address appears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync.core.email_linking import LEAD, PERSON
from sync.core.jobs import JobKind, Stream
from sync.engine.emails import explain
from tests.support.world import World

from .conftest import ANN

SHARED = ["Workbooks"]


async def _reconcile(w: World) -> dict[str, int]:
    run = await w.run(ANN, Stream.PEOPLE, JobKind.RECONCILE)
    assert run.status == "ok", run
    return run.counts


async def test_new_person_links_earlier_shared_email_once(ann: World) -> None:
    w = ann
    await _reconcile(w)  # watermark exists before the message is sent
    mid = w.send(ANN, to=["newbie@cust.com"], categories=SHARED)
    unshared = w.send(ANN, to=["newbie@cust.com"])
    await w.run(ANN)
    assert w.emails() == []
    assert (await explain(w.services, ANN, mid))["state"] == "no_match"
    pid = w.person("Newbie", "newbie@cust.com")
    counts = await _reconcile(w)
    assert counts.get("retro_linked") == 1
    (email,) = w.emails()  # created now, from the message in Outlook
    assert w.links() == [(email["id"], PERSON, pid)] and "Hi there" in email["rfc822"]
    record = await explain(w.services, ANN, mid)
    assert record["state"] == "linked" and record["explanation"]["retroactive"]
    assert (await explain(w.services, ANN, unshared))["state"] == "not_shared"
    assert await w.services.store.pending.for_address(ANN, "newbie@cust.com") == []
    w.seed("crm/people", [{"name": "Twin", "main_location[email]": "twin@cust.com"}])
    await _reconcile(w)
    await w.run(ANN)  # a SENT replay changes nothing either
    assert len(w.emails()) == 1 and len(w.links()) == 1


async def test_partially_matched_email_gains_links_from_contact_details_and_leads(
    ann: World, strategy: str
) -> None:
    w = ann
    p1 = w.person("One", "one@cust.com")
    mid = w.send(ANN, to=["one@cust.com", "alt@home.net", "lead@prospect.com"], categories=SHARED)
    await w.run(ANN)
    (email,) = w.emails()
    assert w.links() == [(email["id"], PERSON, p1)]
    p2 = w.person("Two", "two@cust.com")
    w.contact_detail(p2, "alt@home.net")
    lid = w.lead("Lee", "lead@prospect.com")
    await _reconcile(w)
    await _reconcile(w)
    record = await explain(w.services, ANN, mid)
    if strategy == "render_with":  # an existing email gains no record: each is explained
        assert w.links() == [(email["id"], PERSON, p1)]
        assert {n["record"] for n in record["explanation"]["not_linked"]} == {
            f"{PERSON}:{p2}",
            f"{LEAD}:{lid}",
        }
        assert await w.services.store.pending.for_address(ANN, "alt@home.net") == []
    else:
        assert w.links() == sorted(
            [(email["id"], PERSON, p1), (email["id"], PERSON, p2), (email["id"], LEAD, lid)]
        )
    results = {r["address"]: r["result"] for r in record["explanation"]["recipients"]}
    assert results == {
        "one@cust.com": "matched",
        "alt@home.net": "matched_later",
        "lead@prospect.com": "matched_later",
    }


async def test_lookback_window_limits_retroactive_linking(world: World) -> None:
    w = world
    await w.add_mailbox(ANN, retro_lookback_days=7)
    old = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    w.send(ANN, to=["late@cust.com"], categories=SHARED, sent_at=old)
    recent = w.send(ANN, to=["late@cust.com"], categories=SHARED)
    await w.run(ANN)
    assert len(await w.services.store.pending.for_address(ANN, "late@cust.com")) == 2
    pid = w.person("Late", "late@cust.com")
    counts = await _reconcile(w)
    assert counts.get("pending_expired") == 1
    (email,) = w.emails()
    assert w.links() == [(email["id"], PERSON, pid)]
    assert (await explain(w.services, ANN, recent))["workbooks_email_id"] == email["id"]
    assert await w.services.store.pending.for_address(ANN, "late@cust.com") == []


async def test_unusable_people_watermark_resyncs_and_still_links(ann: World) -> None:
    w = ann
    mid = w.send(ANN, to=["fresh@cust.com"], categories=SHARED)
    await w.run(ANN)
    await w.services.store.cursors.update(
        ANN, Stream.PEOPLE, lambda c: c.model_copy(update={"watermark": "{not json"})
    )
    pid = w.person("Fresh", "fresh@cust.com")
    first = await w.run(ANN, Stream.PEOPLE, JobKind.RECONCILE)
    assert first.status == "retry" and "watermark" in first.message
    again = await w.run(ANN, Stream.PEOPLE, JobKind.RESYNC)
    assert again.status == "ok" and again.counts.get("retro_linked") == 1
    assert w.links() == [(w.emails()[0]["id"], PERSON, pid)]
    assert (await explain(w.services, ANN, mid))["state"] == "linked"


async def test_many_earlier_emails_are_linked_in_batches(ann: World, strategy: str) -> None:
    w = ann
    await _reconcile(w)
    for i in range(6):
        w.send(ANN, to=["popular@cust.com"], subject=f"m{i}", categories=SHARED)
    await w.run(ANN)
    w.person("Popular", "popular@cust.com")
    w.reset_call_counts()
    counts = await _reconcile(w)
    calls = w.workbooks_calls()
    assert counts.get("retro_linked") == 6 and len(w.emails()) == 6 and len(w.links()) == 6
    assert calls["PUT email/emails"] == 1
    # a link type takes one more batch; otherwise the links travel with the created emails
    assert calls.get("PUT email/email_links", 0) == (1 if strategy == "link_type" else 0)
    # Each create intent was inserted anew (no earlier attempt), so no reference lookup was
    # needed to rule out a duplicate; the intents stay, for any later copy or retry.
    assert "GET email/emails" not in calls
    intents = [r async for r in w.services.store.emails.table.prefix(ANN, "%i:")]
    assert {r["RowKey"][3:] for r in intents} == {
        e["created_through_reference"] for e in w.emails()
    }
    assert {r["mailbox"] for r in intents} == {ANN}


async def test_an_address_held_by_a_deleted_person_waits_for_a_live_record(ann: World) -> None:
    """Workbooks may still list a deleted Person's Contact Details [INF] (the sandbox does): an
    email to such an address is not linked to the deleted Person, and a Person who later
    holds the address gets it, once."""
    w = ann
    await _reconcile(w)
    gone = w.person("Left Company", "left@cust.com")
    w.contact_detail(gone, "left.private@home.net", alternate=True)
    w.workbooks.state.tables["crm/people"][gone]["is_deleted"] = True
    mid = w.send(ANN, to=["left@cust.com", "left.private@home.net"], categories=SHARED)
    await w.run(ANN)
    assert w.emails() == [] and w.links() == []
    record = await explain(w.services, ANN, mid)
    assert record["state"] == "no_match"
    assert len(await w.services.store.pending.for_address(ANN, "left@cust.com")) == 1
    successor = w.person("Successor", "left@cust.com")
    assert (await _reconcile(w)).get("retro_linked") == 1
    (email,) = w.emails()
    assert w.links() == [(email["id"], PERSON, successor)]
