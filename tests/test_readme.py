"""The README is part of the product: its settings table and commands must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from devkit.checks.readme import README, render

ROOT = Path(__file__).resolve().parents[1]


def test_settings_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "run: python -m devkit readme"


def test_readme_commands_exist_in_the_makefile() -> None:
    text = README.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    used = set(re.findall(r"`make ([a-z-]+)`", text))
    assert {"demo", "test"} <= used
    assert used <= targets


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
