"""Queue clients for a binding's ``connection`` setting, resolved like the real host does:
the setting itself, then ``AzureWebJobs<name>``; a connection string, or the identity-based
``<name>__queueServiceUri`` / ``<name>__serviceUri`` form (with ``<name>__clientId``)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from sync.storage import QUEUE_RETRY

DEFAULT_CONNECTION = "AzureWebJobsStorage"
_WHITESPACE = re.compile(r"\s+")
_LOOPBACK = re.compile(
    r"UseDevelopmentStorage=true|//(?:127\.0\.0\.1|localhost|\[::1\])[:/]", re.IGNORECASE
)


class StorageSettingError(LookupError):
    """A binding's connection setting is missing."""


def _lookup(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


# Retries of the host's own queue calls (polling, deletes, output bindings): the service's
# quick ones (about 1.5, 2.3 and 3.4 s), close to Azure's host, whose .NET storage client
# retries after about 0.8, 1.6 and 3.2 s, and not the Python SDK's first retry after 15-21 s.
HOST_RETRY = QUEUE_RETRY


def queue_service_for(
    connection: str | None, environ: Mapping[str, str] | None = None
) -> QueueServiceClient:
    env = os.environ if environ is None else environ
    setting = connection or DEFAULT_CONNECTION
    for name in (setting, f"AzureWebJobs{setting}"):
        conn = _lookup(env, name)
        if conn:
            # No encode/decode policies: the host does base64 itself, exactly as the trigger does.
            return QueueServiceClient.from_connection_string(
                conn, **_local_transport(conn), **HOST_RETRY
            )
        uri = _lookup(env, f"{name}__queueServiceUri") or _lookup(env, f"{name}__serviceUri")
        if uri:
            return QueueServiceClient(
                account_url=uri, credential=_credential(env, name), **HOST_RETRY
            )
    raise StorageSettingError(
        f"storage connection {setting!r} is not configured: set the app setting {setting} to a "
        f"connection string (Azurite: see 'python -m devkit.azurite start')"
    )


def _local_transport(conn: str) -> dict[str, Any]:
    """For loopback storage (Azurite), a transport that ignores proxy environment settings.
    With them on (azure-core's default), aiohttp reads ~/.netrc and the proxy variables in a
    worker thread on *every* request: about 1 ms of CPU per call on the dev VM."""
    if not _LOOPBACK.search(conn):
        return {}
    from azure.core.pipeline.transport import AioHttpTransport

    return {"transport": AioHttpTransport(use_env_settings=False)}


def _credential(env: Mapping[str, str], name: str) -> Any:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    client_id = _lookup(env, f"{name}__clientId")
    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


async def ensure_queue(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        await client.create_queue()


def encode_message(payload: bytes, encoding: str) -> str:
    """What goes on the wire for a queue output value (host default: base64)."""
    if encoding == "none":
        return payload.decode("utf-8")
    return base64.b64encode(payload).decode("ascii")


def decode_message(content: str | bytes | None, encoding: str) -> bytes:
    """The trigger's view of a stored message; raises ValueError if it is not valid base64."""
    if content is None:
        return b""
    raw = content if isinstance(content, bytes) else content.encode("utf-8")
    if encoding == "none":
        return raw
    try:
        # .NET's Convert.FromBase64String ignores whitespace; otherwise it is strict.
        return base64.b64decode(_WHITESPACE.sub("", raw.decode("ascii")), validate=True)
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"message is not valid base64: {exc}") from None
