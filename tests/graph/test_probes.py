"""doctor's Graph reads: the token's claims are read without verifying, and a Graph error
becomes a probe's answer with Graph's status, code and words."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.state import Mailbox
from sync.core.errors import ReauthRequired, RetryLater
from sync.graph import probes
from sync.graph.client import GraphClient
from tests.graph.conftest import UPN


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2lnbmF0dXJl"


def test_jwt_claims_are_read_without_verifying() -> None:
    assert probes.jwt_claims(_jwt({"roles": ["Mail.Read"], "appid": "a"})) == {
        "roles": ["Mail.Read"],
        "appid": "a",
    }
    assert probes.jwt_claims("an-opaque-token") is None
    assert probes.jwt_claims("a.!!!not base64!!!.c") is None
    assert probes.jwt_claims(_jwt(["not", "an", "object"])) is None  # type: ignore[arg-type]


def test_a_graph_error_becomes_a_probe_answer() -> None:
    denied = ReauthRequired(
        "Graph answered 403", detail="403 ErrorAccessDenied: Access to OData is disabled."
    )
    probe = probes.failure(denied)
    assert (probe.ok, probe.status, probe.code) == (False, 403, "ErrorAccessDenied")
    assert probe.message == "Access to OData is disabled."
    down = probes.failure(RetryLater("Graph unreachable: ConnectError", detail="refused"))
    assert (down.status, down.message) == (0, "Graph unreachable: ConnectError")


async def test_the_token_probe_reads_the_sandbox_token(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    sandbox.sandbox.config.app_roles = ["Mail.Read"]
    probe, claims = await probes.token(graph)
    assert probe.ok and claims is not None and claims["roles"] == ["Mail.Read"]
    reach = await probes.mailbox(graph, UPN)
    assert reach.ok and "Sent Items holds 0 messages" in reach.note
    found = await probes.streams(graph, UPN, datetime.now(UTC), settings=False)
    assert found["sent"].ok and not found["contacts"].ok and found["contacts"].status == 403
    assert "settings" not in found
