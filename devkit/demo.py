"""``python -m devkit demo``: the whole service on one machine, in a few seconds.

Starts Azurite, the Graph and Workbooks sandboxes and the local Functions host (running the
real ``function_app.py``), registers a sandbox mailbox, creates its Graph subscriptions (the
sandbox performs the real validation handshake against the host's webhook), shows ``doctor``'s
live checks of the setup (secrets, Workbooks, Graph permissions, streams, webhook), and then
acts as the user: it sends a categorised email to a known Person and waits for the email to
appear linked in Workbooks; creates a Person for a recipient nobody knew and shows the earlier
email linked retroactively; and shows People, contact edits and meetings crossing over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

MAILBOX = "ann@contoso.example"
KNOWN = "pat.customer@fabrikam.example"
UNKNOWN = "sam.prospect@northwind.example"
WORKBOOKS_KEY_ENV = "DEMO_WORKBOOKS_KEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


_T0 = time.monotonic()


def step(n: int, text: str) -> None:
    say(f"\n[{n}] +{time.monotonic() - _T0:4.1f}s  {text}")


async def wait_for(
    what: str, check: Callable[[], Awaitable[Any]], timeout: float = 20.0
) -> tuple[Any, float]:
    start = time.monotonic()
    while True:
        result = await check()
        if result:
            return result, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


class Demo:
    """The running world and the small helpers each step uses."""

    def __init__(self, graph: Any, workbooks: Any, host: Any, services: Any) -> None:
        self.graph, self.workbooks, self.host, self.services = graph, workbooks, host, services

    def seed(self, endpoint: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from devkit.sandbox.workbooks.control import seed

        return seed(self.workbooks.state, endpoint, rows)

    def table(self, endpoint: str) -> list[dict[str, Any]]:
        rows = self.workbooks.state.tables.get(endpoint, {}).values()
        return [r for r in rows if not r.get("is_deleted")]

    def email_links(self) -> list[tuple[int, str, int]]:
        path = self.workbooks.state.config.email_link_path
        return sorted(
            (int(r["email_id"]), str(r["resource_type"]), int(r["resource_id"]))
            for r in self.table(path)
        )

    def send_email(self, to: list[str], subject: str, categories: list[str]) -> str:
        from devkit.sandbox.graph.control import sent_message

        sb = self.graph.sandbox
        box = sb.state.mailbox(MAILBOX)
        data = sent_message(
            box.upn,
            {
                "subject": subject,
                "body": "Following up on our call.",
                "to": to,
                "cc": [],
                "bcc": [],
                "categories": categories,
            },
        )
        item = sb.create_item(box, sb.state.container(box, "message", "sentitems"), data)
        return str(item.immutable_id)

    async def settle(self) -> None:
        await self.host.drain(timeout=30)


async def _sent_email_steps(demo: Demo, n: int) -> int:
    from sync.engine.emails import explain

    pat = demo.seed("crm/people", [{"name": "Pat Customer", "main_location[email]": KNOWN}])[0]
    step(n, f"Workbooks has Person {pat['object_ref']} Pat Customer <{KNOWN}>.")
    say(f"    Ann sends an email to Pat and {UNKNOWN}, categorised 'Workbooks'...")
    sent_at = time.monotonic()
    message_id = demo.send_email([KNOWN, UNKNOWN], "Proposal for Fabrikam", ["Workbooks"])

    async def linked() -> Any:
        return [link for link in demo.email_links() if link[2] == int(pat["id"])]

    links, _ = await wait_for("the email to be linked to Pat", linked)
    elapsed = time.monotonic() - sent_at
    email_id = links[0][0]
    say(
        f"    Graph notified the webhook; the worker synced the sent items; in Workbooks "
        f"email {email_id} is linked to {links[0][1]} {links[0][2]} after {elapsed:.2f} s."
    )
    await demo.settle()
    explanation = await explain(demo.services, MAILBOX, message_id)
    say("    Explanation recorded for the message:")
    for line in _explanation_lines(explanation):
        say(f"      {line}")

    n += 1
    sam = demo.seed("crm/people", [{"name": "Sam Prospect", "main_location[email]": UNKNOWN}])[0]
    step(
        n, f"A colleague creates Person {sam['object_ref']} Sam Prospect <{UNKNOWN}> in Workbooks."
    )
    say("    The 30-minute reconciliation runs (fired now)...")
    await demo.host.fire_timer("reconcile_timer")

    async def retro() -> Any:
        return [link for link in demo.email_links() if link[2] == int(sam["id"])]

    links, took = await wait_for("the retroactive link", retro, timeout=60)
    say(f"    The earlier email {links[0][0]} is now linked to Sam as well ({took:.2f} s).")
    await demo.settle()
    return n + 1


def _explanation_lines(record: dict[str, Any]) -> list[str]:
    why = record.get("explanation") or {}
    lines = [
        f"decision: {why.get('decision', record.get('state'))} ({why.get('reason', '')}); "
        f"shared by {why.get('shared_by', '-')}"
    ]
    for r in why.get("recipients", []):
        matches = ", ".join(f"{m['record']} via {m['field']}" for m in r.get("matches", []))
        lines.append(
            f"{r['role']:3} {r['address']}: {r['result']}" + (f" ({matches})" if matches else "")
        )
    return lines


def _graph_items(demo: Demo, kind: str) -> list[tuple[Any, Any]]:
    """(container, item) pairs of one kind in the demo mailbox of the Graph sandbox."""
    box = demo.graph.sandbox.state.mailbox(MAILBOX)
    return [
        (cont, item)
        for cont in box.containers.values()
        if cont.kind == kind
        for item in cont.items.values()
    ]


async def _reconcile(demo: Demo, *streams: Any) -> None:
    from sync.core.jobs import Job, JobKind

    for stream in streams:
        await demo.services.queue.send(
            Job(mailbox=MAILBOX, stream=stream, kind=JobKind.RECONCILE, reason="demo")
        )
    await demo.settle()


async def _two_way_steps(demo: Demo, n: int) -> int:
    from sync.core.jobs import Stream

    state = demo.workbooks.state
    user = state.user_by_key("ann-api-key")
    queues = state.my_queues(user)
    chris = demo.seed(
        "crm/people",
        [
            {
                "name": "Chris Buyer",
                "person_first_name": "Chris",
                "person_last_name": "Buyer",
                "main_location[email]": "chris.buyer@fabrikam.example",
                "person_job_title": "CFO",
                "assigned_to": queues["Private::Crm::PersonQueue"],
            }
        ],
    )[0]
    step(n, f"Person {chris['object_ref']} Chris Buyer is in Ann's My People; a sync cycle runs.")
    await _reconcile(demo, Stream.CONTACTS)
    found = [
        (c, i)
        for c, i in _graph_items(demo, "contact")
        if i.data.get("displayName") == "Chris Buyer"
    ]
    if not found:
        raise TimeoutError("the contact for Chris Buyer was not created")
    cont, contact = found[0]
    say(
        f"    Outlook contact: {contact.data.get('displayName')}, job title "
        f"'{contact.data.get('jobTitle')}', categories {contact.data.get('categories')}, "
        f"stamped with Workbooks id {next(iter(contact.ext.values()), '?')}."
    )

    n += 1
    step(n, "Ann changes the contact's job title in Outlook to 'Chief Financial Officer'.")
    box = demo.graph.sandbox.state.mailbox(MAILBOX)
    demo.graph.sandbox.update_item(box, cont, contact, {"jobTitle": "Chief Financial Officer"})
    await demo.settle()  # the contacts notification has already queued a job; let it run
    person = state.find("crm/people", int(chris["id"]))
    say(
        f"    Workbooks {person['object_ref']} job title: '{person.get('person_job_title')}' "
        f"(lock_version {person.get('lock_version')})."
    )

    n += 1
    meeting = demo.seed(
        "activity/meetings",
        [
            {
                "name": "Quarterly review with Fabrikam",
                "activity_type": "Meeting",
                "start": "2026-12-03T14:00:00.000Z,1,Europe/London",
                "finish": "2026-12-03T15:00:00.000Z,1,Europe/London",
                "assigned_to": queues.get("Private::Activity::ActivityQueue"),
            }
        ],
    )[0]
    step(
        n,
        f"Workbooks meeting {meeting.get('object_ref', meeting['id'])} "
        "'Quarterly review with Fabrikam' is on Ann's activity queue; a sync cycle runs.",
    )
    await _reconcile(demo, Stream.EVENTS)
    events = [
        i
        for _, i in _graph_items(demo, "event")
        if i.data.get("subject") == "Quarterly review with Fabrikam"
    ]
    if not events:
        raise TimeoutError("the event for the meeting was not created")
    event = events[0].data
    say(
        f"    Outlook event: '{event.get('subject')}' {event.get('start', {}).get('dateTime')} → "
        f"{event.get('end', {}).get('dateTime')} ({event.get('start', {}).get('timeZone')}), "
        f"attendees: {len(event.get('attendees') or [])} (no invitations sent)."
    )
    return n + 1


async def _doctor_step(services: Any, mailbox: Any, n: int) -> None:
    """``python -m sync doctor``: every assumption checked live against the local stack."""
    from sync.core.doctor import render
    from sync.engine.doctor import run_doctor

    step(n, f"python -m sync doctor {mailbox.id}: the setup checked live")
    report = await run_doctor(services, mailbox)
    for line in render(report):
        say(f"  {line}")


async def run() -> int:
    from devkit import azurite
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.graph import running_sandbox as graph_sandbox
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
    from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox

    with azurite.running() as az:
        step(1, f"Azurite started (pid {az.pid}).")
        async with (
            graph_sandbox(GraphConfig(controls=True)) as graph,
            workbooks_sandbox(WorkbooksConfig(sim_controls=True)) as workbooks,
        ):
            say(f"    Graph sandbox at {graph.base_url}, Workbooks sandbox at {workbooks.base_url}")
            port = _free_port()
            os.environ.update(
                {
                    "AzureWebJobsStorage": az.connection_string,
                    "GRAPH_BASE_URL": graph.base_url,
                    "GRAPH_AUTHORITY_HOST": graph.origin,
                    "GRAPH_TENANT_ID": graph.tenant_id,
                    "GRAPH_CLIENT_ID": "sandbox-client",
                    "GRAPH_CLIENT_SECRET": "sandbox-secret",
                    "SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                    # One user, a handful of changes: no bursts to absorb, so keep the
                    # webhook's memory of pending streams (and the re-read after it) short.
                    "SYNC_WEBHOOK_MEMO_SECONDS": "0.2",
                    # The story is told by the demo's own lines; the service's per-run log
                    # lines (INFO in production) would bury them.
                    "SYNC_LOG_LEVEL": os.environ.get("SYNC_LOG_LEVEL", "WARNING"),
                    WORKBOOKS_KEY_ENV: "ann-api-key",
                }
            )
            return await _with_host(graph, workbooks, port)


async def _with_host(graph: Any, workbooks: Any, port: int) -> int:
    from devkit.host.localhost import LocalHost
    from sync.core.state_models import Mailbox
    from sync.engine.subscriptions import ensure_for_mailbox
    from sync.runtime import get_services, reset_services

    await reset_services()
    async with LocalHost(port=port, timers=False) as host:
        services = await get_services()
        step(2, f"Local Functions host running function_app.py on {host.base_url}")
        graph.sandbox.state.add_mailbox(MAILBOX)
        mailbox = Mailbox(
            id=MAILBOX, workbooks_url=workbooks.base_url, api_key_ref=f"env:{WORKBOOKS_KEY_ENV}"
        )
        await services.store.mailboxes.put(mailbox)
        step(
            3,
            f"Registered mailbox {MAILBOX} (Workbooks key stored as a reference, "
            f"{mailbox.api_key_ref}).",
        )
        outcome = await ensure_for_mailbox(services, mailbox)
        say(
            f"    Created {len(outcome.created)} Graph subscriptions (sent items, contacts, "
            "events); each passed the validation handshake against the host's webhook."
        )
        await _doctor_step(services, mailbox, 4)
        demo = Demo(graph, workbooks, host, services)
        n = await _sent_email_steps(demo, 5)
        n = await _two_way_steps(demo, n)
        step(n, "Status (python -m sync status):")
        from sync.status import status_report

        report = await status_report(services, runs_per_mailbox=4)
        q = report["queue"]
        say(f"    queue depth {q['depth']}, poison {q['poison_depth']}")
        for r in report["mailboxes"][0]["recent_runs"]:
            say(f"    {r['stream']:9} {r['kind']:9} {r['status']:7} {r['counts']}")
    await reset_services()
    say("\nDemo finished.")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "aiohttp.access", "sync.webhook"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            return asyncio.run(run())
        except TimeoutError as exc:
            say(f"\ndemo failed: {exc}")
            return 1
    return 130
