"""The console in a real browser: headless Chromium from the system packages, driven by
Playwright, against the local Functions host running function_app.py with both sandboxes and
Azurite (the same world as the demo).

Playwright's own browser download is not used: the tests launch the system Chromium
(``SYNC_CHROMIUM``, else ``chromium`` on the PATH).  Without it they are skipped with the
command that installs it, except in CI: ``.ci/run`` installs Chromium when it is missing and
sets ``SYNC_BROWSER_TESTS=required``, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.local import free_port, patched_environ
from tests.support.world import World, world_running

REQUIRED = "SYNC_BROWSER_TESTS"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("SYNC_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@dataclass
class ConsoleWorld:
    world: World
    base: str  # http://127.0.0.1:<port>
    host: Any
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def console(self) -> str:
        return f"{self.base}/api/console"

    def key_ref(self, upn: str, api_key: str = "ann-api-key") -> str:
        """An ``env:`` reference holding a sandbox Workbooks API key for ``upn``."""
        env = f"CONSOLE_KEY_{uuid.uuid4().hex[:8].upper()}"
        os.environ[env] = api_key
        self.keys[upn] = env
        return f"env:{env}"

    def graph_mailbox(self, upn: str) -> None:
        self.world.graph.sandbox.state.add_mailbox(upn)  # idempotent

    async def register(
        self, upn: str, *, enabled: bool = True, api_key: str = "ann-api-key", **policy: Any
    ) -> Any:
        """A mailbox registered straight in state (the browser tests of onboarding use the UI)."""
        from sync.core.state_models import Mailbox, MailboxPolicy

        self.graph_mailbox(upn)
        mailbox = Mailbox(
            id=upn,
            workbooks_url=self.world.workbooks.base_url,
            api_key_ref=self.key_ref(upn, api_key),
            enabled=enabled,
            disabled_reason="" if enabled else "paused for a test",
            policy=MailboxPolicy(**policy),
        )
        await self.world.services.store.mailboxes.put(mailbox)
        return mailbox

    async def settle(self) -> None:
        await self.host.drain(timeout=60)


# Module-scoped, not session-scoped: the world patches the environment (the sandboxes' Graph
# tenant, table prefix, queue) for as long as it runs, and that must end before other tests.
@pytest.fixture(scope="module")
async def console_world(azurite_connection: str) -> AsyncIterator[ConsoleWorld]:
    from devkit.host.localhost import LocalHost

    port = free_port()
    env = {"SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "SYNC_WEBHOOK_MEMO_SECONDS": "0.2"}
    with patched_environ(env):
        async with (
            world_running(azurite_connection) as world,
            LocalHost(port=port, timers=False) as host,
        ):
            yield ConsoleWorld(world, host.base_url, host)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        why = (
            "Chromium is not installed: the console's browser tests need it "
            "(apt-get install -y chromium, or set SYNC_CHROMIUM to its path)"
        )
        if os.environ.get(REQUIRED) == "required":  # CI (.ci/run): never skip silently
            pytest.fail(why)
        pytest.skip(why)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # launch() starts Chromium with a fresh, temporary user-data-dir each time.
        launched = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_page(browser: Any) -> AsyncIterator[Any]:
    """A page factory: each call is a new person (own cookies) with dialogs recorded."""
    contexts = []

    async def make() -> Any:
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = await context.new_page()
        page.dialogs = []  # any alert() would mean script ran where text was expected

        async def on_dialog(dialog: Any) -> None:
            page.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        return page

    yield make
    for context in contexts:
        await context.close()


async def sign_in(
    page: Any, world: ConsoleWorld, name: str, *, admin: bool = False, object_id: str = ""
) -> None:
    """Sign in through the development sign-in page, as a person would."""
    await page.goto(world.console)
    await page.get_by_label("Email address").fill(name)
    if object_id:
        await page.get_by_label("Entra object id (optional)").fill(object_id)
    if admin:
        await page.get_by_label("Administrator (app role SyncCenter.Admin)").check()
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
