"""``python -m sync``: mailbox registry, ``doctor`` (live checks of a mailbox's setup; ``mailboxes
add`` runs it and refuses an essential failure unless ``--force``), status, manual sync, poison
queue, explain and attach, and the two-way items that need a person (``items``).

The local Functions host and the demo are development tooling: ``python -m devkit``.

Every command validates the configuration first and exits with status 2 and a message naming
the bad variable when it is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from sync.cli import emails as email_cli
from sync.core.onboarding import problems
from sync.core.state_models import Mailbox, MailboxPolicy
from sync.settings import SettingsError, get_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sync", description="Outlook <-> Workbooks sync service"
    )
    sub = p.add_subparsers(dest="command", required=True)

    mb = sub.add_parser("mailboxes", help="manage which mailboxes sync")
    mbs = mb.add_subparsers(dest="action", required=True)
    add = mbs.add_parser("add", help="register a mailbox")
    add.add_argument("mailbox", help="UPN / SMTP address of the Microsoft 365 user")
    add.add_argument("--workbooks-url", required=True, help="e.g. https://secure.workbooks.com")
    add.add_argument("--api-key-ref", required=True, help="env:VARIABLE or keyvault:secret-name")
    add.add_argument("--workbooks-user", default="", help="Workbooks login name (informational)")
    add.add_argument("--graph-user", default="", help="Graph user id if it differs from the UPN")
    add.add_argument("--policy", default="{}", help="JSON object of policy settings (see README)")
    add.add_argument(
        "--no-subscribe", action="store_true", help="do not create Graph subscriptions now"
    )
    add.add_argument(
        "--force",
        action="store_true",
        help="register even when an essential doctor check fails (bad key, unreachable "
        "Workbooks, no Graph token, a missing permission, an unreachable mailbox)",
    )
    mbs.add_parser("list", help="list registered mailboxes")
    show = mbs.add_parser("show", help="a mailbox's registration, policy and health")
    show.add_argument("mailbox")
    show.add_argument("--json", action="store_true")
    upd = mbs.add_parser(
        "update", help="change a mailbox's policy (merged into the current one) or registration"
    )
    upd.add_argument("mailbox")
    upd.add_argument(
        "--policy",
        default=None,
        help="JSON object of policy keys to change; null puts a key back to its default",
    )
    upd.add_argument("--workbooks-url", default=None)
    upd.add_argument("--api-key-ref", default=None, help="env:VARIABLE or keyvault:secret-name")
    upd.add_argument("--workbooks-user", default=None)
    upd.add_argument("--graph-user", default=None)
    imp = mbs.add_parser(
        "import",
        help="register the mailboxes of a CSV file (columns: mailbox, workbooks_url, "
        "api_key_ref, workbooks_user, graph_user, policy), checking each row",
    )
    imp.add_argument("file", help="CSV file with a header row")
    imp.add_argument(
        "--force", action="store_true", help="register rows whose essential checks fail"
    )
    imp.add_argument("--concurrency", type=int, default=4, help="rows checked at once (1-32)")
    imp.add_argument("--no-subscribe", action="store_true")
    imp.add_argument("--json", action="store_true")
    rm = mbs.add_parser("remove", help="unregister a mailbox and delete its subscriptions")
    rm.add_argument("mailbox")
    dis = mbs.add_parser("disable", help="stop syncing a mailbox, keep its state")
    dis.add_argument("mailbox")
    dis.add_argument("--reason", default="disabled by operator")
    en = mbs.add_parser("enable", help="resume syncing a disabled mailbox")
    en.add_argument("mailbox")

    doc = sub.add_parser(
        "doctor",
        help="check a mailbox's setup live: secrets, Workbooks, Graph permissions, streams, "
        "webhook",
    )
    doc.add_argument("mailbox", nargs="?", help="a registered mailbox")
    doc.add_argument("--all", action="store_true", help="every registered mailbox")
    doc.add_argument("--json", action="store_true")

    st = sub.add_parser("status", help="queues, poison messages, stream health, recent runs")
    st.add_argument("--json", action="store_true")

    sy = sub.add_parser("sync", help="queue a manual sync and follow its progress")
    sy.add_argument("mailbox")
    sy.add_argument(
        "--kind",
        choices=["push", "full", "resync"],
        default="full",
        help="push: Outlook -> Workbooks only; full: both ways; resync: both, from scratch",
    )
    sy.add_argument(
        "--restore-removed",
        action="store_true",
        help="with --kind resync: put back the items the user removed from Outlook",
    )
    sy.add_argument("--no-wait", action="store_true")
    sy.add_argument("--timeout", type=float, default=600.0)

    it = sub.add_parser(
        "items", help="two-way items needing a person: ambiguous, duplicate, removed by the user"
    )
    it.add_argument("mailbox")
    it.add_argument("--stream", choices=["contacts", "events", "todo"], default=None)
    it.add_argument("--json", action="store_true")

    po = sub.add_parser("poison", help="inspect or drain the poison queue")
    po.add_argument("action", choices=["list", "requeue", "purge"])

    email_cli.add_parser(sub)
    sub.add_parser("settings", help="print every setting and its current value (secrets hidden)")
    return p


async def _with_services(fn: Callable[[Any], Awaitable[int]]) -> int:
    from sync.runtime import get_services

    services = await get_services()
    try:
        return await fn(services)
    finally:
        await services.close()


def _problems(exc: ValidationError | json.JSONDecodeError) -> str:
    """What is wrong, field by field.  Not ``str(ValidationError)``: that repeats each input
    value, and a rejected ``--api-key-ref`` is typically the API key itself."""
    if isinstance(exc, json.JSONDecodeError):
        return f"--policy is not JSON: {exc}"
    return problems(exc)


async def _mailboxes(args: argparse.Namespace, services: Any) -> int:
    store = services.store
    if args.action == "add":
        try:
            policy = MailboxPolicy.model_validate(json.loads(args.policy))
            mailbox = Mailbox(
                id=args.mailbox,
                graph_user=args.graph_user,
                workbooks_url=args.workbooks_url,
                workbooks_user=args.workbooks_user,
                api_key_ref=args.api_key_ref,
                policy=policy,
            )
        except (ValidationError, json.JSONDecodeError) as exc:
            print(f"error: invalid mailbox: {_problems(exc)}", file=sys.stderr)
            return 2
        if await store.mailboxes.get(mailbox.id) is not None:
            print(f"error: {mailbox.id} is already registered", file=sys.stderr)
            return 1
        report = await _checked(services, mailbox, force=args.force)
        if report is None:
            return 1
        if not await store.mailboxes.add(mailbox):
            print(f"error: {mailbox.id} is already registered", file=sys.stderr)
            return 1
        await store.doctor.put(report)
        print(f"registered {mailbox.id}")
        if not args.no_subscribe:
            await _subscribe(services, mailbox)
        return 0
    if args.action in ("show", "update", "import"):
        from sync.cli import mailboxes as mailbox_cli

        return await mailbox_cli.run(args, services)
    if args.action == "list":
        rows = await store.mailboxes.list()
        if not rows:
            print("no mailboxes registered")
        for m in rows:
            state = "enabled" if m.enabled else f"disabled ({m.disabled_reason})"
            print(
                f"{m.id:40} {state:24} {m.workbooks_url}  key={m.api_key_ref}  email={m.policy.email_policy}"
            )
        return 0
    if args.action == "remove":
        await _unsubscribe(services, args.mailbox)
        if not await store.mailboxes.remove(args.mailbox):
            print(f"error: {args.mailbox} is not registered", file=sys.stderr)
            return 1
        await store.health.forget(args.mailbox)  # status and the failing gauge forget it too
        print(f"removed {args.mailbox}")
        return 0
    enabled = args.action == "enable"
    result = await store.mailboxes.set_enabled(
        args.mailbox, enabled, "" if enabled else args.reason
    )
    if result is None:
        print(f"error: {args.mailbox} is not registered", file=sys.stderr)
        return 1
    print(f"{'enabled' if enabled else 'disabled'} {result.id}")
    # Disabled mailboxes keep no Graph subscriptions; enabling one creates them again (and the
    # stream catch-up jobs that the new subscriptions' first notifications would miss).
    await _subscribe(services, result)
    if enabled:
        from sync.engine.runner import request_manual

        status = await request_manual(services, result.id, "full")
        print(f"queued a full sync to catch up: job {status.job_id}")
    return 0


async def _checked(services: Any, mailbox: Mailbox, *, force: bool) -> Any:
    """Run doctor on a mailbox about to be registered and print its table; the report, or
    None when an essential check failed and the operator did not force it."""
    from sync.core.doctor import render
    from sync.engine.doctor import diagnose

    report = await diagnose(services, mailbox)
    for line in render(report):
        print(line)
    failed = [c.name for c in report.essential_failures]
    if failed and not force:
        print(
            f"error: {mailbox.id} not registered: {', '.join(failed)} failed (see the fixes "
            "above); fix them and add it again, or register it anyway with --force",
            file=sys.stderr,
        )
        return None
    if failed:
        print(f"warning: registering despite {', '.join(failed)} (--force)")
    return report


async def _doctor(args: argparse.Namespace, services: Any) -> int:
    """Exit status 0: nothing failed; 1: a check failed (or an unknown mailbox)."""
    from sync.core.doctor import render
    from sync.engine.doctor import run_doctor

    if bool(args.mailbox) == bool(args.all):
        print("error: name one mailbox or give --all", file=sys.stderr)
        return 2
    if args.all:
        mailboxes = await services.store.mailboxes.list()
    else:
        found = await services.store.mailboxes.get(args.mailbox)
        if found is None:
            print(f"error: {args.mailbox} is not registered", file=sys.stderr)
            return 1
        mailboxes = [found]
    reports = [await run_doctor(services, m) for m in mailboxes]
    if args.json:
        print(json.dumps([r.as_dict() for r in reports] if args.all else reports[0].as_dict()))
    else:
        if not reports:
            print("no mailboxes registered")
        for report in reports:
            print("\n".join(render(report)))
    return 1 if any(r.failures for r in reports) else 0


async def _subscribe(services: Any, mailbox: Mailbox) -> None:
    """Bring the mailbox's Graph subscriptions in line (create, renew, or delete if disabled)."""
    from sync.core.errors import SyncError
    from sync.engine import subscriptions

    try:
        outcome = await subscriptions.ensure_for_mailbox(services, mailbox)
    except SyncError as exc:
        print(f"warning: subscriptions not updated now ({exc}); the renewal timer retries")
        return
    print(
        f"subscriptions: created {len(outcome.created)}, renewed {len(outcome.renewed)}, "
        f"deleted {len(outcome.deleted)}"
    )
    for failure in outcome.failed:
        print(f"warning: subscription step failed: {failure}; the renewal timer retries")


async def _unsubscribe(services: Any, mailbox_id: str) -> None:
    from sync.core.errors import SyncError
    from sync.engine import subscriptions

    try:
        outcome = await subscriptions.remove_for_mailbox(services, mailbox_id)
    except SyncError as exc:
        print(f"warning: could not delete subscriptions ({exc}); they lapse within 7 days")
        return
    if outcome.deleted:
        print(f"subscriptions deleted: {len(outcome.deleted)}")


async def _status(args: argparse.Namespace, services: Any) -> int:
    from sync.status import render_status, status_report

    report = await status_report(services)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for line in render_status(report):
        print(line)
    return 0


async def _sync(args: argparse.Namespace, services: Any) -> int:
    from sync.engine.runner import request_manual

    if args.restore_removed and args.kind != "resync":
        print("error: --restore-removed goes with --kind resync", file=sys.stderr)
        return 2
    mailbox = await services.store.mailboxes.get(args.mailbox)
    if mailbox is None:
        print(f"error: {args.mailbox} is not registered", file=sys.stderr)
        return 1
    extra = {"restore_removed": "1"} if args.restore_removed else None
    status = await request_manual(services, mailbox.id, args.kind, extra)
    print(f"queued {args.kind} sync for {mailbox.id}: job {status.job_id}")
    if args.no_wait:
        return 0
    return await _follow(services, status.job_id, args.timeout)


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total or '?'} streams"


async def _follow(services: Any, job_id: str, timeout: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = ""
    while loop.time() < deadline:
        status = await services.store.jobs.get(job_id)
        if status is not None:
            line = f"\r{_bar(status.streams_done, status.streams_total)} {status.state} {status.counts}"
            if line != last:
                print(line, end="", flush=True)
                last = line
            if status.state in ("done", "failed"):
                print()
                if status.message:
                    print(status.message)
                return 0 if status.state == "done" else 1
        await asyncio.sleep(0.5)
    print("\nstill running; check later with 'python -m sync status'")
    return 3


async def _items(args: argparse.Namespace, services: Any) -> int:
    from sync.core.errors import NotFound
    from sync.status import render_items, two_way_items

    try:
        report = await two_way_items(services, args.mailbox, args.stream)
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for line in render_items(report):
            print(line)
    return 0


async def _poison(args: argparse.Namespace, services: Any) -> int:
    queue = services.queue
    if args.action == "list":
        items = await queue.peek_poison()
        print(f"{await queue.poison_depth()} message(s) in {queue.poison_name}")
        for m in items:
            what = (
                f"{m.job.mailbox}/{m.job.stream} {m.job.kind} ({m.job.reason})"
                if m.job
                else f"not a job: {m.problem}"
            )
            print(f"  {m.id} attempts={m.dequeue_count} {what}")
        return 0
    if args.action == "requeue":
        print(f"requeued {await queue.requeue_poison()} message(s)")
        return 0
    print(f"purged {await queue.purge_poison()} message(s)")
    return 0


def _print_settings() -> int:
    from sync.settings import settings_catalogue

    for row in settings_catalogue():
        print(f"{row['env'][0]:42} default={row['default']!s:24} {row['description'][:70]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "settings":
        return _print_settings()
    try:
        get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    handlers: dict[str, Callable[[argparse.Namespace, Any], Awaitable[int]]] = {
        "mailboxes": _mailboxes,
        "doctor": _doctor,
        "status": _status,
        "sync": _sync,
        "poison": _poison,
        "items": _items,
        "explain": email_cli.run,
        "attach": email_cli.run,
    }
    handler = handlers[args.command]
    return asyncio.run(_with_services(lambda services: handler(args, services)))
