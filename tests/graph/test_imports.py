"""Imports point inward: the pure Graph modules and the sandbox load no client SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import {module}
forbidden = {forbidden!r}
print(",".join(sorted(m for m in sys.modules
                      if any(m == f or m.startswith(f + ".") for f in forbidden))))
"""
CLIENT_LIBS = ["msgraph", "httpx", "aiohttp", "azure", "kiota_http"]


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("sync.core.graph_models", CLIENT_LIBS),
        ("sync.core.subscriptions", CLIENT_LIBS),
        ("sync.graph.errors", CLIENT_LIBS),
        ("devkit.sandbox.graph", ["msgraph", "kiota_http", "sync.graph"]),
        ("sync.graph.subscriptions", ["msgraph"]),  # the SDK loads only when a client is built
        ("sync.engine.subscriptions", ["msgraph"]),
    ],
)
def test_module_does_not_import(module: str, forbidden: list[str]) -> None:
    code = CHECK.format(module=module, forbidden=tuple(forbidden))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "", f"{module} imported {run.stdout.strip()}"
