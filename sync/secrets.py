"""Resolving secret references (``env:NAME`` / ``keyvault:name``) to secret values.

The mailbox registry stores only references; the values live in environment variables locally
and in Key Vault in Azure (read through the managed identity).  Values are cached briefly so a
rotated key is picked up within minutes without a restart, and they are never logged.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from sync.settings import AppSettings

CACHE_SECONDS = 300.0


class SecretError(RuntimeError):
    """A reference could not be resolved (missing variable or secret, no access)."""


class SecretProvider(Protocol):
    async def get(self, ref: str) -> str: ...


def _split(ref: str) -> tuple[str, str]:
    scheme, _, name = ref.partition(":")
    if not name:
        # Never echo the value: without a scheme it may be the secret itself.
        raise SecretError("not a secret reference (expected env:NAME or keyvault:name)")
    return scheme, name


class EnvSecrets:
    """``env:NAME`` -> os.environ[NAME]. Refuses keyvault references with a clear message."""

    async def get(self, ref: str) -> str:
        scheme, name = _split(ref)
        if scheme != "env":
            raise SecretError(f"{scheme}: references need SYNC_SECRETS_PROVIDER=keyvault")
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"environment variable {name} is not set")
        return value


class KeyVaultSecrets:
    """``keyvault:name`` -> the latest version of that Key Vault secret (``env:`` also works)."""

    def __init__(self, vault_url: str, client_id: str | None = None) -> None:
        self._vault_url = vault_url
        self._client_id = client_id
        self._client: Any = None
        self._cache: dict[str, tuple[float, str]] = {}

    def _secret_client(self) -> Any:
        if self._client is None:
            from azure.keyvault.secrets.aio import SecretClient

            from sync.storage import managed_credential

            self._client = SecretClient(
                vault_url=self._vault_url, credential=managed_credential(self._client_id)
            )
        return self._client

    async def get(self, ref: str) -> str:
        scheme, name = _split(ref)
        if scheme == "env":
            return await EnvSecrets().get(ref)
        hit = self._cache.get(name)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            secret = await self._secret_client().get_secret(name)
        except ResourceNotFoundError:
            raise SecretError(f"Key Vault secret {name!r} not found") from None
        except HttpResponseError as exc:
            raise SecretError(
                f"Key Vault refused secret {name!r}: HTTP {exc.status_code}"
            ) from None
        value = str(secret.value or "")
        self._cache[name] = (time.monotonic(), value)
        return value


def secret_provider(app: AppSettings) -> SecretProvider:
    if app.secrets_provider == "keyvault":
        assert app.key_vault_url is not None
        return KeyVaultSecrets(app.key_vault_url, app.storage_client_id)
    return EnvSecrets()
