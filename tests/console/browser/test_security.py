"""What nobody can do from a browser: see or change another person's mailbox, use a forged
identity, post a form from another site or without its token, run script through a subject or
a record name, or read an API key."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from playwright.async_api import expect

from sync.console.auth import ADMIN_ROLE, encode_principal
from sync.core.jobs import Stream
from sync.core.state_models import IdentityIssue
from tests.console.browser.conftest import ConsoleWorld, sign_in


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:6]}@example.com"


async def token_of(page: Any) -> str:
    return str(await page.locator("input[name=csrf_token]").first.get_attribute("value"))


async def test_a_user_is_refused_every_page_and_action_of_another_mailbox(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    ann, bob = unique("ann"), unique("bob")
    await world.register(ann)
    await world.register(bob, api_key="bob-api-key")
    page = await new_page()
    await sign_in(page, world, ann)
    refused = "You can only see and change your own mailbox."
    for path in ("", "/settings", "/emails", "/runs", "/items", "/search?q=abc"):
        response = await page.goto(f"{world.console}/mailboxes/{bob}{path}")
        assert response is not None and response.status == 403, path
        await expect(page.locator("main")).to_contain_text(refused)
    for path in ("/mailboxes", "/mailboxes/new", "/poison", "/self-service"):
        response = await page.goto(f"{world.console}{path}")
        assert response is not None and response.status == 403, path
        await expect(page.locator("main")).to_contain_text(
            "This page is for Sync Center administrators."
        )
    # A mailbox that does not exist answers the same as someone else's: nothing to learn.
    response = await page.goto(f"{world.console}/mailboxes/{unique('nobody')}")
    assert response is not None and response.status == 403

    # Forms aimed at Bob's mailbox, with Ann's own valid token, change nothing.
    await page.goto(f"{world.console}/mailboxes/{ann}")
    token = await token_of(page)
    jobs_before = await world.world.services.queue.depth()
    for path, form in (
        ("/sync", {"kind": "full"}),
        ("/settings", {"email_policy": "auto"}),
        ("/emails/attach", {"message_id": "x", "record": "CASE-1"}),
        ("/disable", {"reason": "hijacked"}),
        ("/remove", {"confirm": bob}),
    ):
        answer = await page.request.post(
            f"{world.console}/mailboxes/{bob}{path}", form={**form, "csrf_token": token}
        )
        assert answer.status == 403, path
    mailbox = await world.world.services.store.mailboxes.get(bob)
    assert mailbox is not None and mailbox.enabled and mailbox.policy.email_policy == "shared"
    assert await world.world.services.queue.depth() == jobs_before

    # Bob's sync job is Bob's too.
    bob_page = await new_page()
    await sign_in(bob_page, world, bob)
    await bob_page.get_by_role("button", name="Sync now").click()
    job_url = bob_page.url
    await world.settle()
    response = await page.goto(job_url)
    assert response is not None and response.status == 403
    response = await page.goto(f"{job_url}/progress")
    assert response is not None and response.status == 403


async def test_a_mailbox_bound_to_an_object_id_opens_only_for_that_account(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn, oid = unique("bound"), str(uuid.uuid4())
    mailbox = await world.register(upn)
    await world.world.services.store.mailboxes.put(mailbox.model_copy(update={"graph_user": oid}))
    impostor = await new_page()
    await sign_in(impostor, world, upn, object_id=str(uuid.uuid4()))
    await expect(impostor.get_by_role("heading", name="No mailbox for you yet")).to_be_visible()
    response = await impostor.goto(f"{world.console}/mailboxes/{upn}")
    assert response is not None and response.status == 403
    owner = await new_page()
    await sign_in(owner, world, upn, object_id=oid)
    await expect(owner.get_by_role("heading", name=f"My sync {upn}")).to_be_visible()


async def test_a_forged_principal_header_is_not_an_identity(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    forged = encode_principal("mallory@example.com", roles=(ADMIN_ROLE,))
    page = await new_page()
    answer = await page.request.get(
        f"{world.console}/mailboxes", headers={"X-MS-CLIENT-PRINCIPAL": forged}, max_redirects=0
    )
    assert answer.status == 302
    assert answer.headers["location"].startswith(
        "/.auth/login/dev?post_login_redirect_uri=/api/console/mailboxes"
    )
    # A signed-in user cannot promote themselves with the header either.
    user = unique("user")
    await world.register(user)
    await sign_in(page, world, user)
    answer = await page.request.get(
        f"{world.console}/mailboxes", headers={"X-MS-CLIENT-PRINCIPAL": forged}
    )
    assert answer.status == 403
    # Nor by editing the session cookie.
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "devkit-auth")
    payload, _, signature = session["value"].rpartition(".")
    raw = base64.urlsafe_b64decode(payload).replace(
        b'"roles": []', f'"roles": ["{ADMIN_ROLE}"]'.encode()
    )
    await page.context.add_cookies(
        [{**session, "value": f"{base64.urlsafe_b64encode(raw).decode()}.{signature}"}]
    )
    answer = await page.request.get(f"{world.console}/mailboxes", max_redirects=0)
    assert answer.status == 302  # the signature no longer matches: signed out


async def test_forms_need_their_token_and_this_site(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("csrf")
    await world.register(upn)
    page = await new_page()
    await sign_in(page, world, upn)
    token = await token_of(page)
    url = f"{world.console}/mailboxes/{upn}/sync"
    no_token = await page.request.post(url, form={"kind": "full"})
    assert no_token.status == 403
    assert "The form has expired" in await no_token.text()
    wrong = await page.request.post(url, form={"kind": "full", "csrf_token": "x" * 43})
    assert wrong.status == 403
    cross_site = await page.request.post(
        url, form={"kind": "full", "csrf_token": token}, headers={"Origin": "http://evil.example"}
    )
    assert cross_site.status == 403
    same_site = await page.request.post(
        url, form={"kind": "full", "csrf_token": token}, max_redirects=0
    )
    assert same_site.status == 303 and "/api/console/jobs/" in same_site.headers["location"]
    await world.settle()


async def test_hostile_strings_from_outlook_and_workbooks_are_shown_as_text(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("hostile")
    await world.register(upn)
    subject = "<img src=x onerror=alert(1)>"
    name = '"><script>window.__pwned=1</script>'
    tag = uuid.uuid4().hex[:6]
    world.world.seed("crm/organisations", [{"name": f"{tag} {name}"}])
    world.world.send(upn, to=["x@nowhere.example"], subject=subject, categories=["Workbooks"])
    await world.world.run(upn, Stream.SENT)
    await world.world.services.store.identity.save(
        upn,
        "contacts",
        issues=[
            IdentityIssue(
                mailbox=upn,
                stream="contacts",
                outlook_id="AAMk-hostile",
                kind="duplicate",
                title="<svg onload=alert(2)>",
                linked_outlook_id="AAMk-other",
            )
        ],
    )
    page = await new_page()
    await sign_in(page, world, upn)
    await page.get_by_role("link", name="Explain or attach an email").click()
    await expect(page.get_by_role("cell", name=subject, exact=True)).to_be_visible()
    html = await page.content()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # escaped by the template, not only blocked
    await page.get_by_role("link", name=f"Explain {subject}").click()
    await expect(page.get_by_role("heading", name=f"“{subject}”")).to_be_visible()
    await page.get_by_label("Or search Workbooks by name").fill(tag)
    await expect(page.locator("#search-results")).to_contain_text(f"Organisation {tag} {name}")
    await page.goto(f"{world.console}/mailboxes/{upn}/items")
    await expect(page.locator("main")).to_contain_text("<svg onload=alert(2)>")

    admin = await new_page()
    await sign_in(admin, world, "admin@example.com", admin=True)
    await admin.goto(f"{world.console}/mailboxes/{upn}")
    await admin.get_by_label("Pause because").fill("<b>bold</b> & <i>odd</i>")
    await admin.get_by_role("button", name="Pause").click()
    await admin.goto(f"{world.console}/mailboxes?q={upn}")
    await expect(admin.locator("tbody")).to_contain_text("<b>bold</b> & <i>odd</i>")

    for p in (page, admin):
        assert p.dialogs == []
        assert await p.evaluate("window.__pwned") is None
        assert await p.locator("img[src=x], svg, script:not([src]), b, i").count() == 0


async def test_no_api_key_is_ever_shown_and_pages_carry_their_security_headers(
    console_world: ConsoleWorld, new_page: Any
) -> None:
    world = console_world
    upn = unique("secret")
    await world.register(upn)  # its reference names a variable holding "ann-api-key"
    page = await new_page()
    await sign_in(page, world, "admin@example.com", admin=True)
    for path in (
        "/mailboxes",
        f"/mailboxes/{upn}",
        f"/mailboxes/{upn}/settings",
        f"/mailboxes/{upn}/emails",
    ):
        response = await page.goto(f"{world.console}{path}")
        assert response is not None and response.ok, path
        assert "ann-api-key" not in await page.content(), path
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    await page.goto(f"{world.console}/mailboxes/{upn}")
    await expect(page.get_by_text(world.keys[upn])).to_be_visible()

    # A key pasted where its reference belongs is refused and not echoed back.
    await page.goto(f"{world.console}/mailboxes/new")
    await page.get_by_label("Mailbox address (UPN)").fill(unique("paste"))
    await page.get_by_label("Workbooks URL").fill("https://secure.workbooks.com")
    await page.get_by_label("API key reference").fill("0123456789abcdef-REAL-KEY")
    await page.get_by_role("button", name="Register the mailbox").click()
    await expect(page.locator("#api_key_ref-error")).to_contain_text("never the API key itself")
    assert "0123456789abcdef-REAL-KEY" not in await page.content()
    await expect(page.get_by_label("API key reference")).to_have_value("")


async def test_signing_out_and_back_in(console_world: ConsoleWorld, new_page: Any) -> None:
    world = console_world
    page = await new_page()
    await page.goto(world.console)
    await expect(page.get_by_role("heading", name="Development sign-in")).to_be_visible()
    await sign_in(page, world, "admin@example.com", admin=True)
    await page.get_by_role("link", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Development sign-in")).to_be_visible()
