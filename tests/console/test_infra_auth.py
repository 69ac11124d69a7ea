"""The console's sign-in in infra/main.bicep agrees with the app: App Service Authentication
lets through exactly the routes that sign themselves (Graph's webhooks) or carry function keys
(the operator API), and nothing of the console."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import app_index

MAIN = Path(__file__).resolve().parents[2] / "infra" / "main.bicep"


def _block(text: str, start: str) -> str:
    """From ``start`` to its matching closing bracket (Bicep's brackets are balanced)."""
    at = text.index(start)
    opening = min(i for i in (text.find("{", at), text.find("[", at)) if i >= 0)
    pair = {"{": "}", "[": "]"}[text[opening]]
    depth = 0
    for i in range(opening, len(text)):
        depth += {text[opening]: 1, pair: -1}.get(text[i], 0)
        if depth == 0:
            return text[at : i + 1]
    raise AssertionError(f"unbalanced {start}")


@pytest.fixture(scope="module")
def bicep() -> str:
    return MAIN.read_text()


@pytest.fixture(scope="module")
def routes() -> dict[str, str]:
    """Function name -> the path it answers, as the Functions host indexes it."""
    out = {}
    for name, data in app_index.indexed().items():
        for binding in data["bindings"]:
            if binding["type"] == "httpTrigger":
                out[name] = "/api/" + binding["route"]
    return out


def _excluded(bicep: str) -> list[str]:
    return re.findall(r"'([^']+)'", _block(bicep, "var anonymousPaths = ["))


def _covers(pattern: str, route: str) -> bool:
    """Whether an excluded path lets ``route`` through; ``/x/*`` covers everything under /x/."""
    sample = re.sub(r"\{\*?\w+\}", "anything", route)
    if pattern.endswith("/*"):
        return sample.startswith(pattern[:-1])
    return sample == pattern


def test_only_the_console_needs_a_sign_in(bicep: str, routes: dict[str, str]) -> None:
    excluded = _excluded(bicep)
    for name, route in routes.items():
        let_through = any(_covers(p, route) for p in excluded)
        if name.startswith("console_"):
            assert not let_through, f"{route} would be reachable without a sign-in"
        else:
            assert let_through, f"{name} ({route}) would be sent to the sign-in page"
    for pattern in excluded:  # no stale entry that could let a future route through unnoticed
        assert any(_covers(pattern, r) for r in routes.values()), f"{pattern} matches no route"


def test_sign_in_is_entra_id_required_and_keeps_no_tokens(bicep: str) -> None:
    auth = _block(bicep, "resource consoleAuth ")
    assert "if (!empty(consoleClientId))" in auth
    assert "name: 'authsettingsV2'" in auth
    assert re.search(r"requireAuthentication:\s*true", auth)
    assert "unauthenticatedClientAction: 'RedirectToLoginPage'" in auth
    assert "excludedPaths: anonymousPaths" in auth
    assert re.search(r"azureActiveDirectory:\s*\{\s*enabled:\s*true", auth)
    assert re.search(r"tokenStore:\s*\{\s*enabled:\s*false", auth)
    assert re.search(r"requireHttps:\s*true", auth)


def test_the_development_sign_in_is_never_configured_in_azure(bicep: str) -> None:
    # The app refuses it there anyway (sync.console.auth.front_door); the template never sets it.
    assert "SYNC_CONSOLE_DEV_LOGIN" not in bicep
