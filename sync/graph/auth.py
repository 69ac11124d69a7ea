"""Credentials for Graph: azure-identity in Azure, a small client-credentials credential for the
local sandbox.

azure-identity refuses an authority that is not https ("The value must be a TLS protected
(https) URL", azure/identity/_internal/utils.py), so `ClientSecretCredential` cannot talk to the
sandbox on http://127.0.0.1.  `ClientCredentialsToken` performs the same OAuth2
client-credentials request against any token endpoint and implements `AsyncTokenCredential`,
so the very same GraphServiceClient runs against either.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from sync.graph.errors import from_token_response, from_transport
from sync.settings import GraphSettings

REFRESH_MARGIN_SECONDS = 120  # fetch a new token this long before the old one expires


class ClientCredentialsToken(AsyncTokenCredential):
    """OAuth2 client-credentials grant against `{authority}/{tenant}/oauth2/v2.0/token`."""

    def __init__(self, authority: str, tenant_id: str, client_id: str, client_secret: str) -> None:
        self._url = f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._client_id = client_id
        self._secret = client_secret
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
            "client_secret": self._secret,
            "scope": " ".join(scopes),
        }
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

    async def __aenter__(self) -> ClientCredentialsToken:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


def build_credential(settings: GraphSettings) -> AsyncTokenCredential:
    """The credential for `settings`: sandbox (http authority), client secret, or workload /
    managed identity when no secret is configured."""
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    if not settings.authority_host.startswith("https://"):
        return ClientCredentialsToken(
            settings.authority_host, settings.tenant_id, settings.client_id, secret
        )
    from azure.identity.aio import (
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    if secret:
        return ClientSecretCredential(
            settings.tenant_id, settings.client_id, secret, authority=settings.authority_host
        )
    if os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
        return WorkloadIdentityCredential(
            tenant_id=settings.tenant_id, client_id=settings.client_id
        )
    return ManagedIdentityCredential(client_id=os.environ.get("AZURE_CLIENT_ID") or None)
