"""``python -m devkit.sandbox {workbooks|graph} [options]``: start one sandbox server.

Each sandbox exposes ``main(argv) -> int`` in ``devkit.sandbox.<name>.cli``; it is imported lazily
so one sandbox still runs while the other is missing or broken.
"""

from __future__ import annotations

import importlib
import sys

SANDBOXES = ("workbooks", "graph")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SANDBOXES:
        sys.stderr.write(f"usage: python -m devkit.sandbox {{{'|'.join(SANDBOXES)}}} [--port N]\n")
        return 2
    name = argv[0]
    try:
        cli = importlib.import_module(f"devkit.sandbox.{name}.cli")
    except ImportError as exc:
        sys.stderr.write(f"the {name} sandbox is not available: {exc}\n")
        return 2
    result: int = cli.main(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
