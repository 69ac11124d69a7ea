"""Building storage clients from settings: a connection string (Azurite, CI, local) or
endpoint URIs + managed identity (Azure). Azurite cannot do OAuth, so only the first path
runs in tests; the second is the one the infra templates configure."""

from __future__ import annotations

from typing import Any

from sync.settings import AppSettings


def _credential(app: AppSettings) -> Any:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if app.storage_client_id:
        return ManagedIdentityCredential(client_id=app.storage_client_id)
    return DefaultAzureCredential()


def table_service(app: AppSettings) -> Any:
    from azure.data.tables.aio import TableServiceClient

    if app.storage_connection is not None and app.storage_connection.get_secret_value():
        return TableServiceClient.from_connection_string(app.storage_connection.get_secret_value())
    assert app.storage_table_uri is not None
    return TableServiceClient(endpoint=app.storage_table_uri, credential=_credential(app))


def queue_service(app: AppSettings) -> Any:
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueServiceClient

    # The Functions queue trigger expects base64; a plain-text message is silently
    # dead-lettered by the host, so every producer must encode.
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }
    if app.storage_connection is not None and app.storage_connection.get_secret_value():
        return QueueServiceClient.from_connection_string(
            app.storage_connection.get_secret_value(), **policies
        )
    assert app.storage_queue_uri is not None
    return QueueServiceClient(
        account_url=app.storage_queue_uri, credential=_credential(app), **policies
    )
