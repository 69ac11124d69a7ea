"""``python -m devkit``: one entry point for the tools, each given its own arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _devkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devkit", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_tool_it_lists_the_tools_and_fails() -> None:
    done = _devkit()
    assert done.returncode == 2
    for tool in ("demo", "serve", "sandbox", "azurite", "readme", "infra-check"):
        assert f"  {tool} " in done.stderr


def test_a_tool_gets_the_rest_of_the_arguments() -> None:
    done = _devkit("sandbox", "nonesuch")
    assert done.returncode == 2
    assert "usage: python -m devkit.sandbox {workbooks|graph}" in done.stderr
    help_text = _devkit("sandbox", "workbooks", "--help")
    assert help_text.returncode == 0 and "--port" in help_text.stdout


def test_the_product_cli_has_no_tooling_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sync", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "invalid choice: 'demo'" in done.stderr
