"""A user sees and fixes their own sync without an administrator: their status in plain words,
what was filed, conflicts and what won; explain an email and attach it to a record found by
searching Workbooks; their own settings within the limits an administrator set."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import expect

from sync.core.jobs import Stream
from sync.core.state_models import RunRecord
from tests.console.browser.conftest import ConsoleWorld, sign_in


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:6]}@example.com"


async def test_my_sync_in_words_with_what_was_filed_and_conflicts(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("dana")
    await world.register(upn)
    address = f"pat.{uuid.uuid4().hex[:6]}@fabrikam.example"
    pat = world.world.person("Pat Customer", address)
    world.world.send(upn, to=[address], subject="Proposal for Fabrikam", categories=["Workbooks"])
    await world.world.run(upn, Stream.SENT)
    await world.world.services.store.runs.put(
        RunRecord(
            mailbox=upn,
            stream="contacts",
            job_id=uuid.uuid4().hex,
            kind="reconcile",
            counts={"conflicts": 1},
            message="conflict on 4321/job_title: workbooks='CFO' outlook='Chief Financial Officer' -> outlook",
        )
    )
    page = await new_page()
    await sign_in(page, world, upn)
    await expect(page.get_by_role("heading", name=re.compile("My sync"))).to_be_visible()
    assert page.url.endswith(f"/api/console/mailboxes/{upn}")
    status = page.locator(".status")
    await expect(status).to_contain_text("Your mailbox is syncing normally.")
    await expect(status).to_contain_text(
        re.compile(r"Emails you share: last synced (just now|\d+ minutes? ago)")
    )
    filed = page.get_by_role("region", name="Recently filed in Workbooks")
    await expect(filed).to_contain_text("Proposal for Fabrikam")
    await expect(filed).to_contain_text(f"Person {pat}")
    conflicts = page.get_by_role("region", name="Changed on both sides")
    await expect(conflicts).to_contain_text(
        "job title of Workbooks record 4321 (Contacts) was changed in Workbooks to “CFO” and in "
        "Outlook to “Chief Financial Officer”; the Outlook value was kept."
    )
    await filed.get_by_role("link", name="Why? Proposal for Fabrikam").click()
    await expect(page.get_by_role("region", name="“Proposal for Fabrikam”")).to_contain_text(
        "Filed in Workbooks"
    )

    await page.get_by_role("link", name="My sync").click()
    await page.get_by_role("button", name="Sync now").click()
    await expect(page.locator("#progress .state")).to_have_text("done", timeout=60_000)


async def test_a_problem_is_told_in_plain_words(console_world: ConsoleWorld, new_page: Any) -> None:
    world = console_world
    upn = unique("erin")
    await world.register(upn)
    await world.world.services.store.runs.put(
        RunRecord(
            mailbox=upn,
            stream="sent",
            job_id=uuid.uuid4().hex,
            kind="push",
            status="failed",
            message="credentials or permission problem: Workbooks answered 401",
        )
    )
    page = await new_page()
    await sign_in(page, world, upn)
    status = page.locator(".status")
    await expect(status).to_contain_text("Your mailbox has a sync problem.")
    await expect(status).to_contain_text(
        "Emails you share: the service cannot sign in for you (an API key or a permission). "
        "Your administrator needs to fix this; nothing is lost meanwhile."
    )


async def test_explain_an_email_and_attach_it_to_a_record_found_by_search(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("frank")
    await world.register(upn)
    tag = uuid.uuid4().hex[:6]
    case_id = world.world.case(f"Printer jam {tag}")
    org = world.world.seed("crm/organisations", [{"name": f"Printer Supplies {tag}"}])[0]
    message = world.world.send(
        upn, to=["someone@nowhere.example"], subject="About the printer", categories=["Workbooks"]
    )
    await world.world.run(upn, Stream.SENT)

    page = await new_page()
    await sign_in(page, world, upn)
    await page.get_by_role("link", name="Explain or attach an email").click()
    await page.get_by_role("link", name="Explain About the printer").click()
    panel = page.get_by_role("region", name="“About the printer”")
    await expect(panel).to_contain_text("No matching Person or Sales Lead")

    # Typing searches as you type (htmx); both records come back, each with its own button.
    await panel.get_by_label("Or search Workbooks by name").fill(f"printer {tag}"[:7])
    await panel.get_by_label("Or search Workbooks by name").fill(tag)
    results = page.locator("#search-results")
    await expect(results).to_contain_text(f"Case Printer jam {tag}")
    await expect(results).to_contain_text(
        f"Organisation Printer Supplies {tag} ({org['object_ref']})"
    )
    await results.get_by_role("button", name=f"Attach to Case Printer jam {tag}").click()

    await expect(page.get_by_role("status")).to_contain_text("Attached.")
    panel = page.get_by_role("region", name="“About the printer”")
    await expect(panel).to_contain_text(f"Attached on request to Case {case_id}")
    record = await world.world.services.store.emails.get(upn, message)
    assert record is not None and f"Private::Crm::Case:{case_id}" in record.linked

    # Without script the same search is a page of its own.
    await page.context.route("**/static/htmx.min.js", lambda route: route.abort())
    await page.reload()
    await (
        page.get_by_role("region", name="“About the printer”")
        .get_by_label("Or search Workbooks by name")
        .fill(f"ORG-{org['id']}")
    )
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#search-results")).to_contain_text(f"Printer Supplies {tag}")
    assert "/search?" in page.url


async def test_own_settings_within_the_limits_an_admin_sets(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("gale")
    await world.register(upn)
    admin = await new_page()
    await sign_in(admin, world, "admin@example.com", admin=True)
    await admin.get_by_role("link", name="Self-service limits").click()
    await admin.get_by_label("Email policy", exact=True).uncheck()
    await admin.get_by_label("People filters", exact=True).check()
    await admin.get_by_label("Most people filters a user may have").fill("1")
    await admin.get_by_role("button", name="Save limits").click()
    await expect(admin.get_by_role("status")).to_contain_text("Self-service limits saved.")
    try:
        page = await new_page()
        await sign_in(page, world, upn)
        await page.get_by_role("link", name="My settings").click()
        await expect(page.get_by_role("heading", name="My settings")).to_be_visible()
        await expect(
            page.get_by_text("You can change: People filters, Sync schedules.")
        ).to_be_visible()
        assert await page.get_by_label("Email policy").count() == 0
        assert await page.get_by_label("Mass change share").count() == 0

        await page.get_by_label("People filters, rule 1: Workbooks field").fill("employer_name")
        await page.get_by_label("People filters, rule 1: value").fill("Fabrikam")
        await page.get_by_label("People filters, rule 2: Workbooks field").fill("person_job_title")
        await page.get_by_label("People filters, rule 2: test").select_option("ct")
        await page.get_by_label("People filters, rule 2: value").fill("Buyer")
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.get_by_role("alert")).to_contain_text(
            "at most 1 people filters (your administrator's limit)"
        )
        await page.get_by_label("People filters, rule 2: Workbooks field").fill("")
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.locator(".notice")).to_contain_text(
            "The new filters apply from the next full sync"
        )
        mailbox = await world.world.services.store.mailboxes.get(upn)
        assert mailbox is not None
        assert [(r.field, r.op, r.value) for r in mailbox.policy.people_filters] == [
            ("employer_name", "eq", "Fabrikam")
        ]
    finally:
        from sync.console.policy import Limits, save_limits

        await save_limits(world.world.services, Limits())
