"""Screenshots of the Sync Center console's main pages, taken by the demo
(``python -m devkit demo --screenshots docs/console``) once its story has run, so the pictures
in the README show the real pages over real data: the demo's mailbox with its linked emails,
contacts and meetings, plus a few registered mailboxes in other health states.

Headless Chromium from the system packages, driven by Playwright (as the browser tests do).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

VIEWPORT: ViewportSize = {"width": 1280, "height": 860}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ADMIN = "admin@contoso.example"
# Other mailboxes of the tenant, to show health at a glance: name -> health.
OTHERS = {
    "ben@contoso.example": "failing",
    "cara@contoso.example": "paused",
    "dev@contoso.example": "never synced",
    "eli@contoso.example": "ok",
}


def chromium() -> str:
    path = (
        os.environ.get("SYNC_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if path is None:
        raise RuntimeError("Chromium is not installed (apt-get install -y chromium)")
    return path


async def seed_others(services: Any, workbooks_url: str, key_ref: str) -> None:
    """The other mailboxes, straight in state as the engine would leave them."""
    from sync.core.state_models import Mailbox, RunRecord, utcnow

    store = services.store
    now = utcnow()
    for upn, health in OTHERS.items():
        paused = health == "paused"
        await store.mailboxes.put(
            Mailbox(
                id=upn,
                workbooks_url=workbooks_url,
                api_key_ref=key_ref,
                enabled=not paused,
                disabled_reason="on leave until January" if paused else "",
            )
        )
        if health == "never synced":
            continue
        for stream in ("sent", "contacts", "events", "todo"):
            await store.cursors.update(
                upn,
                stream,
                lambda c: c.model_copy(update={"last_success_at": now - timedelta(minutes=12)}),
            )
        if health == "failing":
            await store.runs.put(
                RunRecord(
                    mailbox=upn,
                    stream="contacts",
                    job_id=uuid.uuid4().hex,
                    kind="reconcile",
                    started_at=now - timedelta(minutes=4),
                    finished_at=now - timedelta(minutes=4),
                    status="failed",
                    message="credentials or permission problem: Workbooks refused the API key (401)",
                )
            )


async def _sign_in(page: Any, console: str, name: str, *, admin: bool) -> None:
    await page.goto(console)
    await page.get_by_label("Email address").fill(name)
    if admin:
        await page.get_by_label("Administrator (app role SyncCenter.Admin)").check()
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


async def take(base_url: str, mailbox: str, out: Path) -> list[Path]:
    """Sign in as an administrator, then as the mailbox's owner, and save the main pages."""
    from playwright.async_api import async_playwright

    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    console = f"{base_url}/api/console"
    saved: list[Path] = []

    async def shot(page: Any, name: str) -> None:
        path = out / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        saved.append(path)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            admin = await (await browser.new_context(viewport=VIEWPORT)).new_page()
            await _sign_in(admin, console, ADMIN, admin=True)
            await shot(admin, "mailboxes")
            await admin.goto(f"{console}/mailboxes/{mailbox}")
            await shot(admin, "mailbox")
            await admin.get_by_role("button", name="Run the checks now").click()
            await admin.wait_for_load_state()
            await shot(admin, "checks")
            await admin.goto(f"{console}/mailboxes/{mailbox}/emails")
            await admin.get_by_role("link", name="Explain").first.click()
            await admin.wait_for_load_state()
            await shot(admin, "explain")

            user = await (await browser.new_context(viewport=VIEWPORT)).new_page()
            await _sign_in(user, console, mailbox, admin=False)
            await shot(user, "my-sync")
            await user.goto(f"{console}/mailboxes/{mailbox}/settings")
            await shot(user, "my-settings")
        finally:
            await browser.close()
    return saved
