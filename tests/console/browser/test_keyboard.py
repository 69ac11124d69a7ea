"""The console works from the keyboard and with a screen reader's names: every input is
labelled, the first Tab reaches "Skip to content", focus follows the visual order of forms,
and the main actions are done with Tab, typing and Enter alone."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import expect

from sync.core.jobs import Stream
from tests.console.browser.conftest import ConsoleWorld, sign_in

# The name a screen reader announces for each control without one; [] when all have names.
UNNAMED = """() => {
  const named = (el) => {
    if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return true;
    if (el.labels && el.labels.length && [...el.labels].some(l => l.textContent.trim())) return true;
    if (el.tagName === 'BUTTON' || el.tagName === 'A') return el.textContent.trim().length > 0;
    return false;
  };
  return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
    .filter(el => !named(el)).map(el => el.outerHTML.slice(0, 120));
}"""
FOCUSED = "() => { const el = document.activeElement; return el.id || el.getAttribute('name') || el.textContent.trim(); }"


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:6]}@example.com"


async def test_every_control_on_every_page_has_a_name(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("labels")
    await world.register(upn)
    admin = await new_page()
    await sign_in(admin, world, "admin@example.com", admin=True)
    paths = [
        "/mailboxes",
        "/mailboxes/new",
        f"/mailboxes/{upn}",
        f"/mailboxes/{upn}/settings",
        f"/mailboxes/{upn}/emails",
        f"/mailboxes/{upn}/runs",
        f"/mailboxes/{upn}/items",
        f"/mailboxes/{upn}/remove",
        "/poison",
        "/self-service",
    ]
    for path in paths:
        await admin.goto(f"{world.console}{path}")
        assert await admin.evaluate(UNNAMED) == [], path
        assert await admin.locator("h1").count() == 1, path
        assert await admin.locator("main#main").count() == 1, path
    user = await new_page()
    await sign_in(user, world, upn)
    for path in (f"/mailboxes/{upn}", f"/mailboxes/{upn}/settings", f"/mailboxes/{upn}/emails"):
        await user.goto(f"{world.console}{path}")
        assert await user.evaluate(UNNAMED) == [], path


async def test_skip_link_and_focus_order(console_world: ConsoleWorld, new_page: Any) -> None:
    world = console_world
    page = await new_page()
    await sign_in(page, world, "admin@example.com", admin=True)
    await page.goto(f"{world.console}/mailboxes/new")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    order = []
    for _ in range(6):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate(FOCUSED))
    assert order == [
        "mailbox",
        "workbooks_url",
        "api_key_ref",
        "workbooks_user",
        "graph_user",
        "Register the mailbox",
    ]


async def test_onboarding_and_attaching_from_the_keyboard_alone(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("keys")
    world.graph_mailbox(upn)
    ref = world.key_ref(upn)
    page = await new_page()
    await sign_in(page, world, "admin@example.com", admin=True)
    await page.goto(f"{world.console}/mailboxes")

    async def tab_to(name: str, limit: int = 40) -> None:
        for _ in range(limit):
            await page.keyboard.press("Tab")
            if await page.evaluate(FOCUSED) == name:
                return
        raise AssertionError(f"{name!r} is not reachable with Tab")

    await tab_to("Add a mailbox")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Add a mailbox")).to_be_visible()
    await tab_to("mailbox")
    await page.keyboard.type(upn)
    await page.keyboard.press("Tab")
    await page.keyboard.press("Control+A")
    await page.keyboard.type(world.world.workbooks.base_url)
    await page.keyboard.press("Tab")
    await page.keyboard.type(ref)
    await page.keyboard.press("Enter")  # submits the form
    await expect(page.locator(".notice")).to_contain_text("Mailbox registered, paused")

    await tab_to("Check and enable")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Every check passed", timeout=30_000)
    await world.settle()

    # An email, explained and attached with the keyboard.
    case_id = world.world.case("Keyboard case")
    world.world.send(
        upn, to=["kb@nowhere.example"], subject="Typed, not clicked", categories=["Workbooks"]
    )
    await world.world.run(upn, Stream.SENT)
    await page.goto(f"{world.console}/mailboxes/{upn}/emails")
    await tab_to("Explain Typed, not clicked")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="“Typed, not clicked”")).to_be_visible()
    await tab_to("record")
    await page.keyboard.type(f"CASE-{case_id}")
    await page.keyboard.press("Enter")
    await expect(page.locator(".notice")).to_contain_text("Attached.")
