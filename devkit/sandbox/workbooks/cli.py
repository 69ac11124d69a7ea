"""``python -m devkit.sandbox workbooks --port N``: the sandbox as a standalone server.

Every unconfirmed point of the protocol (``SandboxConfig``) has a flag, so the service can be
tried against each plausible behaviour of a real tenant.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, get_args

from aiohttp import web

from .config import (
    LEAD_EMAIL_CANDIDATES,
    NOT_FOUND_PRESETS,
    AttributeChecking,
    EmailLinkStrategy,
    SandboxConfig,
)
from .server import create_app


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _on_off(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return value in ("on", "true", "yes", "1")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devkit.sandbox workbooks", description="Local Workbooks CRM sandbox"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8780)
    controls = p.add_mutually_exclusive_group()
    controls.add_argument(
        "--no-sim-controls",
        action="store_true",
        help="disable the /_sim/ control endpoints (on by default in the CLI)",
    )
    # Accepted so the two sandboxes take the same flags (the Graph one is opt-in).
    controls.add_argument(
        "--sim-controls",
        "--controls",
        action="store_true",
        help="enable /_sim/ (already the default)",
    )
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--batch-cap", type=int, default=100, help="0 disables the cap")
    schema = p.add_argument_group("unconfirmed points of the real service (see docs/workbooks.md)")
    schema.add_argument(
        "--attribute-checking",
        choices=get_args(AttributeChecking),
        default="flag",
        help="flag: check names when _strict_attribute_checking is set (the real service); "
        "always; never (lax: unknown columns read as null, unknown attributes stored)",
    )
    schema.add_argument(
        "--email-link-strategy",
        choices=get_args(EmailLinkStrategy),
        default="link_type",
        help="how an email is tied to a record: a link type with its own endpoint; an "
        "association written on email/emails; render_with_resource_* on create only; none",
    )
    schema.add_argument("--email-link-path", default="email/email_links")
    schema.add_argument(
        "--email-statuses",
        type=_csv,
        default=["DRAFT", "SEND", "SENT"],
        help="the email status picklist, comma-separated (DRAFT,SEND,SENT plus extras)",
    )
    schema.add_argument(
        "--lead-email-fields",
        type=_csv,
        default=list(LEAD_EMAIL_CANDIDATES[:2]),
        help=f"lead columns that hold an email, comma-separated; e.g. {LEAD_EMAIL_CANDIDATES[1]}",
    )
    schema.add_argument("--watched-filterable", type=_on_off, default=True, metavar="on|off")
    schema.add_argument(
        "--meeting-location-field", default="location", help="'' for no location field"
    )
    schema.add_argument("--party-columns", type=_on_off, default=True, metavar="on|off")
    schema.add_argument(
        "--deleted-owner-locations",
        choices=["listed", "hidden"],
        default="listed",
        help="whether a deleted record's Contact Details rows are still listed",
    )
    schema.add_argument(
        "--lead-party-locations",
        type=_on_off,
        default=False,
        metavar="on|off",
        help="a lead party's main location is also a Contact Details row of that party",
    )
    schema.add_argument(
        "--not-found-text",
        default="sandbox",
        help=f"a preset ({', '.join(NOT_FOUND_PRESETS)}) or a template with {{class_name}}, {{id}}",
    )
    schema.add_argument(
        "--dead-session-location",
        default="/login",
        help="where a dead session is redirected; 'same' = its own URL, like throttling; "
        "'401' = a 401 session_expired answer",
    )
    schema.add_argument("--webhooks-allowed", type=_on_off, default=True, metavar="on|off")
    return p


def config_from(args: argparse.Namespace) -> SandboxConfig:
    values: dict[str, Any] = {
        "sim_controls": not args.no_sim_controls,
        "latency_ms": args.latency_ms,
        "batch_cap": args.batch_cap or None,
        "attribute_checking": args.attribute_checking,
        "email_link_strategy": args.email_link_strategy,
        "email_link_path": args.email_link_path,
        "email_status_values": args.email_statuses,
        "lead_email_fields": args.lead_email_fields,
        "watched_filterable": args.watched_filterable,
        "meeting_location_field": args.meeting_location_field or None,
        "party_columns": args.party_columns,
        "deleted_owner_locations": args.deleted_owner_locations,
        "lead_party_locations": args.lead_party_locations,
        "not_found_text": args.not_found_text,
        "dead_session_location": args.dead_session_location,
        "webhooks_allowed": args.webhooks_allowed,
    }
    return SandboxConfig(**values)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as exc:  # pydantic's ValidationError: a clear message, not a traceback
        p.error(str(exc))
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(config), host=args.host, port=args.port)
    return 0
