"""``python -m bench [name ...]``: run the benchmarks one after another, each in its own
process (so one's memory and event loop never colour another's figures)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    "webhook",
    "outage",
    "workbooks",
    "graph",
    "emails",
    "throughput",
    "retro",
    "sync",
    "job_costs",
    "storage_sdk",
    "wb_instances",
    "scale",
    "console",
)


def main(argv: list[str]) -> int:
    names = argv or [n for n in ORDER if (HERE / f"bench_{n}.py").exists()]
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"no benchmark named {name!r}", file=sys.stderr)
            return 2
        print(f"\n=== bench_{name} ===", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(script)])  # noqa: S603
        print(f"=== bench_{name}: exit {code} in {time.monotonic() - start:.0f} s ===", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that missed a target or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
