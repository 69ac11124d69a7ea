"""`python -m devkit.sandbox graph --port N [--controls]`: serve the Graph sandbox."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.server import SANDBOX_KEY, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devkit.sandbox graph", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument(
        "--controls",
        action="store_true",
        help="sandbox mode: also serve the /_sim/ control endpoints (never expose them)",
    )
    parser.add_argument("--mailbox", action="append", default=[], help="seed a mailbox (UPN)")
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-secret")
    args = parser.parse_args(argv)
    config = SandboxConfig(controls=args.controls, clients={args.client_id: args.client_secret})
    app = create_app(config)
    for upn in args.mailbox:
        app[SANDBOX_KEY].state.add_mailbox(upn)
    logging.basicConfig(level=logging.INFO)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0
