"""``python -m devkit.sandbox workbooks --port N``: the sandbox as a standalone server."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from .config import SandboxConfig
from .server import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.sandbox workbooks", description="Local Workbooks CRM sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780)
    controls = parser.add_mutually_exclusive_group()
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
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--batch-cap", type=int, default=100, help="0 disables the cap")
    parser.add_argument("--email-link-path", default="email/email_links")
    args = parser.parse_args(argv)
    config = SandboxConfig(
        sim_controls=not args.no_sim_controls,
        latency_ms=args.latency_ms,
        batch_cap=args.batch_cap or None,
        email_link_path=args.email_link_path,
    )
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(config), host=args.host, port=args.port)
    return 0
