"""``python -m sync mailboxes show | update | import``: one mailbox's registration, policy and
health; changing its policy (merged into the current one and validated as a whole); and
registering the mailboxes of a CSV file with a per-row report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sync.core.onboarding import ImportFileError, parse_rows, problems
from sync.core.state_models import Mailbox, merge_policy

MAX_CONCURRENCY = 32


async def run(args: argparse.Namespace, services: Any) -> int:
    if args.action == "show":
        return await _show(args, services)
    if args.action == "update":
        return await _update(args, services)
    return await _import(args, services)


async def mailbox_report(services: Any, mailbox: Mailbox, runs: int = 10) -> dict[str, Any]:
    """The registration (with the whole policy, defaults included), health and last runs."""
    from sync.core.health import stale_after
    from sync.status import mailbox_status

    store = services.store
    health = {h.stream: h for h in await store.health.for_mailbox(mailbox.id)}
    cursors = {c.stream: c for c in await store.health.cursor_flags(mailbox.id)}
    status = mailbox_status(
        mailbox,
        await store.doctor.get(mailbox.id),
        health,
        cursors,
        await store.subscriptions.list_for_mailbox(mailbox.id),
        stale=stale_after(services.settings.app.reconcile_schedule),
    )
    status["recent_runs"] = [
        {
            "stream": r.stream,
            "kind": r.kind,
            "status": r.status,
            "started_at": r.started_at.isoformat(),
            "run_id": r.run_id,
            "job_id": r.job_id,
            "counts": r.counts,
            "message": r.message,
        }
        for r in await store.runs.recent(mailbox.id, runs)
    ]
    registration = mailbox.model_dump(mode="json", exclude={"policy"})
    return {
        "registration": registration,
        "policy": mailbox.policy.model_dump(mode="json"),
        **status,
    }


async def _show(args: argparse.Namespace, services: Any) -> int:
    from sync.status import render_mailbox

    mailbox = await services.store.mailboxes.get(args.mailbox)
    if mailbox is None:
        print(f"error: {args.mailbox} is not registered", file=sys.stderr)
        return 1
    report = await mailbox_report(services, mailbox)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    reg = report["registration"]
    for key in ("graph_user", "workbooks_url", "workbooks_user", "api_key_ref"):
        print(f"{key:16} {reg[key] or '-'}")
    print(f"{'registered':16} {reg['created_at'][:19]}, changed {reg['updated_at'][:19]}")
    print("policy:")
    print("  " + json.dumps(report["policy"], indent=2).replace("\n", "\n  "))
    for line in render_mailbox(report):
        print(line)
    return 0


async def _update(args: argparse.Namespace, services: Any) -> int:
    registration = {
        key: getattr(args, key)
        for key in ("workbooks_url", "api_key_ref", "workbooks_user", "graph_user")
        if getattr(args, key) is not None
    }
    if args.policy is None and not registration:
        print("error: nothing to change: give --policy or a registration option", file=sys.stderr)
        return 2
    try:
        changes = json.loads(args.policy) if args.policy is not None else None
    except json.JSONDecodeError as exc:
        print(f"error: --policy is not JSON: {exc}", file=sys.stderr)
        return 2
    before: dict[str, Any] = {}

    def change(current: Mailbox) -> Mailbox:
        before["policy"] = current.policy.model_dump(mode="json")
        policy = merge_policy(current.policy, changes) if changes is not None else current.policy
        data = {**current.model_dump(), **registration, "policy": policy}
        return Mailbox.model_validate(data)

    try:
        updated = await services.store.mailboxes.update(args.mailbox, change)
    except ValidationError as exc:
        print(f"error: not changed: {problems(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: not changed: {exc}", file=sys.stderr)
        return 2
    if updated is None:
        print(f"error: {args.mailbox} is not registered", file=sys.stderr)
        return 1
    after = updated.policy.model_dump(mode="json")
    changed = [k for k in after if before.get("policy", {}).get(k) != after[k]]
    print(f"updated {updated.id}: " + (", ".join(changed) or "policy unchanged"))
    for key in changed:
        print(f"  {key}: {json.dumps(before['policy'].get(key))} -> {json.dumps(after[key])}")
    for key in registration:
        print(f"  {key}: {getattr(updated, key)}")
    if {"people_filters", "activity_filters", "people_queues", "activity_queues"} & set(changed):
        print(
            f"the scope changed: run 'python -m sync sync {updated.id} --kind full' to apply it "
            "now (otherwise the next reconciliation does)"
        )
    return 0


async def _import(args: argparse.Namespace, services: Any) -> int:
    from sync.engine.onboarding import import_rows

    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        print(f"error: --concurrency is 1 to {MAX_CONCURRENCY}", file=sys.stderr)
        return 2
    try:
        text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8-sig")
        rows = parse_rows(text)
    except (OSError, UnicodeDecodeError, ImportFileError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    results = await import_rows(
        services,
        rows,
        force=args.force,
        subscribe=not args.no_subscribe,
        concurrency=args.concurrency,
    )
    counts = {
        k: sum(1 for r in results if r.outcome == k) for k in ("added", "unchanged", "refused")
    }
    if args.json:
        print(json.dumps({"counts": counts, "rows": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            print(f"line {r.line:<5} {r.outcome:9} {r.mailbox or '-':40} {r.reason}")
            for note in r.notes:
                print(f"{'':16}{note}")
        print(
            f"{len(results)} row(s): {counts['added']} added, {counts['unchanged']} unchanged, "
            f"{counts['refused']} refused"
        )
    return 1 if counts["refused"] else 0
