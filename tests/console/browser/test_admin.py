"""An administrator runs the service from the browser alone: onboard a mailbox (register, check,
enable, watch its first sync), watch every mailbox's health, force syncs and read their runs,
repair (pause, edit the policy with validation, drain the poison queue) and explain emails."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta
from typing import Any

from playwright.async_api import expect

from sync.core.jobs import Job, JobKind, Stream, job_payload
from sync.core.state_models import IdentityIssue, MatchCandidate, Removal, RunRecord, utcnow
from tests.console.browser.conftest import ConsoleWorld, sign_in

ADMIN = "admin@example.com"


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:6]}@example.com"


async def admin_page(new_page: Any, world: ConsoleWorld) -> Any:
    page = await new_page()
    await sign_in(page, world, ADMIN, admin=True)
    return page


async def test_onboarding_registers_checks_enables_and_follows_the_first_sync(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("onboard")
    world.graph_mailbox(upn)
    ref = world.key_ref(upn)
    page = await admin_page(new_page, world)
    await expect(page.get_by_role("heading", name="Mailboxes")).to_be_visible()

    await page.get_by_role("link", name="Add a mailbox").click()
    await page.get_by_label("Mailbox address (UPN)").fill(upn)
    await page.get_by_label("Workbooks URL").fill(world.world.workbooks.base_url)
    await page.get_by_label("API key reference").fill(ref)
    await page.get_by_role("button", name="Register the mailbox").click()

    await expect(page.get_by_role("status")).to_contain_text("Mailbox registered, paused")
    await expect(page.get_by_text("paused: new: run the checks, then enable")).to_be_visible()
    await page.get_by_role("button", name="Check and enable").click()

    await expect(page.get_by_role("heading", name=f"Checks of {upn}")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text(
        "Every check passed and the mailbox is enabled"
    )
    checks = page.locator("table.checks tbody tr")
    assert await checks.count() >= 3
    await expect(page.locator("table.checks")).to_contain_text("graph.mailbox")
    await expect(page.locator("table.checks")).to_contain_text("workbooks.login")
    await expect(page.get_by_text(re.compile(r"subscriptions: created 3"))).to_be_visible()

    await page.get_by_role("link", name="Follow the first full sync").click()
    # The page polls the job (htmx) until it is done; no reload by the person.
    await expect(page.locator("#progress .state")).to_have_text("done", timeout=60_000)
    await expect(page.locator("#progress progress")).to_have_attribute("value", "5")
    mailbox = await world.world.services.store.mailboxes.get(upn)
    assert mailbox is not None and mailbox.enabled
    assert len(await world.world.services.store.subscriptions.list_for_mailbox(upn)) == 3

    await page.get_by_role("link", name="Back to the mailbox").click()
    await expect(page.locator(".heading .badge")).to_have_text("ok")
    streams = page.get_by_role("region", name="Streams")
    await expect(streams.get_by_role("row", name=re.compile("Sent emails"))).to_contain_text(
        re.compile("just now|minutes? ago")
    )


async def test_failing_checks_refuse_to_enable_until_the_admin_insists(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("badkey")
    world.graph_mailbox(upn)
    await world.register(upn, enabled=False, api_key="not-a-key")
    page = await admin_page(new_page, world)
    await page.goto(f"{world.console}/mailboxes/{upn}")
    await page.get_by_role("button", name="Check and enable").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "1 of them essential: the mailbox cannot sync and was not enabled"
    )
    failed = page.locator("tr.c-fail")
    await expect(failed).to_have_count(1)
    await expect(failed).to_contain_text("workbooks.login (essential)")
    mailbox = await world.world.services.store.mailboxes.get(upn)
    assert mailbox is not None and not mailbox.enabled
    # The doctor's report is recorded: the mailbox page shows it.
    report = await world.world.services.store.doctor.get(upn)
    assert report is not None and [c.name for c in report.essential_failures] == ["workbooks.login"]

    await page.get_by_role("button", name="Enable anyway").click()
    await expect(page.get_by_text(f"enabled {upn}")).to_be_visible()
    mailbox = await world.world.services.store.mailboxes.get(upn)
    assert mailbox is not None and mailbox.enabled
    await world.settle()


async def test_a_failing_feature_is_shown_and_does_not_stop_enabling(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    """Only an essential failure refuses (as ``mailboxes add`` decides); one that stops a
    single stream is shown with its fix and the mailbox is enabled."""
    from devkit.sandbox.graph.service import Fault

    world = console_world
    upn = unique("notodo")
    await world.register(upn, enabled=False)
    fault = Fault(status=403, count=5, path=f"/users/{upn}/todo/lists", code="ErrorAccessDenied")
    world.world.graph.sandbox.faults.append(fault)
    try:
        page = await admin_page(new_page, world)
        await page.goto(f"{world.console}/mailboxes/{upn}")
        await page.get_by_role("button", name="Check and enable").click()
        await expect(page.get_by_role("status")).to_contain_text(
            "1 check failed, none essential: the mailbox is enabled"
        )
    finally:
        world.world.graph.sandbox.faults.remove(fault)
    failed = page.locator("tr.c-fail")
    await expect(failed).to_have_count(1)
    await expect(failed).to_contain_text("graph.stream.todo")
    await expect(failed).not_to_contain_text("essential")
    mailbox = await world.world.services.store.mailboxes.get(upn)
    assert mailbox is not None and mailbox.enabled

    await page.get_by_role("link", name=upn).click()
    checks = page.get_by_role("region", name="Live checks")
    await expect(checks).to_contain_text(re.compile(r"Last run .*: 1 fail, \d+ warn"))
    await expect(checks).to_contain_text("graph.stream.todo")
    await world.settle()


async def _seed_health(world: ConsoleWorld) -> dict[str, str]:
    """One mailbox in each health, straight in state (as the engine leaves them)."""
    store = world.world.services.store
    now = utcnow()
    names = {h: unique(h.replace(" ", "")) for h in ("ok", "failing", "paused", "never", "brake")}
    for health, upn in names.items():
        await world.register(upn, enabled=health != "paused")
        if health in ("ok", "failing", "brake", "paused"):
            for stream in ("sent", "contacts"):
                await store.cursors.update(
                    upn,
                    stream,
                    lambda c: c.model_copy(update={"last_success_at": now - timedelta(minutes=20)}),
                )
    failed = RunRecord(
        mailbox=names["failing"],
        stream="contacts",
        job_id=uuid.uuid4().hex,
        kind="reconcile",
        started_at=now - timedelta(minutes=5),
        status="failed",
        message="credentials or permission problem: Workbooks refused the API key (401)",
    )
    braked = RunRecord(
        mailbox=names["brake"],
        stream="contacts",
        job_id=uuid.uuid4().hex,
        kind="reconcile",
        started_at=now - timedelta(minutes=5),
        status="stopped",
        counts={"brake_stopped": 1},
        message="12 of 20 linked items would change or be deleted (more than 20%): stopped",
    )
    await store.runs.put(failed)
    await store.runs.put(braked)
    return names


async def test_health_at_a_glance_with_filters_and_paging(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    names = await _seed_health(world)
    page = await admin_page(new_page, world)
    await page.goto(f"{world.console}/mailboxes?q=example.com")

    async def badge(upn: str) -> str:
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=upn, exact=True))
        return str(await row.locator(".badge").inner_text())

    await page.get_by_label("Search").fill(names["failing"])
    await page.get_by_role("button", name="Filter").click()
    assert await badge(names["failing"]) == "failing"
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=names["failing"]))
    await expect(row).to_contain_text("Workbooks refused the API key (401)")

    for health, upn in (
        ("paused", "paused"),
        ("never", "never synced"),
        ("brake", "brake stopped"),
        ("ok", "ok"),
    ):
        await page.goto(f"{world.console}/mailboxes?q={names[health]}")
        assert await badge(names[health]) == upn

    await page.goto(f"{world.console}/mailboxes")
    await page.get_by_label("Health").select_option("brake stopped")
    await page.get_by_role("button", name="Filter").click()
    shown = await page.locator("tbody .badge").all_inner_texts()
    assert shown and set(shown) == {"brake stopped"}

    # Paging: more mailboxes than a page holds.
    for i in range(27):
        await world.register(f"page{i:02d}.{uuid.uuid4().hex[:4]}@paging.example")
    await page.goto(f"{world.console}/mailboxes?q=paging.example")
    await expect(page.get_by_text(re.compile(r"Page 1 of 2 \(27 mailboxes\)"))).to_be_visible()
    assert await page.locator("tbody tr").count() == 25
    await page.get_by_role("link", name="Next").click()
    await expect(page.get_by_text(re.compile(r"Page 2 of 2"))).to_be_visible()
    assert await page.locator("tbody tr").count() == 2


async def test_forced_syncs_show_live_progress_and_the_runs_with_counts(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("force")
    await world.register(upn)
    page = await admin_page(new_page, world)
    for kind, streams in (("push", 4), ("full", 5), ("resync", 5)):
        await page.goto(f"{world.console}/mailboxes/{upn}")
        await page.get_by_label("Sync", exact=True).select_option(kind)
        await page.get_by_role("button", name="Start sync").click()
        await expect(
            page.get_by_role("heading", name=f"{kind.capitalize()} sync of {upn}")
        ).to_be_visible()
        await expect(page.locator("#progress .state")).to_have_text("done", timeout=60_000)
        await expect(page.locator("#progress progress")).to_have_attribute("value", str(streams))
    await page.goto(f"{world.console}/mailboxes/{upn}/runs")
    await page.get_by_label("Stream", exact=True).select_option("contacts")
    await page.get_by_role("button", name="Show").click()
    rows = page.locator("table.runs tbody tr")
    assert await rows.count() >= 2
    kinds = await rows.locator("td:nth-child(3)").all_inner_texts()
    assert any(k.startswith("resync") for k in kinds) and any(k.startswith("manual") for k in kinds)
    streams_shown = set(await rows.locator("td:nth-child(2)").all_inner_texts())
    assert streams_shown == {"Contacts"}


async def test_pause_edit_policy_with_validation_and_remove(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("edit")
    await world.register(upn)
    page = await admin_page(new_page, world)
    await page.goto(f"{world.console}/mailboxes/{upn}")
    await page.get_by_label("Pause because").fill("on leave until May")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_text("paused: on leave until May")).to_be_visible()

    await page.get_by_role("link", name="Edit settings").click()
    await page.get_by_label("Mass change share").fill("2")
    await page.get_by_label("Time zone").fill("Mars/Olympus")
    await page.get_by_role("button", name="Save settings").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("The settings were not saved")
    await expect(alert).to_contain_text(
        "Mass change share: Input should be less than or equal to 1"
    )
    await expect(alert).to_contain_text("'Mars/Olympus' is not an IANA time zone")
    field = page.get_by_label("Mass change share")
    await expect(field).to_have_attribute("aria-invalid", "true")
    assert "mass_change_share-error" in (await field.get_attribute("aria-describedby") or "")
    await expect(field).to_have_value("2")  # what the person typed stays for them to fix

    await field.fill("0.5")
    await page.get_by_label("Time zone").fill("Europe/London")
    await page.get_by_label("Email policy").select_option("auto")
    await page.get_by_label("People filters, rule 1: Workbooks field").fill("employer_name")
    await page.get_by_label("People filters, rule 1: test").select_option("ct")
    await page.get_by_label("People filters, rule 1: value").fill("Fabrikam")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "The new filters apply from the next full sync"
    )
    mailbox = await world.world.services.store.mailboxes.get(upn)
    assert mailbox is not None
    policy = mailbox.policy
    assert (policy.mass_change_share, policy.time_zone, policy.email_policy) == (
        0.5,
        "Europe/London",
        "auto",
    )
    assert [(r.field, r.op, r.value) for r in policy.people_filters] == [
        ("employer_name", "ct", "Fabrikam")
    ]
    assert not mailbox.enabled  # editing the policy left the pause alone

    await page.get_by_role("link", name="Remove…").click()
    await page.get_by_label("Type the mailbox address to confirm").fill("someone-else@example.com")
    await page.get_by_role("button", name="Remove the mailbox").click()
    await expect(page.get_by_text(f"Type {upn} exactly to remove it.")).to_be_visible()
    await page.get_by_label("Type the mailbox address to confirm").fill(upn)
    await page.get_by_role("button", name="Remove the mailbox").click()
    await expect(page.get_by_role("status")).to_contain_text("Mailbox removed.")
    assert await world.world.services.store.mailboxes.get(upn) is None


async def test_poison_queue_inspect_requeue_and_purge(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    services = world.world.services
    upn = unique("poison")
    await world.register(upn, enabled=False)  # requeued jobs of a paused mailbox are skipped
    poison = services.queue._poison
    job = Job(mailbox=upn, stream=Stream.CONTACTS, kind=JobKind.RECONCILE, reason="reconcile timer")
    await poison.send_message(base64.b64encode(job_payload(job).encode()).decode())
    await poison.send_message("this is not base64 {")
    page = await admin_page(new_page, world)
    await page.get_by_role("link", name="Poison queue", exact=True).click()
    table = page.locator("main table")
    await expect(table).to_contain_text(upn)
    await expect(table).to_contain_text("Contacts reconcile")
    await expect(table).to_contain_text("not a job")

    await page.get_by_role("button", name="Requeue all").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "Moved 2 message(s) from the poison queue back to the jobs queue"
    )
    await world.settle()
    # The job ran (and was skipped: the mailbox is paused); the message that is not a job went
    # straight back, as the host dead-letters what it cannot decode.  One more job poisons.
    await poison.send_message(base64.b64encode(job_payload(job).encode()).decode())
    await page.reload()
    await expect(page.locator("main table")).to_contain_text("not a job")
    await page.get_by_role("button", name="Purge all").click()  # the box is not ticked
    assert "/poison/purge" not in page.url  # the browser refused the form (required checkbox)
    await page.get_by_label("I understand purged jobs are gone").check()
    await page.get_by_role("button", name="Purge all").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "Purged 2 message(s) from the poison queue"
    )
    assert await services.queue.poison_depth() == 0


async def test_conflicts_ambiguous_duplicates_and_removals(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    store = world.world.services.store
    upn = unique("items")
    await world.register(upn)
    await store.runs.put(
        RunRecord(
            mailbox=upn,
            stream="contacts",
            job_id=uuid.uuid4().hex,
            kind="reconcile",
            status="ok",
            counts={"conflicts": 1, "workbooks_update": 1},
            message="conflict on 4321/job_title: workbooks='CFO' outlook='Chief Financial Officer' -> outlook",
        )
    )
    await store.identity.save(
        upn,
        "contacts",
        issues=[
            IdentityIssue(
                mailbox=upn,
                stream="contacts",
                outlook_id="AAMk-amb",
                kind="ambiguous",
                title="Pat Twin",
                candidates=[
                    MatchCandidate(
                        workbooks_type="Private::Crm::Person",
                        workbooks_id=11,
                        name="Pat A",
                        address="pat@x.example",
                    ),
                    MatchCandidate(
                        workbooks_type="Private::Crm::Person",
                        workbooks_id=12,
                        name="Pat B",
                        address="pat@x.example",
                    ),
                ],
            ),
            IdentityIssue(
                mailbox=upn,
                stream="contacts",
                outlook_id="AAMk-dup",
                kind="duplicate",
                title="Sam Copy",
                workbooks_type="Private::Crm::Person",
                workbooks_id=13,
                linked_outlook_id="AAMk-orig",
            ),
        ],
        removals=[
            Removal(
                mailbox=upn,
                stream="contacts",
                workbooks_type="Private::Crm::Person",
                workbooks_id=14,
                title="Lee Gone",
            )
        ],
    )
    page = await admin_page(new_page, world)
    await page.goto(f"{world.console}/mailboxes/{upn}")
    await expect(
        page.get_by_text("Contacts: 1 ambiguous, 1 duplicate, 1 removed by the user")
    ).to_be_visible()
    await page.get_by_role(
        "link", name="Conflicts, ambiguous matches, duplicates and removals"
    ).click()
    conflict = page.get_by_role("region", name=re.compile("Conflicts: what changed")).locator(
        "tbody tr"
    )
    assert await conflict.locator("td").all_inner_texts() == [
        await conflict.locator("td").first.inner_text(),
        "Contacts",
        "4321",
        "job_title",
        "CFO",
        "Chief Financial Officer",
        "outlook",
    ]
    contacts = page.get_by_role("region", name="Contacts")
    await expect(contacts).to_contain_text("2 Workbooks records hold its addresses")
    await expect(contacts).to_contain_text("Pat Twin")
    await expect(contacts).to_contain_text("Sam Copy")
    await expect(contacts).to_contain_text("Lee Gone")


async def test_explain_an_unlinked_email_and_attach_it_to_a_case(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("explain")
    await world.register(upn)
    case_id = world.world.case("Northwind contract renewal")
    message = world.world.send(
        upn, to=["nobody@unknown.example"], subject="Renewal terms", categories=["Workbooks"]
    )
    await world.world.run(upn, Stream.SENT)
    page = await admin_page(new_page, world)
    await page.goto(f"{world.console}/mailboxes/{upn}")
    await page.get_by_role("link", name="Explain or attach an email").click()
    await page.get_by_role("link", name="Explain Renewal terms").click()
    panel = page.get_by_role("region", name="“Renewal terms”")
    await expect(panel).to_contain_text("No matching Person or Sales Lead")
    await expect(panel).to_contain_text("nobody@unknown.example")

    await panel.get_by_label("Object reference").fill(f"CASE-{case_id}")
    await panel.get_by_role("button", name="Attach", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("Attached.")
    panel = page.get_by_role("region", name="“Renewal terms”")
    await expect(panel).to_contain_text(f"Case {case_id}")
    await expect(panel).to_contain_text(f"Attached on request to Case {case_id}")
    linked = [link for link in world.world.links() if link[1] == "Private::Crm::Case"]
    assert [link[2] for link in linked] == [case_id]
    record = await world.world.services.store.emails.get(upn, message)
    assert record is not None and record.state == "linked"


async def test_a_stuck_stream_is_failing_with_its_age(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("stale")
    await world.register(upn)
    store = world.world.services.store
    long_ago = utcnow() - timedelta(hours=5)
    await store.cursors.update(
        upn, "sent", lambda c: c.model_copy(update={"last_success_at": long_ago})
    )
    page = await admin_page(new_page, world)
    await page.goto(f"{world.console}/mailboxes?q={upn}")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=upn))
    await expect(row.locator(".badge")).to_have_text("failing")
    await expect(row).to_contain_text("no success since 5 hours ago")
