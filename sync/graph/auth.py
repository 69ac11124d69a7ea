"""Credentials for Graph: azure-identity in Azure, a small client-credentials credential for the
local sandbox.

The service always signs in as the app registration (GRAPH_CLIENT_ID), whose admin consent and
Exchange scoping decide what it may touch, in one of two ways:

* with a client secret (GRAPH_CLIENT_SECRET, a Key Vault reference in Azure);
* without one, with a federated credential: the app registration trusts the deployment's
  user-assigned managed identity, and the identity's token for `api://AzureADTokenExchange` is
  the client assertion (Microsoft's documented "app trusts a managed identity" pattern:
  azure-identity's `ClientAssertionCredential` fed by `ManagedIdentityCredential`). On AKS the
  workload identity's projected token plays that part (`WorkloadIdentityCredential`).

azure-identity refuses an authority that is not https ("The value must be a TLS protected
(https) URL", azure/identity/_internal/utils.py), so its credentials cannot talk to the
sandbox on http://127.0.0.1.  `ClientCredentialsToken` performs the same OAuth2
client-credentials request (with a secret or an assertion) against any token endpoint and
implements `AsyncTokenCredential`, so the very same GraphServiceClient runs against either.
"""

from __future__ import annotations

import asyncio
import os
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from sync.graph.errors import from_token_response, from_transport
from sync.settings import GraphSettings

REFRESH_MARGIN_SECONDS = 120  # fetch a new token this long before the old one expires
# The audience Entra ID expects in a federated credential's assertion, as a scope.
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"  # noqa: S105 - a scope
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

Assertion = Callable[[], Awaitable[str]]


class ManagedIdentityAssertion:
    """The user-assigned managed identity's token for `api://AzureADTokenExchange`: the client
    assertion of a federated credential that trusts that identity. azure-identity caches the
    identity's token and renews it before it expires."""

    def __init__(self, client_id: str | None, credential: AsyncTokenCredential | None = None):
        if credential is None:
            from azure.identity.aio import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=client_id or None)
        self._identity = credential
        self.latest = ""

    async def __call__(self) -> str:
        token = await self._identity.get_token(TOKEN_EXCHANGE_SCOPE)
        self.latest = token.token
        return token.token

    async def close(self) -> None:
        await self._identity.close()


class _Credential(AsyncTokenCredential):
    """An async credential that closes what it owns when used as a context manager."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


class FederatedCredential(_Credential):
    """The app registration signed in with azure-identity's `ClientAssertionCredential`, whose
    assertion is the managed identity's token. `ClientAssertionCredential` calls its assertion
    function synchronously, so the (async) identity token is fetched first and handed over."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        assertion: ManagedIdentityAssertion,
        *,
        authority: str | None = None,
        **kwargs: Any,
    ) -> None:
        from azure.identity.aio import ClientAssertionCredential

        self._assertion = assertion
        self._inner = ClientAssertionCredential(
            tenant_id, client_id, func=lambda: assertion.latest, authority=authority, **kwargs
        )

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        await self._assertion()  # cached by azure-identity; a request only when near expiry
        return await self._inner.get_token(
            *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
        )

    async def close(self) -> None:
        await self._inner.close()
        await self._assertion.close()


class ClientCredentialsToken(_Credential):
    """OAuth2 client-credentials grant against `{authority}/{tenant}/oauth2/v2.0/token`, with a
    client secret or, when `assertion` is given, a client assertion (federated credential)."""

    def __init__(
        self,
        authority: str,
        tenant_id: str,
        client_id: str,
        client_secret: str = "",
        *,
        assertion: Assertion | None = None,
    ) -> None:
        self._url = f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._client_id = client_id
        self._secret = client_secret
        self._assertion = assertion
        self._http = httpx.AsyncClient(timeout=30.0)
        self._cached: AccessToken | None = None
        self._lock = asyncio.Lock()

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        async with self._lock:
            cached = self._cached
            if cached is None or cached.expires_on - REFRESH_MARGIN_SECONDS <= time.time():
                self._cached = cached = await self._fetch(scopes)
            return cached

    async def _fetch(self, scopes: tuple[str, ...]) -> AccessToken:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "scope": " ".join(scopes),
        }
        if self._assertion is not None:
            form["client_assertion_type"] = JWT_BEARER
            form["client_assertion"] = await self._assertion()
        else:
            form["client_secret"] = self._secret
        try:
            resp = await self._http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise from_transport(exc) from exc
        if resp.status_code != 200:
            raise from_token_response(
                resp.status_code, resp.headers, resp.content, now=datetime.now(UTC)
            )
        data = resp.json()
        return AccessToken(str(data["access_token"]), int(time.time()) + int(data["expires_in"]))

    async def close(self) -> None:
        await self._http.aclose()
        close = getattr(self._assertion, "close", None)
        if close is not None:
            await close()


def build_credential(settings: GraphSettings) -> AsyncTokenCredential:
    """The credential for `settings`, always the app registration's: with its client secret, or
    (no secret) with a federated credential whose assertion is the user-assigned managed
    identity's token (AZURE_CLIENT_ID), or the AKS workload identity's token. An http authority
    is the local sandbox, which azure-identity refuses; `ClientCredentialsToken` serves it."""
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    sandbox = not settings.authority_host.startswith("https://")
    if secret:
        if sandbox:
            return ClientCredentialsToken(
                settings.authority_host, settings.tenant_id, settings.client_id, secret
            )
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(
            settings.tenant_id, settings.client_id, secret, authority=settings.authority_host
        )
    if os.environ.get("AZURE_FEDERATED_TOKEN_FILE") and not sandbox:
        from azure.identity.aio import WorkloadIdentityCredential

        return WorkloadIdentityCredential(
            tenant_id=settings.tenant_id, client_id=settings.client_id
        )
    assertion = ManagedIdentityAssertion(os.environ.get("AZURE_CLIENT_ID"))
    if sandbox:
        return ClientCredentialsToken(
            settings.authority_host, settings.tenant_id, settings.client_id, assertion=assertion
        )
    return FederatedCredential(
        settings.tenant_id, settings.client_id, assertion, authority=settings.authority_host
    )
