"""CLI for sent-email linking: ``explain`` why a message was (not) linked, ``attach`` one.

    python -m sync explain ann@contoso.com '<CAF1x@mail.contoso.com>'
    python -m sync explain ann@contoso.com AAMkAGI2... --json
    python -m sync attach ann@contoso.com '<CAF1x@mail.contoso.com>' CASE-123

Wiring (``sync/cli/main.py``): call ``add_parser(sub)`` while building the sub-parsers and
route the commands ``explain`` and ``attach`` to ``run(args, services)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from sync.core.email_linking import RecordRef, parse_reference
from sync.core.errors import NotFound

if TYPE_CHECKING:
    from sync.runtime import Services

COMMANDS = ("explain", "attach")


def add_parser(sub: Any) -> None:
    """Add ``explain`` and ``attach`` to the ``python -m sync`` sub-parsers."""
    ex = sub.add_parser("explain", help="why a sent message was or was not linked to Workbooks")
    ex.add_argument("mailbox", help="the mailbox (UPN) that sent the message")
    ex.add_argument("message", help="Graph immutable id or internetMessageId of the message")
    ex.add_argument("--json", action="store_true", help="print the full record as JSON")
    at = sub.add_parser("attach", help="link a sent message to a Workbooks record")
    at.add_argument("mailbox")
    at.add_argument("message", help="Graph immutable id or internetMessageId")
    at.add_argument(
        "record", nargs="?", default="", help="object reference, e.g. CASE-123 or PERS-45"
    )
    at.add_argument("--type", dest="record_type", default="", help="e.g. Private::Crm::Case")
    at.add_argument("--id", dest="record_id", type=int, default=0)


async def run(args: argparse.Namespace, services: Services) -> int:
    if args.command == "explain":
        return await _explain(args, services)
    if args.command == "attach":
        return await _attach(args, services)
    print(f"error: unknown command {args.command!r}", file=sys.stderr)
    return 2


async def _explain(args: argparse.Namespace, services: Services) -> int:
    from sync.engine.emails import explain

    try:
        record = await explain(services, args.mailbox, args.message)
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(record, indent=2, default=str))
        return 0
    for line in render(record):
        print(line)
    return 0


def render(record: dict[str, Any]) -> list[str]:
    """A short human-readable explanation."""
    expl: dict[str, Any] = record.get("explanation", {})
    lines = [
        f"message   {record['internet_message_id'] or record['message_key']}",
        f"subject   {record['subject']}",
        f"state     {record['state']}  ({expl.get('reason', '')})",
        f"email     {record['workbooks_email_id'] or '-'}",
        f"shared    {expl.get('shared_by') or 'no'}  (policy {expl.get('policy', '?')})",
    ]
    recipients = expl.get("recipients")
    if isinstance(recipients, list):
        for r in recipients:
            found = ", ".join(f"{m['record']} via {m['field']}" for m in r.get("matches", []))
            lines.append(f"  {r['role']:3} {r['address']:40} {r['result']:14} {found}")
    for e in expl.get("excluded", []):
        where = f" ({e['domain']})" if e.get("domain") else ""
        lines.append(f"  {e['role']:3} {'(not stored)':40} excluded: {e['rule']}{where}")
    for ref in expl.get("references", []):
        lines.append(f"  ref {ref['text']:40} {ref['source']:14} {ref['record']}")
    for entry in expl.get("retroactive", []):
        for m in entry.get("matches", []):
            lines.append(
                f"  later {m['address']} -> {m['record']} via {m['field']} ({entry['at']})"
            )
    for entry in expl.get("attached_on_request", []):
        lines.append(f"  attached on request to {entry['record']} ({entry['at']})")
    lines.append(f"linked    {', '.join(record['linked']) or '-'}")
    if expl.get("error"):
        lines.append(f"error     {expl['error']}")
    return lines


def target(record: str, record_type: str = "", record_id: int = 0) -> RecordRef:
    """The record to attach to, from an object reference or an explicit type and id."""
    if record:
        ref = parse_reference(record)
        if ref is None:
            raise ValueError(f"{record!r} is not an object reference such as CASE-123")
        return ref
    if record_type and record_id > 0:
        return RecordRef(record_type, record_id)
    raise ValueError("give an object reference (CASE-123) or --type and --id")


async def _attach(args: argparse.Namespace, services: Services) -> int:
    from sync.engine.emails import attach_job
    from sync.engine.runner import run_job

    try:
        ref = target(args.record, args.record_type, args.record_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    job = attach_job(args.mailbox, args.message, ref, reason="cli attach")
    run = await run_job(services, job)
    if run.status == "retry":
        print(f"queued: {run.message}")
        return 0
    ok = run.status == "ok" and not run.counts.get("attach_failed")
    print(run.message or run.status, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
