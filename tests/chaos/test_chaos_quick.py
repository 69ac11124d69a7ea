"""The fault suite's quick version (``bench/chaos.py --quick``, also ``make chaos-quick``).

Every scenario (kill -9 of the worker mid-run, storage outage, Graph and Workbooks storms, Workbooks throttling,
duplicate and reordered notifications, delta expiry, lifecycle events, conflicting edits) runs
against the real parts: Azurite on disk in a process of its own, the local Functions host as
two processes, the sandboxes over HTTP.  Each must end in the fault-free run's final state
(nothing lost, nothing duplicated, nothing poisoned) within its convergence target.  It runs
in a subprocess: the suite starts and stops its own Azurite and sets its own environment.
About 3 minutes on 2 cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "baseline",
    "kill",
    "outage",
    "graph-storm",
    "workbooks-storm",
    "workbooks-throttle",
    "duplicates",
    "delta-expiry",
    "lifecycle",
    "conflicts",
)
_RESULT = re.compile(
    r"^\s+(?P<name>\S+)\s+converged\s+(?P<conv>[\d.]+ s|did not converge).*?"
    r"lost (?P<lost>\d+)\s+duplicated (?P<dup>\d+)\s+poison (?P<poison>\d+)\s+"
    r"same as fault-free (?P<same>\S+)\s+(?P<verdict>PASS|FAIL)"
)


@pytest.mark.slow
@pytest.mark.chaos
def test_every_fault_ends_in_the_fault_free_state() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    out = proc.stdout
    report = out[out.find("== fault suite") :]
    results = {m["name"]: m for m in map(_RESULT.match, report.splitlines()) if m}
    assert set(results) == set(SCENARIOS), out + proc.stderr
    for name, m in results.items():
        detail = f"{name}: {m.group(0).strip()}\n{report}"
        assert m["conv"] != "did not converge", detail
        assert (m["lost"], m["dup"], m["poison"]) == ("0", "0", "0"), detail
        assert m["same"] in ("yes", "-") if name == "baseline" else m["same"] == "yes", detail
        assert m["verdict"] == "PASS", detail
    assert proc.returncode == 0, report + proc.stderr[-4000:]
