"""``python -m devkit <tool> [options]``: the development tools, by name.

Each tool keeps its own options; everything after the tool's name is handed to it whole.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# tool -> (module, what it does).  Modules are imported only when their tool is asked for.
TOOLS: dict[str, tuple[str, str]] = {
    "demo": ("devkit.demo", "run the end-to-end demo on the local sandboxes"),
    "serve": ("devkit.host.cli", "run function_app.py on the local Functions host"),
    "sandbox": ("devkit.sandbox.__main__", "start the Graph or Workbooks sandbox"),
    "azurite": ("devkit.azurite", "start Azurite, or run a command with Azurite"),
    "readme": ("devkit.checks.readme", "regenerate the README's settings table"),
    "infra-check": ("devkit.checks.infra", "check infra/ against the code"),
}


def usage() -> str:
    lines = ["usage: python -m devkit <tool> [options]", "", "tools:"]
    lines += [f"  {name:12} {what}" for name, (_, what) in TOOLS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        sys.stderr.write(usage())
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(TOOLS[argv[0]][0])
    entry: Callable[[list[str]], int] = module.main
    return int(entry(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
