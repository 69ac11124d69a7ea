"""Error translation table and credential selection (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sync.core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReauthRequired,
    ResyncRequired,
    RetryLater,
    SyncError,
)
from sync.graph.auth import ClientCredentialsToken, build_credential
from sync.graph.errors import from_response, parse_retry_after
from sync.settings import GraphSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def body(code: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": "m", "innerError": {}}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (410, "", ResyncRequired),
        (400, "syncStateNotFound", ResyncRequired),
        (400, "resyncRequired", ResyncRequired),
        (429, "TooManyRequests", RetryLater),
        (503, "ServiceUnavailable", RetryLater),
        (504, "", RetryLater),
        (401, "InvalidAuthenticationToken", ReauthRequired),
        (403, "ErrorAccessDenied", ReauthRequired),
        (404, "ErrorItemNotFound", NotFound),
        (409, "ErrorIrresolvableConflict", Conflict),
        (412, "", Conflict),
        (400, "ErrorInvalidRequest", InvalidRequest),
    ],
)
def test_translation(status: int, code: str, expected: type[SyncError]) -> None:
    error = from_response(status, {}, body(code), now=NOW)
    assert type(error) is expected and error.source == "graph"


def test_retry_after_seconds_and_http_date() -> None:
    error = from_response(429, {"Retry-After": "7"}, b"", now=NOW)
    assert isinstance(error, RetryLater) and error.retry_at == NOW + timedelta(seconds=7)
    assert parse_retry_after("Fri, 27 Nov 2026 12:01:00 GMT", NOW) == NOW + timedelta(minutes=1)
    assert parse_retry_after("soon", NOW) is None


async def test_credential_choice() -> None:
    sandbox = GraphSettings(
        tenant_id="t", client_id="c", client_secret="s", authority_host="http://127.0.0.1:9"
    )
    cred = build_credential(sandbox)
    assert isinstance(cred, ClientCredentialsToken)
    await cred.close()
    real = GraphSettings(tenant_id="t", client_id="c", client_secret="s")
    cred = build_credential(real)
    assert type(cred).__name__ == "ClientSecretCredential"
    await cred.close()


def test_azure_identity_refuses_http_authority() -> None:
    # Why the sandbox needs its own credential class (see sync/graph/auth.py).
    from azure.identity.aio import ClientSecretCredential

    with pytest.raises(ValueError, match="https"):
        ClientSecretCredential("t", "c", "s", authority="http://127.0.0.1:9")


async def test_production_client_builds_offline() -> None:
    from sync.graph.client import GraphClient

    client = GraphClient.create(GraphSettings(tenant_id="t", client_id="c", client_secret="s"))
    try:
        assert client.service.request_adapter.base_url == "https://graph.microsoft.com/v1.0"
        names = []
        middleware = client._http._transport.pipeline._first_middleware  # type: ignore[union-attr]
        while middleware is not None:
            names.append(type(middleware).__name__)
            middleware = middleware.next
        assert "RetryHandler" not in names and "RedirectHandler" in names
    finally:
        await client.aclose()
