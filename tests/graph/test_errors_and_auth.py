"""Error translation table, credential selection, and the federated credential against the
sandbox's token and managed identity endpoints (real HTTP on loopback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devkit.sandbox.graph import SandboxHandle
from sync.core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReauthRequired,
    ResyncRequired,
    RetryLater,
    SyncError,
)
from sync.graph.auth import (
    ClientCredentialsToken,
    FederatedCredential,
    ManagedIdentityAssertion,
    build_credential,
)
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


async def test_without_a_secret_the_app_registration_signs_in_with_a_federated_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No secret must not mean "sign in as the managed identity": the token would carry the
    identity's permissions, not the app registration's consent and Exchange scoping."""
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    monkeypatch.setenv("AZURE_CLIENT_ID", "identity-client-id")
    cred = build_credential(GraphSettings(tenant_id="t", client_id="app-client-id"))
    try:
        assert isinstance(cred, FederatedCredential)
        inner = cred._inner
        assert type(inner).__name__ == "ClientAssertionCredential"
        assert inner._client._client_id == "app-client-id"
        assert inner._client._tenant_id == "t"
        assert type(cred._assertion._identity).__name__ == "ManagedIdentityCredential"
    finally:
        await cred.close()


def _identity_env(monkeypatch: pytest.MonkeyPatch, handle: SandboxHandle) -> None:
    """What Azure Functions sets for the app: the App Service managed identity endpoint."""
    for name in ("AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{handle.origin}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", handle.sandbox.config.identity_header)
    monkeypatch.setenv("AZURE_CLIENT_ID", "sandbox-identity")


async def test_federated_credential_gets_a_graph_token_from_the_sandbox(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    _identity_env(monkeypatch, sandbox)
    settings = GraphSettings(
        tenant_id=sandbox.tenant_id, client_id="sandbox-client", authority_host=sandbox.origin
    )
    cred = build_credential(settings)
    try:
        assert isinstance(cred, ClientCredentialsToken)
        token = await cred.get_token("https://graph.microsoft.com/.default")
    finally:
        await cred.close()
    assert token.token in sandbox.sandbox.state.access_tokens


async def test_federated_credential_is_refused_when_the_app_does_not_trust_the_identity(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    _identity_env(monkeypatch, sandbox)
    sandbox.sandbox.config.federated_credentials["sandbox-client"] = []
    settings = GraphSettings(
        tenant_id=sandbox.tenant_id, client_id="sandbox-client", authority_host=sandbox.origin
    )
    cred = build_credential(settings)
    try:
        with pytest.raises(ReauthRequired) as info:
            await cred.get_token("https://graph.microsoft.com/.default")
    finally:
        await cred.close()
    assert "AADSTS700213" in info.value.detail
    assert not sandbox.sandbox.state.access_tokens


async def test_identity_token_for_another_audience_is_not_an_assertion(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assertion must be the identity's token for api://AzureADTokenExchange, not for Graph."""
    from azure.identity.aio import ManagedIdentityCredential

    _identity_env(monkeypatch, sandbox)
    identity = ManagedIdentityCredential(client_id="sandbox-identity")

    async def graph_token_as_assertion() -> str:
        token = await identity.get_token("https://graph.microsoft.com/.default")
        return str(token.token)

    cred = ClientCredentialsToken(
        sandbox.origin, sandbox.tenant_id, "sandbox-client", assertion=graph_token_as_assertion
    )
    try:
        with pytest.raises(ReauthRequired) as info:
            await cred.get_token("https://graph.microsoft.com/.default")
    finally:
        await cred.close()
        await identity.close()
    assert "AADSTS700212" in info.value.detail


async def test_azure_identity_client_assertion_credential_against_the_sandbox(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Azure path end to end: azure-identity's ManagedIdentityCredential fetches the
    identity's token, its ClientAssertionCredential exchanges it for the app registration's.
    azure-identity insists on an https authority, so a transport sends the requests for the
    made-up https authority to the sandbox on loopback; everything else is the real library."""
    from azure.core.pipeline.transport import AioHttpTransport

    authority = "https://login.sandbox.invalid"

    class Loopback(AioHttpTransport):  # type: ignore[misc]
        async def send(self, request: Any, **kwargs: Any) -> Any:
            request.url = request.url.replace(authority, sandbox.origin, 1)
            return await super().send(request, **kwargs)

    _identity_env(monkeypatch, sandbox)
    cred = FederatedCredential(
        sandbox.tenant_id,
        "sandbox-client",
        ManagedIdentityAssertion("sandbox-identity"),
        authority=authority,
        transport=Loopback(),
    )
    try:
        token = await cred.get_token("https://graph.microsoft.com/.default")
        again = await cred.get_token("https://graph.microsoft.com/.default")
    finally:
        await cred.close()
    assert token.token in sandbox.sandbox.state.access_tokens
    assert again.token == token.token  # cached: one exchange, not one per request


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
