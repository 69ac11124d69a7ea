"""The README's demo, run as a user runs it: through the local Functions host, both sandboxes
and Azurite. It exercises every trigger path end to end, so it doubles as the widest test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "SYNC_"))}
    env.pop("AzureWebJobsStorage", None)  # the demo starts its own Azurite
    done = subprocess.run(
        [sys.executable, "-m", "devkit", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Created 3 Graph subscriptions" in out
    # doctor's table: every check ran against the local stack, and none failed.
    assert re.search(r"doctor ann@contoso\.example \(.*\): 0 fail, \d+ warn, \d+ ok", out)
    for name in ("workbooks.login", "graph.roles", "graph.stream.todo", "graph.webhook_handshake"):
        assert re.search(rf"ok +{re.escape(name)} ", out), name
    assert re.search(r"email \d+ is linked to Private::Crm::Person \d+ after [\d.]+ s", out)
    assert "to  pat.customer@fabrikam.example: matched" in out
    assert re.search(r"The earlier email \d+ is now linked to Sam as well", out)
    assert "Outlook contact: Chris Buyer" in out and "categories ['Workbooks']" in out
    assert "job title: 'Chief Financial Officer'" in out
    assert "Outlook event: 'Quarterly review with Fabrikam'" in out
    assert "poison 0" in out
    assert "Traceback" not in out + done.stderr
