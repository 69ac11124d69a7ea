"""The pure core decides without I/O: importing it must not load HTTP clients or Azure SDKs.
And the webhook path must not load the Graph SDK (its first use costs about a second)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sync.core

FORBIDDEN = ("aiohttp", "httpx", "azure", "msgraph", "kiota_abstractions", "requests")
GRAPH_SDK = ("msgraph", "msgraph_core", "kiota_abstractions", "kiota_http")


def _loaded_by(statement: str) -> set[str]:
    """Modules a fresh interpreter loads while running ``statement``."""
    code = (
        "import sys; before = set(sys.modules); "
        f"{statement}; "
        "print(chr(10).join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_modules_import_no_io_libraries() -> None:
    modules = [m.name for m in pkgutil.walk_packages(sync.core.__path__, "sync.core.")]
    assert "sync.core.jobs" in modules
    loaded = _loaded_by("; ".join(f"import {m}" for m in modules))
    assert "sync.core.jobs" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN) == []


def test_webhook_path_does_not_import_the_graph_sdk() -> None:
    loaded = _loaded_by("import sync.blueprints.webhooks")
    assert "sync.webhook" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in GRAPH_SDK) == []
